"""Figures 11-15 (TNT and SPlus papers; their smoke runs: test_figures_smoke.py): the tasks, the
autoencoder, and the read-outs their claims rest on."""
import math

import numpy as np
import pytest
import torch

from experiments.engine import RunSpec
from experiments.models.autoencoder import DeepAutoencoder
from experiments.tasks import autoencoder, cnn_cost
from paperfigs import fig11_autoencoder as fig11
from paperfigs import fig15_lr_transfer as fig15
from paperfigs.protocol import grid_of, reporting_seeds
from theory.metrics import first_crossing, first_step


def test_fit_optimum_finds_the_vertex_of_a_quadratic_between_grid_points():
    lrs = 10 ** (np.arange(-12, 1) / 4)
    x = np.log10(lrs)
    loss = 0.7 * (x - (-1.6)) ** 2 + 0.3           # optimum at log10 lr = -1.6, off the grid
    assert fig15.fit_optimum(lrs, loss) == pytest.approx(-1.6, abs=1e-9)
    # diverged lrs (NaN) drop out of the fit; the vertex is still found from the finite neighbours
    loss2 = loss.copy()
    loss2[-4:] = np.nan
    assert fig15.fit_optimum(lrs, loss2) == pytest.approx(-1.6, abs=1e-9)


def test_fit_optimum_falls_back_to_the_argmin_and_reports_nan_when_all_diverged():
    lrs = [1e-3, 1e-2, 1e-1]
    assert fig15.fit_optimum(lrs, [2.0, 1.0, 1.5 + 1e-12]) == pytest.approx(math.log10(1e-2) + 0.0, abs=0.5)
    # concave around the argmin (not a minimum): the argmin itself
    assert fig15.fit_optimum([1e-3, 1e-2, 1e-1, 1.0], [1.0, 3.0, 3.5, 3.6]) == pytest.approx(-3.0)
    assert math.isnan(fig15.fit_optimum(lrs, [math.nan] * 3))
    # a single finite point: that point
    assert fig15.fit_optimum(lrs, [math.nan, 0.5, math.nan]) == pytest.approx(-2.0)


def test_strict_verdict_fails_on_equal_spreads_and_needs_the_whole_interval_below_zero():
    from paperfigs.stats import verdict_of

    # figure 15's rule is the shared strict verdict ("spread difference < 0")
    assert verdict_of((0.0, 0.0), 0.0, "<=", strict=True) == "fails"
    assert verdict_of((-0.3, -0.1), 0.0, "<=", strict=True) == "holds"
    assert verdict_of((-0.3, 0.1), 0.0, "<=", strict=True) == "inconclusive"
    assert verdict_of(None, 0.0, "<=", strict=True) == "inconclusive"


def test_grid_is_quarter_decade_around_the_nearest_point_and_never_empty():
    assert grid_of(3e-4, 0.0) == [pytest.approx(10 ** -3.5)]
    g = grid_of(0.1, 0.5)
    assert len(g) == 5 and g[0] == pytest.approx(10 ** -1.5) and g[-1] == pytest.approx(10 ** -0.5)
    with pytest.raises(ValueError, match="also reporting seeds"):
        reporting_seeds(999, 3)      # 999..1001 meets the tuning seeds 1000..1002


def test_autoencoder_weights_come_from_the_generator_only():
    torch.manual_seed(123)                           # the global RNG must not matter
    a = autoencoder.DeepAutoencoder((20, 8, 3), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(456)
    b = autoencoder.DeepAutoencoder((20, 8, 3), generator=torch.Generator().manual_seed(5))
    c = autoencoder.DeepAutoencoder((20, 8, 3), generator=torch.Generator().manual_seed(6))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_late_window_and_final_loss_readouts():
    r = {"train_loss": [9.0, 5.0, 4.0, 3.0, 2.0], "status": "ok"}
    assert fig11.late_loss(r) == 2.0                # last quarter of 4 epochs: the last one
    r8 = {"train_loss": [9.0] + [8, 7, 6, 5, 4, 3, 2, 1], "status": "ok"}
    assert fig11.late_loss(r8) == 1.5
    stopped = {"train_loss": [9.0, 5.0, None, None, None], "status": "stopped: non-finite loss at step 3"}
    assert fig11.late_loss(stopped) is None
    assert np.isnan(fig11.final([stopped])[0]) and fig11.final([r])[0] == 2.0
    # the comparable-claim statistic: ratio of TNT's mean to the better comparator's mean
    assert fig11.ratio_to_best(np.array([2.0, 4.0]), np.array([4.0, 4.0]), np.array([2.0, 2.0])) == 1.5


def test_cnn_cost_rejects_an_unknown_kind_by_name():
    with pytest.raises(ValueError, match="kind must be 'train' or 'cost'"):
        cnn_cost.run({"kind": "bogus"})


def test_autoencoder_task_is_deterministic_and_pads_a_stopped_run():
    cfg = {"encoder_sizes": [49, 8, 3], "dataset": "mnist5k", "n_images": 200, "pool": 4, "batch_size": 50, "epochs": 2,
           "optimizer": "sgd", "lr": 0.01, "optimizer_kwargs": {}, "seed": 3, "data_seed": 0, "device": "cpu"}
    a, b = autoencoder.run(cfg), autoencoder.run(cfg)
    assert a["train_loss"] == b["train_loss"] and len(a["train_loss"]) == 3 and a["status"] == "ok"
    bad = autoencoder.run({**cfg, "lr": 1e6})
    assert bad["status"] != "ok" and len(bad["train_loss"]) == 3 and math.isnan(bad["train_loss"][-1])
    assert RunSpec("autoencoder", cfg).key() != RunSpec("autoencoder", {**cfg, "seed": 4}).key()


def test_user_optimizers_join_the_methods_and_may_not_reuse_a_name():
    from paperfigs.context import Context, ExternalOptimizer
    from paperfigs.methods import Method, with_extras

    own = [Method("Adam", "adam", 1e-2)]
    ctx = Context(extra_optimizers=(ExternalOptimizer("rms", "torch.optim:RMSprop", (("alpha", 0.9),)),))
    ms = with_extras(own, ctx, center=1e-3)
    assert [m.name for m in ms] == ["Adam", "rms"]
    assert ms[1].optimizer == "torch.optim:RMSprop" and ms[1].kwargs == {"alpha": 0.9} and ms[1].center == 1e-3
    assert ms[1].external and not ms[0].external
    for name in ("Adam", "ADAM", "adam"):  # compared as --lr compares names: "adam" would share Adam's lr
        with pytest.raises(ValueError, match="clash"):
            with_extras(own, Context(extra_optimizers=(ExternalOptimizer(name, "torch.optim:Adam"),)), 1e-3)
    twins = (ExternalOptimizer("r.a", "torch.optim:RAdam"), ExternalOptimizer("R_A", "torch.optim:RAdam"))
    with pytest.raises(ValueError, match=r"\['R_A'\] clash"):  # two user names alike share one --lr too
        with_extras(own, Context(extra_optimizers=twins), 1e-3)
    # figure 15 keeps its methods in a dict, not Methods, and makes the same check before any run
    for extra in ((ExternalOptimizer("ADAM", "torch.optim:Adam"),), twins):
        with pytest.raises(ValueError, match="clash"):
            fig15.compute("quick", 0, "cpu", Context(extra_optimizers=extra))


def test_autoencoder_shape_mirror_and_linear_code():
    m = DeepAutoencoder((784, 1000, 500, 250, 30))
    linears = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (784, 1000), (1000, 500), (500, 250), (250, 30), (30, 250), (250, 500), (500, 1000), (1000, 784)]
    assert m.head is linears[-1]
    # The code layer is linear: no ReLU right after the 30-unit layer, so codes can be negative.
    code = m.encoder(torch.rand(64, 784))
    assert code.shape == (64, 30) and (code < 0).any()
    assert m(torch.rand(3, 784)).shape == (3, 784)
    with pytest.raises(ValueError):
        DeepAutoencoder((784,))


def test_first_crossing_one_rule_for_rising_falling_and_per_class_curves():
    steps, loss = [0, 10, 20, 30], [5.0, 3.0, math.nan, 1.0]
    assert first_step(steps, loss, 3.0) == 10
    assert first_step(steps, loss, 2.0) == 30            # a NaN evaluation never counts
    assert first_step(steps, [5.0, None, 1.0, 0.0], 2.0) == 20
    assert first_step(steps, loss, 0.5) is None
    assert first_step(steps, [0.1, 0.2, 0.9, 0.95], 0.9, ">=", start=15) == 20
    assert first_step(steps, [0.9, 0.2, 0.1, 0.0], 0.9, ">=", start=15) is None
    traj = [[0.0, 0.0], [1.0, 0.5], [2.0, 3.0]]
    assert first_crossing(traj, [1.0, 2.0]).tolist() == [1, 2]
    assert first_crossing(traj, [3.0, 4.0]).tolist() == [-1, -1]
    assert first_crossing([3.0, 2.0, 1.0], 2.0, "<=") == 1
    with pytest.raises(ValueError, match="direction"):
        first_crossing(traj, 1.0, ">")
    with pytest.raises(ValueError, match="equal lengths"):
        first_step([0, 1], [1.0], 0.5)
