"""Signum: sign of the momentum, the entrywise (max-norm) counterpart of Muon.

Update, for each hidden matrix W with gradient G and momentum buffer M (zero at start):
    M <- mu M + (1 - mu) G                       (mu = `momentum`, an exponential average)
    W <- W (1 - lr * weight_decay) - lr * sign(M)          (sign(0) = 0)
Defaults: momentum 0.9, weight_decay 0. Parameters in matrix=False groups get AdamW (see
experiments.optim.matrix_optimizer), like the other matrix methods, so that Muon, NMD and
Signum differ only on the hidden matrices. With momentum 0 this is SignGD.
Reference: Bernstein et al. 2018, "signSGD: compressed optimisation for non-convex problems".
"""
from __future__ import annotations

import torch

from experiments.optim.matrix_optimizer import MatrixOptimizer, check_unit_interval
from experiments.optim.param_groups import matrix_view


class Signum(MatrixOptimizer):
    """Signum(params, lr=1e-3, momentum=0.9, weight_decay=0.0); matrix=False groups use AdamW."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})
        # sign(M) is written into one reused buffer per (shape, dtype, device): a fresh tensor every
        # step costs page faults at each allocation (about 1000 per step for a 1024 x 1024 float32
        # matrix). The step consumes the direction before the next parameter's is computed, so
        # same-shaped parameters share a buffer; it is scratch, not state (no state_dict entry).
        self._sign_buffers: dict[tuple, torch.Tensor] = {}

    def _check_group(self, group: dict) -> None:
        check_unit_interval("momentum", group["momentum"])

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        M = matrix_view(self._momentum(grad, state, group["momentum"]))
        key = (M.shape, M.dtype, M.device)
        out = self._sign_buffers.get(key)
        if out is None:
            out = self._sign_buffers[key] = torch.empty_like(M, memory_format=torch.contiguous_format)
        return torch.sign(M, out=out), 1.0
