"""Per-iteration cost of optimizers measured side by side: wall time per step and state memory.

Time: every optimizer trains its own copy of the same model on the same batches; the optimizers
first take `warmup` untimed steps (past any start-up phase, e.g. TNT inverting every T1 steps
while t <= T2), then take turns in blocks of `block` steps for `rounds` rounds (round robin), so a
slow spell of a shared CPU hits all of them alike. The per-step time is the total timed time over
the rounds * block timed steps (a mean, not a median, so the periodic inversions are amortised at
their true rate; make rounds * block a multiple of the longest inverse period). One step =
forward, the sampled-label curvature backward when the optimizer asks for it, backward,
optimizer.step(). A warm start (TNT's one pass over the data) is not part of the per-step time.

Memory: bytes of every tensor the optimizer keeps in its state (factors, inverses, momenta),
counting a shared storage once. Parameters and gradients are the same for every method and are
not counted.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from experiments.optim.curvature import curvature_step, mean_loss
from experiments.train import sync_device
from experiments.optim.registry import build_optimizer


@dataclass(frozen=True)
class StepCost:
    seconds_per_step: float
    state_bytes: int


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


def measure_step_costs(model: torch.nn.Module, methods: dict[str, tuple[str, float, dict]],
                       batches: list[tuple[torch.Tensor, torch.Tensor]], loss_kind: str,
                       block: int, rounds: int, seed: int, warmup: int = 0) -> dict[str, StepCost]:
    """Cost of each method on copies of `model`.

    methods: label -> (registry name, lr, optimizer kwargs); batches: (x, y) pairs already on
    the model's device, cycled through.
    """
    if block < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"need block, rounds >= 1 and warmup >= 0, got {block}, {rounds}, {warmup}")
    device = next(model.parameters()).device
    runs = {}
    for label, (name, lr, kwargs) in methods.items():
        m = copy.deepcopy(model)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        runs[label] = {"model": m, "opt": build_optimizer(name, m, lr, **dict(kwargs)), "gen": gen, "i": 0}

    def run_block(r: dict, n: int) -> float:
        sync_device(device)
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = batches[r["i"] % len(batches)]
            r["i"] += 1
            out = r["model"](x)
            loss = mean_loss(out, y, loss_kind)
            r["opt"].zero_grad(set_to_none=True)
            curvature_step(r["opt"], out, loss_kind, r["gen"])
            loss.backward()
            r["opt"].step()
        sync_device(device)
        return time.perf_counter() - t0

    if warmup:
        for r in runs.values():
            run_block(r, warmup)
    total = {label: 0.0 for label in runs}
    for _ in range(rounds):
        for label, r in runs.items():
            total[label] += run_block(r, block)
    return {label: StepCost(total[label] / (rounds * block), state_bytes(r["opt"])) for label, r in runs.items()}
