"""Figures 1 and 7: their smoke runs' lr selection, series and claims, the imbalance task and its
read-outs."""
import numpy as np
import pytest

from experiments.tasks import imbalance
from experiments.tasks.imbalance import early_mean, gap_close_step


@pytest.mark.parametrize("number", [1, 7])
def test_smoke_run_selects_lrs_on_tuning_seeds_and_bands_its_series_and_claims(number, smoke_figure):
    result, _ = smoke_figure(number)  # its validity and replot: test_figures_smoke.py
    p = result["params"]
    assert set(p["lr"]) == set(p["optimizers"]) == set(p["lr_selection"])
    for name, sel in p["lr_selection"].items():
        assert sel["source"] == "computed" and sel["lr"] == p["lr"][name] and sel["run_keys"]
        assert not set(sel["tuning_seeds"]) & set(p["seed_list"])
    for s in result["series"].values():
        assert s["panel"] in ("minority", "majority") and s["method"] in p["optimizers"]
        assert all(lo <= y <= hi for lo, y, hi in zip(s["y_lo"], s["y"], s["y_hi"]))
    for c in result["claims"]:
        assert c["verdict"] in ("holds", "fails", "inconclusive") and c["ci"][0] <= c["value"] <= c["ci"][1]
    for name, table in result["tables"]["sensitivity"].items():
        assert set(table) == set(map(repr, p["lr_selection"][name]["grid"]))


def test_early_mean_and_gap_close_step():
    steps = [0, 10, 20, 30, 40]
    curve = np.array([9.0, 1.0, 3.0, 5.0, 7.0])
    assert early_mean(curve, steps, 0.5) == pytest.approx(2.0)  # steps 10 and 20; step 0 excluded
    with pytest.raises(ValueError):
        early_mean(curve, steps, 0.1)
    majority = np.array([0.1, 0.4, 0.9, 0.9, 0.95])
    minority = np.array([0.1, 0.4, 0.5, 0.85, 0.9])
    # step 0 and 10 have no gap but majority is below the floor: they do not count as closed
    assert gap_close_step(majority, minority, steps, rel_gap=0.1, floor=0.5) == 30
    assert gap_close_step(majority, minority, steps, rel_gap=0.5, floor=0.5) == 20  # 0.4 <= 0.45
    assert gap_close_step(majority, minority, steps, rel_gap=0.01, floor=0.5) is None


def _smoke_config(**kw):
    from paperfigs import fig01_imbalance_mlp as fig1
    from paperfigs import imbalance_common as common
    from paperfigs.context import Context

    m = {m.name: m for m in common.methods(fig1.SMOKE, Context())}["muon_head"]
    return {**common.run_spec(fig1.SMOKE, m, 0.02, 0, "cpu").config, **kw}


def test_imbalance_task_is_a_pure_function_of_its_config():
    config = _smoke_config()
    # Muon incl. head: the head is not handed to AdamW; the fallback lr is tied to Muon's
    assert config["optimizer_kwargs"] == {"head_fallback": False, "fallback_lr": pytest.approx(0.001)}
    a, b = imbalance.run(config), imbalance.run(dict(config))
    assert a.pop("wall_s") > 0 and b.pop("wall_s") > 0  # the one field that is a measurement
    assert a == b and a["status"] == "ok"
    assert len(a["steps"]) == len(a["val_per_class"]) == len(a["test_per_class"])
    c = imbalance.run(_smoke_config(optimizer_kwargs={"head_fallback": True, "fallback_lr": 0.001}))
    # same split, init and batches: identical at step 0, different once the head is trained differently
    assert c["test_per_class"][0] == a["test_per_class"][0] and c["test_per_class"] != a["test_per_class"]
    with pytest.raises(ValueError, match="model must be"):
        imbalance.run(_smoke_config(model="vit"))
