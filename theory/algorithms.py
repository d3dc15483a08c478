"""Normalised steepest descent on matrices, discrete and continuous time (the reference path).

Every method steps W <- W - lr * Delta(G) for the gradient G: (k, d):

    GD      Delta = G
    NGD     Delta = G / ||G||_F
    SignGD  Delta = sign(G)                       (entrywise; the canonical form of Adam)
    SpecGD  Delta = U V^T, G = U S V^T truncated  (singular values <= tol * s_max dropped;
                                                   the canonical form of Muon and Shampoo)
    Muon    M_t = beta M_{t-1} + (1 - beta) G_t,  Delta = polar(M_t)   (theory form: beta = 0
            is SpecGD). polar is the exact truncated SVD ("svd"), or five Newton-Schulz steps
            of practical Muon with the classic quintic ("ns") or the per-step Polar Express
            quintics ("polar_express", theory.polar_express).

Deep models step every factor with its own layer gradient (and its own momentum).
Continuous time (GF, NGF, SpecGF) integrates dW/dt = -Delta(G(W)) with scipy's solve_ivp.
This module is the full-matrix reference; theory.fast_path is the O(k) diagonal version.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.integrate import solve_ivp

from theory.models import layer_grads, product
from theory.polar_express import polar_express_coefficients, quintic

# Relative tolerance of the truncated SVD: singular values <= SPEC_TOL * s_max count as zero,
# so round-off directions of an (in exact arithmetic) low-rank gradient are not amplified to 1.
SPEC_TOL = 1e-10
# Quintic Newton-Schulz coefficients (a, b, c) of practical Muon: they push singular values in
# (0, 1] towards the band [0.68, 1.2] in five steps rather than converging exactly to 1.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
POLARS = ("svd", "ns", "polar_express")
# Normalised singular values x = s / ||G||_F >= BAND_LOWER are those a band statement covers
# (below it the classic quintic has not lifted x off 0 in five steps; torch Muon's docs quote
# the classic band from the same edge).
BAND_LOWER = 3e-3


def gd_direction(g: np.ndarray) -> np.ndarray:
    return g


def ngd_direction(g: np.ndarray) -> np.ndarray:
    """G / ||G||_F (zero at a stationary point); G: (..., k, d), one norm per matrix."""
    n = np.sqrt(np.sum(g * g, axis=(-2, -1), keepdims=True))
    return np.divide(g, n, out=np.zeros_like(g), where=n > 0)


def sign_direction(g: np.ndarray) -> np.ndarray:
    return np.sign(g)


def spectral_direction(g: np.ndarray, tol: float = SPEC_TOL) -> np.ndarray:
    """U V^T over the singular values s_i > tol * s_max of G (all kept singular values -> 1).

    G: (..., k, d); a stack is handled matrix by matrix (G = 0 gives 0).
    """
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    keep = s > tol * s[..., :1]
    return (u * keep[..., None, :]) @ vt


def ns_schedule(how: str, steps: int = NS_STEPS) -> tuple[tuple[float, float, float], ...]:
    """The (a_t, b_t, c_t) of each Newton-Schulz step: "ns" (classic) or "polar_express"."""
    if how == "ns":
        return (NS_COEFFS,) * steps
    if how == "polar_express":
        return polar_express_coefficients(steps)
    raise ValueError(f"Newton-Schulz coefficients must be 'ns' or 'polar_express', got {how!r}")


def newton_schulz(g: np.ndarray, steps: int = NS_STEPS, coeffs=NS_COEFFS) -> np.ndarray:
    """Approximate polar factor: X <- a X + (b A + c A^2) X with A = X X^T, from X = G / ||G||_F.

    coeffs: one (a, b, c) for every step or a sequence of `steps` of them (a per-step schedule).
    Works on the wide orientation (rows <= cols) so A is the smaller Gram matrix; G: (..., k, d).
    """
    schedule = [tuple(coeffs)] * steps if np.ndim(coeffs) == 1 else [tuple(p) for p in coeffs]
    if len(schedule) != steps or any(len(p) != 3 for p in schedule):
        raise ValueError(f"coeffs must be one (a, b, c) or {steps} of them, got {coeffs!r}")
    tall = g.shape[-2] > g.shape[-1]
    x = ngd_direction(np.swapaxes(g, -2, -1) if tall else g)
    for a, b, c in schedule:
        gram = x @ np.swapaxes(x, -2, -1)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return np.swapaxes(x, -2, -1) if tall else x


def composed_quintic(schedule, x: np.ndarray) -> np.ndarray:
    """What Newton-Schulz does to each normalised singular value x = s / ||G||_F (elementwise)."""
    for p in schedule:
        x = quintic(p, x)
    return x


def singular_value_band(how: str, lower: float = BAND_LOWER, n: int = 20001) -> tuple[float, float]:
    """[min, max] of the output singular values of polar `how` over inputs x in [lower, 1] (on a
    dense linear-plus-geometric grid); "svd" gives [1, 1]."""
    if how == "svd":
        return 1.0, 1.0
    if not 0 < lower < 1:
        raise ValueError(f"lower must be in (0, 1), got {lower}")
    x = np.unique(np.concatenate([np.geomspace(lower, 1.0, n), np.linspace(lower, 1.0, n)]))
    y = composed_quintic(ns_schedule(how), x)
    return float(y.min()), float(y.max())


DIRECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gd": gd_direction,
    "ngd": ngd_direction,
    "signgd": sign_direction,
    "specgd": spectral_direction,
}


def polar(g: np.ndarray, how: str) -> np.ndarray:
    """The polar factor of G by `how` in POLARS (exact truncated SVD or five Newton-Schulz steps)."""
    if how == "svd":
        return spectral_direction(g)
    if how in POLARS:
        return newton_schulz(g, NS_STEPS, ns_schedule(how))
    raise ValueError(f"polar must be one of {POLARS}, got {how!r}")


def muon_direction(g: np.ndarray, momentum: np.ndarray, beta: float, how: str = "ns") -> tuple[np.ndarray, np.ndarray]:
    """One Muon step's direction: M <- beta M + (1 - beta) G, then the polar factor of M (no
    Nesterov term, no shape scaling: the form the paper analyses). G, M: (..., k, d).
    Returns (direction, new momentum)."""
    momentum = beta * momentum + (1 - beta) * g
    return polar(momentum, how), momentum


def product_gradient(grad_of_w: Callable[[np.ndarray], np.ndarray]):
    """Turn a product-gradient function W -> G into a factors -> layer gradients function."""
    def grads(factors: list[np.ndarray]) -> list[np.ndarray]:
        return layer_grads(factors, grad_of_w(product(factors)))
    return grads


def run_discrete(grads: Callable, factors0: list[np.ndarray], method: str, lr: float, steps: int,
                 record: Callable[[list[np.ndarray]], np.ndarray], beta: float = 0.9,
                 how: str = "svd") -> np.ndarray:
    """Run `steps` updates of `method` ("gd", "ngd", "signgd", "specgd" or "muon") from factors0.

    grads(factors) -> list of layer gradients; record(factors) -> array saved at t = 0..steps.
    beta and how (polar: one of POLARS) apply to "muon" only. Returns (steps + 1, *record shape).
    """
    factors = [f.copy() for f in factors0]
    momentum = [np.zeros_like(f) for f in factors]
    out = [record(factors)]
    for _ in range(steps):
        gs = grads(factors)
        for i, g in enumerate(gs):
            if method == "muon":
                delta, momentum[i] = muon_direction(g, momentum[i], beta, how)
            elif method in DIRECTIONS:
                delta = DIRECTIONS[method](g)
            else:
                raise ValueError(f"unknown method {method!r}")
            factors[i] = factors[i] - lr * delta
        out.append(record(factors))
    return np.asarray(out)


FLOWS = {"gf": gd_direction, "ngf": ngd_direction, "specgf": spectral_direction}


def run_flow(grad_of_w: Callable[[np.ndarray], np.ndarray], w0: np.ndarray, flow: str,
             t_eval: np.ndarray, rtol: float = 1e-9, atol: float = 1e-12) -> np.ndarray:
    """Integrate dW/dt = -Delta(G(W)) for flow in {"gf", "ngf", "specgf"} (linear model W: (k, d)).

    SpecGF's right-hand side is discontinuous where a singular value of G crosses zero; on
    intervals where the rank of G is constant (e.g. (0, t*] of the theorems) it is smooth.
    Returns W(t) for every t in t_eval: (len(t_eval), k, d).
    """
    direction = FLOWS[flow]
    shape = w0.shape

    def rhs(_t, w_flat):
        return -direction(grad_of_w(w_flat.reshape(shape))).ravel()

    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), w0.ravel(), t_eval=t_eval, rtol=rtol, atol=atol,
                    method="RK45")
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed for {flow}: {sol.message}")
    return sol.y.T.reshape(len(t_eval), *shape)
