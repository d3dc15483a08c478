"""Smoke runs of figures 6, 8 and 9 through the runner, plus replot from the saved JSON."""
import json

import pytest

from paperfigs.registry import FIGURES
from paperfigs.runner import replot, run_figure, validate_result


@pytest.mark.parametrize("number", [6, pytest.param(8, marks=pytest.mark.needs_fashion), 9])
def test_smoke_figure(number, tmp_path):
    result = run_figure(number, "smoke", seed=0, device="cpu", out_dir=tmp_path)
    validate_result(result)
    assert result["claims"], "every figure states at least one claim"
    for c in result["claims"]:
        assert isinstance(c["holds"], bool)
        assert c["value"] is not None, f"claim {c['name']} was not evaluated"
    assert (tmp_path / f"fig{number}.png").stat().st_size > 0
    saved = json.loads((tmp_path / f"fig{number}.json").read_text())
    (tmp_path / f"fig{number}.png").unlink()
    replot(number, tmp_path)  # draws from the JSON alone
    assert (tmp_path / f"fig{number}.png").exists() and saved["figure"] == number
    assert FIGURES[number].module is not None


def test_fig6_auc_definition():
    from paperfigs.fig06_colored_digits import first_step_at, normalised_auc

    steps = [0, 10, 20, 30, 40]
    # t0 = 10: the step-0 chance level is excluded; trapezoids over [10, 40] are 0, 5 and 10
    assert normalised_auc(steps, [0.5, 0.0, 0.0, 1.0, 1.0], start_frac=0.25) == pytest.approx((0 + 0.5 + 1) * 10 / 30)
    assert normalised_auc(steps, [0.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(35 / 40)
    assert first_step_at(steps, [0.1, 0.2, 0.6, 0.4, 0.7], 0.5) == 20
    assert first_step_at(steps, [0.6, 0.2, 0.3, 0.4, 0.7], 0.5, start_frac=0.25) == 40  # chance start skipped
