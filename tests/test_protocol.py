"""The shared tuning-and-reporting protocol (paperfigs.protocol) on the engine's toy task: grids,
one reporting batch with tied lrs for the claimed methods only, the store read-back, and the
per-method claims at tied lrs."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from experiments.engine import Engine, RunSpec
from experiments.tuning import TuneSpec, quarter_decade_grid
from paperfigs import protocol
from paperfigs.claims import interval_claim, paired
from paperfigs.context import Context
from paperfigs.methods import Method, claimed_of


def toy(m: Method, lr: float, seed: int) -> RunSpec:
    return RunSpec("toy_regression", {"optimizer": m.optimizer, "lr": lr, "steps": 5, "seed": seed})


def last_loss(result: dict):
    return result["loss"][-1] if result["status"] == "ok" else None


class Counting(Engine):
    """An engine that records the description and size of every run batch."""

    def __init__(self, *a, **kw):
        super().__init__(*a, progress=False, log=lambda msg: None, **kw)
        self.batches = []

    def run(self, specs, desc="runs"):
        self.batches.append((desc, len(specs)))
        return super().run(specs, desc)


def test_grid_rules_differ_only_off_the_quarter_decade_points():
    # centre on a quarter-decade point: both rules give the same five points
    assert protocol.centred_grid(0.1, 0.5) == protocol.grid_of(0.1, 0.5) == quarter_decade_grid(10 ** -1.5, 10 ** -0.5)
    # 0.05 lies between 10^-1.5 and 10^-1.25: grid_of snaps it to 10^-1.25 (five points), centred_grid
    # keeps the four quarter-decade points within half a decade of 0.05 itself
    assert protocol.grid_of(0.05, 0.5) == pytest.approx([10 ** (k / 4) for k in range(-7, -2)])
    assert protocol.centred_grid(0.05, 0.5) == pytest.approx([10 ** (k / 4) for k in range(-7, -3)])
    # grid_around does not snap: the centre itself, a quarter decade apart
    assert protocol.grid_around(0.03, 3) == pytest.approx([0.03 * 10 ** -0.25, 0.03, 0.03 * 10 ** 0.25])
    assert protocol.grid_around(0.03, 1) == [0.03]


def test_report_runs_selected_and_claimed_tied_lrs_in_one_batch():
    ms = [Method("a", "sgd"), Method("b", "sgd")]
    tunes = [TuneSpec(m.name, [0.01, 0.1], [1000], (lambda lr, s, m=m: toy(m, lr, s)), last_loss, False, "c")
             for m in ms]
    sel = {"a": SimpleNamespace(lr=0.1, tied=[0.01, 0.1]), "b": SimpleNamespace(lr=0.01, tied=[0.01, 0.1])}
    engine = Counting()
    runs, tied = protocol.report(Context(engine=engine), tunes, sel, [0, 1], claimed=("a",))
    assert engine.batches == [("reporting runs", 3 * 2)]   # a at 0.1 and 0.01, b at 0.01; two seeds each
    assert list(tied) == ["a"] and list(tied["a"]) == [0.01]   # the selected lr is not repeated
    direct = Engine(progress=False, log=lambda msg: None)
    assert runs["b"] == direct.run([toy(ms[1], 0.01, s) for s in (0, 1)])
    assert tied["a"][0.01] == direct.run([toy(ms[0], 0.01, s) for s in (0, 1)])
    assert runs["a"] != tied["a"][0.01]
    with pytest.raises(FloatingPointError, match="every lr diverged.*b"):
        protocol.report(Context(engine=engine), tunes, {**sel, "b": SimpleNamespace(lr=None, tied=[])}, [0])


def test_tune_and_report_uses_the_given_grid_and_reads_the_tuning_runs_back(tmp_path):
    ms = [Method("a", "sgd", 0.1), Method("ext", "sgd", 0.1, external=True)]
    engine = Counting(store=tmp_path / "runs")
    ctx = Context(engine=engine, use_record=False)
    grid = {"a": [0.01, 0.0316], "ext": [0.1]}
    with pytest.raises(ValueError, match="also reporting seeds"):
        protocol.tune_and_report(ctx, ms, toy, [1000], last_loss, False, "c", lambda m: grid[m.name], 0)
    selections, runs, tied = protocol.tune_and_report(ctx, ms, toy, [0, 1], last_loss, False, "c",
                                                      lambda m: grid[m.name], 1, claimed=claimed_of(ms, ("a",)))
    assert [b[0] for b in engine.batches].count("reporting runs") == 1
    assert set(selections["a"].grid) >= set(grid["a"]) and set(tied) == {"a", "ext"}
    for m in ms:
        stored = protocol.stored_grid(ctx, selections[m.name], lambda lr, s, m=m: toy(m, lr, s))
        assert sorted(stored) == sorted(selections[m.name].grid)
        assert [last_loss(r) for r in stored[selections[m.name].lr]] == selections[m.name].scores[selections[m.name].lr]
    fresh = Context(engine=Engine(store=tmp_path / "empty", progress=False, log=lambda msg: None))
    assert protocol.stored_grid(fresh, selections["a"], lambda lr, s: toy(ms[0], lr, s)) is None
    assert protocol.stored_runs(Context(), lambda lr, s: toy(ms[0], lr, s), [0.01], [1000]) is None
    sel = selections["a"]
    assert list(protocol.stored_grid(ctx, sel, lambda lr, s: toy(ms[0], lr, s), [sel.lr])) == [sel.lr]
    # an --lr override at a stored lr: its "grid" is that lr alone, so no figure reads a table from it
    override = dataclasses.replace(sel, grid=[sel.lr], scores={}, source="override")
    assert protocol.stored_grid(ctx, override, lambda lr, s: toy(ms[0], lr, s)) is None


def test_claims_with_tied_judges_each_claimed_method_at_each_tied_lr():
    def claim(name, results, suffix=""):
        return paired(f"{name}_positive", f"{name}{suffix}", [results], 0.0)

    runs = {"a": [0.2, 0.3, 0.25], "b": [0.18, 0.2, 0.22]}
    claims, at_tied = protocol.claims_with_tied(["a", "b"], runs, {"a": {0.01: [-0.3, -0.2, -0.25]}, "b": {}}, claim)
    assert [c.name for c in claims] == ["a_positive", "b_positive"] and all(c.holds for c in claims)
    assert list(at_tied) == ["a"]                       # b has no other tied lr
    [c] = at_tied["a"]["0.01"]                          # one shape: a list of claims per tied lr
    assert c["statement"] == "a at tied lr 0.01" and c["verdict"] == "fails"


def test_claims_at_tied_takes_several_claims_per_lr_and_the_figure_s_suffix():
    def claims(name, results, suffix=""):
        return [paired(f"{name}_{k}", f"{name} {k}{suffix}", [np.asarray(results) - k], 0.0) for k in (0.0, 1.0)]

    tied = {"x|m": {0.1: [0.2, 0.3, 0.25], 0.3: [-0.2, -0.3, -0.25]}}
    got, at_tied = protocol.claims_with_tied(["x|m"], {"x|m": [1.5, 1.6, 1.7]}, tied, claims,
                                             lambda name, lr: f" ({name.split('|')[0]}, lr {lr:g})")
    assert [c.name for c in got] == ["x|m_0.0", "x|m_1.0"] and [c.holds for c in got] == [True, True]
    assert at_tied == protocol.claims_at_tied(tied, claims, lambda name, lr: f" ({name.split('|')[0]}, lr {lr:g})")
    assert list(at_tied["x|m"]) == ["0.1", "0.3"]
    assert [c["statement"] for c in at_tied["x|m"]["0.1"]] == ["x|m 0.0 (x, lr 0.1)", "x|m 1.0 (x, lr 0.1)"]
    assert [c["verdict"] for c in at_tied["x|m"]["0.1"]] == ["holds", "fails"]
    assert [c["verdict"] for c in at_tied["x|m"]["0.3"]] == ["fails", "fails"]
    assert protocol.claims_at_tied({"x|m": {}}, claims) == {}


def test_interval_claim_judges_a_given_interval_as_paired_does():
    x = np.array([0.9, 1.4, 1.1])
    for threshold, direction, strict in ((1.0, ">=", True), (2.0, "<=", False), (1.2, ">=", False)):
        p = paired("m", "s", [x], threshold, direction, strict=strict)
        assert interval_claim(p.name, p.statement, p.value, list(p.ci), threshold, direction, strict=strict) == p
    assert interval_claim("m", "s", 1.0, None, 0.0).verdict == "inconclusive"


def test_paired_passes_the_resample_count_and_can_leave_nan_to_the_statistic():
    from paperfigs.stats import paired_ci

    x = np.array([0.1, 0.4, 0.2, 0.5, 0.3])
    mean = lambda a: float(np.mean(a))  # noqa: E731
    assert paired("m", "s", [x], 0.0, n_resamples=99).ci == paired_ci(mean, x, n_resamples=99)
    y = np.array([0.1, np.nan, 0.2, 0.5, 0.3])
    assert paired("m", "s", [y], 0.0, statistic=np.nanmean).verdict == "inconclusive"
    c = paired("m", "s", [y], 0.0, statistic=np.nanmean, nan_aware=True, n_resamples=99)
    assert c.value == pytest.approx(0.275) and c.ci == paired_ci(np.nanmean, y, n_resamples=99)
    # a non-finite value is inconclusive, with no interval
    c = paired("m", "s", [y], 0.0, statistic=np.mean, nan_aware=True)
    assert c.verdict == "inconclusive" and c.ci is None and not c.holds


def test_not_stored_names_only_the_selections_whose_runs_are_missing():
    from paperfigs.protocol import not_stored

    assert not_stored({"muon": {0.1: []}, "sgd": {0.1: []}}) is None
    msg = not_stored({"muon": {0.1: []}, "sgd": None, "adam": None})
    assert msg.startswith("not available: the tuning runs of sgd, adam ") and "muon" not in msg
