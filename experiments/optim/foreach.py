"""The elementwise work of a step, shared by Shampoo, TNT and KFAC. On a CPU the per-tensor dispatch
over a CNN's dozens of small kernels, biases and norm vectors costs more than their arithmetic, and
torch's CPU foreach calls are a loop of one kernel per tensor, so:

    heavy_ball(buffers, directions, mu)       m <- mu m + D                 (in place; one foreach call each)
    decoupled_step(params, directions, lr, wd) p <- p (1 - lr wd) - lr D    (D reshaped to p, in p's dtype)
    FlatCache                                  per-parameter state as views of one flat buffer, so that
                                               an elementwise update of all of them is one kernel
Elementwise results do not depend on how the entries are grouped into tensors, so a flat buffer
gives exactly the numbers of the per-tensor calls.
"""
from __future__ import annotations

import torch

from experiments.optim.kronecker import shaped


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


class FlatCache:
    """Same-dtype per-parameter state tensors kept as views of one flat (N,) buffer, in a given order.

    `get(name, states, order)` returns the buffer whose views are exactly state[name] of `states`
    (the objects, in that order), or concatenates them anew and stores the new views in the states
    (a state dict loaded, a member replaced or the order changed simply concatenates anew). One
    buffer per name: a new concatenation replaces the old one."""

    def __init__(self) -> None:
        self._flats: dict = {}

    def get(self, name, states: list[dict], key: str) -> torch.Tensor:
        members = [state[key] for state in states]
        hit = self._flats.get(name)
        if hit is not None and len(hit[1]) == len(members) and all(a is b for a, b in zip(hit[1], members)):
            return hit[0]
        flat = torch.cat([m.reshape(-1) for m in members])
        views = [v.view(m.shape) for v, m in zip(flat.split([m.numel() for m in members]), members)]
        for state, view in zip(states, views):
            state[key] = view
        self._flats[name] = (flat, views)
        return flat
