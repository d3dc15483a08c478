"""The elementwise tail of a step, shared by Shampoo, TNT and KFAC: one foreach call per operation
over all parameters of a group. On a CPU the per-tensor dispatch of a Python loop over a CNN's
dozens of small kernels, biases and norm vectors costs more than their arithmetic.

    heavy_ball(buffers, directions, mu)       m <- mu m + D                 (in place)
    decoupled_step(params, directions, lr, wd) p <- p (1 - lr wd) - lr D    (D reshaped to p, in p's dtype)
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
