"""Explicit name -> optimizer registry.

    build_optimizer(name, model, lr, **hyper) -> torch.optim.Optimizer

`name` is a registry key (lower case, e.g. "sgd", "adam", "muon"); `hyper` overrides the
entry's defaults. Methods that only apply to hidden matrices hand the other parameters to a
documented fallback inside the same optimizer (see each entry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(frozen=True)
class OptimizerEntry:
    display: str
    factory: Callable[..., torch.optim.Optimizer]  # factory(model, lr, **hyper)
    defaults: dict = field(default_factory=dict)
    doc: str = ""


def _sgd(model, lr, **hyper):
    return torch.optim.SGD(model.parameters(), lr=lr, **hyper)


def _adam(model, lr, **hyper):
    return torch.optim.Adam(model.parameters(), lr=lr, **hyper)


def _adamw(model, lr, **hyper):
    return torch.optim.AdamW(model.parameters(), lr=lr, **hyper)


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("SGD", _sgd, {"momentum": 0.9}, "torch SGD with heavy-ball momentum 0.9"),
    "adam": OptimizerEntry("Adam", _adam, {}, "torch Adam, betas (0.9, 0.999)"),
    "adamw": OptimizerEntry("AdamW", _adamw, {"weight_decay": 0.01}, "torch AdamW"),
}


def build_optimizer(name: str, model: torch.nn.Module, lr: float, **hyper) -> torch.optim.Optimizer:
    """Build registry optimizer `name` for all parameters of `model`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    entry = OPTIMIZERS[name]
    return entry.factory(model, lr, **{**entry.defaults, **hyper})
