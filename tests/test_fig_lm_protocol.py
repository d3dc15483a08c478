"""Figures 9, 13 and 14 (the language-model figures): paper-scale configurations run through the real
task code, the well-posed target of figure 14, and SPlus's nonstandard layers there."""
import math

import pytest
import torch

from experiments.models.transformer import TinyTransformer
from experiments.models.vision import MLP
from experiments.optim.param_groups import split_nonstandard
from experiments.tasks import lm as lm_task
from experiments.tasks import width_mlp
from paperfigs import fig09_token_frequency as fig9
from paperfigs import fig13_stale_inverses as fig13
from paperfigs import fig14_steps_to_adam as fig14


def one_step(spec, **tiny):
    """Run a figure's run spec for one step with a tiny batch and read-out (everything else as built)."""
    config = {**spec.config, "steps": 1, "batch_size": 1, "eval_every": 1, **tiny}
    task = lm_task if spec.task == "lm" else width_mlp
    result = task.run(task.with_defaults(config))
    assert result["status"] == "ok" and result["step"][-1] == 1
    return result


@pytest.mark.parametrize("number", [9, 13, 14])
def test_paper_scale_builds_and_steps(number):
    """CONFIGS["paper"] as compute() builds it: the transformer at width 768 x 12 layers takes one step.
    Figure 13's optimizers are swapped for SGD here: their first step computes eigendecompositions of
    every 3072-wide factor, minutes on a CPU (their numerics are tested in the optimizer tests)."""
    if number == 9:
        cfg = fig9.CONFIGS["paper"]
        spec = fig9.run_spec(cfg, "sgd", {}, fig9.CENTERS["sgd"], 0, "cpu")
        r = one_step(spec, bucket_windows=2)
        assert len(r["metrics"]["val/top1"][-1]) == 3
    elif number == 13:
        cfg = fig13.CONFIGS["paper"]
        assert cfg.intervals == (5, 10, 25, 100, 500) and min(cfg.shampoo_lrs) == 1e-4
        spec = fig13.run_spec(cfg, "Shampoo", cfg.shampoo_lrs[0], cfg.intervals[0], 0, "cpu")
        r = one_step(spec, optimizer="sgd", optimizer_kwargs={}, val_windows=2)
        assert math.isfinite(r["metrics"]["val_loss"][-1])
    else:
        cfg = fig14.CONFIGS["paper"]
        adam = fig14.methods(type("Ctx", (), {"extra_optimizers": ()})())["Adam"]
        for task in fig14.TASKS:
            spec = fig14.run_spec(cfg, task, "Adam", adam, 1e-3, 0, "cpu")
            r = one_step(spec, **({"val_windows": 2} if task == "lm" else {}))
            assert math.isfinite(r["metrics"][fig14.TARGET[task]][-1])
    assert "d_model': 768" in str(spec.config) or "'width': 1024" in str(spec.config)


@pytest.mark.parametrize("mode", ["quick", "full", "paper"])
def test_fig14_lm_stays_within_one_pass(mode):
    """Figure 14's LM target is the validation loss: well posed only while no training window repeats."""
    cfg = fig14.CONFIGS[mode]
    adam = fig14.methods(type("Ctx", (), {"extra_optimizers": ()})())["Adam"]
    info = lm_task.info(fig14.run_spec(cfg, "lm", "Adam", adam, 1e-3, 0, "cpu").config)
    assert info["epochs"] < 1, info


def test_fig14_splus_steps_input_and_output_layers_by_sign():
    """SPlus in figure 14: nonstandard layers on, constant 1/width; the split exempts the token and position
    embeddings and the head of the LM, and the input layer and head of the MLP, and rotates the rest."""
    cfg = fig14.CONFIGS["smoke"]
    splus = fig14.methods(type("Ctx", (), {"extra_optimizers": ()})())["SPlus"]
    for task, width_key in (("lm", "d_model"), ("image", "width")):
        kw = fig14.run_spec(cfg, task, "SPlus", splus, 0.1, 0, "cpu").config["optimizer_kwargs"]
        assert kw["nonstandard_layers"] is True
        assert kw["nonstandard_constant"] == pytest.approx(1 / dict(getattr(cfg, task))[width_key])
    lm = TinyTransformer(64, 16, 1, 2, 8, generator=torch.Generator().manual_seed(0))
    hidden, odd = split_nonstandard(lm)
    odd_ids = {id(p) for p in odd}
    assert {id(lm.tok.weight), id(lm.pos.weight), id(lm.head.weight)} <= odd_ids
    assert {id(p) for p in hidden} == {id(p) for b in lm.blocks for p in b.parameters() if p.ndim == 2}
    mlp = MLP(784, 10, width=16, depth=3)
    hidden, odd = split_nonstandard(mlp)
    first = next(m for m in mlp.modules() if isinstance(m, torch.nn.Linear))
    assert id(first.weight) in {id(p) for p in odd} and id(mlp.head.weight) in {id(p) for p in odd}
    assert hidden and all(p.ndim == 2 for p in hidden)


def test_fig13_quick_keeps_the_claims_grid():
    """Quick keeps >= 3 seeds, the paper's lr range, a short reference interval, intervals >= 25 on both
    sides of the claim's boundary, and steps past the longest interval (it refreshes once, stale)."""
    q = fig13.CONFIGS["quick"]
    assert q.seeds >= 3 and min(q.shampoo_lrs) == pytest.approx(1e-4) and max(q.shampoo_lrs) == pytest.approx(1e-3)
    assert min(q.intervals) < fig13.LONG_INTERVAL and len([k for k in q.intervals if k >= fig13.LONG_INTERVAL]) >= 2
    assert q.steps > max(q.intervals) + 1


def test_a_method_whose_every_lr_diverged_is_an_error_not_its_smallest_lr():
    from types import SimpleNamespace

    from paperfigs.protocol import selected_lrs

    ok = SimpleNamespace(lr=0.01, grid=[0.01, 0.1])
    assert selected_lrs({"Adam": ok}) == {"Adam": 0.01}
    with pytest.raises(FloatingPointError, match="every lr diverged.*SPlus"):
        selected_lrs({"Adam": ok, "SPlus": SimpleNamespace(lr=None, grid=[0.01, 0.1])})


def test_fig9_heldout_claim_reads_test_windows_and_selection_reads_validation(smoke_figure):
    """Stop 18: figure 9's held-out claim is the rare-bucket top-5 gap on TEST windows (documents no
    seed trains or selects on); lrs are still selected on validation windows."""
    import numpy as np

    result, _ = smoke_figure(9)
    claim = next(c for c in result["claims"] if c["name"] == "muon_rare_heldout_top5_above_sgd")
    gaps = result["tables"]["rare_gap_vs_sgd"]
    if claim["value"] is not None:
        assert claim["value"] == pytest.approx(np.mean(gaps["muon - sgd, test/top5"]["per_seed"]))
    assert "test windows" in claim["statement"]
    assert {"muon - sgd, val/top5", "muon - sgd, test/top5"} <= set(gaps)
    assert "bigram_reference_test" in result["tables"]
    assert all("validation windows" in sel["criterion"] for sel in result["params"]["lr_selection"].values())
