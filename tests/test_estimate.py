"""paperfigs.estimate: the first batch is captured without training, and the extrapolation from two
short runs is exact for a run whose cost is fixed + per step + per evaluation."""
import pytest

from experiments.engine import RunSpec
from paperfigs import estimate


def test_first_batch_is_captured_without_running_and_grouped():
    specs = estimate.first_batch(6, "smoke")
    assert specs and all(isinstance(s, RunSpec) for s in specs)
    assert estimate.first_batch(2, "smoke") == []          # a closed-form figure trains nothing
    groups = {estimate._group_key(s) for s in specs}
    assert 1 < len(groups) < len(specs)                    # lrs and seeds share a group


def test_extrapolation_is_exact_for_steps_and_evaluations_and_never_under_with_start_up(monkeypatch):
    def cost(startup):
        def fake(spec, **changes):                         # 10 ms a step, 0.2 s an evaluation
            c = {**spec.config, **changes}
            if "epochs" in c:
                return startup + 3.0 * c["epochs"]
            every = c.get("eval_every")                    # at 0, every `every` steps and at the end
            evals = c["steps"] // every + 1 + (c["steps"] % every != 0) if every else 0
            return startup + 0.01 * c["steps"] + 0.2 * evals
        return fake

    spec = RunSpec("groups", {"steps": 2000, "eval_every": 100, "lr": 0.1, "seed": 0})
    odd = RunSpec("groups", {"steps": 2050, "eval_every": 100})  # 22 evaluations: the end counts
    monkeypatch.setattr(estimate, "_cpu_seconds", cost(0.0))
    assert estimate.run_cost(spec, short=30) == pytest.approx(0.01 * 2000 + 0.2 * 21)
    assert estimate.run_cost(odd, short=30) == pytest.approx(0.01 * 2050 + 0.2 * 22)
    assert estimate.run_cost(RunSpec("autoencoder", {"epochs": 100}), short=30) == pytest.approx(300.0)
    assert estimate.run_cost(RunSpec("groups", {"steps": 40, "eval_every": 10}), short=30) == pytest.approx(
        0.4 + 0.2 * 5)                                     # short enough to time whole
    # a start-up cost cannot be told from two evaluations by two runs: it is counted with them, so
    # the estimate errs high (by at most start-up x evaluations / 2), never low
    monkeypatch.setattr(estimate, "_cpu_seconds", cost(0.5))
    true = 0.5 + 0.01 * 2000 + 0.2 * 21
    assert true < estimate.run_cost(spec, short=30) <= true + 0.5 * 21 / 2


def test_cli_refuses_an_unknown_figure(capsys):
    with pytest.raises(SystemExit) as e:
        estimate.main(["--figure", "99"])
    assert e.value.code == 2 and "no figure 99" in capsys.readouterr().err
