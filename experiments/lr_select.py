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


def select_lr(scores: dict[float, float | None]) -> tuple[float | None, bool]:
    """(lr with the lowest finite score, whether it sits at an end of the grid); (None, False) if all diverged."""
    finite = {lr: s for lr, s in scores.items() if s is not None and math.isfinite(s)}
    if not finite:
        return None, False
    best = min(finite, key=lambda lr: (finite[lr], lr))
    lrs = sorted(scores)
    return best, len(lrs) > 1 and best in (lrs[0], lrs[-1])
