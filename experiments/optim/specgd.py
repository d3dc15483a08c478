"""SpecGD: spectral gradient descent, the exact-SVD reference for every spectral method.

Update, for each hidden matrix W: (rows, cols) with gradient G = U S V^T (thin SVD):
    W <- W (1 - lr * weight_decay) - lr * U_r V_r^T
where U_r, V_r keep the singular directions with s_i > rtol * s_max (rtol defaults to
max(rows, cols) * float32 machine epsilon, numpy/torch's matrix_rank convention), so numerically
zero directions of a rank-deficient gradient get no step. No momentum (Muon with momentum 0 and
orthogonalize="svd" is the same step). Defaults: weight_decay 0. Parameters in matrix=False
groups get AdamW (see experiments.optim.matrix_optimizer).
Reference: Vasudeva et al. 2025 (arXiv 2510.22980), Sec. 3 ("SpecGD"); Carlson et al. 2015.
"""
from __future__ import annotations

import torch

from experiments.optim.distributed import matrix_cost
from experiments.optim.matrix_optimizer import MatrixOptimizer, work_dtype
from experiments.optim.param_groups import matrix_view


def truncated_polar(G: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """U_r V_r^T of G: (m, n) by exact SVD in at least float32; zeros for G = 0.

    Singular values s_i <= rtol * s_max are dropped; rtol=None means max(m, n) * eps(float32)."""
    X = G.to(work_dtype(G))
    if rtol is None:
        rtol = max(X.shape) * torch.finfo(torch.float32).eps
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    # A mask instead of boolean indexing keeps the rank decision on the device (no host sync).
    keep = (S > rtol * S[0]).to(X.dtype)
    return (U * keep) @ Vh


class SpecGD(MatrixOptimizer):
    """SpecGD(params, lr=1e-3, rtol=None, weight_decay=0.0); matrix=False groups use AdamW."""

    def __init__(self, params, lr: float = 1e-3, rtol: float | None = None, weight_decay: float = 0.0,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "rtol": rtol, "weight_decay": weight_decay,
                                  "adamw_betas": adamw_betas, "adamw_eps": adamw_eps})

    def _check_group(self, group: dict) -> None:
        if group["rtol"] is not None and not 0 <= group["rtol"] < 1:
            raise ValueError(f"rtol must be in [0, 1) or None, got {group['rtol']}")

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        return truncated_polar(matrix_view(grad), group["rtol"]), 1.0

    def _work_cost(self, rows: int, cols: int) -> float:
        return matrix_cost(rows, cols)
