"""Confidence intervals over paired seeds, and the verdict of a claim from its interval.

    lo, hi = paired_ci(lambda a, b: np.mean(a - b), muon_scores, sgd_scores)   # per-seed arrays
    v = verdict_of((lo, hi), threshold=0.01, direction=">=")                  # holds|fails|inconclusive

Seeds are paired: seed s of every method shares the data split and the initial weights, so an
interval is computed over seeds, each seed carrying all its methods' numbers together. The 95%
interval is the union of two (paired_ci): the Student-t interval with the jackknife standard
error (leave one seed out; for the mean of per-seed differences exactly the paired t-interval)
and scipy.stats.bootstrap's percentile interval resampling seeds jointly (a fixed generator: same
numbers, same interval), which catches statistics that jump under resampling, such as a
time-to-level when one seed never reaches the level. Until stop 18 the percentile interval was
used alone; with the 3-5 seeds these figures use its lower end is about the worst seed, and in a
simulation (normal per-seed values, 2,000 repeats) it covered the true mean 75% of the time at 3
seeds and 84% at 5; the union covers 95% and 96% (tests/test_stats.py checks its coverage). No
claim's definition or threshold changed with it. At 3 seeds the t quantile is 4.30 (2.78 at 5),
so quick-mode intervals are wide: a quick "holds" needs an effect consistent across seeds, and
many quick claims are inconclusive by design.

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
import warnings
from typing import Callable

import numpy as np

VERDICTS = ("holds", "fails", "inconclusive")
CONFIDENCE = 0.95
# An interval end this close to the threshold counts as touching it (far below any grid step the
# claims use: accuracies over <= 1e5 examples, evaluation times of >= 1 step).
TOUCH_RTOL, TOUCH_ATOL = 1e-9, 1e-12


def paired_ci(statistic: Callable[..., float], *samples, confidence: float = CONFIDENCE,
              n_resamples: int = 4999, seed: int = 0) -> tuple[float, float] | None:
    """95% interval of statistic(*samples) over paired seeds: the union (the smallest interval
    holding both) of
    - the Student-t interval with the jackknife standard error: value -+ t_{n-1} * SE with
      SE^2 = (n - 1) / n * sum_i (theta_(i) - mean theta)^2, theta_(i) the statistic with seed i
      left out of every sample at once. For the mean of one per-seed sample (e.g. method minus
      baseline per seed) this is exactly the paired t-interval; and
    - scipy.stats.bootstrap's percentile interval, resampling seeds jointly (n_resamples, a fixed
      generator `seed`): it sees what leaving one seed out cannot, for statistics that jump, e.g.
      a time-to-level of mean curves when one seed never reaches the level.
    samples: 1-D arrays of equal length, one entry per seed in the same seed order. None (no
    interval) for a single seed, a non-finite value, or a statistic undefined with a seed left
    out or on the resamples; samples that do not vary give [value, value]."""
    from scipy import stats

    arrays = [np.asarray(s, dtype=float) for s in samples]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(f"paired samples need equal, non-zero lengths, got {[len(a) for a in arrays]}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    value = float(statistic(*arrays))
    if n == 1 or not math.isfinite(value):
        return None
    if all(np.all(a == a[0]) for a in arrays):
        return value, value
    keep = ~np.eye(n, dtype=bool)  # row i: every seed but i
    loo = np.array([float(statistic(*(a[keep[i]] for a in arrays))) for i in range(n)])
    if not np.all(np.isfinite(loo)):
        return None
    se = math.sqrt((n - 1) / n * float(np.sum((loo - loo.mean()) ** 2)))
    q = float(stats.t.ppf(0.5 + confidence / 2, n - 1))

    def stat(*xs, axis=-1):
        xs = [np.moveaxis(x, axis, -1) for x in xs]
        if xs[0].ndim == 1:
            return statistic(*xs)
        return np.array([statistic(*row) for row in zip(*xs)])

    with warnings.catch_warnings():  # a statistic undefined on some resamples: no interval, below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(tuple(arrays), stat, paired=True, vectorized=True, confidence_level=confidence,
                              n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return min(lo, value - q * se), max(hi, value + q * se)


def mean_ci(values, **kw) -> tuple[float, float] | None:
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



# What over_seeds' band is, for a figure's params.
SEED_BAND = "min..max over the seeds with a value at each step (n_seeds per point; a stopped run has none)"


def over_seeds(curves) -> dict:
    """Mean and min..max band over seeds of per-seed curves, which may differ in length or hold
    NaN (a run stopped on a non-finite loss ends early, or is padded with NaN).

    Cutting every seed's curve to the shortest one would hide the other seeds' later evaluations;
    instead each point summarises the seeds with a finite value there, and `n_seeds` says how many
    (a mean over fewer seeds than the figure ran is a mean over survivors). Curves may carry
    trailing dimensions (e.g. frequency buckets): their first axis is time, and a seed counts at a
    time when any of its entries there is finite. Returns numpy arrays y, y_lo, y_hi (NaN where no
    seed has a value) and the list n_seeds."""
    curves = [np.asarray(c, dtype=float) for c in curves]
    if not curves:
        raise ValueError("over_seeds needs at least one curve")
    tail = curves[0].shape[1:]
    if any(c.shape[1:] != tail for c in curves):
        raise ValueError(f"curves differ beyond their time axis: {[c.shape for c in curves]}")
    stacked = np.full((len(curves), max(len(c) for c in curves)) + tail, np.nan)
    for i, c in enumerate(curves):
        stacked[i, :len(c)] = c
    finite = np.isfinite(stacked).reshape(stacked.shape[:2] + (-1,)).any(-1)
    with warnings.catch_warnings():  # all-NaN slices (no seed has a value) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"y": np.nanmean(stacked, 0), "y_lo": np.nanmin(stacked, 0), "y_hi": np.nanmax(stacked, 0),
                "n_seeds": finite.sum(0).tolist()}
