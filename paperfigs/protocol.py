"""The tuning-and-reporting protocol of the torch figures, in one place.

Per method: an lr grid (a rule per figure: grid_of, centred_grid or grid_around), tuned by the
engine (experiments.tuning) on TUNING_SEEDS, which are disjoint from the reporting seeds
seed..seed+n-1; the grid is extended past an optimum on its edge (and, for tune_and_report, upward
to the divergence edge). The reporting seeds are then run at the selected lr of every method, and
at every lr tied with it (within one standard error) for the methods a claim is about, in one
engine batch (report). User optimizers (--optimizer) join as ordinary methods.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from experiments.engine import RunSpec
from experiments.tuning import TuneSpec, check_disjoint, quarter_decade_grid
from paperfigs.methods import Method

TUNING_SEEDS = (1000, 1001, 1002)


def reporting_seeds(seed: int, n: int, tuning_seeds=TUNING_SEEDS) -> list[int]:
    seeds = list(range(seed, seed + n))
    check_disjoint(tuning_seeds, seeds)
    return seeds


def selected_lrs(selections: dict) -> dict:
    """{method: selected lr}; a method whose every lr diverged on the tuning seeds is an error (it
    would otherwise be reported and judged at an lr known to diverge)."""
    missing = [m for m, sel in selections.items() if sel.lr is None]
    if missing:
        raise FloatingPointError(f"every lr diverged on the tuning seeds for {', '.join(map(str, missing))}; "
                                 "widen its grid")
    return {m: sel.lr for m, sel in selections.items()}


def grid_of(center: float, half_width: float) -> list[float]:
    """Quarter-decade lrs within `half_width` decades of the quarter-decade point nearest `center`
    (never empty: half_width 0 is that point alone)."""
    k = round(4 * math.log10(center))
    return quarter_decade_grid(10 ** ((k - 4 * half_width) / 4), 10 ** ((k + 4 * half_width) / 4))


def centred_grid(center: float, half_width: float) -> list[float]:
    """Quarter-decade lrs within `half_width` decades of `center` itself (one point fewer than
    grid_of when `center` lies between two quarter-decade points)."""
    w = 10 ** half_width
    return quarter_decade_grid(center / w, center * w)


def grid_around(center: float, points: int) -> list[float]:
    """`points` lrs a quarter decade apart, centred on `center` itself (not snapped to 10^(k/4))."""
    half = (points - 1) / 2
    return [center * 10 ** (0.25 * (i - half)) for i in range(points)]


def other_tied(sel) -> list[float]:
    """The lrs tied with a selection's lr within one standard error, the selected lr left out."""
    return [lr for lr in sel.tied if lr != sel.lr]


def report(ctx, tunes: Sequence[TuneSpec], selections: dict, seeds: list[int], claimed=(),
           desc: str = "reporting runs"):
    """Run the reporting seeds at every method's selected lr, and at every other lr tied with it
    for the methods in `claimed`, all in one engine batch (the runs are each tuning spec's
    make_spec at that lr and seed).

    Returns (runs, tied_runs): runs[name] = results at the selected lr (seed order);
    tied_runs[name][lr] likewise at each other tied lr, for every claimed method tuned here."""
    lrs = selected_lrs(selections)
    tied = {t.method: other_tied(selections[t.method]) for t in tunes if t.method in claimed}
    want = {(t.method, lr, s): t.make_spec(lr, s) for t in tunes
            for lr in (lrs[t.method], *tied.get(t.method, ())) for s in seeds}
    results = dict(zip(want, ctx.engine.run(list(want.values()), desc=desc)))
    runs = {t.method: [results[(t.method, lrs[t.method], s)] for s in seeds] for t in tunes}
    tied_runs = {name: {lr: [results[(name, lr, s)] for s in seeds] for lr in lrs_n} for name, lrs_n in tied.items()}
    return runs, tied_runs


def tune_and_report(ctx, methods: list[Method], make_spec: Callable[[Method, float, int], RunSpec],
                    seeds: list[int], score: Callable[[dict], float | None], higher_is_better: bool,
                    criterion: str, grid: Callable[[Method], list[float]], extend: int, claimed=(),
                    tuning_seeds=TUNING_SEEDS):
    """Tune every method on its grid(m), extended to the divergence edge, then report (above).

    Returns (selections, runs, tied_runs) as report does."""
    check_disjoint(tuning_seeds, seeds)
    tunes = [TuneSpec(m.name, grid(m), list(tuning_seeds), (lambda lr, s, m=m: make_spec(m, lr, s)), score,
                      higher_is_better, criterion, extend=extend, to_divergence=True) for m in methods]
    selections = ctx.tune(tunes)
    runs, tied_runs = report(ctx, tunes, selections, seeds, claimed)
    return selections, runs, tied_runs


def tied_suffix(name: str, lr: float) -> str:
    return f" at tied lr {lr:.3g}"


def _claim_list(got) -> list:
    return list(got) if isinstance(got, (list, tuple)) else [got]


def claims_at_tied(tied_runs: dict, claim, suffix: Callable[[str, float], str] = tied_suffix) -> dict:
    """The tied-lr table of every figure: {name: {repr(lr): [claim json, ...]}}, from
    claim(name, results, suffix(name, lr)) (one Claim or a list) at each of name's other tied lrs
    (tied_runs as report returns it; methods with none left out)."""
    return {name: {repr(lr): [c.to_json() for c in _claim_list(claim(name, rs, suffix(name, lr)))]
                   for lr, rs in by_lr.items()}
            for name, by_lr in tied_runs.items() if by_lr}


def claims_with_tied(claimed, runs: dict, tied_runs: dict, claim, suffix: Callable[[str, float], str] = tied_suffix):
    """claim(name, results, suffix="") (one Claim or a list) for each claimed method at its selected
    lr, in order, and claims_at_tied for the same methods."""
    claims = [c for name in claimed for c in _claim_list(claim(name, runs[name]))]
    return claims, claims_at_tied({name: tied_runs[name] for name in claimed}, claim, suffix)


def stored_runs(ctx, make_spec: Callable[[float, int], RunSpec], lrs, seeds) -> dict[float, list[dict]] | None:
    """{lr: results over seeds} read from the store without computing; None when any is absent
    (e.g. a selection read from the record on a fresh store)."""
    if ctx.engine.store is None:
        return None
    out = {}
    for lr in lrs:
        recs = [ctx.engine.store.get(ctx.engine.key(make_spec(lr, s))) for s in seeds]
        if any(r is None for r in recs):
            return None
        out[lr] = [r["result"] for r in recs]
    return out


def stored_grid(ctx, sel, make_spec: Callable[[float, int], RunSpec], lrs=None) -> dict[float, list[dict]] | None:
    """{lr: tuning-seed results} over a selection's whole grid, or over `lrs` (e.g. [sel.lr]), read
    from the store (stored_runs); None also for an --lr override, whose grid is the one lr given
    and not a tuning grid, so that no figure shows a sensitivity table for it."""
    if sel.source == "override":
        return None
    return stored_runs(ctx, make_spec, sel.grid if lrs is None else lrs, sel.seeds)


def not_stored(grids: Mapping[str, object]) -> str | None:
    """None when every one of `grids` ({selection name: stored_grid's result}) was read from the
    store; otherwise the sensitivity entry that says so, naming the selections whose tuning runs are
    missing (the claimed method's, or the baseline's it is compared with)."""
    missing = [name for name, grid in grids.items() if grid is None]
    if not missing:
        return None
    return (f"not available: the tuning runs of {', '.join(missing)} (lr given by --lr, or read from a record "
            f"that has no archive of its runs) are not in this run store (rerun with --fresh to compute them)")
