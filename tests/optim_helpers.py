"""Helpers shared by the optimizer test files (tests/ is on sys.path under pytest)."""
import torch
from torch import nn

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def grads_seq(shape, n, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) for _ in range(n)]


def run_steps(opt, p, grads):
    for g in grads:
        p.grad = g.clone()
        opt.step()


def run_sequence(opt_factory, W0, grads):
    """Apply the gradient sequence `grads` to a copy of W0 with a fresh optimizer; return (W, optimizer)."""
    p = nn.Parameter(W0.clone())
    opt = opt_factory([p])
    run_steps(opt, p, grads)
    return p.detach(), opt
