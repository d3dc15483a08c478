"""SPlus: sign descent in the cached eigenbasis of Shampoo's statistics, with shape-scaled lr and
an EMA of the weights for evaluation.

For a matrix parameter W: (m, n) (conv kernels viewed as (out, in*kh*kw) when conv_as_matrix)
with gradient G, at step t (per parameter, from 1), betas = (b1, b2):
    M <- b1 M + (1 - b1) G
    U <- Q_L sign(Q_L^T M Q_R) Q_R^T                     (Q_L, Q_R CACHED, identities at start)
    L <- b2 L + (1 - b2) G G^T;   R <- b2 R + (1 - b2) G^T G
    if t == 1 or t % inverse_steps == 0:  Q_L, Q_R <- eigenvectors of L + eps I, R + eps I
    W <- W - lr * 2/(m+n) * U
    E <- ema_rate E + (1 - ema_rate) W                   (E = 0 at start)
    W <- W (1 - lr * 2/(m+n) * weight_decay)             (decoupled, after the EMA, as upstream)
A side of size >= max_dim gets no factor (its Q is the identity and no statistic is kept), and
such a matrix is scaled like a non-matrix parameter. Non-matrix parameters (ndim < 2, and conv
kernels when conv_as_matrix=False) take W <- W - lr * nonstandard_constant * sign(M), the same
EMA, and weight decay scaled by lr * nonstandard_constant. SPlus handles every parameter itself
(no AdamW fallback): embeddings and heads are matrices to it, as in the paper.
eval() swaps in the bias-corrected EMA E / (1 - ema_rate^t), train() swaps the training weights
back; step() refuses to run in eval mode. eval() before the first step leaves the weights alone.
Nonstandard layers: a param group with "nonstandard": True is stepped like non-matrix parameters
whatever its shape (the paper's treatment of input and output layers: embeddings, the head, an
input layer; the registry's nonstandard_layers=True builds that group, see
experiments.optim.param_groups.split_nonstandard). Default False: every matrix is rotated.
In a multi-process run eval() and train() are collective (experiments.optim.distributed).
Defaults: lr 0.1, betas (0.9, 0.999) (the paper's runs use b2 = 0.95), weight_decay 0.01,
ema_rate 0.999, inverse_steps 100, nonstandard_constant 1e-3, max_dim 10000, eps 1e-30.
shape_scaling=False drops the 2/(m+n) factor (matrices step by lr itself; the lr-transfer
ablation of the paper's figure on width).
State tensors keep the parameter dtype; products and eigh run in at least float32.
Differences from pytorch_optimizer.SPlus (== the official torch code): conv kernels are matrices
by default (upstream: sign(M) * 1e-3), the step counter is per parameter (identical when every
parameter gets a gradient every step), a side of exactly max_dim counts as too large for the
lr scale too, eval() before step 1 does not raise, and the closure runs under enable_grad.
Reference: Frans, Levine, Abbeel 2025, "A Stable Whitening Optimizer for Efficient Neural
Network Training" (github kvfrans/splus).
"""
from __future__ import annotations

import torch

from experiments.optim.checks import CheckedOptimizer, check_unit_interval
from experiments.optim.distributed import RankSharding, kronecker_cost
from experiments.optim.matrix_optimizer import work_dtype
from experiments.optim.param_groups import matrix_view


def eigenbasis(S: torch.Tensor, eps: float) -> torch.Tensor:
    """Eigenvectors (columns) of the symmetric S + eps I: (d, d), eigenvalues discarded."""
    X = S.to(work_dtype(S))
    return torch.linalg.eigh(X + eps * torch.eye(X.shape[0], dtype=X.dtype, device=X.device))[1]


def rotated_sign(M: torch.Tensor, QL: torch.Tensor | None, QR: torch.Tensor | None) -> torch.Tensor:
    """Q_L sign(Q_L^T M Q_R) Q_R^T for M: (m, n), Q_L: (m, m), Q_R: (n, n); None = identity."""
    if QL is not None:
        M = QL.T @ M
    if QR is not None:
        M = M @ QR
    U = torch.sign(M)
    if QL is not None:
        U = QL @ U
    if QR is not None:
        U = U @ QR.T
    return U


class SPlus(CheckedOptimizer):
    """SPlus(params, lr=0.1, betas=(0.9, 0.999), weight_decay=0.01, ...)."""

    def __init__(self, params, lr: float = 0.1, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.01, ema_rate: float = 0.999, inverse_steps: int = 100,
                 nonstandard_constant: float = 1e-3, max_dim: int = 10000, eps: float = 1e-30,
                 conv_as_matrix: bool = True, shape_scaling: bool = True):
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay, "ema_rate": ema_rate,
                    "inverse_steps": inverse_steps, "nonstandard_constant": nonstandard_constant,
                    "max_dim": max_dim, "eps": eps, "conv_as_matrix": conv_as_matrix, "shape_scaling": shape_scaling,
                    "nonstandard": False, "train_mode": True}
        super().__init__(params, defaults)
        self._shard = RankSharding(self, self._item_cost)

    def _validate_group(self, g: dict) -> None:
        if not g["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {g['lr']}")
        check_unit_interval("betas[0]", g["betas"][0])
        check_unit_interval("betas[1]", g["betas"][1])
        check_unit_interval("ema_rate", g["ema_rate"])
        for key in ("weight_decay", "nonstandard_constant", "eps"):
            if not g[key] >= 0:
                raise ValueError(f"{key} must be >= 0, got {g[key]}")
        for key in ("inverse_steps", "max_dim"):
            if not (isinstance(g[key], int) and g[key] >= 1):
                raise ValueError(f"{key} must be a positive int, got {g[key]!r}")

    @staticmethod
    def _is_matrix(p: torch.Tensor, group: dict) -> bool:
        return not group["nonstandard"] and (p.ndim == 2 or (p.ndim > 2 and group["conv_as_matrix"]))

    def _item_cost(self, p: torch.Tensor, group: dict) -> float | None:
        """Eigendecompositions and rotations of a matrix, for the split across processes; the
        elementwise sign step of a non-matrix parameter stays on every rank (None)."""
        if not self._is_matrix(p, group):
            return None
        m, n = matrix_view(p).shape
        return kronecker_cost([d if d < group["max_dim"] else None for d in (m, n)], m * n, group["inverse_steps"])

    def _init_state(self, p: torch.Tensor, state: dict, group: dict) -> None:
        state["step"] = 0
        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["ema"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if self._is_matrix(p, group):
            m, n = matrix_view(p).shape
            opts = {"dtype": p.dtype, "device": p.device}
            if m < group["max_dim"]:
                state["L"] = torch.zeros(m, m, **opts)
                state["QL"] = torch.eye(m, **opts)
            if n < group["max_dim"]:
                state["R"] = torch.zeros(n, n, **opts)
                state["QR"] = torch.eye(n, **opts)

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        shape = tuple(p.shape)
        shapes = {"momentum": shape, "ema": shape, "param_buffer": shape}
        if self._is_matrix(p, group):
            m, n = matrix_view(p).shape
            shapes.update(L=(m, m), QL=(m, m), R=(n, n), QR=(n, n))
        return shapes

    def _scaled_lr(self, p: torch.Tensor, group: dict) -> float:
        if self._is_matrix(p, group):
            m, n = matrix_view(p).shape
            if m < group["max_dim"] and n < group["max_dim"]:
                return group["lr"] * 2.0 / (m + n) if group["shape_scaling"] else group["lr"]
        return group["lr"] * group["nonstandard_constant"]

    def step(self, closure=None):
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError("SPlus.step() called in eval mode (EMA weights swapped in); call train() first")
        return super().step(closure)

    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        b1 = group["betas"][0]
        for p in params:
            state = self.state[p]
            if not state:
                self._init_state(p, state, group)
            state["step"] += 1
            grad, mom = p.grad, state["momentum"]
            mom.lerp_(grad, 1 - b1)
            if self._is_matrix(p, group):
                update = self._matrix_update(matrix_view(grad), matrix_view(mom), state, group)
                update = update.to(p.dtype).view_as(p)
            else:
                update = torch.sign(mom)
            scaled_lr = self._scaled_lr(p, group)
            p.add_(update, alpha=-scaled_lr)
            state["ema"].lerp_(p, 1 - group["ema_rate"])
            if group["weight_decay"]:
                p.mul_(1 - scaled_lr * group["weight_decay"])

    @staticmethod
    def _matrix_update(G: torch.Tensor, M: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        dt = work_dtype(G)
        G, M = G.to(dt), M.to(dt)
        QL = state["QL"].to(dt) if "QL" in state else None
        QR = state["QR"].to(dt) if "QR" in state else None
        update = rotated_sign(M, QL, QR)
        b2 = group["betas"][1]
        if "L" in state:
            state["L"].lerp_((G @ G.T).to(state["L"].dtype), 1 - b2)
        if "R" in state:
            state["R"].lerp_((G.T @ G).to(state["R"].dtype), 1 - b2)
        t = state["step"]
        if t == 1 or t % group["inverse_steps"] == 0:
            for side, Q in (("L", "QL"), ("R", "QR")):
                if side in state:
                    state[Q].copy_(eigenbasis(state[side], group["eps"]))
        return update

    @torch.no_grad()
    def eval(self) -> None:
        """Swap in the bias-corrected EMA weights (parameters never stepped are left as they are)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                continue
            for p in group["params"]:
                state = self.state[p]
                if state.get("step", 0) > 0:
                    state["param_buffer"] = p.clone()
                    p.copy_(state["ema"]).mul_(1.0 / (1 - group["ema_rate"] ** state["step"]))
            group["train_mode"] = False
        self._shard.sync()

    @torch.no_grad()
    def train(self) -> None:
        """Swap the training weights back in."""
        for group in self.param_groups:
            if group["train_mode"]:
                continue
            for p in group["params"]:
                state = self.state[p]
                if "param_buffer" in state:
                    p.copy_(state.pop("param_buffer"))
            group["train_mode"] = True
        self._shard.sync()
