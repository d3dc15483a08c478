"""The elementwise work of a step, shared by Shampoo, TNT and KFAC. On a CPU the per-tensor dispatch
over a CNN's dozens of small kernels, biases and norm vectors costs more than their arithmetic, and
torch's CPU foreach calls are a loop of one kernel per tensor, so:

    heavy_ball(buffers, directions, mu)       m <- mu m + D                 (in place; one foreach call each)
    decoupled_step(params, directions, lr, wd) p <- p (1 - lr wd) - lr D    (D reshaped to p, in p's dtype)
    FlatLayout                                 an order of the parameters in which each batch of
                                               same-shaped ones is contiguous in a flat buffer
    FlatCache                                  per-parameter state as views of one flat buffer, so that
                                               an elementwise update of all of them is one kernel
Elementwise results do not depend on how the entries are grouped into tensors, so a flat buffer
gives exactly the numbers of the per-tensor calls.
"""
from __future__ import annotations

import torch

from experiments.optim.kronecker import ViewCache, same_shape_batches, shaped


def heavy_ball(buffers: list[torch.Tensor], directions: list[torch.Tensor], momentum: float) -> None:
    """m <- momentum m + D for each (buffer, direction) pair, in place."""
    torch._foreach_mul_(buffers, momentum)
    torch._foreach_add_(buffers, directions)


def decoupled_step(params: list[torch.Tensor], directions: list[torch.Tensor], lr: float,
                   weight_decay: float) -> None:
    """p <- p (1 - lr weight_decay) - lr D for each (parameter, direction) pair; D may have another
    shape with the same entries (a tensor view of the parameter) and a wider dtype."""
    if weight_decay > 0:  # a multiplication by exactly 1 would only cost a pass
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_add_(params, [shaped(D, p.shape, p.dtype) for p, D in zip(params, directions)], alpha=-lr)


class FlatLayout:
    """The parameters of one step (one compute dtype and device) reordered so that each batch of
    equal keys (shape, step count, ...) is contiguous in a flat buffer of all their entries: a
    batch's (n, ...) tensor is then a view of the buffer, no stacking copy. A key must determine
    the parameter's shape (equal keys, equal numel): a batch's span is its size times the members.

    params, states, numels, ids (the parameters' ids, for cache keys): in the new order;
    batches: (key, members, span) per batch in first-seen order, members the batch's range of
    positions in the new order, span its slice of the flat buffer."""

    def __init__(self, params: list[torch.Tensor], states: list[dict], keys: list) -> None:
        groups = same_shape_batches(keys)
        order = [i for idx in groups for i in idx]
        self.params = [params[i] for i in order]
        self.states = [states[i] for i in order]
        self.numels = [p.numel() for p in self.params]
        self.ids = tuple(id(p) for p in self.params)
        self.batches: list[tuple[object, range, slice]] = []
        first, entry = 0, 0
        for idx in groups:
            members = range(first, first + len(idx))
            span = slice(entry, entry + len(idx) * self.numels[first])
            self.batches.append((keys[idx[0]], members, span))
            first, entry = members.stop, span.stop

    def gradients(self, dtype: torch.dtype) -> torch.Tensor:
        """The gradients in this order, concatenated into one flat tensor in `dtype`."""
        return torch.cat([p.grad.reshape(-1) for p in self.params]).to(dtype)


class FlatCache(ViewCache):
    """Same-dtype per-parameter state tensors kept as views of one flat (N,) buffer, in a given order.

    `get(name, states, key)` returns the buffer whose views are exactly state[key] of `states` (the
    objects, in that order), or concatenates them anew and stores the new views in the states."""

    def get(self, name, states: list[dict], key: str) -> torch.Tensor:
        members = [state[key] for state in states]
        flat = self._lookup(name, members)
        if flat is not None:
            return flat
        flat = torch.cat([m.reshape(-1) for m in members])
        views = [v.view(m.shape) for v, m in zip(flat.split([m.numel() for m in members]), members)]
        for state, view in zip(states, views):
            state[key] = view
        self._keep(name, flat, views, members)
        return flat
