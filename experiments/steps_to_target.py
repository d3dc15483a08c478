"""Steps (and wall-clock) a run needs to first reach a target validation loss.

The SPlus paper's efficiency measure: a method's steps to reach Adam's final validation loss,
divided by Adam's steps. Curves are only known at evaluation points, so the answer is the first
evaluated step at which loss <= target (no interpolation: resolution is the evaluation interval),
and the wall-clock time at that evaluation. None when the target is never reached.
"""
from __future__ import annotations

import math
from typing import Sequence


def first_reach(steps: Sequence[int], wall_s: Sequence[float], losses: Sequence[float | None],
                target: float) -> tuple[int | None, float | None]:
    """(step, wall seconds) of the first evaluation with loss <= target, or (None, None)."""
    if not (len(steps) == len(wall_s) == len(losses)):
        raise ValueError("steps, wall_s and losses must have equal length")
    for s, w, v in zip(steps, wall_s, losses):
        if v is not None and math.isfinite(v) and v <= target:
            return int(s), float(w)
    return None, None


def fraction_of_reference(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing (a method that never got there)."""
    if value is None or reference is None or reference <= 0:
        return None
    return float(value) / float(reference)
