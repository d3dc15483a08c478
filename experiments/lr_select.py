"""Learning-rate grids and the rule that picks the tuned lr from a grid of finished runs.

    lrs = log_grid(center=1e-3, n=5, factor=10 ** 0.5)   # 1e-4 ... 1e-2, half a decade apart
    best, at_edge = select_lr({lr: score, ...})            # lowest finite score wins

The score is whatever the figure tunes on (final training loss for the autoencoder, final
validation loss or error elsewhere); a diverged run scores None or inf and is never selected.
`at_edge` flags a best lr at the end of the grid: the optimum may lie outside it, which a
figure reports in its notes rather than hides.
"""
from __future__ import annotations

import math


def log_grid(center: float, n: int, factor: float) -> list[float]:
    """n learning rates spaced by `factor`, centred (geometrically) on `center`."""
    if not center > 0 or n < 1 or not factor > 1:
        raise ValueError(f"need center > 0, n >= 1, factor > 1; got {center}, {n}, {factor}")
    half = (n - 1) / 2
    return [float(center * factor ** (i - half)) for i in range(n)]


def select_lr(scores: dict[float, float | None]) -> tuple[float | None, bool]:
    """(lr with the lowest finite score, whether it sits at an end of the grid); (None, False) if all diverged."""
    finite = {lr: s for lr, s in scores.items() if s is not None and math.isfinite(s)}
    if not finite:
        return None, False
    best = min(finite, key=lambda lr: (finite[lr], lr))
    lrs = sorted(scores)
    return best, len(lrs) > 1 and best in (lrs[0], lrs[-1])
