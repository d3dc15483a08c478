"""Confidence intervals over paired seeds, and the verdict of a claim from its interval.

    lo, hi = paired_ci(lambda a, b: np.mean(a - b), muon_scores, sgd_scores)   # per-seed arrays
    v = verdict_of((lo, hi), threshold=0.01, direction=">=")                  # holds|fails|inconclusive

Seeds are paired: seed s of every method shares the data split and the initial weights, so the
bootstrap resamples seeds (the same resampled seeds for every method) and recomputes the
statistic. The interval is scipy.stats.bootstrap's percentile interval (BCa is unstable with the
3-5 seeds these figures use), 95% by default, with a fixed generator: same numbers, same interval.

Verdict rule (fixed for every claim): "holds" when the whole interval clears the threshold in
the claimed direction, "fails" when it lies wholly on the other side, "inconclusive" when it
straddles the threshold or the compared methods were both censored (neither reached the level a
time-to-level claim asks for). An interval end that touches the threshold (equal to it up to
rounding) lies on neither side: for "value >= t" an interval [lo, t] with lo < t is inconclusive,
not a failure, and for "value > t" (strict) [t, hi] is inconclusive and [lo, t] fails. Rounding
matters for discretised values: a difference of two evaluation times that equals one evaluation
interval can come out one ulp below it.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

VERDICTS = ("holds", "fails", "inconclusive")
CONFIDENCE = 0.95
# An interval end this close to the threshold counts as touching it (far below any grid step the
# claims use: accuracies over <= 1e5 examples, evaluation times of >= 1 step).
TOUCH_RTOL, TOUCH_ATOL = 1e-9, 1e-12


def paired_ci(statistic: Callable[..., float], *samples, confidence: float = CONFIDENCE,
              n_resamples: int = 4999, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(*samples) resampling seeds jointly.

    samples: 1-D arrays of equal length (one entry per seed, the same seed order in each).
    A single seed, or samples that do not vary, give the degenerate interval [value, value]."""
    from scipy import stats

    arrays = [np.asarray(s, dtype=float) for s in samples]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(f"paired samples need equal, non-zero lengths, got {[len(a) for a in arrays]}")
    value = float(statistic(*arrays))
    if n == 1 or all(np.all(a == a[0]) for a in arrays) or not math.isfinite(value):
        return value, value

    def stat(*xs, axis=-1):
        xs = [np.moveaxis(x, axis, -1) for x in xs]
        if xs[0].ndim == 1:
            return statistic(*xs)
        return np.array([statistic(*row) for row in zip(*xs)])

    res = stats.bootstrap(tuple(arrays), stat, paired=True, vectorized=True, confidence_level=confidence,
                          n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (min(lo, value), max(hi, value))


def mean_ci(values, **kw) -> tuple[float, float]:
    """Interval of the mean of one per-seed sample (e.g. paired differences)."""
    return paired_ci(lambda a: float(np.mean(a)), values, **kw)


def verdict_of(ci: tuple[float, float] | None, threshold: float, direction: str = ">=",
               censored: bool = False, strict: bool = False) -> str:
    """holds / fails / inconclusive for a claim value >= threshold (direction ">=") or <= threshold.

    strict: the claim is value > threshold (or <): an interval that only touches the threshold,
    e.g. [0, 0.0006] for "above 0" or [1, 1] for "below 1", does not clear it."""
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
    if censored or ci is None or not all(math.isfinite(x) for x in ci):
        return "inconclusive"
    lo, hi = ci if direction == ">=" else (-ci[1], -ci[0])
    t = threshold if direction == ">=" else -threshold
    # An end within rounding of the threshold touches it: discretised values (evaluation times,
    # accuracies over n examples) reach a threshold on their grid through arithmetic that can land
    # one ulp on either side, and that must not decide between holds and fails.
    lo_touches, hi_touches = (math.isclose(x, t, rel_tol=TOUCH_RTOL, abs_tol=TOUCH_ATOL) for x in (lo, hi))
    if strict:
        return "holds" if lo > t and not lo_touches else "fails" if hi <= t or hi_touches else "inconclusive"
    return "holds" if lo >= t or lo_touches else "fails" if hi < t and not hi_touches else "inconclusive"
