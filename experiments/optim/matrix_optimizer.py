"""Shared step loop of the per-matrix optimizers (SpecGD, Muon, NMD, Signum), with their AdamW
fallback for the parameters they do not treat as matrices.

A MatrixOptimizer has two kinds of param group, told apart by the group flag `matrix`:
- matrix=True (the default): every parameter must have ndim >= 2 and is viewed as the matrix
  W: (rows, cols) = (out, in*kh*kw). The subclass supplies the direction D: (rows, cols) and an
  lr scale s, and the step is decoupled weight decay then the move:
      W <- W (1 - lr * weight_decay) - lr * s * D
- matrix=False: AdamW (torch's update rule, decoupled weight decay) with the group's `lr` and
  `weight_decay` and the optimizer-wide `adamw_betas`, `adamw_eps`.
`experiments.optim.param_groups.matrix_param_groups` builds the two groups from a model.

State tensors keep the parameter's dtype (torch's load_state_dict casts them to it anyway);
the matrix work (SVD, Newton-Schulz, norms) runs in at least float32 whatever the parameter
dtype, on the parameter's device. `normalized` is the Frobenius normalisation of Muon and NMD, exact
for any finite scale of the matrix.
"""
from __future__ import annotations

import math

import torch

from experiments.optim.checks import CheckedOptimizer, check_unit_interval
from experiments.optim.distributed import RankSharding
from experiments.optim.foreach import FlatCache
from experiments.optim.kronecker import same_shape_batches

_NORM_EPS = 1e-30  # only keeps 0 / 0 from becoming NaN (a rescaled nonzero M has norm >= 0.5)
# Norms in this range come out of a plain norm as exactly as after unit_rescale: no square can
# overflow, and entries small enough to underflow are below 2^-90 of the norm.
_PLAIN_NORMS = (2.0 ** -32, 2.0 ** 32)


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 for half-precision tensors, the tensor's own dtype for float32/float64."""
    return torch.promote_types(t.dtype, torch.float32)


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


def frobenius_normalize(M: torch.Tensor, dtype: torch.dtype | None = None, eps: float = _NORM_EPS) -> torch.Tensor:
    """M / ||M||_F for any finite scale of M (zeros for M = 0), after `unit_rescale`, in `dtype`
    (None: at least float32). eps must be representable in `dtype` (1e-30 is 0 in float16)."""
    X = unit_rescale(M) if dtype is None else unit_rescale(M).to(dtype)
    return X / X.norm().clamp(min=eps)


def normalized(M: torch.Tensor, dtype: torch.dtype | None = None, eps: float = _NORM_EPS,
               scale: bool = False) -> tuple[torch.Tensor, float]:
    """(X, c) with c X = M / ||M||_F for any finite scale of M (zeros for M = 0): the normalisation
    of Muon's Newton-Schulz input and of NMD's step.

    Where `plain_norm` applies to M in `dtype` (None: M's own): X = M / ||M||, divided by the 0-dim
    norm (torch.optim.Muon's division to the bit; a cast copy is divided in place), c = 1; with
    scale=True X = M in `dtype` and c = 1 / ||M||, no normalised copy (the step applies c).
    Otherwise X = frobenius_normalize(M, dtype, eps), c = 1."""
    X = M if dtype is None or M.device.type != "cpu" else M.to(dtype)  # plain_norm is CPU-only: no cast to waste
    norm = plain_norm(X)
    if norm is None:
        return frobenius_normalize(M, dtype, eps), 1.0
    if scale:
        return X, 1.0 / norm[1]
    return (X / norm[0] if X is M else X.div_(norm[0])), 1.0


def adamw_update(p: torch.Tensor, g: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                 step: int, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """In-place AdamW on p (torch.optim.AdamW's rule, step counted from 1):
        p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)"""
    b1, b2 = betas
    p.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(g, 1 - b1)
    exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (exp_avg_sq.sqrt() / (1 - b2 ** step) ** 0.5).add_(eps)
    p.addcdiv_(exp_avg, denom, value=-lr / (1 - b1 ** step))


class MatrixOptimizer(CheckedOptimizer):
    """Base class; subclasses define `_direction`, optionally `_lr_scale` and `_check_group`.
    Input checks (gradients, parameters, state dicts) are experiments.optim.checks'."""

    def __init__(self, params, defaults: dict):
        base = {"lr": 1e-3, "weight_decay": 0.0, "matrix": True,
                "adamw_betas": (0.9, 0.999), "adamw_eps": 1e-8}
        super().__init__(params, {**base, **defaults})
        self._shard = RankSharding(self, self._item_cost)
        self._flats = FlatCache()   # the AdamW moments of the fallback groups (see _adamw_step)

    def _validate_group(self, group: dict) -> None:
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {group['lr']}")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")
        b1, b2 = group["adamw_betas"]
        check_unit_interval("adamw_betas[0]", b1)
        check_unit_interval("adamw_betas[1]", b2)
        if not group["adamw_eps"] >= 0:
            raise ValueError(f"adamw_eps must be >= 0, got {group['adamw_eps']}")
        if group["matrix"]:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"{type(self).__name__} treats matrix groups as matrices but got a "
                                     f"parameter of shape {tuple(p.shape)}; put it in a group with "
                                     "matrix=False (see experiments.optim.param_groups)")
            self._check_group(group)

    def _check_group(self, group: dict) -> None:
        """Validate the subclass's hyperparameters in `group` (raise ValueError)."""

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        shape = tuple(p.shape)  # momentum (matrix groups) and AdamW moments are parameter-shaped
        return {"momentum_buffer": shape, "exp_avg": shape, "exp_avg_sq": shape}

    def _direction(self, grad: torch.Tensor, state: dict, group: dict) -> tuple[torch.Tensor, float]:
        """(D, c) from grad (shaped like the parameter): the update direction is c * D, D: (rows,
        cols) in any floating dtype (the step adds it in the parameter's), c a number (it lets a
        normalised direction be applied without materialising D / ||D||)."""
        raise NotImplementedError

    def _lr_scale(self, rows: int, cols: int, group: dict) -> float:
        return 1.0

    def _work_cost(self, rows: int, cols: int) -> float | None:
        """Cost of the direction of a (rows, cols) matrix for the split across processes
        (experiments.optim.distributed); None: cheap elementwise work every rank does itself."""
        return None

    def _item_cost(self, p: torch.Tensor, group: dict) -> float | None:
        return self._work_cost(p.shape[0], math.prod(p.shape[1:])) if group["matrix"] else None

    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        if not group["matrix"]:
            self._adamw_step(params, group)
            return
        for p in params:
            direction, c = self._direction(p.grad, self.state[p], group)
            rows, cols = direction.shape
            if group["weight_decay"]:  # a multiplication by exactly 1 would only cost a pass
                p.mul_(1 - group["lr"] * group["weight_decay"])
            # one mixed-dtype add (no cast copy of D): D is computed in float32 or Muon's
            # ns_dtype and rounded once, into the parameter's dtype
            D = direction if direction.shape == p.shape else direction.reshape(p.shape)
            p.add_(D, alpha=-group["lr"] * c * self._lr_scale(rows, cols, group))

    def _adamw_step(self, params: list[torch.Tensor], group: dict) -> None:
        """adamw_update on every parameter of a fallback group, with the moments of each set of
        parameters at one step count, dtype and device kept as views of one flat buffer
        (experiments.optim.foreach.FlatCache): each operation is one kernel on the set instead of
        one per bias and head, whose dispatch costs more than their arithmetic on a CPU. The
        operations are adamw_update's, elementwise, so the numbers are its own bit for bit."""
        states = []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            states.append(state)
        lr, wd, eps = group["lr"], group["weight_decay"], group["adamw_eps"]
        b1, b2 = group["adamw_betas"]
        for part in same_shape_batches([(state["step"], p.dtype, p.device) for p, state in zip(params, states)]):
            ps, ss = [params[i] for i in part], [states[i] for i in part]
            ids = tuple(id(p) for p in ps)
            exp_avg = self._flats.get((ids, "exp_avg"), ss, "exp_avg")
            exp_avg_sq = self._flats.get((ids, "exp_avg_sq"), ss, "exp_avg_sq")
            g = torch.cat([p.grad.reshape(-1) for p in ps]) if len(ps) > 1 else ps[0].grad.reshape(-1)
            step = ss[0]["step"]
            if wd:  # a multiplication by exactly 1 would only cost a pass
                torch._foreach_mul_(ps, 1 - lr * wd)
            exp_avg.lerp_(g, 1 - b1)
            exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (exp_avg_sq.sqrt() / (1 - b2 ** step) ** 0.5).add_(eps)
            denoms = [d.view(p.shape) for d, p in zip(denom.split([p.numel() for p in ps]), ps)]
            torch._foreach_addcdiv_(ps, [state["exp_avg"] for state in ss], denoms, value=-lr / (1 - b1 ** step))

    @staticmethod
    def _momentum(grad: torch.Tensor, state: dict, momentum: float) -> torch.Tensor:
        """EMA momentum B <- mu B + (1 - mu) g, kept in state["momentum_buffer"]; returns B."""
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - momentum)
        return buf

