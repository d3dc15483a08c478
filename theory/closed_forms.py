"""Closed-form trajectories of the population linear / deep linear model in the shared basis.

All functions act elementwise on per-class arrays s_xx, s_yx, alpha_star: (..., k) and return
alpha_c(t) broadcast against t (a scalar or an array of shape (T, 1, ...) as the caller needs).
Exact for W(0) = 0 (linear) or the aligned, balanced init of scale eps (deep), squared loss:

    GD, discrete:    alpha_c(t) = alpha*_c (1 - (1 - lr s_xx[c])^t)
    GF:              alpha_c(t) = alpha*_c (1 - exp(-s_xx[c] t))
    SpecGD, depth L: every factor's diagonal a_c moves by lr per step towards alpha*_c^(1/L):
                     a_c(t) = eps + lr n_c(t), alpha_c = a_c^L, with n_c(t) = t up to the
                     overshoot step T_c = ceil((alpha*_c^(1/L) - eps) / lr) and afterwards
                     alternating T_c, T_c - 1, T_c, ... (the sign step bounces across alpha*_c).
    SpecGF:          alpha_c(t) = min(t, alpha*_c) (it slides along alpha*_c once there).
    Saturation time: t_c = (alpha*_c^(1/L) - eps) / lr: the MINORITY class saturates first.
    DeltaT(L) = t_M / t_m - 1 (eps = 0) = ((SNR + 1/p_m) / (SNR + 1/p_M))^(1/L) - 1.
"""
from __future__ import annotations

import numpy as np


def gd_discrete(s_xx, s_yx, lr: float, t):
    """GD from W = 0: alpha*(1 - (1 - lr s_xx)^t)."""
    s_xx, s_yx = np.asarray(s_xx, float), np.asarray(s_yx, float)
    return s_yx / s_xx * (1.0 - (1.0 - lr * s_xx) ** t)


def gd_flow(s_xx, s_yx, t):
    """Gradient flow from W = 0: alpha*(1 - exp(-s_xx t))."""
    s_xx, s_yx = np.asarray(s_xx, float), np.asarray(s_yx, float)
    return s_yx / s_xx * (1.0 - np.exp(-s_xx * t))


def saturation_time(alpha_star, lr: float, depth: int = 1, eps: float = 0.0):
    """Real-valued saturation step (alpha*^(1/L) - eps) / lr of layer-wise SpecGD."""
    return (np.asarray(alpha_star, float) ** (1.0 / depth) - eps) / lr


def spec_discrete(alpha_star, lr: float, t, depth: int = 1, eps: float = 0.0):
    """Layer-wise SpecGD (linear: depth = 1, eps = 0) from the aligned balanced init, exact.

    Before the overshoot step T_c every class follows (eps + lr t)^L, the same curve for all
    classes; after it the factor diagonal alternates between eps + lr T_c and eps + lr (T_c - 1).
    """
    t = np.asarray(t)
    overshoot = np.ceil(saturation_time(alpha_star, lr, depth, eps))
    after = t > overshoot
    n = np.where(after, overshoot - ((t - overshoot) % 2), t)
    return (eps + lr * n) ** depth


def spec_flow(alpha_star, t):
    """SpecGF from W = 0: alpha_c(t) = min(t, alpha*_c)."""
    return np.minimum(t, np.asarray(alpha_star, float))


def delta_t(snr: float, p_minor: float, p_major: float, depth):
    """Relative gap t_M / t_m - 1 of majority vs minority saturation times (eps = 0)."""
    return ((snr + 1.0 / p_minor) / (snr + 1.0 / p_major)) ** (1.0 / np.asarray(depth, float)) - 1.0
