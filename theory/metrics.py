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


def first_crossing(traj: np.ndarray, target: np.ndarray) -> np.ndarray:
    """First index t with traj[t, c] >= target[c] for each class c (-1 if never).

    traj: (T, k), target: (k,). For SpecGD this is the overshoot (saturation) step.
    """
    hit = traj >= np.asarray(target)[None, :]
    return np.where(hit.any(axis=0), hit.argmax(axis=0), -1)
