"""Polar Express coefficients (Amsel, Persson, Musco and Gower 2025), derived here from the method.

Newton-Schulz-type iterations X <- p_t(X) = a_t X + b_t X X^T X + c_t (X X^T)^2 X act on each
singular value x by the odd quintic p_t(x) = a_t x + b_t x^3 + c_t x^5. The classic Muon quintic
uses one p for every step; Polar Express picks, greedily, the best quintic for each step:
    [l_0, u_0] = [lower, 1]                      (singular values of X / ||X||_F lie in (0, 1])
    p_t = argmin over odd quintics of  max_{x in [max(l_t, cushion u_t), u_t]} |1 - p(x)|
    p_t <- p_t * 2 / (lo + hi),  [lo, hi] = p_t([l_t, u_t])   (so the image is centred on 1)
    [l_{t+1}, u_{t+1}] = p_t([l_t, u_t]) = [l_{t+1}, 2 - l_{t+1}]
The minimax quintic is found by the Remez exchange on the four alternation points l, x_1, x_2, u
(x_1, x_2 are the critical points of p: roots of a + 3 b x^2 + 5 c x^4, a quadratic in x^2).
`cushion` keeps the first steps from chasing a tiny l_t with a huge slope at 0 (the paper's
value); with it this construction reproduces the paper's published polynomials (the first six
to 1e-13; the seventh, on an interval of width 2e-3, to 1e-10). Once the interval is narrower
than 1e-4 the fixed point (15 x - 10 x^3 + 3 x^5) / 8 of the iteration replaces the minimax
quintic (whose Remez system is too ill-conditioned to solve there); it maps such an interval
to within 1e-12 of 1.
Finite precision: every polynomial but that fixed point is applied as
p(x / safety) with safety 1.01, so singular values pushed up to 1% above u_t by rounding
(bfloat16) still land inside the next interval rather than on the steep outer flank of p.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

LOWER = 1e-3  # singular values below LOWER * ||X||_F are not covered by the design interval
CUSHION = 0.02407327424182761
SAFETY = 1.01
FIXED_POINT = (15 / 8, -10 / 8, 3 / 8)
_CONVERGED_WIDTH = 1e-4


def quintic(coefficients, x):
    """p(x) = a x + b x^3 + c x^5, elementwise."""
    a, b, c = coefficients
    x2 = x * x
    return x * (a + x2 * (b + c * x2))


def _critical_points(a: float, b: float, c: float) -> np.ndarray:
    """Positive x with p'(x) = a + 3 b x^2 + 5 c x^4 = 0, ascending."""
    disc = 9 * b * b - 20 * a * c
    if c == 0 or disc < 0:
        return np.empty(0)
    y = (-3 * b + np.array([-1.0, 1.0]) * np.sqrt(disc)) / (10 * c)
    return np.sort(np.sqrt(y[y > 0]))


def minimax_quintic(l: float, u: float, max_iter: int = 100) -> tuple[tuple[float, float, float], float]:
    """The odd quintic p minimising max_{x in [l, u]} |1 - p(x)|, 0 < l < u, and that error E.

    The optimum equioscillates: p(l) = 1 - E, p(x_1) = 1 + E, p(x_2) = 1 - E, p(u) = 1 + E."""
    if not 0 < l < u:
        raise ValueError(f"need 0 < l < u, got l={l}, u={u}")
    signs = np.array([-1.0, 1.0, -1.0, 1.0])
    x = l + (u - l) * np.array([0.0, 0.25, 0.75, 1.0])
    for _ in range(max_iter):
        system = np.stack([x, x ** 3, x ** 5, -signs], axis=1)
        a, b, c, err = np.linalg.solve(system, np.ones(4))
        inner = _critical_points(a, b, c)
        if inner.size != 2 or not l < inner[0] < inner[1] < u:
            raise FloatingPointError(f"Remez exchange lost the alternation on [{l}, {u}]")
        new = np.array([l, inner[0], inner[1], u])
        # E is stationary in the points: points to 1e-6 of the width fix E to round-off (and the
        # points themselves jitter at 1e-8 of the width on the narrow late intervals)
        if np.max(np.abs(new - x)) <= 1e-6 * (u - l):
            return (float(a), float(b), float(c)), float(abs(err))
        x = new
    raise FloatingPointError(f"Remez exchange did not converge on [{l}, {u}] in {max_iter} iterations")


def image(coefficients, l: float, u: float) -> tuple[float, float]:
    """[min, max] of p over [l, u] (endpoints and interior critical points)."""
    pts = [l, u] + [x for x in _critical_points(*coefficients) if l < x < u]
    vals = quintic(coefficients, np.array(pts))
    return float(vals.min()), float(vals.max())


@lru_cache(maxsize=None)
def greedy_schedule(steps: int, lower: float = LOWER, cushion: float = CUSHION
                    ) -> tuple[tuple[tuple[float, float, float], tuple[float, float]], ...]:
    """The greedy sequence before the safety factor: ((a, b, c), (l_t, u_t)) for t < steps."""
    if not 0 < lower < 1:
        raise ValueError(f"lower must be in (0, 1), got {lower}")
    l, u = lower, 1.0
    out = []
    for _ in range(steps):
        if u - l < _CONVERGED_WIDTH:
            out.append((FIXED_POINT, (l, u)))
            l, u = image(FIXED_POINT, l, u)
            continue
        p, _ = minimax_quintic(max(l, cushion * u), u)
        lo, hi = image(p, l, u)
        r = 2.0 / (lo + hi)
        out.append(((p[0] * r, p[1] * r, p[2] * r), (l, u)))
        l = lo * r
        u = 2.0 - l
    return tuple(out)


@lru_cache(maxsize=None)
def polar_express_coefficients(steps: int, lower: float = LOWER, safety: float = SAFETY
                               ) -> tuple[tuple[float, float, float], ...]:
    """Per-step (a, b, c) for `steps` iterations, each (but the fixed point) applied as p(x / safety)."""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not safety >= 1:
        raise ValueError(f"safety must be >= 1, got {safety}")
    coeffs = []
    for (a, b, c), _ in greedy_schedule(steps, lower):
        s = 1.0 if (a, b, c) == FIXED_POINT else safety
        coeffs.append((a / s, b / s ** 3, c / s ** 5))
    return tuple(coeffs)
