"""Linear, bilinear and deep linear models W = W_L ... W_1 with squared or cross-entropy loss.

Shapes: W_1: (h, d), W_l: (h, h), W_L: (k, h) (h = k for the aligned theory init); a single
factor W: (k, d) is the linear model. The loss is a function of the product W only, so every
layer's gradient follows from the product gradient G = dL/dW: (k, d) by the chain rule

    dL/dW_l = (W_L ... W_{l+1})^T  G  (W_{l-1} ... W_1)^T.

Product gradients:
    squared, population:  G = W Sigma_xx - Sigma_yx         (L = 1/2 E||y - W x||^2)
    squared, samples:     G = (X W^T - Y)^T X / n            (X: (n, d), Y: (n, k))
    cross-entropy:        G = (softmax(X W^T) - Y)^T X / n
"""
from __future__ import annotations

import numpy as np

from theory.data_model import one_hot


def product(factors: list[np.ndarray]) -> np.ndarray:
    """W = W_L ... W_1 for factors listed first layer first: [W_1, ..., W_L]."""
    w = factors[0]
    for f in factors[1:]:
        w = f @ w
    return w


def layer_grads(factors: list[np.ndarray], g: np.ndarray) -> list[np.ndarray]:
    """dL/dW_l for every factor given the product gradient G: (k, d), by the chain rule above."""
    n_layers = len(factors)
    grads = []
    for l in range(n_layers):
        left = product(factors[l + 1:]).T if l + 1 < n_layers else None   # (W_L..W_{l+1})^T
        right = product(factors[:l]).T if l > 0 else None                 # (W_{l-1}..W_1)^T
        gl = g if left is None else left @ g
        grads.append(gl if right is None else gl @ right)
    return grads


def population_grad(w: np.ndarray, sigma_xx: np.ndarray, sigma_yx: np.ndarray) -> np.ndarray:
    """Squared-loss population gradient W Sigma_xx - Sigma_yx: (k, d)."""
    return w @ sigma_xx - sigma_yx


def squared_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical squared-loss gradient (X W^T - Y)^T X / n for integer labels y: (n,)."""
    r = x @ w.T - one_hot(y, w.shape[0])
    return r.T @ x / len(y)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)  # shift for overflow safety; softmax is shift-invariant
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean cross-entropy gradient (softmax(X W^T) - Y)^T X / n: (k, d)."""
    r = softmax(x @ w.T) - one_hot(y, w.shape[0])
    return r.T @ x / len(y)


def cross_entropy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = x @ w.T
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def aligned_init(depth: int, v: np.ndarray, eps: float) -> list[np.ndarray]:
    """Aligned, balanced init of scale eps: W_1 = eps E V^T (k, d), W_l = eps I_k for l >= 2.

    v: (d, k) the class directions. The product is eps^L sum_c e_c v_c^T, diagonal in the
    shared bases, and every factor has the same diagonal eps (balanced).
    """
    k = v.shape[1]
    return [eps * v.T.copy()] + [eps * np.eye(k) for _ in range(depth - 1)]


def random_init(shapes: list[tuple], scale: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Factors with i.i.d. N(0, scale^2) entries, one per shape (first layer first)."""
    return [scale * rng.standard_normal(s) for s in shapes]


def diagonal(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """alpha_c = e_c^T W v_c for W: (k, d), v: (d, k) -> (k,)."""
    return np.einsum("cd,dc->c", w, v)
