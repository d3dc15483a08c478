"""Protocol of the theory figures 2, 3, 4, 5, 10: structured series that plots read by field (never
by label or key), figure 10's claim definitions and band arithmetic, figure 4's stopping rule."""
import math

import numpy as np
import pytest

from experiments.fileio import jsonable
from paperfigs import registry
from theory import algorithms

FIGURES = (2, 3, 4, 5, 10)


@pytest.fixture(scope="module")
def smoke():
    cache = {}

    def get(number):
        if number not in cache:
            module = registry.FIGURES[number].load()
            cache[number] = (module, jsonable(module.compute(mode="smoke", seed=0, device="cpu")))
        return cache[number]
    return get


@pytest.mark.parametrize("number", FIGURES)
def test_series_are_structured_and_plots_read_fields_not_labels(number, smoke):
    """Every series names its method, panel and legend label; with every key and label replaced
    by opaque text the plot still draws, and its legends show exactly the new labels."""
    import matplotlib.pyplot as plt

    module, result = smoke(number)
    for key, s in result["series"].items():
        assert isinstance(s.get("method"), str) and isinstance(s.get("panel"), str), key
        assert isinstance(s.get("label"), str) and s["label"], key
    opaque = dict(result, series={f"s{i}": dict(s, label=f"L{i}") for i, s in enumerate(result["series"].values())})
    fig = module.plot(opaque)
    shown = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    plt.close(fig)
    new = {f"L{i}" for i in range(len(opaque["series"]))}
    # Legend entries that belong to no series (e.g. figure 3's "assumptions hold" box) may stay.
    assert shown & new and not (shown - new) & {s["label"] for s in result["series"].values()}


def test_fig10_claims_are_the_recorded_definitions(smoke):
    module, r = smoke(10)
    names = [c["name"] for c in r["claims"]]
    assert names == ["specgd_deviation_shrinks_with_n", "specgd_deviation_small",
                     "exact_muon_presaturation_deviation_shrinks", "ns_muon_presaturation_deviation_shrinks",
                     "polar_express_muon_presaturation_deviation_shrinks",
                     "exact_muon_follows_prop1_until_saturation", "ns_muon_close_to_prop1_until_saturation",
                     "polar_express_muon_close_to_prop1_until_saturation",
                     "exact_muon_tracks_specgd", "ns_muon_tracks_specgd", "polar_express_muon_tracks_specgd",
                     "ns_muon_departure_within_band", "polar_express_muon_departure_within_band"]
    claims = {c["name"]: c for c in r["claims"]}
    p, bands = r["params"], r["tables"]["bands"]
    alpha_m = min(p["alpha_star"])
    t1 = p["first_saturation_step"]
    assert t1 == math.ceil(alpha_m / p["lr"])
    for prefix, key in (("exact", "muon_exact"), ("ns", "muon_ns"), ("polar_express", "muon_polar_express")):
        c = claims[f"{prefix}_muon_tracks_specgd"]
        assert c["threshold"] == module.TRACKING_THRESHOLD and "ci" in c and c["verdict"] in ("holds", "fails",
                                                                                               "inconclusive")
        per_seed = r["tables"]["departure_from_specgd"][key]["per_seed"][-1]
        assert c["value"] == pytest.approx(np.mean(per_seed))
        b = bands[key]
        lo, hi = b["band"]
        polar = next(v.polar for v in module.VARIANTS if v.key == key)
        assert (lo, hi) == pytest.approx(algorithms.singular_value_band(polar))
        assert b["band_bound"] == pytest.approx(max(1 - lo, hi - 1) * p["lr"] * t1 / alpha_m)
        # The band speaks about the speeds the population run produced before the first saturation.
        assert lo - 1e-9 <= b["speed_min"] and b["speed_max"] <= hi + 1e-9
        assert b["departure_from_prop1"] <= b["band_bound"] + 1e-12
        if prefix != "exact":
            within = claims[f"{prefix}_muon_departure_within_band"]
            assert within["threshold"] == pytest.approx(b["band_bound"]) and within["value"] == c["value"]
    assert bands["muon_exact"]["band"] == [1.0, 1.0] and bands["muon_exact"]["band_bound"] == 0.0
    assert claims["exact_muon_follows_prop1_until_saturation"]["holds"]


def test_fig10_deviation_claims_carry_intervals_over_draws(smoke):
    """The finite-n claims are judged from an interval over the draws like every other claim: the
    shrink claims' value is the largest step-to-step change of the seed-mean deviation (the series'
    y), holding only when the whole interval lies below 0."""
    _, r = smoke(10)
    claims = {c["name"]: c for c in r["claims"]}
    for name, label in (("specgd_deviation_shrinks_with_n", "SpecGD deviation whole run"),
                        ("ns_muon_presaturation_deviation_shrinks", "Muon (Newton-Schulz) deviation pre-saturation")):
        c, means = claims[name], np.asarray(r["series"][label]["y"])
        assert c["value"] == pytest.approx(np.max(np.diff(means)))
        lo, hi = c["ci"]
        assert lo <= c["value"] <= hi and c["threshold"] == 0.0
        assert c["verdict"] == ("holds" if hi < 0 else "fails" if lo >= 0 else "inconclusive")
    small = claims["specgd_deviation_small"]
    assert small["value"] == pytest.approx(r["series"]["SpecGD deviation whole run"]["y"][-1])
    assert small["ci"][0] <= small["value"] <= small["ci"][1] and small["threshold"] == r["params"]["lr"]


def test_fig10_band_bound_is_what_a_band_edge_speed_would_produce():
    """A component moving at a band edge speed for t_1 steps departs from lr t by exactly the bound."""
    module = registry.FIGURES[10].load()
    lr, t1, star = 0.01, 17, np.array([0.33, 0.23, 0.166])
    prop1 = lr * np.arange(t1 + 1)[:, None] * np.ones(3)
    speeds = np.array([1.2, 1.0, 0.7])  # majority at the top edge, minority at the bottom
    traj = lr * np.arange(t1 + 1)[:, None] * speeds
    row = module.band_table({"muon_exact": prop1, "muon_ns": traj, "muon_polar_express": prop1}, prop1, star, lr,
                            t1, majority=0, minority=2)["muon_ns"]
    assert row["departure_from_prop1"] == pytest.approx(0.3 * lr * t1 / star.min())
    assert row["majority_over_minority_speedup"] == pytest.approx(1.2 / 0.7)
    assert (row["speed_min"], row["speed_max"]) == pytest.approx((0.7, 1.2))


def test_fig4_stops_at_the_best_validation_step_and_reports_the_oracle_beside_it():
    module = registry.FIGURES[4].load()
    run = {"step": [0, 1, 2, 3],
           "val": [[0.0, 0.25], [0.5, 0.75], [0.75, 0.5], [0.25, 0.25]],  # balanced peaks at steps 1 and 2
           "test": [[0.0, 0.2], [0.4, 0.8], [0.9, 0.9], [1.0, None]]}    # None: class absent
    r = module.readout(run)
    assert r["stop_step"] == 1                                    # the earliest of two tied peaks
    assert r["test_balanced_at_stop"] == pytest.approx(0.6) and r["test_worst_at_stop"] == pytest.approx(0.4)
    assert r["test_balanced_best"] == pytest.approx(1.0) and r["test_worst_best"] == pytest.approx(1.0)


def test_fig4_result_has_the_oracle_and_tied_tables(smoke):
    _, r = smoke(4)
    names = [c["name"] for c in r["claims"]]
    assert names == ["specgd_best_balanced_above_all", "specgd_best_worst_class_above_all"]
    assert set(r["tables"]["oracle"]) == set(names)
    assert all("oracle" in c["statement"] for c in r["tables"]["oracle"].values())
    for at_lr in r["tables"]["claims_at_tied_lrs"].get("SpecGD", {}).values():
        assert [c["name"] for c in at_lr] == names
