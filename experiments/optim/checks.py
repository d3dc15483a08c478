"""Input checks shared by every optimizer in experiments/optim (SpecGD, Muon, NMD, Signum, SPlus,
Shampoo, TNT, KFAC): one base class, one policy.

Policy:
- Hyperparameters: every number in a param group (lr, weight decay, eps, betas, coefficients...)
  must be finite; each class adds its ranges (lr >= 0 or > 0, betas in [0, 1), ...) in
  `_validate_group`. ValueError at construction, in add_param_group (a rejected group is not
  kept) and in load_state_dict (the saved groups replace the current ones).
- Parameters: complex parameters raise TypeError (these updates are written for real tensors:
  sign, eigh of G G^T and Newton-Schulz would drop or mangle the imaginary part); parameters with
  no entries (a 0 in the shape) raise ValueError (nothing to update, and their matrix and
  Kronecker views are undefined). Both at construction and in add_param_group.
- Gradients, at the start of every step() before any state or weight changes: a sparse gradient
  raises RuntimeError (one message for all); a non-finite entry raises FloatingPointError naming
  the optimizer, the parameter's position and shape (the training harness stops a run on it).
  Cost: one sum per gradient and one host sync per step (on a CPU, where reading a number back
  is free, each sum is read as it comes); an exact per-entry search runs only when a sum is not
  finite.
- State dicts: state_dict() carries the class name under the key "optimizer". load_state_dict
  raises ValueError, before changing anything, when that tag names another class, when the param
  groups differ in number, size or hyperparameter names (the only check possible for a dict
  without the tag, saved before it existed), when a saved hyperparameter fails the checks above,
  or when a state tensor's shape is not the one this class keeps for that parameter.
"""
from __future__ import annotations

import math
import numbers
from itertools import chain

import torch

from experiments.optim.kronecker import compute_dtype, same_shape_batches

STATE_DICT_TAG = "optimizer"
_NOT_HYPERPARAMETERS = ("params", "param_names")
_HALF = (torch.float16, torch.bfloat16)


def check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def check_count(name: str, value) -> None:
    """ValueError unless value is an integer >= 1 (an int, or a float with an integer value)."""
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_finite_numbers(group: dict) -> None:
    """ValueError for any infinite or NaN number (alone or inside a tuple/list) in a param group."""
    for key, value in group.items():
        if key in _NOT_HYPERPARAMETERS:
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, numbers.Real) and not math.isfinite(v):
                raise ValueError(f"{key} must be finite, got {value}")


def check_parameters(optimizer: str, params) -> None:
    """TypeError for complex parameters, ValueError for parameters without entries."""
    for p in params:
        if p.is_complex():
            raise TypeError(f"complex parameters are not supported by {optimizer} (parameter of shape "
                            f"{tuple(p.shape)}, {p.dtype}); optimise its real and imaginary parts as real tensors")
        if p.numel() == 0:
            raise ValueError(f"{optimizer} got a parameter with no entries (shape {tuple(p.shape)}): "
                             "nothing to update; leave it out of the optimizer")


def _shape_mismatch(expected, value) -> bool:
    """Does a saved state value disagree with the expected shape (a tuple, or a list of tuple | None)?"""
    if isinstance(value, torch.Tensor):
        return not isinstance(expected, tuple) or tuple(value.shape) != expected
    if isinstance(value, (list, tuple)):
        return not isinstance(expected, list) or len(value) != len(expected) or any(
            v is not None and (e is None or tuple(v.shape) != e) for v, e in zip(value, expected))
    return False  # None (not computed yet) or a number


class CheckedOptimizer(torch.optim.Optimizer):
    """torch.optim.Optimizer with the checks of this module and the one step() of every optimizer
    here: closure, gradient checks, then `_step_group` per param group, on the parameters with
    gradients that this process updates. Subclasses define `_step_group`, `_validate_group` and
    `_state_shapes`, and set `self._shard` (an experiments.optim.distributed.RankSharding)."""

    # True: `_step_group` gets a group's parameters in parts of one compute dtype
    # (experiments.optim.kronecker.compute_dtype) and device, as the optimizers that concatenate
    # all of them into flat buffers (Shampoo, TNT) need.
    _split_by_compute_dtype = False

    def _validate_group(self, group: dict) -> None:
        """Check the class's hyperparameter ranges in `group` (raise ValueError)."""

    def _state_shapes(self, p: torch.Tensor, group: dict) -> dict:
        """{state key: shape} of every tensor state this class keeps for p (a list of shapes, None
        for a slot that is always None, where the state is a list)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_gradients()
        for group in self.param_groups:
            params = [p for p in self._shard.owned(group["params"]) if p.grad is not None]
            if not params:
                continue
            if self._split_by_compute_dtype:
                for part in same_shape_batches([(compute_dtype(p.dtype), p.device) for p in params]):
                    self._step_group([params[i] for i in part], group)
            else:
                self._step_group(params, group)
        self._shard.sync()
        return loss

    def _step_group(self, params: list[torch.Tensor], group: dict) -> None:
        """Update `params` (this process's parameters of `group` that have gradients) in place."""
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            check_parameters(type(self).__name__, group["params"])
            check_finite_numbers(group)
            self._validate_group(group)
        except (TypeError, ValueError):
            self.param_groups.pop()  # a rejected group must not stay behind
            raise

    def _check_gradients(self) -> None:
        name = type(self).__name__
        grads = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.layout != torch.strided:
                        raise RuntimeError(f"{name} does not support sparse gradients (parameter of shape "
                                           f"{tuple(p.shape)}, gradient layout {p.grad.layout})")
                    grads.append(p.grad)
        if not grads:
            return
        # A non-finite entry makes the sum of all entries non-finite, so finite sums clear every
        # gradient with one pass each (on a CPU several times cheaper than isfinite(g).all() or an
        # inf-norm per tensor). A sum can also overflow from finite entries (rarely, accumulated in
        # at least float32): then the exact search decides.
        sums = [g.sum(dtype=torch.float32) if g.dtype in _HALF else g.sum() for g in grads]
        if grads[0].device.type == "cpu":
            # reading a CPU number back costs nothing: no stacking, and an overflowing total of
            # finite sums cannot raise a false alarm
            if all(math.isfinite(s.item()) for s in sums):
                return
        else:  # one host sync for all gradients
            device = grads[0].device
            if math.isfinite(float(torch.stack([s.to(device) for s in sums]).sum())):
                return
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise FloatingPointError(
                        f"{name}: non-finite gradient entries in parameter {j} of param group {i} (shape "
                        f"{tuple(p.shape)}); the loss or its backward produced NaN/inf")

    def state_dict(self) -> dict:
        state_dict = super().state_dict()
        state_dict[STATE_DICT_TAG] = type(self).__name__
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        self._check_state_dict(state_dict)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != STATE_DICT_TAG})

    def _check_state_dict(self, state_dict: dict) -> None:
        name = type(self).__name__
        source = state_dict.get(STATE_DICT_TAG)
        if source is not None and source != name:
            raise ValueError(f"the state dict was saved by {source}, not {name}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"the state dict has {len(saved_groups)} param groups, this {name} has "
                             f"{len(self.param_groups)}")
        merged = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {i} of the state dict has {len(saved['params'])} parameters, "
                                 f"this {name}'s has {len(group['params'])}")
            keys = {k for k in saved if k not in _NOT_HYPERPARAMETERS}
            ours = {k for k in group if k not in _NOT_HYPERPARAMETERS}
            if keys != ours:
                raise ValueError(f"param group {i} of the state dict does not come from {name}: hyperparameters "
                                 f"{sorted(keys - ours)} are extra, {sorted(ours - keys)} missing")
            merged.append({**saved, "params": group["params"]})
        for group in merged:
            check_finite_numbers(group)
            self._validate_group(group)
        saved_state = state_dict["state"]
        ids = chain.from_iterable(saved["params"] for saved in saved_groups)
        for pid, (p, group) in zip(ids, ((p, g) for g in merged for p in g["params"])):
            expected = self._state_shapes(p, group)
            for key, value in saved_state.get(pid, {}).items():
                if key not in expected:
                    if isinstance(value, torch.Tensor) and value.dim() > 0:
                        raise ValueError(f"{name} keeps no state {key!r} for the parameter of shape "
                                         f"{tuple(p.shape)}; the state dict comes from another optimizer")
                    continue
                if _shape_mismatch(expected[key], value):
                    got = (tuple(value.shape) if isinstance(value, torch.Tensor) else
                           [None if v is None else tuple(v.shape) for v in value])
                    raise ValueError(f"state {key!r} has shape {got} in the state dict, but {name} keeps "
                                     f"{expected[key]} for the parameter of shape {tuple(p.shape)}; "
                                     "was it saved for another model?")
