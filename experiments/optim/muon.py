"""Muon: momentum, then an (approximate) orthogonalisation of each hidden matrix's update.

Update, for each hidden matrix W: (rows, cols) (conv kernels viewed as (out, in*kh*kw)) with
gradient G and momentum buffer B (zero at start), mu = `momentum`:
    B <- mu B + (1 - mu) G                         (an exponential average)
    M <- (1 - mu) G + mu B   if nesterov else B
    O <- NS_5(M)  (orthogonalize="newton_schulz")   or   U V^T of M (orthogonalize="svd")
    W <- W (1 - lr * weight_decay) - lr * s(rows, cols) * O
NS_k: X = M / ||M||_F (transposed so that rows <= cols), then k times
    A = X X^T;  X <- a X + (b A + c A^2) X,   (a, b, c) = ns_coefficients,
three matrix products per iteration, 15 for the default 5 steps. It maps singular values into
about [0.7, 1.05], not exactly 1 (the SVD option gives exactly 1).
Shape scaling s: adjust_lr="original" (torch's default) sqrt(max(1, rows/cols));
"match_rms_adamw" 0.2 sqrt(max(rows, cols)) (Moonshot); "none" 1.
Defaults: momentum 0.95, nesterov True, ns_steps 5, ns_coefficients (3.4445, -4.7750, 2.0315),
ns_dtype "float32", weight_decay 0 -- NOTE torch.optim.Muon defaults weight_decay to 0.1; the
paper reproduction uses 0 unless a figure says otherwise.
Differences from torch.optim.Muon: Newton-Schulz runs in `ns_dtype` (float32 by default;
torch always uses bfloat16, which this CPU emulates slowly), an exact-SVD option, conv kernels
and an AdamW fallback group (matrix=False) instead of rejecting non-2-D parameters.
torch's docstring writes B <- mu B + g, its code (and this class) lerps: B <- mu B + (1 - mu) G;
the two differ by a factor (1 - mu) that the normalisation inside Newton-Schulz removes.
Reference: Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural networks".
"""
from __future__ import annotations

import math

import torch

from experiments.optim.distributed import matrix_cost
from experiments.optim.matrix_optimizer import MatrixOptimizer, check_unit_interval, work_dtype
from experiments.optim.param_groups import matrix_view
from experiments.optim.specgd import truncated_polar

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64,
             "float16": torch.float16}
ORTHOGONALIZERS = ("newton_schulz", "svd")
LR_ADJUSTMENTS = ("original", "match_rms_adamw", "none")
_NORM_EPS = 1e-7  # guards ||M||_F = 0 (a zero update stays zero)


def newton_schulz(M: torch.Tensor, steps: int = 5, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Quintic Newton-Schulz orthogonalisation of M: (m, n) in `dtype`; returns (m, n) in `dtype`."""
    a, b, c = coefficients
    X = M.to(dtype)
    wide = X.shape[0] <= X.shape[1]
    if not wide:
        X = X.T
    X = X / X.norm().clamp(min=_NORM_EPS)
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X if wide else X.T


def shape_scale(rows: int, cols: int, adjust_lr: str) -> float:
    """Muon's per-matrix lr multiplier (see module docstring)."""
    if adjust_lr == "original":
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


class Muon(MatrixOptimizer):
    """Muon(params, lr=0.02, momentum=0.95, nesterov=True, ...); matrix=False groups use AdamW."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, orthogonalize: str = "newton_schulz", ns_steps: int = 5,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS, ns_dtype: str = "float32",
                 adjust_lr: str = "original", rtol: float | None = None,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay, "orthogonalize": orthogonalize,
                                  "ns_steps": ns_steps, "ns_coefficients": tuple(ns_coefficients),
                                  "ns_dtype": ns_dtype, "adjust_lr": adjust_lr, "rtol": rtol,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})

    def _check_group(self, group: dict) -> None:
        check_unit_interval("momentum", group["momentum"])
        if group["orthogonalize"] not in ORTHOGONALIZERS:
            raise ValueError(f"orthogonalize must be one of {ORTHOGONALIZERS}, got {group['orthogonalize']!r}")
        if not (isinstance(group["ns_steps"], int) and 1 <= group["ns_steps"] < 100):
            raise ValueError(f"ns_steps must be an int in [1, 100), got {group['ns_steps']!r}")
        if len(group["ns_coefficients"]) != 3:
            raise ValueError(f"ns_coefficients must be (a, b, c), got {group['ns_coefficients']!r}")
        if group["ns_dtype"] not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {tuple(NS_DTYPES)}, got {group['ns_dtype']!r}")
        if group["adjust_lr"] not in LR_ADJUSTMENTS:
            raise ValueError(f"adjust_lr must be one of {LR_ADJUSTMENTS}, got {group['adjust_lr']!r}")
        if group["rtol"] is not None and not 0 <= group["rtol"] < 1:
            raise ValueError(f"rtol must be in [0, 1) or None, got {group['rtol']}")

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        mu = group["momentum"]
        buf = self._momentum(grad, state, mu)
        update = grad.lerp(buf, mu) if group["nesterov"] else buf
        M = matrix_view(update)
        if group["orthogonalize"] == "svd":
            return truncated_polar(M, group["rtol"])
        O = newton_schulz(M, group["ns_steps"], group["ns_coefficients"], NS_DTYPES[group["ns_dtype"]])
        return O.to(work_dtype(M))

    def _lr_scale(self, rows: int, cols: int, group: dict) -> float:
        return shape_scale(rows, cols, group["adjust_lr"])

    def _work_cost(self, rows: int, cols: int) -> float:
        return matrix_cost(rows, cols)
