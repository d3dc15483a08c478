"""The tuning-and-reporting protocol of the torch figures 11 and 12, in one place.

Per method: a quarter-decade lr grid around a centre, tuned by the engine (experiments.tuning) on
TUNING_SEEDS, which are disjoint from the reporting seeds seed..seed+n-1; the grid is extended
past an optimum on its edge and upward to the divergence edge. The reporting seeds are then run
at the selected lr of every method, and at every lr tied with it (within one standard error) for
the methods a claim is about. User optimizers (--optimizer) join as ordinary methods.
"""
from __future__ import annotations

import math
from typing import Callable

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


def tune_and_report(ctx, methods: list[Method], make_spec: Callable[[Method, float, int], RunSpec],
                    seeds: list[int], score: Callable[[dict], float | None], higher_is_better: bool,
                    criterion: str, half_width: float, extend: int, claimed=(), tuning_seeds=TUNING_SEEDS):
    """Tune every method, then run the reporting seeds.

    Returns (selections, runs, tied_runs): runs[name] = reporting results at the selected lr (seed
    order); tied_runs[name][lr] likewise at each other tied lr, for the methods in `claimed`."""
    check_disjoint(tuning_seeds, seeds)
    tunes = [TuneSpec(m.name, grid_of(m.center, half_width), list(tuning_seeds),
                      (lambda lr, s, m=m: make_spec(m, lr, s)), score, higher_is_better, criterion,
                      extend=extend, to_divergence=True) for m in methods]
    selections = ctx.tune(tunes)
    selected_lrs(selections)
    want = {}
    for m in methods:
        sel = selections[m.name]
        lrs = {sel.lr, *(sel.tied if m.name in claimed else ())}
        for lr in lrs:
            for s in seeds:
                want[(m.name, lr, s)] = make_spec(m, lr, s)
    results = dict(zip(want, ctx.engine.run(list(want.values()), desc="reporting runs")))
    runs = {m.name: [results[(m.name, selections[m.name].lr, s)] for s in seeds] for m in methods}
    tied_runs = {m.name: {lr: [results[(m.name, lr, s)] for s in seeds] for lr in selections[m.name].tied
                          if lr != selections[m.name].lr} for m in methods if m.name in claimed}
    return selections, runs, tied_runs


def stored_grid(ctx, m: Method, sel, make_spec) -> dict[float, list[dict]] | None:
    """{lr: tuning-seed results} over a selection's whole grid, read from the store without computing;
    None when any is absent (a selection read from the record on a fresh store)."""
    if ctx.engine.store is None or sel.source == "override":
        return None
    out = {}
    for lr in sel.grid:
        recs = [ctx.engine.store.get(ctx.engine.key(make_spec(m, lr, s))) for s in sel.seeds]
        if any(r is None for r in recs):
            return None
        out[lr] = [r["result"] for r in recs]
    return out


NOT_STORED = ("not available: the selection was read from the record and its tuning runs are not in this run "
              "store (rerun with --fresh to compute them)")
