"""Optimizers, one file each, and the name -> optimizer registry (experiments.optim.registry)."""
from experiments.optim.registry import OPTIMIZERS, build_optimizer

__all__ = ["OPTIMIZERS", "build_optimizer"]
