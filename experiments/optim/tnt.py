"""TNT, Tensor Normal Training (Ren and Goldfarb, NeurIPS 2021).

Each parameter's gradient is viewed as an order-k tensor (`tnt_view`): a linear weight as
(out, in), a bias or norm vector as (d,) with one full d x d factor, a conv kernel
(out, in, kh, kw) as (out, in, kh*kw). With G the true-label gradient and G_hat the gradient at
labels sampled from the model (see experiments.optim.curvature), at step t = 1, 2, ...:

    m <- momentum m + G                                          (every step)
    H_j <- beta H_j + (1 - beta) G_hat_(j) G_hat_(j)^T           (steps with (t - 1) % T1 == 0)
    c = (tr(H_1) / prod_l d_l)^(1/k),  U_j = H_j / (c^(k-1) prod_{l != j} d_l)
    A_j = (U_j + eps I)^(-1)          (steps with (t - 1) % T2 == 0, and every T1 while t <= T2)
    D = m x_1 A_1 x_2 A_2 ... x_k A_k
    p <- p (1 - lr weight_decay) - lr D

T1 = `curvature_frequency`, T2 = `inverse_frequency`. The normalisation gives every U_j the same
average eigenvalue c; eps is added to each normalised factor.

Fisher scale: G_hat is the gradient of the batch-MEAN loss (as in the official code), so the
factors are about 1/batch of a per-example Fisher and eps and lr are in those units.
Initialisation: `warm_start(grad_batches)` (called by experiments.train before the first step)
sets H_j to the mean of the contractions of sampled-label gradients over one pass of the data at
the initial weights, as the paper does. Without a warm start the first factor update sets H_j
to its contraction (no (1 - beta) shrinkage towards zero). A step taken before any factor exists uses no
preconditioning (D = m) and warns once: the training loop forgot curvature_step.

Defaults are the official code's CNN setting (T1 = 10, T2 = 100, eps = 0.01; the paper trains
with lr 1e-4 and decoupled weight_decay 10). Its autoencoder setting is T1 = 1, T2 = 20,
eps = 0.1, no weight decay. Matrix work in float32 (float64 for float64 parameters).
No library implements TNT; the tests check it against the explicit Kronecker form.
"""
from __future__ import annotations

import math
import operator
import warnings

import torch

from experiments.optim.checks import CheckedOptimizer, check_count, check_unit_interval
from experiments.optim.distributed import RankSharding, average, kronecker_cost
from experiments.optim.foreach import FlatCache, FlatLayout, decoupled_step
from experiments.optim.kronecker import (StackCache, accumulate_contraction_batch, compute_dtype, damped_inverse,
                                         inverse_due, mode_contraction, mode_contraction_batch, precondition_batch,
                                         same_shape_batches, shaped, stack)


def tnt_view(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """Tensor shape TNT preconditions: (d,) for vectors, (out, in) matrices, (out, in, rest) above."""
    shape = tuple(shape)
    if len(shape) == 0:
        return (1,)
    if len(shape) <= 2:
        return shape
    return (shape[0], shape[1], math.prod(shape[2:]))


def tnt_normalize(factors: list[torch.Tensor]) -> list[torch.Tensor]:
    """U_j = H_j / (c^(k-1) prod_{l != j} d_l) with c = (tr(H_1) / prod_l d_l)^(1/k); all-zero stays zero.
    factors: one (d_j, d_j) matrix per mode, or one (n, d_j, d_j) stack per mode (n parameters, each
    normalised by its own c)."""
    k = len(factors)
    dims = [H.shape[-1] for H in factors]
    n = math.prod(dims)
    c = (factors[0].diagonal(dim1=-2, dim2=-1).sum(-1) / n).clamp_min(0) ** (1.0 / k)
    out = []
    for H, d in zip(factors, dims):
        denom = (c ** (k - 1) * (n // d))[..., None, None]
        out.append(torch.where(denom > 0, H / denom.clamp_min(torch.finfo(H.dtype).tiny), torch.zeros_like(H)))
    return out


def tnt_inverses(factors: list[torch.Tensor], eps: float) -> list[torch.Tensor]:
    """(U_j + eps I)^(-1) of the normalised factors (matrices, or stacks as in `tnt_normalize`)."""
    return [damped_inverse(U, eps) for U in tnt_normalize(factors)]


class TNT(CheckedOptimizer):
    """Tensor Normal Training; a training loop must call curvature_step (or warm_start) for it."""

    _split_by_compute_dtype = True
    _state_in_compute_dtype = True

    def __init__(self, params, lr: float = 1e-4, momentum: float = 0.9, beta: float = 0.9, eps: float = 0.01,
                 curvature_frequency: int = 10, inverse_frequency: int = 100, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, beta=beta, eps=eps, curvature_frequency=curvature_frequency,
                        inverse_frequency=inverse_frequency, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self._warned = False
        self._shard = RankSharding(self, lambda p, group: kronecker_cost(tnt_view(p.shape), p.numel(),
                                                                        group["inverse_frequency"]),
                                   count_steps=True)
        self._stacks = StackCache()
        self._flats = FlatCache()
        self._plans: dict[tuple[int, ...], _StepPlan] = {}

    def _validate_group(self, g: dict) -> None:
        if not g["lr"] > 0:
            raise ValueError(f"lr must be positive, got {g['lr']}")
        for key in ("momentum", "beta"):
            check_unit_interval(key, g[key])
        if not g["eps"] > 0:
            raise ValueError(f"eps must be positive, got {g['eps']}")
        for key in ("curvature_frequency", "inverse_frequency"):
            check_count(key, g[key])
        if not g["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {g['weight_decay']}")

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        view = tnt_view(p.shape)
        factors = [(d, d) for d in view]
        return {"momentum_buffer": view, "factors": factors, "inverses": factors}

    # -- state -------------------------------------------------------------------------------------
    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "momentum_buffer" not in state:  # new, or only the step count a non-owner process kept
            state.setdefault("step", 0)
            state["momentum_buffer"] = torch.zeros(tnt_view(p.shape), dtype=compute_dtype(p.dtype), device=p.device)
            state["factors"] = None
            state["inverses"] = None
        return state

    @staticmethod
    def _contractions(p: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
        G = g.to(compute_dtype(p.dtype)).reshape(tnt_view(p.shape))
        return [mode_contraction(G, j) for j in range(G.dim())]

    # -- the curvature protocol of experiments.optim.curvature --------------------------------------
    def _next_is_curvature_step(self, group: dict) -> bool:
        steps = [self.state[p]["step"] for p in group["params"] if p in self.state]
        t = (max(steps) if steps else 0) + 1
        return (t - 1) % group["curvature_frequency"] == 0

    def wants_curvature(self) -> bool:
        return any(self._next_is_curvature_step(g) for g in self.param_groups)

    def curvature_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups if self._next_is_curvature_step(g)
                for p in g["params"] if p.requires_grad]

    @torch.no_grad()
    def update_curvature(self, grads: dict[torch.Tensor, torch.Tensor | None]) -> None:
        """H_j <- beta H_j + (1 - beta) G_hat_(j) G_hat_(j)^T for each parameter with a sampled gradient
        (averaged across processes first, so G_hat is the gradient of the global batch); one fused
        batched product per mode over each set of same-shaped parameters."""
        average([g for g in grads.values() if g is not None])
        for group in self.param_groups:
            params = [p for p in group["params"] if grads.get(p) is not None and self._shard.is_mine(p)]
            Gs = [shaped(grads[p], tnt_view(p.shape), compute_dtype(p.dtype)) for p in params]
            states = [self._state(p) for p in params]
            for idx in same_shape_batches([(G.shape, G.dtype, G.device, states[i]["factors"] is None)
                                           for i, G in enumerate(Gs)]):
                G = stack([Gs[i] for i in idx])
                members = [states[i] for i in idx]
                first = members[0]["factors"] is None  # the first update sets H_j (no shrinkage)
                if first:
                    for state in members:
                        state["factors"] = [None] * (G.dim() - 1)
                for j in range(G.dim() - 1):
                    key = tuple(id(params[i]) for i in idx) + (j, "factors")
                    if first:
                        self._stacks.put(key, mode_contraction_batch(G, j), members, "factors", j)
                    else:
                        H = self._stacks.stacked(key, members, "factors", j)
                        accumulate_contraction_batch(H, G, j, group["beta"], 1 - group["beta"])

    def warm_start(self, grad_batches) -> None:
        """Set every H_j to the mean contraction over `grad_batches`, an iterable of {param: G_hat}
        dicts (sampled-label gradients of one pass over the data at the initial weights; see
        experiments.train.sampled_gradient_pass)."""
        # No torch.no_grad() here: iterating `grad_batches` runs the sampled backward passes.
        sums: dict[torch.Tensor, list[torch.Tensor]] = {}
        counts: dict[torch.Tensor, int] = {}
        seen = False
        for grads in grad_batches:
            present = {p: g for p, g in grads.items() if g is not None}
            seen = seen or bool(present)
            average(list(present.values()))
            for p, g in present.items():
                if not self._shard.is_mine(p):
                    continue
                cs = self._contractions(p, g)
                if p in sums:
                    for s, c in zip(sums[p], cs):
                        s.add_(c)
                else:
                    sums[p] = cs
                counts[p] = counts.get(p, 0) + 1
        if not seen:
            raise ValueError("warm_start got no sampled-label gradients")
        for p, cs in sums.items():
            self._state(p)["factors"] = [c / counts[p] for c in cs]

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._plans.clear()  # every plan read the replaced states: free them now, not at the next step

    # -- the step ----------------------------------------------------------------------------------
    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        """One step of `params` (one compute dtype and device: CheckedOptimizer.step splits a group
        so): the momentum as single kernels on a flat buffer, the preconditioning as one batched
        product per mode over each set of same-shaped parameters, each a view of the flat layout
        (FlatLayout). The layout, buffer views and stacked inverses are a `_StepPlan`, kept between
        steps while valid."""
        t1, t2 = group["curvature_frequency"], group["inverse_frequency"]
        states = [self._state(p) for p in params]
        stale = []  # parameters whose inverses are recomputed now
        for i, state in enumerate(states):
            state["step"] += 1
            t = state["step"]
            refresh = inverse_due(t, t1, t2) or state["inverses"] is None
            if refresh and state["factors"] is not None:
                stale.append(i)
        for idx in same_shape_batches([tnt_view(params[i].shape) for i in stale]):
            idx = [stale[i] for i in idx]
            members = [states[i] for i in idx]
            key = tuple(id(params[i]) for i in idx)
            factors = [self._stacks.stacked(key + (j, "factors"), members, "factors", j)
                       for j in range(len(members[0]["factors"]))]
            for state in members:
                state["inverses"] = [None] * len(factors)
            for j, A in enumerate(tnt_inverses(factors, group["eps"])):
                self._stacks.put(key + (j, "inverses"), A, members, "inverses", j)
        key = tuple(map(id, params))
        plan = self._plans.get(key)
        if plan is None or not plan.valid(states):
            plan = self._plan(params, states)
            ids = set(key)  # a plan for another set of these parameters is stale now: drop it
            self._plans = {k: v for k, v in self._plans.items() if ids.isdisjoint(k)}
            self._plans[key] = plan
        plan.mom.mul_(group["momentum"])
        # Each gradient added where it lies (a float16 one converts exactly as it is added): the
        # numbers of adding their converted concatenation, without that copy.
        torch._foreach_add_(plan.mom_views, [p.grad for p in plan.params])
        Ds = list(plan.mom_views)
        for T, mats, members in plan.preconditioned:
            Ds[members] = precondition_batch(T, mats).unbind(0)
        decoupled_step(plan.params, Ds, group["lr"], group["weight_decay"])
        if not self._warned and plan.unconditioned:
            warnings.warn("TNT stepped without curvature factors (no curvature_step or warm_start "
                          "yet): this step is plain SGD with momentum", RuntimeWarning, stacklevel=3)
            self._warned = True

    def _plan(self, params: list[torch.Tensor], states: list[dict]) -> _StepPlan:
        """The flat layout of `params`, their momentum buffer and stacked inverses, as a step reads them."""
        layout = FlatLayout(params, states, [(tnt_view(p.shape), state["inverses"] is None)
                                             for p, state in zip(params, states)])
        mom = self._flats.get((layout.ids, "momentum_buffer"), layout.states, "momentum_buffer")
        mom_views = [m.view(p.shape) for m, p in zip(mom.split(layout.numels), layout.params)]
        preconditioned = []
        for (shape, no_inverses), members, span in layout.batches:
            if no_inverses:
                continue  # no factors yet: the step is the momentum itself
            key = layout.ids[members.start:members.stop]
            mats = [self._stacks.stacked(key + (j, "inverses"), [layout.states[i] for i in members], "inverses", j)
                    for j in range(len(shape))]
            preconditioned.append((mom[span].view(len(members), *shape), mats, slice(members.start, members.stop)))
        return _StepPlan(params, states, layout.params, mom, mom_views, preconditioned)


class _StepPlan:
    """What TNT's step of one set of parameters reads from their states: the flat layout, the momentum
    buffer with its views in the parameters' shapes, and the stacked inverses of each batch. Building
    it costs more than a small model's momentum and update, so it is kept between steps while it is
    valid: the same state dicts, each holding the very momentum view, inverse list and inverses it
    was built from. Anything that replaces one (a refresh of the inverses, a state dict loaded, a
    step over another set of these parameters, which rebuilds their flat buffer) makes it stale."""

    def __init__(self, given: list[torch.Tensor], states: list[dict], params: list[torch.Tensor],
                 mom: torch.Tensor, mom_views: list[torch.Tensor], preconditioned: list) -> None:
        self.given = given  # holding the parameters keeps their ids, the plan's key, unique
        self.states = states
        self.params, self.mom, self.mom_views, self.preconditioned = params, mom, mom_views, preconditioned
        self.unconditioned = any(state["inverses"] is None for state in states)
        self.read = []  # (container, key, the object read there)
        for state in states:
            self.read += [(state, "momentum_buffer", state["momentum_buffer"]), (state, "inverses", state["inverses"])]
            self.read += [(state["inverses"], j, A) for j, A in enumerate(state["inverses"] or ())]

    def valid(self, states: list[dict]) -> bool:
        return (all(map(operator.is_, states, self.states))
                and all(container[key] is value for container, key, value in self.read))
