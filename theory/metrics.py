"""Test metrics under the DM: per-class squared loss and per-class accuracy of argmax_j (W x)_j.

For W diagonal in the shared bases with entries alpha: (..., k) and x = mu v_c + sigma z:

    L_c = 1/2 [ (1 - mu alpha_c)^2 + sigma^2 sum_j alpha_j^2 ],  L_bal = mean_c L_c
    A_c = int phi(z) prod_{j != c} Phi( (alpha_c / alpha_j) (sqrt(SNR) + z) ) dz   (alpha_j > 0)

For a general W: (k, d) with means M: (k, d), L_c = 1/2 [ ||e_c - W mu_c||^2 + sigma^2 ||W||_F^2 ].
"""
from __future__ import annotations

import numpy as np
from scipy import integrate, stats


def per_class_loss(alpha, mu: float, sigma: float) -> np.ndarray:
    """L_c for diagonal W; alpha: (..., k) -> (..., k)."""
    alpha = np.asarray(alpha, float)
    noise = sigma**2 * np.sum(alpha**2, axis=-1, keepdims=True)
    return 0.5 * ((1.0 - mu * alpha) ** 2 + noise)


def per_class_loss_matrix(w: np.ndarray, means: np.ndarray, sigma: float) -> np.ndarray:
    """L_c for any W: (k, d), class means M: (k, d) -> (k,)."""
    resid = np.eye(w.shape[0]) - w @ means.T  # column c is e_c - W mu_c
    return 0.5 * (np.sum(resid**2, axis=0) + sigma**2 * np.sum(w**2))


def balanced(per_class: np.ndarray) -> np.ndarray:
    """Mean over classes (last axis)."""
    return np.mean(per_class, axis=-1)


def worst_class_loss(per_class_losses: np.ndarray) -> np.ndarray:
    """Largest per-class loss (last axis); under the DM with alpha increasing in p it is L_m."""
    return np.max(per_class_losses, axis=-1)


def per_class_accuracy(alpha, snr: float) -> np.ndarray:
    """A_c by adaptive quadrature of the integral above; alpha: (k,) positive -> (k,)."""
    alpha = np.asarray(alpha, float)
    if np.any(alpha <= 0):
        raise ValueError("the accuracy integral needs alpha_j > 0 for every class")
    root = np.sqrt(snr)
    out = np.empty(alpha.size)
    for c in range(alpha.size):
        ratios = alpha[c] / np.delete(alpha, c)

        def integrand(z, ratios=ratios):
            return stats.norm.pdf(z) * np.prod(stats.norm.cdf(ratios * (root + z)))

        out[c] = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-10, epsrel=1e-10)[0]
    return out


def per_class_accuracy_mc(alpha, mu: float, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """A_c by Monte Carlo: n draws of x = mu e_c + sigma z per class, prediction argmax alpha * x."""
    alpha = np.asarray(alpha, float)
    k = alpha.size
    out = np.empty(k)
    for c in range(k):
        x = sigma * rng.standard_normal((n, k))
        x[:, c] += mu
        out[c] = np.mean(np.argmax(alpha * x, axis=1) == c)
    return out


def per_class_accuracy_samples(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical per-class accuracy of argmax_j (W x)_j on labelled samples; W: (k, d) -> (k,).

    A class absent from y gets NaN.
    """
    k = w.shape[0]
    correct = np.argmax(x @ w.T, axis=1) == y
    hits = np.bincount(y, weights=correct, minlength=k)
    counts = np.bincount(y, minlength=k)
    return np.divide(hits, counts, out=np.full(k, np.nan), where=counts > 0)


def first_crossing(traj, level, direction: str = ">=") -> np.ndarray:
    """First index t along axis 0 at which traj[t] reaches `level` (-1 if never): the project's one
    "first time a curve crosses a level" rule.

    traj: (T, ...) values (None / NaN / inf never count as reaching); level: broadcasts against
    traj[0] (e.g. (k,) per-class targets for a (T, k) trajectory, or a scalar);
    direction ">=": traj[t] >= level (rising curves, e.g. SpecGD's overshoot step);
    "<=": traj[t] <= level (falling curves, e.g. a loss reaching a target).
    Returns an int array shaped like traj[0] (a Python int for a 1-D traj)."""
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
    x = np.array(traj, dtype=float)  # None -> nan
    if x.size == 0:
        raise ValueError("first_crossing needs a non-empty trajectory")
    with np.errstate(invalid="ignore"):
        hit = np.isfinite(x) & ((x >= level) if direction == ">=" else (x <= level))
    out = np.where(hit.any(axis=0), hit.argmax(axis=0), -1)
    return int(out) if out.ndim == 0 else out


def first_step(steps, values, level, direction: str = "<=", start: float = -np.inf):
    """The step (from `steps`, same length as `values`) of the first evaluation at or after `start`
    at which values reaches `level` (first_crossing's rule), or None if it never does."""
    steps = np.asarray(steps)
    if len(steps) != len(values):
        raise ValueError(f"steps and values need equal lengths, got {len(steps)} and {len(values)}")
    keep = np.flatnonzero(steps >= start)
    if len(keep) == 0:
        return None
    i = first_crossing([values[j] for j in keep], level, direction)
    return None if i < 0 else steps[keep[i]].item()
