"""Muon: momentum, then an (approximate) orthogonalisation of each hidden matrix's update.

Update, for each hidden matrix W: (rows, cols) (conv kernels viewed as (out, in*kh*kw)) with
gradient G and momentum buffer B (zero at start), mu = `momentum`:
    B <- mu B + (1 - mu) G                         (an exponential average)
    M <- (1 - mu) G + mu B   if nesterov else B
    O <- NS_k(M)  (orthogonalize="newton_schulz")   or   U V^T of M (orthogonalize="svd")
    W <- W (1 - lr * weight_decay) - lr * s(rows, cols) * O
NS_k: X = M / ||M||_F (transposed so that rows <= cols), then for t = 1..k
    A = X X^T;  X <- a_t X + (b_t A + c_t A^2) X,
three matrix products per iteration, 15 for the default 5 steps. Each singular value x of
M / ||M||_F goes through the quintics p_t(x) = a_t x + b_t x^3 + c_t x^5:
- ns_coefficients=(a, b, c) uses one quintic every step; the default (3.4445, -4.7750, 2.0315)
  (Jordan et al., torch's default) maximises the slope at 0. After 5 steps singular values
  x >= 3e-3 ||M||_F end in [0.68, 1.21] (x >= 1e-3: [0.471, 1.202]; smaller ones stay small):
  measured [0.68, 1.20] on random matrices of condition number 1e2 (`python -m
  experiments.ns_report`).
- ns_coefficients="polar_express": the per-step minimax quintics of Polar Express (Amsel et al.
  2025; derived in theory.polar_express): x >= 1e-3 ||M||_F end in [0.846, 1.124]
  after 5 steps; measured [0.87, 1.12] at condition number 1e2.
The norm is taken after an exact power-of-two rescaling, so gradients of any finite scale
(1e-30 or 1e30) give the same direction as a unit-scale one; M = 0 gives a zero update.
ns_dtype: the precision of the iteration. "auto" (default) is bfloat16 where the hardware
multiplies bfloat16 natively (CUDA; CPUs with avx512_bf16 or AMX) and float32 elsewhere, where
torch emulates bfloat16 products about 20x slower than float32; see `auto_ns_dtype` (the
environment variable PAPER_REPRO_NS_DTYPE=float32 or bfloat16 overrides the hardware; an optimizer
resolves "auto" once, at its first step). "float32",
"bfloat16", "float64", "float16" force one. On a CPU with native bfloat16, small matrices still
step faster in float32: there a bfloat16 product costs about 15 us even at 32x32 (measured: a
float32 step takes 0.28x auto's at 32x32, 0.41x at 64x64, about 1.1x at 128x128 and 1.8-2.1x from
256x256 up; `python -m experiments.ns_report --quick` prints where on your machine). "auto" stays
bfloat16 at every size, so that its numbers are torch.optim.Muon's.
Shape scaling s: adjust_lr="original" (torch's default) sqrt(max(1, rows/cols));
"match_rms_adamw" 0.2 sqrt(max(rows, cols)) (Moonshot); "none" 1.
Defaults: momentum 0.95, nesterov True, ns_steps 5, the classic ns_coefficients, ns_dtype
"auto", weight_decay 0 -- NOTE torch.optim.Muon defaults weight_decay to 0.1; the paper
reproduction uses 0 unless a figure says otherwise.
Differences from torch.optim.Muon: Newton-Schulz runs in `ns_dtype` (torch always uses
bfloat16; with ns_dtype="bfloat16" the two agree bit for bit), the norm cannot overflow or
underflow (torch's gives a zero update from gradient norms of about 1e19 and leaves norms below
its eps 1e-7 unnormalised), Polar Express and exact-SVD options, conv kernels and an AdamW
fallback group (matrix=False) instead of rejecting non-2-D parameters.
Cost: on a CPU one step launches torch.optim.Muon's kernels (the same 15 products, fused into
addmm as torch does) plus one sum for the gradient check, and skips torch's weight-decay multiply
(at weight_decay=0) and norm clamp; normalising reads the norm back to decide whether the exact
rescale is needed (free on a CPU). On accelerators the rescale always runs (no host sync), 6 more
small kernels per matrix.
torch's docstring writes B <- mu B + g, its code (and this class) lerps: B <- mu B + (1 - mu) G;
the two differ by a factor (1 - mu) that the normalisation inside Newton-Schulz removes.
Reference: Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural networks".
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from experiments import envvars
from experiments.optim.distributed import matrix_cost
from experiments.optim.matrix_optimizer import MatrixOptimizer, check_unit_interval, normalized
from experiments.optim.param_groups import matrix_view
from theory.polar_express import polar_express_coefficients
from experiments.optim.specgd import truncated_polar

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64,
             "float16": torch.float16}
ORTHOGONALIZERS = ("newton_schulz", "svd")
LR_ADJUSTMENTS = ("original", "match_rms_adamw", "none")
_NORM_EPS = 1e-7  # torch's, representable in every ns_dtype; only keeps 0 / 0 finite


def auto_ns_dtype(device_type: str) -> tuple[torch.dtype, str]:
    """The precision ns_dtype="auto" picks on `device_type` ("cpu", "cuda", ...), and why.

    Decided from the hardware's capabilities, never from timings, so the same machine always gives
    the same numbers; `PAPER_REPRO_NS_DTYPE=float32` (or `bfloat16`) overrides the hardware, so
    that two different machines can run the same numerics (bfloat16 forced on a CPU without native
    support is emulated by torch, about 20x slower)."""
    forced = envvars.forced_ns_dtype()
    if forced is not None:
        return NS_DTYPES[forced], f"set by {envvars.NS_DTYPE_ENV}={forced}"
    return hardware_ns_dtype(device_type)


@lru_cache(maxsize=None)
def hardware_ns_dtype(device_type: str) -> tuple[torch.dtype, str]:
    """The hardware's own choice for ns_dtype="auto" (what auto_ns_dtype returns unless overridden)."""
    if device_type == "cuda":
        return torch.bfloat16, "CUDA multiplies bfloat16 natively"
    if device_type == "cpu":
        native = [name for name, check in (("avx512_bf16", "_is_avx512_bf16_supported"),
                                           ("AMX", "_is_amx_tile_supported"))
                  if getattr(torch.cpu, check, lambda: False)()]
        if native:
            return torch.bfloat16, f"this CPU multiplies bfloat16 natively ({', '.join(native)})"
        return torch.float32, "this CPU has no native bfloat16 multiply (torch would emulate it, ~20x slower)"
    return torch.float32, f"no bfloat16 rule for device type {device_type!r}; float32 is safe"


def resolve_ns_dtype(ns_dtype: str, device: torch.device) -> torch.dtype:
    """torch dtype for an ns_dtype name; "auto" resolves per device type (see auto_ns_dtype)."""
    if ns_dtype == "auto":
        return auto_ns_dtype(device.type)[0]
    return NS_DTYPES[ns_dtype]


def ns_schedule(coefficients: tuple[float, float, float] | str, steps: int) -> tuple[tuple[float, float, float], ...]:
    """The (a_t, b_t, c_t) of each of `steps` iterations for an ns_coefficients setting."""
    if coefficients == "polar_express":
        return polar_express_coefficients(steps)
    return (tuple(coefficients),) * steps


def newton_schulz(M: torch.Tensor, steps: int = 5,
                  coefficients: tuple[float, float, float] | Sequence[tuple[float, float, float]] = NS_COEFFICIENTS,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Quintic Newton-Schulz orthogonalisation of M: (m, n) in `dtype`; returns (m, n) in `dtype`.

    `coefficients` is one (a, b, c) for every step or a sequence of `steps` of them."""
    schedule = list(coefficients) if isinstance(coefficients[0], Sequence) else [coefficients] * steps
    if len(schedule) != steps:
        raise ValueError(f"got {len(schedule)} per-step coefficients for {steps} steps")
    X, _ = normalized(M, dtype, _NORM_EPS)
    wide = X.shape[0] <= X.shape[1]
    if not wide:
        X = X.T
    for a, b, c in schedule:
        A = torch.mm(X, X.T)
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
                 ns_coefficients: tuple[float, float, float] | str = NS_COEFFICIENTS, ns_dtype: str = "auto",
                 adjust_lr: str = "original", rtol: float | None = None,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay, "orthogonalize": orthogonalize,
                                  "ns_steps": ns_steps,
                                  "ns_coefficients": ns_coefficients if isinstance(ns_coefficients, str)
                                  else tuple(ns_coefficients),
                                  "ns_dtype": ns_dtype, "adjust_lr": adjust_lr, "rtol": rtol,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})
        self._ns_dtypes: dict[tuple[str, str], torch.dtype] = {}  # (ns_dtype, device type) -> dtype

    def _check_group(self, group: dict) -> None:
        check_unit_interval("momentum", group["momentum"])
        if group["orthogonalize"] not in ORTHOGONALIZERS:
            raise ValueError(f"orthogonalize must be one of {ORTHOGONALIZERS}, got {group['orthogonalize']!r}")
        if not (isinstance(group["ns_steps"], int) and 1 <= group["ns_steps"] < 100):
            raise ValueError(f"ns_steps must be an int in [1, 100), got {group['ns_steps']!r}")
        coefficients = group["ns_coefficients"]
        if isinstance(coefficients, str):
            if coefficients != "polar_express":
                raise ValueError(f"ns_coefficients must be (a, b, c) or 'polar_express', got {coefficients!r}")
        elif len(coefficients) != 3 or not all(math.isfinite(x) for x in coefficients):
            raise ValueError(f"ns_coefficients must be (a, b, c) finite or 'polar_express', got {coefficients!r}")
        if group["ns_dtype"] != "auto" and group["ns_dtype"] not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be 'auto' or one of {tuple(NS_DTYPES)}, got {group['ns_dtype']!r}")
        if group["adjust_lr"] not in LR_ADJUSTMENTS:
            raise ValueError(f"adjust_lr must be one of {LR_ADJUSTMENTS}, got {group['adjust_lr']!r}")
        if group["rtol"] is not None and not 0 <= group["rtol"] < 1:
            raise ValueError(f"rtol must be in [0, 1) or None, got {group['rtol']}")

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        mu = group["momentum"]
        buf = self._momentum(grad, state, mu)
        update = grad.lerp(buf, mu) if group["nesterov"] else buf
        M = matrix_view(update)
        if group["orthogonalize"] == "svd":
            return truncated_polar(M, group["rtol"]), 1.0
        # O stays in ns_dtype: the step adds it to the parameter directly, as torch.optim.Muon does
        return newton_schulz(M, group["ns_steps"], ns_schedule(group["ns_coefficients"], group["ns_steps"]),
                             self._ns_dtype(group["ns_dtype"], M.device)), 1.0

    def _ns_dtype(self, ns_dtype: str, device: torch.device) -> torch.dtype:
        """ns_dtype as a torch dtype, resolved once per device type for this optimizer: "auto" is
        fixed at its first step (a run keeps one precision, and a step reads no environment)."""
        key = (ns_dtype, device.type)
        dtype = self._ns_dtypes.get(key)
        if dtype is None:
            dtype = self._ns_dtypes[key] = resolve_ns_dtype(ns_dtype, device)
        return dtype

    def _lr_scale(self, rows: int, cols: int, group: dict) -> float:
        return shape_scale(rows, cols, group["adjust_lr"])

    def _work_cost(self, rows: int, cols: int) -> float:
        return matrix_cost(rows, cols)
