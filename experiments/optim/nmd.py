"""NMD: normalised momentum descent, the Euclidean (Frobenius) counterpart of Muon.

Update, for each hidden matrix W with gradient G and momentum buffer M (zero at start):
    M <- mu M + (1 - mu) G                       (mu = `momentum`, an exponential average)
    W <- W (1 - lr * weight_decay) - lr * M / ||M||_F      (per matrix; M = 0 gives no move)
Defaults: momentum 0.9, weight_decay 0. Parameters in matrix=False groups get AdamW (see
experiments.optim.matrix_optimizer). With momentum 0 this is NGD, G / ||G||_F. The norm is
taken after an exact power-of-two rescaling (`unit_rescale`), so the step has length lr for
any finite scale of M (a plain float32 norm overflows from |M| ~ 1e19 and underflows below ~1e-20).
Reference: Vasudeva et al. 2025 (arXiv 2510.22980), the NMD baseline of the colored-digits study.
"""
from __future__ import annotations

import math

import torch

from experiments.optim.matrix_optimizer import MatrixOptimizer, check_unit_interval, work_dtype
from experiments.optim.param_groups import matrix_view

_NORM_EPS = 1e-30  # only keeps 0 / 0 from becoming NaN (a rescaled nonzero M has norm >= 0.5)
# Norms in this range come out of a plain norm as exactly as after unit_rescale: no square can
# overflow, and entries small enough to underflow are below 2^-90 of the norm.
_PLAIN_NORMS = (2.0 ** -32, 2.0 ** 32)


def unit_rescale(M: torch.Tensor) -> torch.Tensor:
    """M * 2^-e in at least float32, e the binary exponent of max|M|, so max|result| is in [0.5, 1)
    (in [2^-23, 1) for subnormal M).

    Scaling by a power of two is exact, so a norm taken afterwards neither overflows (float32
    squares overflow from |M| ~ 1e19) nor underflows (|M| ~ 1e-20) and M / ||M|| keeps its bits;
    M = 0 stays 0."""
    X = M.to(work_dtype(M))
    if X.numel() == 0:
        return X
    _, exponent = torch.frexp(X.abs().amax())
    # 2^-exponent must stay finite for subnormal M (with the clamp max|result| >= 2^-23)
    exponent = exponent.clamp(min=math.frexp(torch.finfo(X.dtype).tiny)[1] - 1)
    # one 0-dim power of two times X: torch.ldexp(X, -exponent) is exact too but ~20x slower
    return X * torch.ldexp(torch.ones((), dtype=X.dtype, device=X.device), -exponent)


def plain_norm(X: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """||X||_F (a 0-dim tensor, and its value) where normalising by it needs no rescaling: X on a CPU (reading
    the value back to decide is free there; on an accelerator it would stall the queue), its dtype
    with float32's exponent range (not float16), and the norm in [2^-32, 2^32]. None otherwise:
    then normalise after `unit_rescale`. Saves the rescale's six small kernels and a full copy,
    which dominate the step of small matrices."""
    if X.device.type != "cpu" or X.dtype == torch.float16 or X.numel() == 0:
        return None
    n = torch.linalg.vector_norm(X)
    value = n.item()
    return (n, value) if _PLAIN_NORMS[0] <= value <= _PLAIN_NORMS[1] else None


def frobenius_normalize(M: torch.Tensor) -> torch.Tensor:
    """M / ||M||_F in at least float32, for any finite scale of M; zeros for M = 0."""
    X = unit_rescale(M)
    return X / X.norm().clamp(min=_NORM_EPS)


class NMD(MatrixOptimizer):
    """NMD(params, lr=1e-3, momentum=0.9, weight_decay=0.0); matrix=False groups use AdamW."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})

    def _check_group(self, group: dict) -> None:
        check_unit_interval("momentum", group["momentum"])

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        M = matrix_view(self._momentum(grad, state, group["momentum"]))
        norm = plain_norm(M)
        if norm is None:
            return frobenius_normalize(M), 1.0
        return M, 1.0 / norm[1]  # the step scales M itself: no normalised copy
