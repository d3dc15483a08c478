"""The one cost harness: time per training iteration and optimizer-state memory, side by side.

Used by `experiments.bench` (every registered optimizer, against arithmetic floors) and by
figure 12's cost table; both get the same statistic and the same memory definition from here.

Time. Every method trains its own deep copy of one model on the same batches (cycled), with its
own generator for sampled labels. One iteration = zero_grad, forward, the sampled-label backward
when the optimizer asks for it (`curvature_step`), backward, step. The timed unit is one *period*
of the method: the least common multiple of its periodic hyperparameters (Shampoo's
precondition_frequency, TNT's and KFAC's curvature and inverse frequencies, SPlus's inverse_steps;
1 for the others), so every timed unit holds the periodic factor updates, eigendecompositions and
inverses at their true rate. Before timing, each method runs untimed through its start-up phase
(TNT's and KFAC's inversions every T1 steps while t <= T2, Shampoo's grafted steps before
start_preconditioning_step), rounded up to whole periods. Then torch.utils.benchmark's
Timer(...).blocked_autorange() measures the period, `rounds` times, methods interleaved round by
round so that a slow spell of a shared machine hits all of them; the statistic is the median over
all replicates, divided by the period. Each round also gives each method its own figure (the
median of that round's replicates / period, StepCost.round_seconds), and a caller's `extra`
callables (the benchmark's floor kernels) are timed in every round right after the methods, with
the same Timer, so a ratio of one method's time to other work can be formed within one round, in
one window of the machine's load.

A method that diverges (a FloatingPointError from its step or its sampled-label pass, or a
non-finite loss, checked untimed after the start-up and after each round) stops the measurement
with a FloatingPointError naming the method, its lr and the iteration.

Clock: on a CPU with one torch thread, this thread's CPU time (all torch work, autograd's backward
included, then runs on the calling thread, and other processes' load cannot inflate it: on the
shared 2-core machine wall time read up to 2x the CPU time); otherwise wall time with the device
synchronised at every reading (CUDA work is asynchronous).

Memory: bytes of the distinct tensor storages in optimizer.state (nested lists and dicts included,
a shared storage counted once). Parameters and gradients are the same for every method and are not
counted.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Timer

from experiments.optim.curvature import curvature_step, mean_loss
from experiments.optim.registry import build_optimizer
from experiments.runtime.device import sync_device

# Hyperparameters that make a method's work periodic (the harness times whole periods).
PERIOD_KEYS = ("precondition_frequency", "curvature_frequency", "inverse_frequency", "inverse_steps")


class DispatchedOps(TorchDispatchMode):
    """While active (a context manager), records in `names` the name of every aten operator
    dispatched, views included: what a computation runs, counted rather than timed."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class StepCost:
    seconds_per_step: float   # median over timed periods / period
    round_seconds: tuple[float, ...]  # per round: median over that round's periods / period
    state_bytes: int
    period: int               # iterations per timed unit
    replicates: int           # timed periods behind the median
    steps: int                # iterations run in all (untimed ones included): a whole number of periods


def clock(device: torch.device, threads: int) -> tuple[Callable[[], float], str]:
    """(timer function, its description) for `device` at `threads` torch threads."""
    if device.type == "cpu" and threads == 1:
        return time.thread_time, "thread CPU time"

    def wall() -> float:
        sync_device(device)
        return time.perf_counter()

    return wall, "wall time" + (", device synchronised" if device.type == "cuda" else "")


def time_fn(fn: Callable[[], object], device: torch.device, threads: int, min_run_time: float
            ) -> list[float]:
    """Seconds per call of fn() for each replicate of one Timer.blocked_autorange run."""
    timer, _ = clock(device, threads)
    measurement = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads,
                        timer=timer).blocked_autorange(min_run_time=min_run_time)
    return list(measurement.times)


def median_time(fn: Callable[[], object], device: torch.device, threads: int, min_run_time: float) -> float:
    """Median seconds per call of fn() over the replicates of one blocked_autorange run."""
    return statistics.median(time_fn(fn, device, threads, min_run_time))


def period(optimizer: torch.optim.Optimizer) -> int:
    """Least common multiple of the periodic hyperparameters over the optimizer's param groups."""
    values = [int(g[k]) for g in optimizer.param_groups for k in PERIOD_KEYS if k in g]
    return math.lcm(*values) if values else 1


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in optimizer.state (nested dicts/lists included), storages counted once."""
    seen: set[tuple[str, int]] = set()
    total = 0

    def visit(obj) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            key = (str(obj.device), obj.untyped_storage().data_ptr())
            if key not in seen:
                seen.add(key)
                total += obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)

    visit(dict(optimizer.state))
    return total


class _Run:
    """One method training its own copy of the model; calling it runs one period of iterations."""

    def __init__(self, model, label, name, lr, kwargs, batches, loss_kind, seed):
        self.model = copy.deepcopy(model)
        self.label, self.lr = label, lr
        self.opt = build_optimizer(name, self.model, lr, **dict(kwargs))
        device = next(self.model.parameters()).device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.batches, self.loss_kind, self.i = batches, loss_kind, 0
        self.loss = None  # the last iteration's, checked between timed rounds (a check per step would sync)
        self.period = period(self.opt)
        # T2 divides the period, so one period covers TNT's and KFAC's start-up; Shampoo's may be longer.
        start = max(int(g.get("start_preconditioning_step", 1)) for g in self.opt.param_groups)
        self.settle = self.period * max(1, math.ceil(start / self.period))

    def _diverged(self, why: str) -> FloatingPointError:
        return FloatingPointError(f"{self.label} (lr {self.lr:g}) diverged by iteration {self.i}: {why}")

    def iterate(self, n: int) -> None:
        try:
            for _ in range(n):
                x, y = self.batches[self.i % len(self.batches)]
                self.i += 1
                self.opt.zero_grad(set_to_none=True)
                out = self.model(x)
                self.loss = mean_loss(out, y, self.loss_kind)
                curvature_step(self.opt, out, self.loss_kind, self.gen)
                self.loss.backward()
                self.opt.step()
        except FloatingPointError as e:
            raise self._diverged(str(e)) from e

    def check_finite(self) -> None:
        if self.loss is not None and not bool(torch.isfinite(self.loss)):
            raise self._diverged(f"loss {self.loss.item()}")

    def __call__(self) -> None:
        self.iterate(self.period)


def measure_step_costs(model: torch.nn.Module, methods: dict[str, tuple[str, float, dict]],
                       batches: list[tuple[torch.Tensor, torch.Tensor]], loss_kind: str, seed: int,
                       rounds: int = 3, min_run_time: float = 0.05, threads: int | None = None,
                       extra: dict[str, Callable[[], object]] | None = None, extra_min_run_time: float | None = None
                       ) -> tuple[dict[str, StepCost], dict[str, tuple[float, ...]]]:
    """Cost of each method on copies of `model`, and the seconds per call of each `extra` callable
    in each round (see the module docstring for the protocol).

    methods: label -> (registry name, lr, optimizer kwargs); batches: (x, y) pairs already on the
    model's device, cycled through; threads: torch threads while timing (default: the current count);
    extra: label -> callable, timed once per round after the methods for at least
    extra_min_run_time seconds (default min_run_time), its figure the median over that round's
    replicates.
    """
    extra = extra or {}
    extra_min_run_time = min_run_time if extra_min_run_time is None else extra_min_run_time
    if rounds < 1 or not min_run_time > 0 or not extra_min_run_time > 0:
        raise ValueError(f"need rounds >= 1 and min_run_time, extra_min_run_time > 0, got {rounds}, "
                         f"{min_run_time} and {extra_min_run_time}")
    if not batches:
        raise ValueError("measure_step_costs needs at least one batch")
    if set(extra) & set(methods):
        raise ValueError(f"labels both a method and an extra callable: {sorted(set(extra) & set(methods))}")
    threads = torch.get_num_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    device = next(model.parameters()).device
    runs = {label: _Run(model, label, name, lr, kwargs, batches, loss_kind, seed)
            for label, (name, lr, kwargs) in methods.items()}
    for run in runs.values():
        run.iterate(run.settle)
        run.check_finite()
    times: dict[str, list[float]] = {label: [] for label in runs}
    per_round: dict[str, list[float]] = {label: [] for label in [*runs, *extra]}
    for _ in range(rounds):
        for label, run in runs.items():
            replicates = time_fn(run, device, threads, min_run_time)
            run.check_finite()
            times[label] += replicates
            per_round[label].append(statistics.median(replicates) / run.period)
        for label, fn in extra.items():
            per_round[label].append(median_time(fn, device, threads, extra_min_run_time))
    costs = {label: StepCost(seconds_per_step=statistics.median(times[label]) / run.period,
                             round_seconds=tuple(per_round[label]), state_bytes=state_bytes(run.opt),
                             period=run.period, replicates=len(times[label]), steps=run.i)
             for label, run in runs.items()}
    return costs, {label: tuple(per_round[label]) for label in extra}
