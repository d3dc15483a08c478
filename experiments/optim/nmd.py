"""NMD: normalised momentum descent, the Euclidean (Frobenius) counterpart of Muon.

Update, for each hidden matrix W with gradient G and momentum buffer M (zero at start):
    M <- mu M + (1 - mu) G                       (mu = `momentum`, an exponential average)
    W <- W (1 - lr * weight_decay) - lr * M / ||M||_F      (per matrix; M = 0 gives no move)
Defaults: momentum 0.9, weight_decay 0. Parameters in matrix=False groups get AdamW (see
experiments.optim.matrix_optimizer). With momentum 0 this is NGD, G / ||G||_F. The norm is
taken after an exact power-of-two rescaling where a plain norm could over- or underflow
(experiments.optim.matrix_optimizer.normalized), so the step has length lr for
any finite scale of M (a plain float32 norm overflows from |M| ~ 1e19 and underflows below ~1e-20).
Reference: Vasudeva et al. 2025 (arXiv 2510.22980), the NMD baseline of the colored-digits study.
"""
from __future__ import annotations

import torch

from experiments.optim.matrix_optimizer import MatrixOptimizer, check_unit_interval, normalized
from experiments.optim.param_groups import matrix_view

class NMD(MatrixOptimizer):
    """NMD(params, lr=1e-3, momentum=0.9, weight_decay=0.0); matrix=False groups use AdamW."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})

    def _check_group(self, group: dict) -> None:
        check_unit_interval("momentum", group["momentum"])

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        # the step scales M itself where it can: no normalised copy
        return normalized(matrix_view(self._momentum(grad, state, group["momentum"])), scale=True)
