"""Figures 1, 6, 7, 8: verdicts of discretised (gap-closing) times, NaN padding of stopped imbalance
runs, pooled imbalance splits, claims at tied lrs (figures 6 and 8), and figure 7's paper scale."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from experiments.tasks import imbalance
from paperfigs.claims import paired
from paperfigs.stats import verdict_of


# ------------------------------------------------------------------ verdicts at a touching end
def test_an_interval_touching_the_threshold_is_inconclusive_not_failed():
    # Figure 7's quick run: 1835 training images, batch 64, one evaluation every 30 steps; SGD
    # censored at step 390 (360 steps + one evaluation), TNT closing the gap at step 360: one
    # evaluation earlier, exactly the threshold.
    eps = 64 / 1835  # epochs per step
    interval = 30 * eps  # as figure 7 forms it
    old_value = 390 * eps - 360 * eps  # the old arithmetic: differences of times already in epochs
    assert old_value < interval  # one ulp below: the old verdict read "fails"
    assert verdict_of((0.0, old_value), interval) == "inconclusive"
    assert verdict_of((0.0, (390 - 360) * eps), interval) == "inconclusive"  # integer steps: exact
    assert (390 - 360) * eps == interval
    # the same end on the other side clears it (non-strict), and ends past it decide as before
    assert verdict_of((old_value, 3.0), interval) == "holds"
    assert verdict_of((0.0, 0.9 * interval), interval) == "fails"
    assert verdict_of((1.1 * interval, 3.0), interval) == "holds"
    # strict claims: touching from above is not clearing; touching from below is failing
    assert verdict_of((1e-17, 0.3), 0.0, strict=True) == "inconclusive"
    assert verdict_of((-0.3, 1e-17), 0.0, strict=True) == "fails"
    assert verdict_of((0.7, 1.0 + 2e-16), 1.0, "<=", strict=True) == "inconclusive"
    assert verdict_of((1.0 - 2e-16, 1.0 + 2e-16), 1.0, "<=", strict=True) == "fails"
    assert verdict_of((1.0 - 2e-16, 1.3), 1.0, "<=") == "inconclusive"
    assert verdict_of((0.7, 1.0 + 2e-16), 1.0, "<=") == "holds"
    # a genuine difference of one accuracy step (1 / 1e5 examples) is far above the tolerance
    assert verdict_of((1e-5, 0.3), 0.0, strict=True) == "holds"


def test_figure7_claim_at_one_evaluation_with_a_censored_seed_is_inconclusive():
    """Per seed closing steps: SGD censored on one seed; the worst bootstrap resample gives 0."""
    from paperfigs import fig07_imbalance_cnn as f7

    steps = list(range(0, 121, 30))
    censored = 150

    def curves(close_at):  # (2, E): majority 0.9 throughout, minority jumps to it at close_at
        majority = np.full(len(steps), 0.9)
        return np.stack([majority, np.where(np.asarray(steps) >= close_at, 0.9, 0.1)])

    base = np.stack([curves(60), curves(90), curves(10 ** 6)])
    mine = np.stack([curves(30), curves(60), curves(10 ** 6)])
    assert f7._close_step(base[[2]], steps, censored) == censored
    eps = 64 / 1000

    def stat(idx):
        i = np.asarray(idx, int)
        return (f7._close_step(base[i], steps, censored) - f7._close_step(mine[i], steps, censored)) * eps

    c = paired("tnt", "s", [np.arange(3, dtype=float)], 30 * eps, statistic=stat)
    assert c.verdict == "inconclusive" and not c.holds and c.ci[1] == 30 * eps


# ------------------------------------------------------------------ the imbalance task
def _config(**kw):
    from paperfigs import fig01_imbalance_mlp as fig1
    from paperfigs import imbalance_common as common
    from paperfigs.context import Context

    m = {m.name: m for m in common.methods(fig1.SMOKE, Context())}["sgd"]
    return {**common.run_spec(fig1.SMOKE, m, 0.1, 0, "cpu").config, **kw}


def test_a_stopped_run_is_padded_with_nan_and_its_readouts_propagate_it():
    from paperfigs import fig01_imbalance_mlp as fig1

    r = imbalance.run(_config(lr=1e12, steps=12, eval_every=3))
    assert r["status"].startswith("stopped")
    pc = np.asarray(r["test_per_class"], float)
    assert len(pc) == len(r["steps"]) == 5 and np.isfinite(pc[0]).all()
    stopped = ~np.isfinite(pc).all(1)
    assert stopped.any() and np.isnan(pc[stopped]).all()
    assert stopped[np.argmax(stopped):].all()  # NaN from the stop to the end, never before
    g = imbalance.group_curves(r, fig1.SMOKE.minority)
    assert np.isnan(g["minority"][-1]) and np.isnan(g["majority"][-1])
    # figure 1's claim on a stopped seed: no number, an inconclusive verdict (never a stale value)
    ok = imbalance.run(_config(steps=12, eval_every=3))
    early = [imbalance.early_mean(imbalance.group_curves(x, fig1.SMOKE.minority)["minority"], x["steps"], 1.0)
             for x in (r, ok)]
    assert math.isnan(early[0]) and math.isfinite(early[1])
    assert paired("m", "s", [[early[0] - early[1], 0.1]], 0.01).verdict == "inconclusive"


def test_pooled_split_is_the_same_split_at_half_resolution():
    a = imbalance.split_of(_config(pool=1))
    b = imbalance.split_of(_config(pool=2))
    assert a.image_shape == (1, 8, 8) and b.image_shape == (1, 4, 4)
    assert torch.equal(a.y_train, b.y_train) and (a.train_counts == b.train_counts).all()
    np.testing.assert_allclose(b.x_test[:, :, 1, 2], a.x_test[:, :, 2:4, 4:6].mean((2, 3)), rtol=1e-6)
    assert b.info["pool"] == 2
    with pytest.raises(ValueError, match="pool must be"):
        imbalance.split_of(_config(pool=0))


# ------------------------------------------------------------------ claims at tied lrs (6, 8)
@pytest.mark.parametrize("number", [6, pytest.param(8, marks=pytest.mark.needs_fashion)])
def test_claims_are_also_judged_at_each_tied_lr(number, monkeypatch):
    """Every selection reports its two smallest grid lrs as tied (the selected one kept first):
    the claimed methods' other tied lrs get reporting runs and a claim each."""
    from experiments.tuning import Selection
    from paperfigs.context import Context
    from paperfigs.registry import FIGURES

    monkeypatch.setattr(Selection, "tied", property(
        lambda self: sorted({self.lr, *sorted(self.grid)[:2]}) if self.lr is not None else []))
    module = FIGURES[number].load()
    ctx = Context()
    out = module.compute(mode="smoke", seed=0, device="cpu", ctx=ctx)
    tied = out["tables"]["claims_at_tied_lrs"]
    assert tied
    names = {c.name for c in out["claims"]}
    for by_lr in tied.values():
        for c in (c for claims in by_lr.values() for c in claims):
            assert c["name"] in names and "tied lr" in c["statement"]
            assert c["verdict"] in ("holds", "fails", "inconclusive") and (c["verdict"] == "holds") == c["holds"]


# ------------------------------------------------------------------ figure 7 at the papers' scale
def test_figure7_paper_scale_runs_two_steps_through_the_task(monkeypatch):
    """CONFIGS["paper"] as compute() builds it (CIFAR-10 shapes, ResNet-18 layout), only the steps
    cut to 2 (and the batch to 8: ResNet-18 on 128 CIFAR images is seconds per step on a CPU) and
    the user-supplied CIFAR-10 files replaced by synthetic tensors of their shapes."""
    from experiments.data.images import ImageSplit
    from paperfigs import fig07_imbalance_cnn as f7
    from paperfigs import imbalance_common as common
    from paperfigs.context import Context
    from paperfigs.registry import datasets, has_paper_scale

    assert has_paper_scale(7) and datasets(7, "paper") == ("cifar10",)
    cfg = f7.CONFIGS["paper"]
    assert cfg.dataset == "cifar10" and cfg.rho == 20.0 and cfg.steps > f7.FULL.steps
    g = torch.Generator().manual_seed(0)

    def fake_split(dataset, rho, minority, n_max, n_val, n_test, seed, data_root):
        assert dataset == "cifar10"
        counts = np.array([4, 4, 4, 4, 4, 1, 1, 1, 1, 1])

        def part(n_per_class):
            y = torch.arange(10).repeat_interleave(torch.as_tensor(n_per_class))
            return torch.randn(len(y), 3, 32, 32, generator=g), y

        (xt, yt), (xv, yv), (xs, ys) = part(counts), part([2] * 10), part([2] * 10)
        return ImageSplit("cifar10", xt, yt, xv, yv, xs, ys, 10, counts, {"profile": "step"})

    monkeypatch.setattr(imbalance, "_split", fake_split)
    imbalance._pooled.cache_clear()
    try:
        for name in ("tnt", "muon"):
            m = {m.name: m for m in common.methods(cfg, Context())}[name]
            spec = common.run_spec(replace(cfg, steps=2, batch_size=8), m, 1e-3, 0, "cpu")
            r = imbalance.run(spec.config)
            assert r["status"] == "ok" and r["steps"] == [0, 2]
            assert np.asarray(r["test_per_class"]).shape == (2, 10)
    finally:
        imbalance._pooled.cache_clear()
