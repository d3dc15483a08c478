"""Figures 11, 12 and 15: figure 12's side-by-side time claim with its interval, the structured
series of 11 and 15, and their paper-scale configurations run for a step or two."""
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from experiments.data import images as image_data
from experiments.tasks import autoencoder as ae_task
from experiments.tasks import cnn_cost, width_mlp
from paperfigs import fig11_autoencoder as fig11
from paperfigs.claims import paired
from paperfigs import fig12_cnn_cost as fig12
from paperfigs import fig15_lr_transfer as fig15


def _costs(tnt_ratios, state=(300, 100)):
    """Per-seed cost runs as the task returns them: SGD-m at 1 ms, TNT at ratio x that."""
    return [{"SGD-m": {"s_per_iter": 1e-3, "state_bytes": state[1]},
             "TNT": {"s_per_iter": r * 1e-3, "state_bytes": state[0]}} for r in tnt_ratios]


def _cost_claims(costs):
    return fig12.cost_claims(costs, fig12.table_of(costs), "TNT")


def test_time_claim_is_the_mean_of_side_by_side_ratios_with_an_interval_and_a_verdict():
    costs = _costs([1.3, 1.4, 1.5])
    time_claim, mem_claim = _cost_claims(costs)
    assert time_claim.value == pytest.approx(1.4)
    lo, hi = time_claim.ci
    half = 4.302653 * 0.1 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n): the t-interval of the ratios
    assert (lo, hi) == pytest.approx((1.4 - half, 1.4 + half), rel=1e-5) and time_claim.verdict == "holds"
    # the claim judges the cost table's interval, which is the paired interval of the ratios
    assert list(time_claim.ci) == fig12.table_of(costs)["TNT"]["time_rel_sgdm_ci"]
    assert time_claim.ci == paired("x", "", [fig12.time_ratios(costs, "TNT")], 2.0, "<=").ci
    assert mem_claim.value == 3.0 and mem_claim.ci == (3.0, 3.0) and mem_claim.verdict == "holds"
    # seeds on both sides of 2x: the interval straddles the threshold, so no finding either way
    straddling, _ = _cost_claims(_costs([1.2, 2.6, 1.5, 2.9]))
    assert straddling.ci[0] < 2.0 < straddling.ci[1] and straddling.verdict == "inconclusive"
    assert _cost_claims(_costs([2.5, 2.7, 2.6]))[0].verdict == "fails"
    assert _cost_claims(_costs([1.0, 1.0], state=(400, 100)))[1].verdict == "fails"


def test_a_ratio_within_noise_of_one_is_not_read_as_faster_or_slower():
    costs = _costs([0.8, 1.15, 0.9])          # mean 0.95: within the seeds' spread of 1
    slower = paired("x", "", [fig12.time_ratios(costs, "TNT")], 1.0, ">=", strict=True)
    assert slower.verdict == "inconclusive"
    table = fig12.table_of(costs)
    assert table["TNT"]["time_rel_sgdm_ci"][0] < 1 < table["TNT"]["time_rel_sgdm_ci"][1]
    assert table["TNT"]["time_rel_sgdm_per_seed"] == pytest.approx([0.8, 1.15, 0.9])
    assert table["SGD-m"]["time_rel_sgdm"] == 1.0 and table["TNT"]["memory_rel_sgdm"] == 3.0


def test_state_memory_that_differs_between_seeds_is_refused():
    costs = _costs([1.0, 1.0])
    costs[1]["TNT"]["state_bytes"] = 301
    with pytest.raises(ValueError, match="differs between seeds"):
        fig12.memory_ratio(costs, "TNT")


@pytest.mark.parametrize("module", [fig11, fig15])
def test_smoke_series_carry_method_panel_label_and_plot_never_reads_the_label(module):
    from paperfigs.context import Context

    # fixed lrs (no tuning runs): only the reporting runs, enough to build the series
    lrs = ({m.name: m.center for m in fig11.METHODS} if module is fig11 else {})
    result = module.compute("smoke", 0, "cpu", Context(lr_overrides=lrs))
    assert result["series"]
    for s in result["series"].values():
        assert {"method", "panel", "label", "x", "y"} <= set(s)
    # A label is legend text only: the plot must still draw when every label is rewritten.
    for s in result["series"].values():
        s["label"] = "?"
    result["claims"] = [c.to_json() for c in result["claims"]]
    module.plot(result)


# ---------------------------------------------------------------- paper scale: build, then 1-2 steps

@pytest.fixture
def synthetic_mnist(monkeypatch):
    """Standard MNIST stands in as 1,000 random 28 x 28 images (one batch of the paper's 1,000)."""
    g = np.random.default_rng(0)
    raw = image_data.RawImages(g.random((1000, 1, 28, 28)), g.integers(0, 10, 1000), None, None, 10,
                               {"kind": "synthetic"})
    real = image_data.load_raw
    monkeypatch.setattr(image_data, "load_raw", lambda name, root=None: raw if name == "mnist" else real(name, root))
    ae_task.images.cache_clear()
    yield raw
    ae_task.images.cache_clear()


def test_fig11_paper_scale_is_the_paper_autoencoder_on_all_of_mnist_and_trains(synthetic_mnist):
    cfg = dataclasses.replace(fig11.CONFIGS["paper"], epochs=1)
    assert cfg.encoder_sizes == (784, 1000, 500, 250, 30) and cfg.batch_size == 1000 and cfg.pool == 1
    spec = fig11.run_spec(cfg, fig11.METHODS[0], 3e-4, 0, "cpu")
    assert spec.config["dataset"] == "mnist" and spec.config["n_images"] is None
    out = ae_task.run(spec.config)
    assert out["status"] == "ok" and len(out["train_loss"]) == 2
    assert all(math.isfinite(v) for v in out["train_loss"]) and out["train_loss"][1] < out["train_loss"][0]


def test_fig12_paper_scale_is_resnet32_on_cifar10_shapes_and_trains(monkeypatch):
    cfg = dataclasses.replace(fig12.CONFIGS["paper"], epochs=1)
    spec = fig12.run_spec(cfg, fig12.METHODS[0], 1e-4, 0, "cpu")
    assert spec.config["dataset"] == "cifar10" and spec.config["blocks"] == [5, 5, 5]
    g = torch.Generator().manual_seed(0)
    n = cfg.batch_size   # one batch: one step per epoch (CIFAR-10 itself comes from the user)
    x = [torch.randn(k, 3, 32, 32, generator=g) for k in (n, 20, 20)]
    y = [torch.randint(0, 10, (k,), generator=g) for k in (n, 20, 20)]
    split = SimpleNamespace(image_shape=(3, 32, 32), num_classes=10, y_train=y[0], y_val=y[1], y_test=y[2],
                            info={"kind": "synthetic"})
    monkeypatch.setattr(cnn_cost, "split_of", lambda config: (split, tuple(x)))
    model = cnn_cost.make_model(spec.config, split)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 31           # ResNet-32: stem + 3 stages x 5 blocks x 2, then the head
    out = cnn_cost.run(spec.config)
    assert out["status"] == "ok" and out["image_size"] == 32 and len(out["test_acc"]) == 2


def test_fig15_paper_scale_reaches_width_512_and_trains():
    cfg = dataclasses.replace(fig15.CONFIGS["paper"], steps=2)
    assert max(cfg.widths) == 512 and max(cfg.widths) / min(cfg.widths) >= 16
    spec = fig15.run_spec(cfg, "splus", {}, 512, 0.1, 0, "cpu")
    out = width_mlp.run(spec.config)
    assert out["status"] == "ok" and math.isfinite(out["metrics"]["val_loss"][-1])
