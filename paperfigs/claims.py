"""A claim: a paper statement turned into a measured number and a verdict that can be False."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    value: float | None
    threshold: float | None
    holds: bool
    # Optional: a 95% interval of value over paired seeds, and the verdict it gives ("holds",
    # "fails", "inconclusive"); left out of the JSON when absent.
    ci: tuple[float, float] | None = None
    verdict: str | None = None

    def __post_init__(self):
        if self.verdict is not None and (self.verdict == "holds") != bool(self.holds):
            raise ValueError(f"claim {self.name}: holds={self.holds} disagrees with verdict {self.verdict!r}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["holds"] = bool(self.holds)
        for key in ("value", "threshold"):
            v = d[key]
            if v is not None:
                v = float(v)
                d[key] = v if math.isfinite(v) else None
        for key in ("ci", "verdict"):
            if d[key] is None:
                del d[key]
        if "ci" in d:
            d["ci"] = [float(v) for v in d["ci"]]
        return d


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def at_least(name: str, statement: str, value, threshold) -> Claim:
    """Holds when value >= threshold (a missing or non-finite value never holds)."""
    return Claim(name, statement, value, threshold, _finite(value) and float(value) >= float(threshold))


def at_most(name: str, statement: str, value, threshold) -> Claim:
    """Holds when value <= threshold (a missing or non-finite value never holds)."""
    return Claim(name, statement, value, threshold, _finite(value) and float(value) <= float(threshold))


def verdict(name: str, statement: str, holds: bool, value=None, threshold=None) -> Claim:
    """A claim whose verdict is computed by the caller (e.g. an ordering of several numbers)."""
    return Claim(name, statement, value, threshold, bool(holds))


def paired(name: str, statement: str, per_seed, threshold: float, direction: str = ">=",
           statistic=None, censored: bool = False, strict: bool = False, n_resamples: int = 4999,
           nan_aware: bool = False) -> Claim:
    """A claim judged over paired seeds: value = statistic(*per_seed) (default: the mean of one
    per-seed sample, e.g. method minus baseline per seed), ci its 95% interval over paired seeds
    (paperfigs.stats.paired_ci: the jackknife t-interval joined with the percentile bootstrap of
    n_resamples resamples), and the verdict from the interval (paperfigs.stats.verdict_of); holds
    exactly when the verdict is holds.

    per_seed: one array per seed-indexed sample, e.g. [differences] or [method, baseline].
    A non-finite sample entry (a stopped run) makes the claim inconclusive without a value, unless
    nan_aware: the statistic then handles NaN entries itself. A non-finite value is inconclusive,
    without an interval."""
    import numpy as np

    from paperfigs.stats import paired_ci

    samples = [np.asarray(s, float) for s in per_seed]
    stat = statistic or (lambda a: float(np.mean(a)))
    if not nan_aware and any(not np.all(np.isfinite(s)) for s in samples):
        return Claim(name, statement, None, threshold, False, None, "inconclusive")
    value = float(stat(*samples))
    ci = paired_ci(stat, *samples, n_resamples=n_resamples) if math.isfinite(value) else None  # None: no interval
    return interval_claim(name, statement, value, ci, threshold, direction, censored, strict)


def interval_claim(name: str, statement: str, value, ci, threshold: float, direction: str = ">=",
                   censored: bool = False, strict: bool = False) -> Claim:
    """A claim judged from an interval already at hand (e.g. one a table reports, so that it is not
    computed again): the verdict is paperfigs.stats.verdict_of(ci, ...) and the claim holds
    exactly when the verdict is holds (no interval: inconclusive)."""
    from paperfigs.stats import verdict_of

    v = verdict_of(ci, threshold, direction, censored, strict)
    return Claim(name, statement, value, threshold, v == "holds", None if ci is None else tuple(ci), v)


def stopped_runs(runs, seeds=None) -> list[str]:
    """The runs of a claim that did not finish, as "label seed s: status" (empty when every run's
    status is "ok"). runs: {label: [result, ...]} in seed order; seeds: the seeds of that order
    (default: positions 0, 1, ...)."""
    out = []
    for label, results in runs.items():
        for i, r in enumerate(results):
            if r["status"] != "ok":
                out.append(f"{label} seed {seeds[i] if seeds is not None else i}: {r['status']}")
    return out


def stopped_claim(name: str, statement: str, threshold, stopped: list[str]) -> Claim:
    """The claim when a run it reads stopped (stopped_runs): no value, no interval, inconclusive.
    A stopped run has no measurement after its stop (a NaN-padded or truncated curve), so neither a
    time to reach a level nor a window mean of it is a number of the method as configured; counting
    it either way would decide a verdict with numbers the run never produced."""
    return Claim(name, f"{statement} [inconclusive: run(s) stopped ({'; '.join(stopped)}), so the value is no "
                       "measurement]", None, threshold, False, None, "inconclusive")
