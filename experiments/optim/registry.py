"""Explicit name -> optimizer registry.

    build_optimizer(name, model, lr, **hyper) -> torch.optim.Optimizer

`name` is a registry key (lower case, e.g. "sgd", "adam", "muon"); `hyper` overrides the
entry's defaults. `model` may be wrapped in DistributedDataParallel (how the methods then split
their work across processes: experiments.optim.distributed). Methods that only apply to hidden
matrices hand the other parameters to a documented fallback inside the same optimizer (see each
entry). For specgd, muon, nmd and signum that fallback is AdamW and `hyper` may also hold
fallback_lr (default 1e-3), fallback_weight_decay (0) and head_fallback (True); which parameters
fall back is decided in one place, experiments.optim.param_groups (ndim < 2, embeddings,
`model.head` unless it is the only matrix).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from experiments.optim.kfac import KFAC
from experiments.optim.muon import Muon, auto_ns_dtype
from experiments.optim.nmd import NMD
from experiments.optim.param_groups import matrix_param_groups, split_nonstandard
from experiments.optim.shampoo import Shampoo
from experiments.optim.signum import Signum
from experiments.optim.specgd import SpecGD
from experiments.optim.splus import SPlus
from experiments.optim.tnt import TNT


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


def _matrix_method(cls):
    """Factory for a MatrixOptimizer: hidden matrices get `cls`, the rest (ndim < 2, embeddings,
    `model.head`; rule in experiments.optim.param_groups) AdamW at `fallback_lr`."""
    def factory(model, lr, fallback_lr=1e-3, fallback_weight_decay=0.0, head_fallback=True, **hyper):
        groups = matrix_param_groups(model, fallback_lr, fallback_weight_decay, head_fallback)
        return cls(groups, lr=lr, **hyper)
    return factory


def _splus(model, lr, nonstandard_layers=False, **hyper):
    """nonstandard_layers=True: the input layer, embeddings, head and non-matrices step by
    sign(momentum) x nonstandard_constant (the paper's rule; param_groups.split_nonstandard)."""
    if not nonstandard_layers:
        return SPlus(model.parameters(), lr=lr, **hyper)
    hidden, nonstandard = split_nonstandard(model)
    groups = [g for g in ({"params": hidden}, {"params": nonstandard, "nonstandard": True}) if g["params"]]
    return SPlus(groups, lr=lr, **hyper)


def _shampoo(model, lr, **hyper):
    return Shampoo(model.parameters(), lr=lr, **hyper)


def _tnt(model, lr, **hyper):
    return TNT(model.parameters(), lr=lr, **hyper)


def _kfac(model, lr, **hyper):
    return KFAC(model, lr=lr, **hyper)


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("SGD", _sgd, {"momentum": 0.9}, "torch SGD with heavy-ball momentum 0.9"),
    "adam": OptimizerEntry("Adam", _adam, {}, "torch Adam, betas (0.9, 0.999)"),
    "adamw": OptimizerEntry("AdamW", _adamw, {"weight_decay": 0.01}, "torch AdamW"),
    "specgd": OptimizerEntry("SpecGD", _matrix_method(SpecGD), {},
                             "exact truncated-SVD U V^T step on hidden matrices; AdamW fallback (lr 1e-3)"),
    "muon": OptimizerEntry("Muon", _matrix_method(Muon), {"momentum": 0.95},
                           "EMA Nesterov momentum + 5-step Newton-Schulz (float32), lr x sqrt(max(1, rows/cols)), "
                           "weight decay 0; AdamW fallback (lr 1e-3)"),
    "nmd": OptimizerEntry("NMD", _matrix_method(NMD), {"momentum": 0.9},
                          "EMA momentum M, step M / ||M||_F per matrix; AdamW fallback (lr 1e-3)"),
    "signum": OptimizerEntry("Signum", _matrix_method(Signum), {"momentum": 0.9},
                             "sign of EMA momentum on hidden matrices; AdamW fallback (lr 1e-3)"),
    "splus": OptimizerEntry("SPlus", _splus, {},
                            "sign in cached Shampoo eigenbases, lr x 2/(m+n), EMA weights for eval(); "
                            "every parameter (non-matrices: sign(M) x 1e-3; nonstandard_layers=True: also the input "
                            "layer, embeddings and head)"),
    "shampoo": OptimizerEntry("Shampoo", _shampoo,
                              {"momentum": 0.9, "beta": 0.999, "eps": 1e-8, "precondition_frequency": 10,
                               "start_preconditioning_step": 10, "grafting": "adam"},
                              "tensor Shampoo, EMA statistics, inverse roots every 10 steps, Adam grafting "
                              "(Adam alone for steps < 10), sides > 4096 unpreconditioned; every parameter"),
    "tnt": OptimizerEntry("TNT", _tnt, {"momentum": 0.9, "beta": 0.9, "eps": 0.01, "curvature_frequency": 10,
                                        "inverse_frequency": 100},
                          "Tensor Normal Training, official CNN setting (T1 10, T2 100, eps 0.01; "
                          "autoencoder: T1 1, T2 20, eps 0.1); batch-mean sampled-label factors, warm start"),
    "kfac": OptimizerEntry("KFAC", _kfac, {"momentum": 0.9, "damping": 1e-2, "beta": 0.95,
                                           "curvature_frequency": 10, "inverse_frequency": 100},
                           "KFAC/KFC on Linear and Conv2d (bias as ones column), per-example Fisher, "
                           "damping split sqrt; other parameters SGD-momentum"),
}


def build_optimizer(name: str, model: torch.nn.Module, lr: float, **hyper) -> torch.optim.Optimizer:
    """Build registry optimizer `name` for all parameters of `model`. A name "package.module:Class"
    builds that torch.optim.Optimizer class on model.parameters() with lr and `hyper` (a user's own
    optimizer, added to the figures with paper_repro.py --optimizer)."""
    if ":" in name:
        return build_external(name, model, lr, **hyper)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive and finite, got {lr}")
    entry = OPTIMIZERS[name]
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module  # the head rule reads `model.head`, which the wrapper hides
    return entry.factory(model, lr, **{**entry.defaults, **hyper})


# Bump an optimizer's version when its numerics change: every stored run that used it then stops
# matching its key (experiments.engine), so a stale result is never reused.
VERSIONS: dict[str, int] = {
    "muon": 2,      # 2: ns_dtype "auto" by default (bfloat16 where the hardware multiplies it natively)
    "shampoo": 3,   # 3: same-shaped parameters batched per mode, grafting norms per batch (round-off differs)
    "tnt": 3,       # 3: batched mode products, factor EMA fused into one product (round-off differs)
    "kfac": 2,      # 2: conv statistics without the transposed patch copy (round-off differs)
    "nmd": 2,       # 2: M / ||M|| applied as one add with step lr / ||M|| (round-off differs)
}


def hardware_numerics(name: str, kwargs: dict, device: str) -> str | None:
    """The precision `name` picks at run time on `device` for these kwargs, where it depends on the
    hardware or on PAPER_REPRO_NS_DTYPE (Muon's ns_dtype="auto"); None where the numerics do not
    depend on the machine."""
    if name == "muon" and kwargs.get("ns_dtype", "auto") == "auto" and kwargs.get("orthogonalize",
                                                                                   "newton_schulz") != "svd":
        return f"newton_schulz:{auto_ns_dtype(device.split(':', 1)[0])[0]}".replace("torch.", "")
    return None


def optimizer_version(name: str) -> str:
    """The version that goes into a run's key: the registry entry's (default 1), or for an external
    "package.module:Class" optimizer the version of its top-level package."""
    if ":" in name:
        import importlib.metadata

        package = name.split(":", 1)[0].split(".", 1)[0]
        try:
            return f"{package}=={importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{package}==unversioned"
    return str(VERSIONS.get(name, 1))


def load_external(target: str) -> type:
    """The class named by "package.module:Class" (ValueError naming the problem otherwise)."""
    import importlib

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"an external optimizer is named package.module:Class, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} for optimizer {target!r}: {e}") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{target!r} is not a torch.optim.Optimizer subclass")
    return cls


def build_external(target: str, model: torch.nn.Module, lr: float, **hyper) -> torch.optim.Optimizer:
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    return load_external(target)(model.parameters(), lr=lr, **hyper)
