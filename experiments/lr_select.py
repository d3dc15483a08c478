"""The rule that picks the tuned lr from a grid of finished runs, for figures that tune inside
their own run (grids from experiments.lr_sweep.log_grid):

    best, at_edge = select_lr({lr: score, ...})            # lowest finite score wins

The score is whatever the figure tunes on (final training loss for the autoencoder, final
validation loss or error elsewhere); a diverged run scores None or inf and is never selected.
`at_edge` flags a best lr at the end of the grid: the optimum may lie outside it, which a
figure reports in its notes rather than hides.
"""
from __future__ import annotations

import math
from typing import Callable


def select_lr(scores: dict[float, float | None]) -> tuple[float | None, bool]:
    """(lr with the lowest finite score, whether it sits at an end of the grid); (None, False) if all diverged."""
    finite = {lr: s for lr, s in scores.items() if s is not None and math.isfinite(s)}
    if not finite:
        return None, False
    best = min(finite, key=lambda lr: (finite[lr], lr))
    lrs = sorted(scores)
    return best, len(lrs) > 1 and best in (lrs[0], lrs[-1])


def tune_over_grid(lrs, run: Callable[[float], dict], score: Callable[[dict], float | None], label: str,
                   notes: list[str]) -> tuple[float, dict, dict[float, float | None]]:
    """Train `run(lr)` for every lr of the grid, score each history (lower is better, None when it
    diverged), and pick with `select_lr`. An lr at the grid's edge, or a grid that diverged
    everywhere (then the smallest lr is kept, so the figure still has a curve), is recorded in
    `notes` under `label`. Returns (tuned lr, its history, {lr: score})."""
    runs = {lr: run(lr) for lr in lrs}
    scores = {lr: score(h) for lr, h in runs.items()}
    best, at_edge = select_lr(scores)
    if at_edge:
        notes.append(f"{label}: tuned lr {best:.3g} is at the edge of its grid")
    if best is None:
        notes.append(f"{label}: every lr of its grid diverged")
        best = min(scores)
    return best, runs[best], scores
