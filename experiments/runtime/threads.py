"""Run a block with a fixed number of torch intra-op CPU threads, restoring the previous count.

    with torch_threads(1):
        result = run_small_experiment()

Why: the figures that train many small models on the CPU are dominated by per-op overhead, and
on a 2-core machine shared with other jobs two threads were ~6x slower than one (eigh of a
784 x 784 matrix: 3-23 s with two threads vs 0.1 s with one). A fixed count also makes the
numbers independent of the host's core count: a different thread split of a reduction changes
float round-off, which after hundreds of steps can flip a near-tied lr selection.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
