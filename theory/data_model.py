"""The data model (DM): a k-class Gaussian mixture with imbalanced priors.

    y ~ Categorical(p),  x | y = c ~ N(mu_c, sigma^2 I_d),  mu_c = mu v_c,  labels one-hot e_c.

With orthonormal directions v_1..v_k (columns of V: (d, k)) the population moments are
diagonal in the shared bases (e_c, v_c) (the paper's Condition 1):

    Sigma_yx = E[y x^T] = sum_c mu p_c e_c v_c^T                     (k, d)
    Sigma_xx = E[x x^T] = sum_c mu^2 p_c v_c v_c^T + sigma^2 I_d       (d, d), not centred
    s_yx[c] = mu p_c,  s_xx[c] = mu^2 p_c + sigma^2,  alpha*_c = s_yx[c] / s_xx[c].

Finite samples draw class counts either by exact rounding (largest remainder: counts sum to n,
as close to n p_c as integers allow, so the empirical priors are deterministic) or
multinomially; means are either orthonormal (shared basis exact) or Gaussian vectors
N(0, mu^2/d I_d) (orthogonal and of norm mu only in expectation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def explicit_priors(p) -> np.ndarray:
    """Priors from an explicit list, checked positive and normalised to sum 1."""
    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or p.size < 2 or np.any(p <= 0):
        raise ValueError(f"priors must be a 1-d list of >= 2 positive numbers, got {p}")
    return p / p.sum()


def step_priors(k: int, rho: float, n_major: int | None = None) -> np.ndarray:
    """Step imbalance: the first n_major classes (default k // 2) are rho times more likely."""
    n_major = k // 2 if n_major is None else n_major
    w = np.where(np.arange(k) < n_major, float(rho), 1.0)
    return w / w.sum()


def inverse_priors(k: int) -> np.ndarray:
    """Heavy tail p_c proportional to 1/c, c = 1..k (Zipf with exponent 1)."""
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def exact_counts(n: int, p: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding of n p: integer counts summing to n, each within 1 of n p_c."""
    raw = n * np.asarray(p, dtype=float)
    counts = np.floor(raw).astype(int)
    short = n - counts.sum()
    # Ties broken by class index so the counts are deterministic.
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


@dataclass(frozen=True)
class DataModel:
    """DM with k = len(priors) classes in dimension d; priors sorted or not (m = argmin p).

    means: "orthonormal" (v_c = first k canonical directions rotated by a random orthogonal
    matrix when basis_seed is given, else the canonical e_c of R^d) or "gaussian".
    """

    mu: float
    sigma: float
    priors: tuple
    d: int
    means: str = "orthonormal"
    basis_seed: int | None = None

    def __post_init__(self):
        if self.d < self.k:
            raise ValueError(f"need d >= k, got d={self.d}, k={self.k}")
        if self.means not in ("orthonormal", "gaussian"):
            raise ValueError(f"means must be 'orthonormal' or 'gaussian', got {self.means!r}")
        if self.means == "gaussian" and self.basis_seed is None:
            raise ValueError("Gaussian means need an explicit basis_seed (same seed, same means)")

    @property
    def p(self) -> np.ndarray:
        return explicit_priors(self.priors)

    @property
    def k(self) -> int:
        return len(self.priors)

    @property
    def snr(self) -> float:
        return self.mu**2 / self.sigma**2

    @property
    def minority(self) -> int:
        return int(np.argmin(self.p))

    @property
    def majority(self) -> int:
        return int(np.argmax(self.p))

    # ---- directions and population moments -------------------------------------------
    def directions(self) -> np.ndarray:
        """V: (d, k), column c is v_c (orthonormal, or Gaussian with E||v_c||^2 = 1)."""
        if self.means == "gaussian":
            rng = np.random.default_rng(self.basis_seed)
            return rng.standard_normal((self.d, self.k)) / np.sqrt(self.d)
        if self.basis_seed is None:
            return np.eye(self.d, self.k)
        rng = np.random.default_rng(self.basis_seed)
        q, _ = np.linalg.qr(rng.standard_normal((self.d, self.k)))
        return q

    def s_yx(self) -> np.ndarray:
        """Diagonal of Sigma_yx in the shared bases: mu p_c, shape (k,)."""
        return self.mu * self.p

    def s_xx(self) -> np.ndarray:
        """Eigenvalues of Sigma_xx along v_c: mu^2 p_c + sigma^2, shape (k,)."""
        return self.mu**2 * self.p + self.sigma**2

    def alpha_star(self) -> np.ndarray:
        """Least-squares limit in the shared basis: mu p_c / (mu^2 p_c + sigma^2), shape (k,)."""
        return self.s_yx() / self.s_xx()

    def sigma_yx(self) -> np.ndarray:
        """Sigma_yx = mu sum_c p_c e_c v_c^T, shape (k, d)."""
        return self.mu * (self.p[:, None] * self.directions().T)

    def sigma_xx(self) -> np.ndarray:
        """Sigma_xx = mu^2 V diag(p) V^T + sigma^2 I_d, shape (d, d)."""
        v = self.directions()
        return self.mu**2 * (v * self.p) @ v.T + self.sigma**2 * np.eye(self.d)

    # ---- finite samples ----------------------------------------------------------------
    def class_counts(self, n: int, rng: np.random.Generator, counts: str = "exact") -> np.ndarray:
        if counts == "exact":
            return exact_counts(n, self.p)
        if counts == "multinomial":
            return rng.multinomial(n, self.p)
        raise ValueError(f"counts must be 'exact' or 'multinomial', got {counts!r}")

    def sample(self, n: int, rng: np.random.Generator, counts: str = "exact"):
        """Draw n labelled points. Returns X: (n, d), y: (n,) int labels, shuffled by rng."""
        n_c = self.class_counts(n, rng, counts)
        y = np.repeat(np.arange(self.k), n_c)
        y = y[rng.permutation(n)]
        means = self.mu * self.directions().T  # (k, d)
        x = means[y] + self.sigma * rng.standard_normal((n, self.d))
        return x, y


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    """Y: (n, k) one-hot rows e_{y_i}."""
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1.0
    return out


def empirical_moments(x: np.ndarray, y: np.ndarray, k: int):
    """Sample Sigma_yx = Y^T X / n: (k, d) and Sigma_xx = X^T X / n: (d, d)."""
    n = len(y)
    return one_hot(y, k).T @ x / n, x.T @ x / n
