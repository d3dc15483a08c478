"""Data-parallel optimizer steps across processes: each rank updates only the matrices it owns.

When torch.distributed is initialised with more than one process (torchrun; gloo on CPU, nccl on
GPU) and the gradients have already been averaged (DistributedDataParallel does that during
backward), Muon, SpecGD, Shampoo, SPlus, TNT and KFAC split their per-matrix work:

- ownership: every parameter the method treats with matrix work (its "item"; KFAC's item is a
  layer weight together with its bias) gets one owner rank. Owners are assigned greedily by cost,
  largest first, each to the rank with the least cost so far (ties to the lower rank), from the
  parameter order and shapes alone, so every rank computes the same assignment without talking.
  Cost is the method's per-matrix work per step (`matrix_cost`, `kronecker_cost`), with periodic
  work (Shampoo's roots, SPlus's eigenbases, TNT's and KFAC's inverses) divided by its period: the
  long-run average. TNT and KFAC also refresh every T1 steps during their first T2 steps, which
  this leaves out (their factors weigh more there than the plan assumes).
- step: each rank runs the method's own update on the items it owns, then `sync()` all-gathers
  the new values of every item from its owner, so all ranks end with identical weights.
  Parameters a method updates elementwise (the AdamW fallback of Muon/SpecGD, SPlus's
  non-matrix parameters, KFAC's non-layer parameters) are updated by every rank from the same
  averaged gradient.
- state: a rank keeps optimizer state only for what it updates (the memory win); TNT and KFAC
  also keep the step count of the other items, which their curvature schedule reads.
- curvature: TNT's sampled-label gradients and KFAC's per-batch factors are averaged across ranks
  (`average`) before they enter the statistics, as DDP averages the true gradients; with equal
  local batch sizes the factors then equal the single-process factors of the global batch.
- state_dict() is collective (call it on every rank): every rank returns the full state in the
  single-process format (each item's entry from its owner; tensors on the CPU), so it can be
  saved on rank 0 and loaded by any number of ranks. load_state_dict() takes such a full state on
  every rank; each rank drops the entries it does not own at its next step.
- eval()/train() of SPlus are collective too (the EMA weights of an item live on its owner).

Without an initialised process group, or with one process, nothing of this runs: the optimizers
take exactly their single-process code path. The split uses the default (world) process group, so
the data-parallel group must be the world. Every rank must call step() (and the collective
calls above) in the same order, with the same parameters having gradients, as DDP requires.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist

CostFn = Callable[[torch.Tensor, dict], "float | None"]


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def matrix_cost(rows: int, cols: int) -> float:
    """Work of an SVD or a Newton-Schulz iteration on a (rows, cols) matrix: rows cols min(rows, cols)."""
    return float(rows) * cols * min(rows, cols)


def kronecker_cost(dims: Iterable[int | None], numel: int, period: int = 1) -> float:
    """Work per step of Kronecker-factored preconditioning: d^3 per factor for its root, inverse or
    eigendecomposition, which runs once every `period` steps (so d^3 / period per step), plus
    numel * d per mode product, which runs every step; a None side has no factor. At least numel
    (the elementwise part). Only the ratios between one optimizer's items matter for the split."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    sides = [d for d in dims if d is not None]
    return float(sum(d ** 3 for d in sides)) / period + float(numel) * (1 + sum(sides))


def assign_owners(costs: list[float], world_size: int) -> list[int]:
    """Owner rank of each item: largest cost first, each to the least-loaded rank (ties: lower
    index, lower rank). Deterministic, so every rank computes the same list."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    load = [0.0] * world_size
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[i] = rank
        load[rank] += costs[i]
    return owners


def _flat_buckets(tensors: list[torch.Tensor]) -> dict[tuple, list[int]]:
    """Indices of `tensors` grouped by (device, dtype), in first-seen order (one collective each)."""
    buckets: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(i)
    return buckets


@torch.no_grad()
def average(tensors: list[torch.Tensor]) -> None:
    """In place: each tensor becomes its mean over the ranks (one all-reduce per device and dtype).
    Every rank must pass tensors of the same shapes in the same order. No-op in one process."""
    _, size = world()
    if size == 1 or not tensors:
        return
    for idx in _flat_buckets(tensors).values():
        flat = torch.cat([tensors[i].reshape(-1) for i in idx])
        dist.all_reduce(flat)
        flat.div_(size)
        offset = 0
        for i in idx:
            n = tensors[i].numel()
            tensors[i].copy_(flat[offset:offset + n].view_as(tensors[i]))
            offset += n


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class RankSharding:
    """The ownership of one optimizer's items across ranks (see the module docstring).

    cost(p, group): the item's cost, or None for a parameter every rank updates itself.
    companions: {item: [parameters updated and owned with it]} (KFAC: weight -> [bias]).
    count_steps: non-owners keep {"step": t} for items (TNT and KFAC read it for their schedule).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cost: CostFn,
                 companions: dict[torch.Tensor, list[torch.Tensor]] | None = None, count_steps: bool = False):
        self.optimizer = optimizer
        self.cost = cost
        self.companions = companions or {}
        self._companion_ids = {id(c) for cs in self.companions.values() for c in cs}
        self.count_steps = count_steps
        self._plan_key = None
        self._owner: dict[torch.Tensor, int] = {}
        optimizer.register_state_dict_post_hook(self._gather_state)

    # -- the plan ----------------------------------------------------------------------------------
    @staticmethod
    def active() -> bool:
        return world()[1] > 1

    def _params(self) -> list[tuple[torch.Tensor, dict]]:
        seen, out = set(), []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((p, group))
        return out

    def _items(self) -> list[tuple[torch.Tensor, float]]:
        return [(p, c) for p, g in self._params() if id(p) not in self._companion_ids
                for c in [self.cost(p, g)] if c is not None]

    def owners(self) -> dict[torch.Tensor, int]:
        """{parameter: owner rank} for every item and companion (rank-local parameters absent)."""
        # Cheap to check on every call (is_mine runs per parameter): the world size and each
        # group's parameter list; a group added or replaced changes it.
        key = (world()[1], tuple((id(g["params"]), len(g["params"])) for g in self.optimizer.param_groups))
        if key != self._plan_key:
            items = self._items()
            ranks = assign_owners([c for _, c in items], key[0])
            self._owner = {}
            for (p, _), rank in zip(items, ranks):
                self._owner[p] = rank
                for c in self.companions.get(p, ()):
                    self._owner[c] = rank
            self._plan_key = key
        return self._owner

    def cost_shares(self, world_size: int) -> list[float]:
        """Fraction of the total item cost each rank would own among `world_size` ranks."""
        costs = [c for _, c in self._items()]
        loads = [0.0] * world_size
        for c, rank in zip(costs, assign_owners(costs, world_size)):
            loads[rank] += c
        total = sum(loads)
        return [load / total if total else 0.0 for load in loads]

    def is_mine(self, p: torch.Tensor) -> bool:
        """Whether this rank updates p: always in one process, else p is rank-local or owned here."""
        if not self.active():
            return True
        owner = self.owners().get(p)
        return owner is None or owner == world()[0]

    # -- the step ----------------------------------------------------------------------------------
    def owned(self, params: list[torch.Tensor]):
        """The parameters of `params` this rank updates (all of them in one process). Drops the
        state of the others (their owner keeps it), keeping only the step count if count_steps."""
        if not self.active():
            return params
        return self._owned(params)

    def _owned(self, params):
        rank, owners, state = world()[0], self.owners(), self.optimizer.state
        for p in params:
            owner = owners.get(p)
            if owner is None or owner == rank:
                yield p
                continue
            old = state.pop(p, None)
            if self.count_steps and id(p) not in self._companion_ids and (old or p.grad is not None):
                step = (old or {}).get("step", 0)
                state[p] = {"step": step + (p.grad is not None)}

    @torch.no_grad()
    def sync(self) -> None:
        """All-gather every item's current value from its owner (no-op in one process)."""
        if not self.active():
            return
        rank, size = world()
        owners = self.owners()
        params = list(owners)
        for idx in _flat_buckets(params).values():
            per_rank = [[params[i] for i in idx if owners[params[i]] == r] for r in range(size)]
            sizes = [sum(p.numel() for p in ps) for ps in per_rank]
            mine = per_rank[rank]
            first = params[idx[0]]
            send = torch.zeros(max(sizes), dtype=first.dtype, device=first.device)
            if mine:
                torch.cat([p.reshape(-1) for p in mine], out=send[:sizes[rank]])
            received = [torch.empty_like(send) for _ in range(size)]
            dist.all_gather(received, send)
            for r, ps in enumerate(per_rank):
                if r == rank:
                    continue
                offset = 0
                for p in ps:
                    p.copy_(received[r][offset:offset + p.numel()].view_as(p))
                    offset += p.numel()

    # -- state_dict --------------------------------------------------------------------------------
    def _gather_state(self, optimizer, state_dict: dict) -> dict | None:
        if not self.active():
            return None
        rank, size = world()
        owners = self.owners()
        index = {}
        for p, _ in self._params():
            index.setdefault(p, len(index))
        # Rank-local parameters are identical everywhere: rank 0 contributes them.
        mine = {index[p]: _to_cpu(optimizer.state[p]) for p in index if p in optimizer.state
                and owners.get(p, 0) == rank and (p in owners or rank == 0)}
        gathered: list[dict | None] = [None] * size
        dist.all_gather_object(gathered, mine)
        full = {}
        for part in gathered:
            full.update(part)
        return {"state": dict(sorted(full.items())), "param_groups": state_dict["param_groups"]}
