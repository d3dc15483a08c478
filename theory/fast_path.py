"""O(k)-per-step population dynamics in the shared basis (the fast path).

For the population squared loss from W = 0 (linear) or the aligned balanced init (deep), every
factor stays diagonal in the bases (e_c, v_c), so a depth-L model is the array a: (L, ..., k)
of factor diagonals with alpha_c = prod_l a_{l,c}. The product gradient has components

    g_c = s_xx[c] alpha_c - s_yx[c],  and layer l's gradient is g_{l,c} = g_c prod_{m != l} a_{m,c}.

The updates of theory.algorithms reduce to per-component rules on each layer's g_l: (..., k):

    gd      a_l -= lr g_l
    ngd     a_l -= lr g_l / ||g_l||_2                      (Frobenius norm of a diagonal)
    signgd  a_l -= lr sign(g_l)                            (equals entrywise sign only when
                                                            V is the canonical basis)
    specgd  a_l -= lr sign(g_l) 1[|g_l| > tol max|g_l|]    (SVD of a diagonal matrix)
    muon    m_l = beta m_l + (1 - beta) g_l, then the specgd rule on m_l (exact polar)

The d - k directions orthogonal to all means never receive gradient, so d does not enter:
the cost is O(L k) per step, and leading batch axes (...) sweep many settings at once.

Agreement with the full-matrix SVD path (theory.algorithms.run_discrete) is exact up to
round-off when V is the canonical basis, and for a rotated basis until the first saturation.
After it, SpecGD amplifies round-off components off the shared basis by about lr s_xx / s_min
per step (s_min: the smallest singular value of G, tiny while a class bounces across alpha*),
so the full-matrix path drifts from the exact diagonal one, by less than lr in our checks.
"""
from __future__ import annotations

import numpy as np

from theory.algorithms import SPEC_TOL

METHODS = ("gd", "ngd", "signgd", "specgd", "muon")


def _spectral_sign(g: np.ndarray, tol: float) -> np.ndarray:
    top = np.max(np.abs(g), axis=-1, keepdims=True)
    return np.where(np.abs(g) > tol * top, np.sign(g), 0.0)


def _direction(method: str, g: np.ndarray, tol: float) -> np.ndarray:
    if method == "gd":
        return g
    if method == "ngd":
        n = np.linalg.norm(g, axis=-1, keepdims=True)
        return np.divide(g, n, out=np.zeros_like(g), where=n > 0)
    if method == "signgd":
        return np.sign(g)
    if method in ("specgd", "muon"):
        return _spectral_sign(g, tol)
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")


def diagonal_dynamics(s_xx, s_yx, method: str, lr: float, steps: int, depth: int = 1,
                      eps: float = 0.0, beta: float = 0.9, tol: float = SPEC_TOL,
                      every: int = 1) -> np.ndarray:
    """alpha_c(t) = prod_l a_{l,c}(t) for t = 0, every, 2 every, ..., steps.

    s_xx, s_yx: (..., k) per-class moments (leading axes = independent settings).
    depth = 1, eps = 0 is the linear model from W = 0; depth L >= 2 needs eps > 0 (from zero the
    layer gradients vanish). Returns (steps // every + 1, ..., k).
    """
    s_xx, s_yx = np.broadcast_arrays(np.asarray(s_xx, float), np.asarray(s_yx, float))
    if depth > 1 and eps == 0:
        raise ValueError("deep models need eps > 0: at a zero init every layer gradient is 0")
    a = np.full((depth,) + s_xx.shape, float(eps))
    m = np.zeros_like(a)
    out = [np.prod(a, axis=0)]
    for t in range(1, steps + 1):
        alpha = np.prod(a, axis=0)
        g = s_xx * alpha - s_yx
        # All layer gradients are taken at the same point before any layer moves.
        grads = [g * np.prod(np.delete(a, l, axis=0), axis=0) for l in range(depth)]
        for l, gl in enumerate(grads):
            if method == "muon":
                m[l] = beta * m[l] + (1 - beta) * gl
                gl = m[l]
            a[l] = a[l] - lr * _direction(method, gl, tol)
        if t % every == 0:
            out.append(np.prod(a, axis=0))
    return np.asarray(out)
