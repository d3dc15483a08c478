"""Figure settings that change training runs (stop 18, audit findings 5-7), read from the TuneSpecs
each figure submits (captured before any run): equal starting grids, the search to the divergence
edge, Muon's tied AdamW fallback and SPlus's nonstandard layers; and figure 1's grids, whose
committed full-scale selections must stay valid."""
import importlib
import math

import pytest

from experiments.tuning import RECORD_DIR, tuning_key
from paperfigs import registry
from paperfigs.context import Context
from paperfigs.methods import MUON_FALLBACK_RATIO


class _Stop(Exception):
    pass


def tunes(number, mode):
    """(TuneSpecs, engine) of figure `number`'s first ctx.tune / tune_all call, without running."""
    module = importlib.import_module(registry.FIGURES[number].module)
    ctx, got = Context(), []

    def record(specs, *a, **k):
        got.extend(specs)
        raise _Stop

    ctx.tune = record
    patched = hasattr(module, "tune_all")
    if patched:
        original = module.tune_all
        module.tune_all = lambda engine, specs, *a, **k: record(specs)
    try:
        module.compute(mode, 0, "cpu", ctx)
    except _Stop:
        pass
    finally:
        if patched:
            module.tune_all = original
    assert got, f"figure {number} ({mode}) submitted no TuneSpec"
    return got, ctx.engine


def kwargs_at(t, lr):
    return t.make_spec(lr, t.seeds[0]).config["optimizer_kwargs"]


def qd(*ks):
    return [10 ** (k / 4) for k in ks]


# Figure 1's starting grids (centred_grid around its centres), as the finished full run used them
FIG1_GRIDS = {"sgd": qd(-5, -4, -3, -2), "adam": qd(-12, -11, -10, -9), "muon": qd(-7, -6, -5, -4),
              "shampoo": qd(-12, -11, -10, -9), "muon_head": qd(-7, -6, -5, -4)}
FIG1_SMOKE = {"sgd": qd(-4, -3), "adam": qd(-11, -10), "muon": qd(-6, -5), "shampoo": qd(-11, -10),
              "muon_head": qd(-6, -5)}


@pytest.mark.parametrize("mode", ["quick", "full", "smoke"])
def test_fig1_keeps_its_starting_grids(mode):
    specs, _ = tunes(1, mode)
    want = FIG1_SMOKE if mode == "smoke" else FIG1_GRIDS
    assert {t.method: list(t.grid) for t in specs} == {m: pytest.approx(g, rel=1e-12) for m, g in want.items()}
    assert all(t.to_divergence for t in specs)
    assert {t.extend for t in specs} == {1 if mode == "smoke" else 4}


@pytest.mark.parametrize("number,mode", [(4, "quick"), (4, "full"), (6, "quick"), (6, "full"), (6, "smoke"),
                                         (7, "quick"), (7, "full"), (7, "smoke"), (7, "paper"),
                                         (8, "quick"), (8, "full"), (8, "smoke")])
def test_every_method_starts_from_the_same_number_of_lrs(number, mode):
    specs, _ = tunes(number, mode)
    sizes = {t.method: len(t.grid) for t in specs}
    assert len(set(sizes.values())) == 1, sizes
    for t in specs:  # quarter-decade points (the snapped rule; figure 4 gives its grids as decade spans)
        assert all(abs(4 * math.log10(lr) - round(4 * math.log10(lr))) < 1e-9 for lr in t.grid), t.method


@pytest.mark.parametrize("number", [1, 4, 6, 7, 8, 9, 14])
@pytest.mark.parametrize("mode", ["quick", "full"])
def test_lr_search_goes_to_the_divergence_edge(number, mode):
    specs, _ = tunes(number, mode)
    assert all(t.to_divergence for t in specs), [t.method for t in specs if not t.to_divergence]


@pytest.mark.parametrize("mode", ["quick", "full", "paper"])
def test_fig9_ties_muon_s_fallback_and_runs_muon_incl_head(mode):
    specs = {t.method: t for t in tunes(9, mode)[0]}
    assert {"muon", "muon_head"} <= set(specs)
    for name in ("muon", "muon_head"):
        for lr in (0.01, 0.1):
            assert kwargs_at(specs[name], lr)["fallback_lr"] == pytest.approx(MUON_FALLBACK_RATIO * lr)
    assert kwargs_at(specs["muon_head"], 0.01)["head_fallback"] is False
    assert "head_fallback" not in kwargs_at(specs["muon"], 0.01)
    assert kwargs_at(specs["sgd"], 0.01) == {} and kwargs_at(specs["adam"], 0.01) == {}


@pytest.mark.parametrize("mode", ["quick", "full", "paper"])
def test_fig14_ties_muon_s_fallback_and_runs_muon_incl_head(mode):
    from paperfigs.fig14_steps_to_adam import MUON_HEAD, TASKS

    specs = {t.method: t for t in tunes(14, mode)[0]}
    for task in TASKS:
        for name in ("Muon", MUON_HEAD):
            for lr in (0.01, 0.1):
                assert kwargs_at(specs[f"{task}|{name}"], lr)["fallback_lr"] == pytest.approx(MUON_FALLBACK_RATIO * lr)
        assert kwargs_at(specs[f"{task}|{MUON_HEAD}"], 0.01)["head_fallback"] is False
        assert "fallback_lr" not in kwargs_at(specs[f"{task}|Adam"], 0.01)


@pytest.mark.parametrize("mode", ["quick", "full", "smoke"])
def test_fig6_ties_every_matrix_method_s_fallback_alike(mode):
    """Muon, NMD and Signum: fallback lr = 0.05 sqrt(width) x the method's per-entry step on a
    width x width matrix (lr / sqrt(w), lr / w, lr), at every lr and depth."""
    from paperfigs.fig06_colored_digits import CONFIGS

    w = CONFIGS[mode].width
    per_entry = {"muon": lambda lr: lr / math.sqrt(w), "nmd": lambda lr: lr / w, "signum": lambda lr: lr}
    specs = tunes(6, mode)[0]
    for t in specs:
        opt = t.method.split("@")[0]
        for lr in (0.003, 0.3):
            kw = kwargs_at(t, lr)
            if opt in per_entry:
                assert kw["fallback_lr"] == pytest.approx(MUON_FALLBACK_RATIO * math.sqrt(w) * per_entry[opt](lr))
            else:
                assert "fallback_lr" not in kw
    muon = next(t for t in specs if t.method.startswith("muon@"))
    assert kwargs_at(muon, 0.2)["fallback_lr"] == pytest.approx(MUON_FALLBACK_RATIO * 0.2)  # the project's ratio


@pytest.mark.parametrize("mode", ["quick", "full", "smoke", "paper"])
def test_fig7_runs_splus_with_its_nonstandard_layers(mode):
    from paperfigs.fig07_imbalance_cnn import CONFIGS, SPLUS_EMA

    splus = next(t for t in tunes(7, mode)[0] if t.method == "splus")
    w = CONFIGS[mode].width
    assert kwargs_at(splus, 1.0) == {"ema_rate": SPLUS_EMA[mode], "nonstandard_layers": True,
                                     "nonstandard_constant": pytest.approx(2 / (w + 9 * w))}


@pytest.mark.parametrize("mode", ["quick", "full", "smoke", "paper"])
def test_fig15_runs_splus_with_its_nonstandard_layers(mode):
    from paperfigs.fig15_lr_transfer import CONFIGS

    specs = tunes(15, mode)[0]
    seen = set()
    for t in specs:
        label, width = t.method.rsplit("@", 1)
        kw = kwargs_at(t, 0.1)
        if label.startswith("SPlus"):
            assert kw["nonstandard_layers"] is True
            want = 1.0 if label == "SPlus (no scaling)" else 1.0 / int(width)
            assert kw["nonstandard_constant"] == pytest.approx(want)
            assert kw.get("shape_scaling", True) is (label == "SPlus")
            seen.add(label)
        else:
            assert "nonstandard_layers" not in kw
    assert seen == {"SPlus", "SPlus (no scaling)"}
    assert {int(t.method.rsplit("@", 1)[1]) for t in specs} == set(CONFIGS[mode].widths)


@pytest.mark.parametrize("number", [1, 4, 6, 7, 8, 9, 11, 12, 14])
@pytest.mark.parametrize("mode", ["quick", "full"])
def test_committed_records_are_complete_under_the_current_search_rule(number, mode):
    """Every committed selection a figure reads is one the current search would end with: replayed
    on its recorded scores, the rule asks for no lr the record lacks. Otherwise a fresh clone would
    continue it (computing tuning runs the quick budget does not allow for) and the committed
    record would not be the selection the figure reports."""
    from experiments.tuning import needs_more_points, read_record

    specs, engine = tunes(number, mode)
    found, incomplete = 0, []
    for t in specs:
        rec = read_record(RECORD_DIR, tuning_key(engine, t))
        if rec is not None:
            found += 1
            if needs_more_points(t, rec.scores):
                incomplete.append(t.method)
    assert found, f"figure {number} ({mode}): no committed record"
    assert not incomplete, f"figure {number} ({mode}): records the search would continue: {incomplete}"
