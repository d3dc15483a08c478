"""Figure 6 (colored digits): its read-outs (the smoke runs of figures 6, 8 and 9:
test_figures_smoke.py)."""
import pytest


def test_fig6_auc_definition():
    from paperfigs.fig06_colored_digits import first_step_at, normalised_auc

    steps = [0, 10, 20, 30, 40]
    # t0 = 10: the step-0 chance level is excluded; trapezoids over [10, 40] are 0, 5 and 10
    assert normalised_auc(steps, [0.5, 0.0, 0.0, 1.0, 1.0], start_frac=0.25) == pytest.approx((0 + 0.5 + 1) * 10 / 30)
    assert normalised_auc(steps, [0.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(35 / 40)
    assert first_step_at(steps, [0.1, 0.2, 0.6, 0.4, 0.7], 0.5) == 20
    assert first_step_at(steps, [0.6, 0.2, 0.3, 0.4, 0.7], 0.5, start_frac=0.25) == 40  # chance start skipped
