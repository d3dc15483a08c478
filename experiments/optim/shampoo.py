"""Shampoo (Gupta, Koren and Singer 2018) in its order-k tensor form, with the knobs later papers use.

For a parameter of order k (a matrix: k = 2; a bias: k = 1; a conv kernel: k = 4) with gradient
G_t, at step t:

    m_t = momentum m_{t-1} + (1 - momentum) G_t,   M_t = m_t / (1 - momentum^t)  (M_t = G_t if momentum = 0)
    H_j <- beta H_j + (1 - beta) G_(j) G_(j)^T    (beta = 1: running sum H_j <- H_j + G_(j) G_(j)^T, the original)
    R_j = (H_j / (1 - beta^t) + eps I)^(-1/(2k))  recomputed every `precondition_frequency` steps, cached between
    D_t = M_t x_1 R_1 x_2 R_2 ... x_k R_k          (L^(-1/4) M R^(-1/4) for a matrix)
    grafting "adam": v <- b2 v + (1 - b2) G_t^2, A_t = M_t / (sqrt(v / (1 - b2^t)) + graft_eps),
                     D_t <- D_t ||A_t|| / ||D_t||;   "sgd": D_t <- D_t ||M_t|| / ||D_t||;   "none": D_t as is
    before start_preconditioning_step the step is the graft direction itself (A_t, or M_t)
    p <- p (1 - lr weight_decay) - lr D_t

The (1 - beta^t) bias correction of the statistics applies only to the moving average (beta < 1).
Statistics always use the raw gradient; the preconditioner and the graft act on the momentum M_t
(the "filtered gradient" of Distributed Shampoo), so Shampoo that never preconditions with Adam
grafting is exactly torch Adam. A mode longer than `max_precond_dim` gets no factor (identity on
that mode; the other modes keep the exponent -1/(2k)): that is how embeddings and output heads with
a vocabulary-sized side are handled. The inverse roots (`precondition_frequency` > 1) are stale in
between, which is the failure the SPlus paper shows for long cache intervals.

Differences from the original: the original is beta = 1, H_j starting at eps I, inverse roots every
step, no grafting, and heavy-ball momentum; with momentum = 0 this class in that configuration
equals pytorch_optimizer.Shampoo (tested to float64 rounding). Matrix work in float32 (float64
for float64 parameters), eigh retried in float64, CurvatureError if a factor is non-finite.
"""
from __future__ import annotations

import torch

from experiments.optim.checks import CheckedOptimizer, check_count
from experiments.optim.distributed import RankSharding, kronecker_cost
from experiments.optim.foreach import FlatCache, FlatLayout, decoupled_step
from experiments.optim.kronecker import (StackCache, accumulate_contraction_batch, compute_dtype, inverse_root,
                                         precondition_batch)

GRAFTING = ("none", "sgd", "adam")


class Shampoo(CheckedOptimizer):
    """Tensor Shampoo with cached inverse roots, optional grafting, momentum and decoupled weight decay.

    Defaults are the original algorithm (running-sum statistics, roots every step, no grafting, no
    momentum); the registry entry "shampoo" sets the practical configuration used by the figures.
    """

    _split_by_compute_dtype = True
    _state_in_compute_dtype = True

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, beta: float = 1.0,
                 eps: float = 1e-6, precondition_frequency: int = 1, start_preconditioning_step: int = 1,
                 grafting: str = "none", graft_beta2: float = 0.999, graft_eps: float = 1e-8,
                 weight_decay: float = 0.0, max_precond_dim: int = 4096):
        defaults = dict(lr=lr, momentum=momentum, beta=beta, eps=eps,
                        precondition_frequency=precondition_frequency,
                        start_preconditioning_step=start_preconditioning_step, grafting=grafting,
                        graft_beta2=graft_beta2, graft_eps=graft_eps, weight_decay=weight_decay,
                        max_precond_dim=max_precond_dim)
        super().__init__(params, defaults)
        self._shard = RankSharding(self, self._item_cost)
        self._stacks = StackCache()
        self._flats = FlatCache()

    @staticmethod
    def _item_cost(p: torch.Tensor, group: dict) -> float:
        """Work of p's factors and preconditioning, for the split across processes."""
        shape = p.shape if p.dim() > 0 else (1,)
        return kronecker_cost([d if d <= group["max_precond_dim"] else None for d in shape], p.numel(),
                              group["precondition_frequency"])

    def _validate_group(self, g: dict) -> None:
        if not g["lr"] > 0:
            raise ValueError(f"lr must be positive, got {g['lr']}")
        if not 0.0 <= g["momentum"] < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {g['momentum']}")
        if not 0.0 < g["beta"] <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {g['beta']}")
        if g["grafting"] not in GRAFTING:
            raise ValueError(f"grafting must be one of {GRAFTING}, got {g['grafting']!r}")
        if not 0.0 <= g["graft_beta2"] < 1.0:
            raise ValueError(f"graft_beta2 must be in [0, 1), got {g['graft_beta2']}")
        for key in ("eps", "graft_eps"):
            if not g[key] > 0:
                raise ValueError(f"{key} must be positive, got {g[key]}")
        if not g["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {g['weight_decay']}")
        for key in ("precondition_frequency", "start_preconditioning_step", "max_precond_dim"):
            check_count(key, g[key])

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        shape = tuple(p.shape) if p.dim() > 0 else (1,)
        factors = [None if d > group["max_precond_dim"] else (d, d) for d in shape]
        return {"momentum_buffer": shape, "graft_sq": shape, "factors": factors, "roots": factors}

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            dt = compute_dtype(p.dtype)
            shape = p.shape if p.dim() > 0 else (1,)
            state["step"] = 0
            state["factors"] = [None if d > group["max_precond_dim"] else
                                torch.zeros(d, d, dtype=dt, device=p.device) for d in shape]
            state["roots"] = [None] * len(shape)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros(shape, dtype=dt, device=p.device)
            if group["grafting"] == "adam":
                state["graft_sq"] = torch.zeros(shape, dtype=dt, device=p.device)
        return state

    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        """One step of `params` (one compute dtype and device: CheckedOptimizer.step splits a group
        so): the elementwise work (momentum, Adam graft) as single kernels on flat buffers, the
        matrix work as one batched kernel per mode over each set of same-shaped parameters at the
        same step count (a CNN has dozens of small kernels and norm vectors of a few shapes), each
        a view of the flat layout (FlatLayout)."""
        lr, mu, beta = group["lr"], group["momentum"], group["beta"]
        dt, device = compute_dtype(params[0].dtype), params[0].device
        states = [self._init_state(p, group) for p in params]
        for state in states:
            state["step"] += 1
        shapes = [p.shape if p.dim() > 0 else torch.Size((1,)) for p in params]
        layout = FlatLayout(params, states, [(shape, state["step"]) for shape, state in zip(shapes, states)])
        states, numels = layout.states, layout.numels
        ts = [state["step"] for state in states]

        def correction(b: float):  # 1 - b^t per entry: a number when all steps agree (the usual case)
            if ts.count(ts[0]) == len(ts):
                return 1 - b ** ts[0]
            return torch.tensor([1 - b ** t for t in ts], dtype=dt, device=device).repeat_interleave(
                torch.tensor(numels, device=device))

        G = layout.gradients(dt)
        M = G
        if mu > 0:
            mom = self._flats.get((layout.ids, "momentum_buffer"), states, "momentum_buffer")
            mom.lerp_(G, 1 - mu)
            M = mom / correction(mu)
        graft = M
        if group["grafting"] == "adam":
            b2 = group["graft_beta2"]
            sq = self._flats.get((layout.ids, "graft_sq"), states, "graft_sq")
            sq.mul_(b2).addcmul_(G, G, value=1 - b2)
            graft = M / (sq / correction(b2)).sqrt_().add_(group["graft_eps"])
        Ds = list(graft.split(numels))
        start = group["start_preconditioning_step"]
        for (shape, t), members, span in layout.batches:
            n, k = len(members), len(shape)
            roots = []
            for j in range(k):
                if states[members[0]]["factors"][j] is None:
                    roots.append(None)
                    continue
                key = layout.ids[members.start:members.stop] + (j,)
                H = self._stacks.stacked(key + ("factors",), [states[i] for i in members], "factors", j)
                accumulate_contraction_batch(H, G[span].view(n, *shape), j, beta, 1.0 if beta == 1.0 else 1 - beta)
                if t >= start and (t - start) % group["precondition_frequency"] == 0:
                    R = inverse_root(H / (1.0 if beta == 1.0 else 1 - beta ** t), 2 * k, group["eps"])
                    self._stacks.put(key + ("roots",), R, [states[i] for i in members], "roots", j)
                    roots.append(R)
                elif t >= start:
                    roots.append(self._stacks.stacked(key + ("roots",), [states[i] for i in members], "roots", j))
            if t < start:
                continue  # the step is the graft direction itself
            D = precondition_batch(M[span].view(n, *shape), roots)
            if group["grafting"] != "none":
                graft_norms = torch.linalg.vector_norm(graft[span].view(n, -1), dim=1)
                norms = torch.linalg.vector_norm(D.reshape(n, -1), dim=1).clamp_min(torch.finfo(D.dtype).tiny)
                D = D * (graft_norms / norms).reshape(n, *[1] * k)
            Ds[members.start:members.stop] = D.unbind(0)
        decoupled_step(layout.params, Ds, lr, group["weight_decay"])
