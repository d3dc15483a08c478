"""KFAC (Martens and Grosse 2015; convolutions as KFC, Grosse and Martens 2016), for the TNT comparison.

For a Linear or Conv2d layer with weight W (out, in[*kh*kw]) and optional bias b, the combined
weight W~ = [W, b]: (out, in'+1) sees inputs a~ = [a, 1] (without a bias W~ = W, a~ = a). With a_i the layer input of example i
(conv: its im2col patches a_{i,s} at the L output positions s) and g_i the gradient of example i's
loss (sampled labels) w.r.t. the layer output, over a batch of B examples:

    A = (1/B) sum_i sum_s a~_{i,s} a~_{i,s}^T                   (in'+1, in'+1)
    G = (1/B) sum_i (1/L) sum_s g_{i,s} g_{i,s}^T               (out, out)
    A <- beta A + (1 - beta) A_batch, same for G                 (steps with (t - 1) % T1 == 0)
    gamma_A = pi sqrt(damping), gamma_G = sqrt(damping) / pi     (pi = 1, or pi-damping:
              pi = sqrt((tr(A) / dim A) / (tr(G) / dim G)))
    A_inv = (A + gamma_A I)^(-1), G_inv = (G + gamma_G I)^(-1)   (steps with (t - 1) % T2 == 0,
                                                                  and every T1 while t <= T2)
    D = G_inv grad(W~) A_inv,   m <- momentum m + D,   p <- p (1 - lr weight_decay) - lr m

This is the per-example Fisher convention of the KFAC paper (g_i is B times the gradient of the
batch-mean loss), so `damping` is in per-example units, unlike TNT's batch-mean factors. The first
factor update sets A and G (no shrinkage towards zero); `warm_start(grad_batches)` (called by
experiments.train) sets them to their means over one pass of the data at the initial weights.
T1 = `curvature_frequency`, T2 = `inverse_frequency`. A Linear layer applied to (B, T, in) inputs
counts every token as an example (the mean loss averages over them).

Shared layers: a layer called several times in one forward (one module applied to several slices
or steps, or modules holding the same weight and bias) gets the factors of one call on all its
calls' inputs stacked, the way its leading dims and a conv's positions are already pooled: A and G
both sum over the rows of every call, and B counts the examples of all calls, so a model trains
alike whether it loops over slices or makes one call on them. R calls of a Linear on N rows each are
R N examples, as for one call on (N, R, in). A conv's calls on B_1, B_2, ... images make
B = sum_c B_c examples, and each call's positions are averaged over its own L_c, so calls on
images of one size give the factors of one call on their concatenation along the batch. A call
whose output does not reach the loss adds its rows to A and to B and nothing to G, as rows of zero
output gradient would (a layer none of whose calls reaches it gets no factor update). A from the
last call and G from the gradient summed over the calls would pair factors of different rows.

Capture: when the next step is a curvature step, a forward hook on each layer keeps, for every call
in a training forward pass, the layer's input and the gradient edge of its output.
`curvature_outputs()` hands the edges to the sampled-label backward of
experiments.optim.curvature, which differentiates the sampled loss with respect to them only (no
weight gradient: this optimizer has no use for one) and passes the output gradients to
`update_curvature` (or, in the warm start, yields them to `warm_start`); the ordinary backward is
untouched. `curvature_outputs()` hands the forward's calls over, keyed by (forward, call): calls a
checkpointed block records while that backward recomputes it are not counted as more rows, and
gradients of another forward's outputs are refused (ValueError) rather than paired with this one's
inputs. The calls are dropped when their factors are made, at the model's next recording forward,
or at a step, so a loop that never runs the sampled backward holds no graph across steps.
Fallback: parameters outside a supported layer (norms, embeddings, grouped or non-zero-padded
convolutions) and layers that have not yet received factors take SGD with the same momentum on the
raw gradient. Matrix work in float32 (float64 for float64 parameters). Call `remove_hooks()` to
detach the optimizer from the model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from experiments.optim.checks import CheckedOptimizer, check_count, check_unit_interval
from experiments.optim.distributed import RankSharding, average, kronecker_cost
from experiments.optim.foreach import decoupled_step, heavy_ball
from experiments.optim.kronecker import compute_dtype, damped_inverse, inverse_due


def gram(X: torch.Tensor) -> torch.Tensor:
    """sum_b X_b X_b^T over the leading index of X: (B, d, n) -> (d, d)."""
    if X.device.type == "cpu":
        # On a CPU, B products accumulated in place beat one product on the (B*n, d) layout: the
        # transposing copy that layout needs cost more than the product itself (2x at d=144, n=784).
        out = X.new_zeros(X.shape[1], X.shape[1])
        for Xb in X:
            out.addmm_(Xb, Xb.T)
        return out
    rows = X.transpose(1, 2).reshape(-1, X.shape[1])
    return rows.T @ rows


def with_ones_column(AtA: torch.Tensor, col_sum: torch.Tensor, rows: int) -> torch.Tensor:
    """a~^T a~ for a~ = [a, 1] from a^T a, the column sums of a and its row count (no copy of a)."""
    d = AtA.shape[0]
    out = AtA.new_empty(d + 1, d + 1)
    out[:d, :d] = AtA
    out[:d, d] = col_sum
    out[d, :d] = col_sum
    out[d, d] = rows
    return out


def input_factor(a: torch.Tensor, batch: int, bias: bool = True) -> torch.Tensor:
    """A = (1/batch) a~^T a~ with a~ = [a, 1] (a~ = a for a layer without bias); a: (rows, in) of all
    examples (and positions)."""
    if bias and a.shape[0] <= a.shape[1]:
        # Few rows (an MLP batch): appending the ones column copies fewer numbers than the (in, in) block.
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    elif bias:
        return with_ones_column(a.T @ a, a.sum(0), a.shape[0]).div_(batch)
    return (a.T @ a).div_(batch)


def output_factor(g: torch.Tensor, batch: int, positions: int) -> torch.Tensor:
    """G = (1/batch) sum_i (1/L) sum_s g_is g_is^T for per-example gradients g = batch * (mean-loss gradient).

    g: (batch * positions, out) gradients of the batch-mean loss w.r.t. the layer output."""
    return (g.T @ g).mul_(batch / positions)


def conv_patches(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """im2col of x: (B, C, H, W) -> (B, C * kh * kw, L), rows in the order of weight.reshape(out, -1)."""
    return F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)


def conv_factors(calls: list[tuple[nn.Conv2d, torch.Tensor]], gouts: list[torch.Tensor],
                 bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, G) of a conv layer from its calls (conv, input x_c: (B_c, C, H_c, W_c)) and the gradients
    gouts of the call outputs that reached the loss, each (B_c, out, H'_c, W'_c): B = sum_c B_c examples,
    A = (1/B) sum of all calls' patches a~ a~^T, G = B sum_c (1/L_c) sum_{i,s} g g^T (see KFAC), summing
    over examples and positions without materialising a (B * L, C * kh * kw) patch matrix."""
    batch = sum(x.shape[0] for _, x in calls)
    AtA = col_sum = None
    count = 0
    for conv, x in calls:
        cols = conv_patches(x, conv)
        AtA = gram(cols) if AtA is None else AtA.add_(gram(cols))
        if bias:
            col_sum = cols.sum((0, 2)) if col_sum is None else col_sum.add_(cols.sum((0, 2)))
            count += cols.shape[0] * cols.shape[2]
    if bias:
        AtA = with_ones_column(AtA, col_sum, count)
    G = None
    for gout in gouts:
        g = gout.reshape(gout.shape[0], gout.shape[1], -1)
        G = gram(g).mul_(batch / g.shape[2]) if G is None else G.add_(gram(g).mul_(batch / g.shape[2]))
    return AtA.div_(batch), G


def stacked_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The rows (all leading dims) of every tensor, stacked: [(..., n)] -> (rows, n)."""
    if len(tensors) == 1:  # no copy for a layer called once
        return tensors[0].reshape(-1, tensors[0].shape[-1])
    return torch.cat([t.reshape(-1, t.shape[-1]) for t in tensors])


def damping_split(A: torch.Tensor, G: torch.Tensor, damping: float, pi_damping: bool) -> tuple[float, float]:
    """(gamma_A, gamma_G) with gamma_A gamma_G = damping; pi balances the factors' mean eigenvalues."""
    root = math.sqrt(damping)
    if not pi_damping:
        return root, root
    mean_a, mean_g = float(A.diagonal().mean()), float(G.diagonal().mean())
    pi = math.sqrt(mean_a / mean_g) if mean_a > 0 and mean_g > 0 else 1.0
    return root * pi, root / pi


def kfac_direction(grad: torch.Tensor, A_inv: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """G_inv grad A_inv for grad: (out, in'+1), the natural-gradient step of the Kronecker-factored Fisher."""
    return G_inv @ grad @ A_inv


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


class KFAC(CheckedOptimizer):
    """KFAC over the Linear/Conv2d layers of `model`; everything else gets SGD with momentum."""

    _state_in_compute_dtype = True

    def __init__(self, model: nn.Module, lr: float = 1e-3, momentum: float = 0.9, damping: float = 1e-3,
                 beta: float = 0.95, curvature_frequency: int = 10, inverse_frequency: int = 100,
                 weight_decay: float = 0.0, pi_damping: bool = False, params=None):
        defaults = dict(lr=lr, momentum=momentum, damping=damping, beta=beta,
                        curvature_frequency=curvature_frequency, inverse_frequency=inverse_frequency,
                        weight_decay=weight_decay, pi_damping=bool(pi_damping))
        super().__init__(model.parameters() if params is None else params, defaults)
        owned = {p for g in self.param_groups for p in g["params"]}
        # weight -> (layer, bias or None); the layer's factors and inverses live in the weight's state.
        self._layers: dict[torch.Tensor, tuple[nn.Module, torch.Tensor | None]] = {}
        hooked = []  # every module applying a weight of _layers (several where modules share one)
        for module in model.modules():
            if _supported(module) and module.weight in owned:
                hooked.append(module)
                if module.weight in self._layers:
                    first = self._layers[module.weight][0]
                    if type(module) is not type(first) or module.bias is not first.bias:
                        raise ValueError("KFAC: layers sharing a weight must be of one type and share their bias")
                    continue
                bias = module.bias if module.bias is not None and module.bias in owned else None
                self._layers[module.weight] = (module, bias)
        self._bias_of = {b: w for w, (_, b) in self._layers.items() if b is not None}
        self._shard = RankSharding(self, self._item_cost, count_steps=True,
                                   companions={w: [b] for w, (_, b) in self._layers.items() if b is not None})
        # (layer, its input, its output's gradient edge) per call in the current recording forward
        self._calls: list[tuple[nn.Module, torch.Tensor, GradientEdge]] = []
        # The calls handed to a sampled backward by curvature_outputs(), with their forward's number:
        # calls recorded after the handover (a checkpointed block recomputed inside that backward)
        # are not rows of its batch, and gradients keyed by another forward are refused.
        self._forward = 0
        self._handed: tuple[int, list] | None = None
        self._schedule: tuple[int, dict] | None = None  # (next step, its group) until a step or load
        self._hooks = [model.register_forward_pre_hook(self._new_forward)]
        for module in hooked:
            self._hooks.append(module.register_forward_hook(self._record_call))

    def _item_cost(self, p: torch.Tensor, group: dict) -> float | None:
        """Inverses and products of a layer's factors, for the split across processes; the
        SGD-momentum step of other parameters stays on every rank (None)."""
        if p not in self._layers:
            return None
        out, cols = p.shape[0], math.prod(p.shape[1:]) + (self._layers[p][0].bias is not None)
        return kronecker_cost([out, cols], out * cols, group["inverse_frequency"])

    def _validate_group(self, g: dict) -> None:
        for key in ("lr", "damping"):
            if not g[key] > 0:
                raise ValueError(f"{key} must be positive, got {g[key]}")
        for key in ("momentum", "beta"):
            check_unit_interval(key, g[key])
        for key in ("curvature_frequency", "inverse_frequency"):
            check_count(key, g[key])
        if not g["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {g['weight_decay']}")

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        shapes = {"momentum_buffer": tuple(p.shape)}
        if p in self._layers:
            module = self._layers[p][0]
            cols = math.prod(p.shape[1:]) + (module.bias is not None)  # the bias column of A
            shapes.update(A=(cols, cols), A_inv=(cols, cols), G=(p.shape[0], p.shape[0]),
                          G_inv=(p.shape[0], p.shape[0]))
        return shapes

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._calls, self._handed = [], [], None

    # -- capture -----------------------------------------------------------------------------------
    def _recording(self, module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled() and self.wants_curvature()

    def _new_forward(self, model: nn.Module, inputs) -> None:
        if self._recording(model):
            self._forward += 1
            self._calls = []

    def _record_call(self, module: nn.Module, inputs, output) -> None:
        if self._recording(module) and output.requires_grad:
            self._calls.append((module, inputs[0].detach(), get_gradient_edge(output)))

    # -- the curvature protocol of experiments.optim.curvature --------------------------------------
    def _group_of(self, p: torch.Tensor) -> dict:
        return next(g for g in self.param_groups if any(q is p for q in g["params"]))

    def _next_step(self) -> int:
        steps = [s["step"] for s in self.state.values() if "step" in s]
        return (max(steps) if steps else 0) + 1

    def wants_curvature(self) -> bool:
        # Asked by every layer's hook on every forward pass; the next step number and the
        # schedule's group only change with a step or a loaded state, so they are looked up once in
        # between (a scan of all states each time cost layers x parameters dictionary reads per
        # forward). T1 itself is read each time: a user may change it between steps.
        if not self._layers:
            return False
        if self._schedule is None:
            self._schedule = (self._next_step(), self._group_of(next(iter(self._layers))))
        t, group = self._schedule
        return (t - 1) % group["curvature_frequency"] == 0

    def curvature_outputs(self) -> dict[tuple[int, int], GradientEdge]:
        """{(forward number, call number): gradient edge of that layer call's output} of the current
        forward; hands its calls over to the next update_curvature (or warm-start batch)."""
        self._handed, self._calls = (self._forward, self._calls), []
        forward, calls = self._handed
        return {(forward, i): edge for i, (_, _, edge) in enumerate(calls)}

    def _batch_factors(self, out_grads: dict[tuple[int, int], torch.Tensor | None]
                       ) -> dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """{weight: (A, G)} of the calls last handed over by curvature_outputs() and their output
        gradients (keyed alike), every call of a layer counted as more rows (see the class
        docstring); drops the calls."""
        forward, handed = self._handed or (None, [])
        self._handed = None
        if any(not (isinstance(key, tuple) and key[0] == forward) for key in out_grads):
            raise ValueError("KFAC got gradients that are no layer output gradient of the forward just run: "
                             "pass those w.r.t. curvature_outputs() of that forward (its calls are handed over once)")
        if handed and out_grads and all(g is None for g in out_grads.values()):
            raise ValueError("KFAC: the sampled loss reaches none of the layer outputs of the forward just run; "
                             "were the outputs given to curvature_step those of an earlier forward?")
        calls: dict[torch.Tensor, list[tuple[nn.Module, torch.Tensor]]] = {}  # weight -> (layer, input)s
        gouts: dict[torch.Tensor, list[torch.Tensor]] = {}  # weight -> the output gradients that exist
        for i, (module, x, _) in enumerate(handed):
            calls.setdefault(module.weight, []).append((module, x))
            if out_grads.get((forward, i)) is not None:
                gouts.setdefault(module.weight, []).append(out_grads[(forward, i)])
        out = {}
        for w, (module, _) in self._layers.items():
            if w not in gouts:
                continue
            dt = compute_dtype(w.dtype)
            bias = module.bias is not None
            if isinstance(module, nn.Conv2d):
                out[w] = conv_factors([(m, x.to(dt)) for m, x in calls[w]], [g.to(dt) for g in gouts[w]], bias)
            else:
                # Leading dims (batch, tokens, ...) all count as examples: the mean loss averages over them.
                a = stacked_rows([x.to(dt) for _, x in calls[w]])
                g = stacked_rows([g.to(dt) for g in gouts[w]])
                out[w] = (input_factor(a, a.shape[0], bias), output_factor(g, a.shape[0], 1))
        return out

    @torch.no_grad()
    def update_curvature(self, grads: dict[tuple[int, int], torch.Tensor | None]) -> None:
        """A, G <- beta (A, G) + (1 - beta) (this batch's factors); the first update sets them.
        grads: the sampled loss's gradients w.r.t. curvature_outputs(), keyed alike. The batch factors
        are averaged across processes first (those of the global batch)."""
        factors = self._batch_factors(grads)
        average([t for pair in factors.values() for t in pair])
        for w, (A, G) in factors.items():
            if not self._shard.is_mine(w):
                continue
            state = self._layer_state(w)
            if state["A"] is None:
                state["A"], state["G"] = A, G
            else:
                beta = self._group_of(w)["beta"]
                state["A"].mul_(beta).add_(A, alpha=1 - beta)
                state["G"].mul_(beta).add_(G, alpha=1 - beta)

    def warm_start(self, grad_batches) -> None:
        """A, G <- their means over one pass of sampled-label backwards at the initial weights.

        grad_batches: an iterable whose every item is what update_curvature takes, for the forward
        just run (experiments.train.sampled_gradient_pass: the gradients w.r.t. curvature_outputs())."""
        # No torch.no_grad() here: iterating `grad_batches` runs the sampled backward passes.
        sums: dict[torch.Tensor, list[torch.Tensor]] = {}
        counts: dict[torch.Tensor, int] = {}
        for grads in grad_batches:
            for w, (A, G) in self._batch_factors(grads).items():
                if w in sums:
                    sums[w][0].add_(A)
                    sums[w][1].add_(G)
                else:
                    sums[w] = [A, G]
                counts[w] = counts.get(w, 0) + 1
        if not sums:
            raise ValueError("warm_start got no layer output gradient: pass the gradients w.r.t. curvature_outputs()")
        means = {w: (A / counts[w], G / counts[w]) for w, (A, G) in sums.items()}
        average([t for pair in means.values() for t in pair])
        for w, (A, G) in means.items():
            if self._shard.is_mine(w):
                state = self._layer_state(w)
                state["A"], state["G"] = A, G

    # -- state -------------------------------------------------------------------------------------
    def _layer_state(self, w: torch.Tensor) -> dict:
        state = self.state[w]
        if "A" not in state:
            state.update(A=None, G=None, A_inv=None, G_inv=None)
        state.setdefault("step", 0)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._schedule = None  # new step counts, and torch replaces the param group dicts

    def _momentum_steps(self, moves: list[tuple[torch.Tensor, torch.Tensor]], group: dict) -> None:
        """For each (p, direction): m <- momentum m + direction; p <- p (1 - lr wd) - lr m; as foreach
        calls over all of them."""
        if not moves:
            return
        params = [p for p, _ in moves]
        moms = []
        for p, direction in moves:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(direction)
            moms.append(state["momentum_buffer"])
        heavy_ball(moms, [direction for _, direction in moves], group["momentum"])
        decoupled_step(params, moms, group["lr"], group["weight_decay"])

    def step(self, closure=None):
        try:
            return super().step(closure)
        finally:
            self._schedule = None  # the step counts have moved (on every process, owners or not)
            self._calls, self._handed = [], None  # that forward's graph and inputs are of no further use here

    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        t1, t2 = group["curvature_frequency"], group["inverse_frequency"]
        moves = []  # (parameter, direction) pairs, stepped together at the end
        for p in params:
            if p in self._bias_of and self._bias_of[p].grad is not None:
                continue  # the bias moves with its layer's weight
            state = self.state[p]
            state["step"] = state.get("step", 0) + 1
            dt = compute_dtype(p.dtype)
            if p not in self._layers:
                moves.append((p, p.grad.to(dt)))
                continue
            state = self._layer_state(p)
            t = state["step"]
            module, bias = self._layers[p]
            grad = p.grad.to(dt).reshape(p.shape[0], -1)
            bgrad = bias.grad if bias is not None else None
            if state["A"] is None:
                moves.append((p, grad.reshape(p.shape)))
                if bgrad is not None:
                    moves.append((bias, bgrad.to(dt)))
                continue
            refresh = inverse_due(t, t1, t2) or state["A_inv"] is None
            if refresh:
                gA, gG = damping_split(state["A"], state["G"], group["damping"], group["pi_damping"])
                state["A_inv"] = damped_inverse(state["A"], gA)
                state["G_inv"] = damped_inverse(state["G"], gG)
            if module.bias is not None:  # a bias this optimizer does not own counts as zero gradient
                col = bgrad.to(dt).reshape(-1, 1) if bgrad is not None else grad.new_zeros(grad.shape[0], 1)
                grad = torch.cat([grad, col], dim=1)
            D = kfac_direction(grad, state["A_inv"], state["G_inv"])
            moves.append((p, D[:, :math.prod(p.shape[1:])].reshape(p.shape)))
            if bgrad is not None:
                moves.append((bias, D[:, -1]))
                self.state[bias]["step"] = t
        self._momentum_steps(moves, group)
