"""Optimizer step time at 1 and 2 processes, side by side in one run.

    python -m experiments.ddp_bench [--quick] [--ranks N] [--json PATH]

Model: an MLP 784 -> width -> ... -> 10 (experiments.models.vision.MLP, `depth` layers) on a synthetic
global batch; one torch thread per process; gloo on the CPU. For Muon, SpecGD, Shampoo, SPlus,
TNT and KFAC (registry defaults; TNT's and KFAC's inverses every T1 steps, which is what their
defaults run in a bench this short) it measures
- step: wall time of optimizer.step() alone; at N ranks each updates the matrices it owns and the
  new weights are all-gathered (experiments.optim.distributed);
- step CPU: CPU time of the step on the calling thread (all torch work with one thread; gloo
  communicates on its own threads), at N ranks the busiest rank's: the split of the work itself,
  which other load on the machine does not inflate;
- iteration: zero_grad, forward, curvature_step, backward, step on the global batch; at N ranks
  each process takes 1/N of the batch and DDP averages the gradients.
Each figure is the mean over a block of `block` consecutive iterations (every-10-steps work of
TNT, KFAC and Shampoo amortised in it), best block of `rounds` (load on a shared machine only
adds time); at N ranks a block lasts until the slowest rank finishes it. The 1-process run is
this process without torch.distributed; the N-process run is spawned (FileStore rendezvous in a
temporary folder, TCP between the ranks over loopback). The two alternate `repeats` times and
each keeps its best. `share` is the largest fraction of the method's per-matrix cost one rank
owns by the split's cost model (experiments.optim.distributed; periodic roots, inverses and
eigendecompositions amortised over their period, up to constant factors); `measured` is the
busiest rank's step CPU over the sum of all ranks' step CPU (each the best of its rounds), so
1 / measured bounds the step speed-up on this work; `total` is that sum over one process's step
CPU (above 1: work the split repeats on every rank or adds), and `update` the same without the
all-gather's CPU on the ranks' calling threads (packing and unpacking the weights; what remains
above 1 is update work repeated or added). `flops` and `calls` count instead of timing, over one
more block of steps after the timed ones: the ranks' summed step FLOPs (matrix products, by
torch.utils.flop_counter) and operator calls (every aten operator dispatched, views included) over
one process's. flops = 1 says no rank repeats another's matrix work; calls above 1 is the
per-parameter work every rank does (the gradient checks, the elementwise fallback updates) plus
the all-gather's packing: small calls, which do not by themselves explain a `total` well above 1
(see the README's measurements). On fewer free cores than ranks the processes share cores and the
N-rank times say nothing about scaling.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from experiments.cost import DispatchedOps
from experiments.runtime.threads import torch_threads
from experiments.fileio import atomic_write_json
from experiments.models.vision import MLP
from experiments.optim import OPTIMIZERS, build_optimizer
from experiments.optim.curvature import curvature_step

METHODS = ("muon", "specgd", "shampoo", "splus", "tnt", "kfac")
# TNT's and KFAC's defaults refresh their inverses every T1 steps during the first T2, which is
# all a bench of at most T2 steps sees (checked in measure); T2 = T1 runs that same schedule, so
# the cost model, which amortises the inverses over T2, describes the work timed.
EARLY_PHASE = {m: OPTIMIZERS[m].defaults["inverse_frequency"] for m in ("tnt", "kfac")}
HYPER = {m: {"inverse_frequency": OPTIMIZERS[m].defaults["curvature_frequency"]} for m in EARLY_PHASE}


@dataclass(frozen=True)
class DDPBenchConfig:
    width: int = 1024
    depth: int = 4
    batch: int = 256       # global batch, split over the ranks
    warmup: int = 2        # untimed iterations (step 1 builds state and eigenbases)
    block: int = 10
    rounds: int = 3
    repeats: int = 2       # alternations of the 1-process and N-process runs
    lr: float = 1e-4       # small, so no method diverges while timed
    seed: int = 0


FULL = DDPBenchConfig()
QUICK = replace(FULL, width=512, batch=128, rounds=2, repeats=1)
SMOKE = replace(FULL, width=16, depth=3, batch=8, warmup=1, block=2, rounds=1, repeats=1)  # for tests


def _data(cfg: DDPBenchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return torch.randn(cfg.batch, 784, generator=g), torch.randint(0, 10, (cfg.batch,), generator=g)


def measure(cfg: DDPBenchConfig, methods: tuple[str, ...], count: bool = True) -> dict[str, dict]:
    """{method: {"step_s", "step_cpu_s", "iteration_s", "step_cpu_total_s", "update_cpu_total_s",
    "step_flops_total", "step_calls_total", "share"}} for this process's world (1 or the initialised
    group), every rank calling it; the times are the slowest rank's, the *_total the ranks' sum.
    count=False leaves out the counted block and its two keys (its counts do not change between calls)."""
    rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if cfg.batch % size:
        raise ValueError(f"batch {cfg.batch} does not split over {size} ranks")
    if cfg.warmup + (cfg.rounds + count) * cfg.block > min(EARLY_PHASE.values()):   # + the counted block
        raise ValueError(f"more than {min(EARLY_PHASE.values())} steps: TNT's and KFAC's default schedule "
                         "leaves its early phase, which HYPER's inverse_frequency does not follow")
    X, y = _data(cfg)
    local = slice(rank * cfg.batch // size, (rank + 1) * cfg.batch // size)
    X, y = X[local], y[local]
    out = {}
    for name in methods:
        model = MLP(784, 10, width=cfg.width, depth=cfg.depth, generator=torch.Generator().manual_seed(cfg.seed))
        net = torch.nn.parallel.DistributedDataParallel(model) if size > 1 else model
        opt = build_optimizer(name, net, cfg.lr, **HYPER.get(name, {}))
        g = torch.Generator().manual_seed(cfg.seed)
        sync_cpu = [0.0]
        if size > 1:  # the all-gather of the new weights, timed inside the step (CPU of this thread)
            inner_sync = opt._shard.sync

            def timed_sync() -> None:
                c0 = time.thread_time()
                inner_sync()
                sync_cpu[0] += time.thread_time() - c0

            opt._shard.sync = timed_sync

        def gradients() -> None:
            opt.zero_grad(set_to_none=True)
            logits = net(X)
            loss = F.cross_entropy(logits, y)
            curvature_step(opt, logits, "ce", g)
            loss.backward()

        def counted() -> torch.Tensor:
            """(FLOPs in matrix products, operator calls) of one iteration's step, untimed."""
            gradients()
            with FlopCounterMode(display=False) as flops, DispatchedOps() as ops:
                opt.step()
            return torch.tensor([flops.get_total_flops(), len(ops.names)], dtype=torch.float64)

        def iteration() -> torch.Tensor:
            """(step wall s, step CPU s of this thread, of which in the all-gather) of one iteration."""
            gradients()
            sync_cpu[0] = 0.0
            t0, c0 = time.perf_counter(), time.thread_time()
            opt.step()
            return torch.tensor([time.perf_counter() - t0, time.thread_time() - c0, sync_cpu[0]], dtype=torch.float64)

        for _ in range(cfg.warmup):
            iteration()
        best = torch.full((5,), float("inf"), dtype=torch.float64)
        for _ in range(cfg.rounds):
            if size > 1:
                dist.barrier()
            t0 = time.perf_counter()
            step = sum(iteration() for _ in range(cfg.block))
            block = torch.cat([step[:2], torch.tensor([time.perf_counter() - t0], dtype=torch.float64)]) / cfg.block
            totals = torch.stack([step[1], step[1] - step[2]]) / cfg.block   # step CPU, and without the all-gather
            if size > 1:
                dist.all_reduce(block, op=dist.ReduceOp.MAX)
                dist.all_reduce(totals)
            best = torch.minimum(best, torch.cat([block, totals]))
        step_s, step_cpu_s, iteration_s, step_cpu_total_s, update_cpu_total_s = best.tolist()
        out[name] = {"step_s": step_s, "step_cpu_s": step_cpu_s, "iteration_s": iteration_s,
                     "step_cpu_total_s": step_cpu_total_s, "update_cpu_total_s": update_cpu_total_s,
                     "share": max(opt._shard.cost_shares(size))}
        if count:   # one more block, after the timed ones; deterministic, so one count is enough
            total = sum(counted() for _ in range(cfg.block)) / cfg.block
            if size > 1:
                dist.all_reduce(total)
            out[name]["step_flops_total"], out[name]["step_calls_total"] = total.tolist()
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()
        # DDP's reducer holds the process group in reference cycles: free each method's wrapper
        # while the group lives, so no reducer is torn down after destroy_process_group (a
        # precaution: collecting wrappers after it exited cleanly in every probe so far)
        del net, opt, model, iteration
        gc.collect()
    return out


def _rank_main(rank: int, size: int, store: str, cfg: DDPBenchConfig, methods: tuple[str, ...],
               result: str, count: bool) -> None:
    if Path("/sys/class/net/lo").exists():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    dist.init_process_group("gloo", store=dist.FileStore(store, size), rank=rank, world_size=size)
    try:
        with torch_threads(1):
            times = measure(cfg, methods, count)
        if rank == 0:
            Path(result).write_text(json.dumps(times))
        dist.barrier()  # every rank done communicating before gloo is torn down (else it can abort)
    finally:
        dist.destroy_process_group()


def measure_spawned(cfg: DDPBenchConfig, methods: tuple[str, ...], ranks: int, count: bool = True) -> dict[str, dict]:
    """`measure` in `ranks` fresh processes (gloo over loopback)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        mp.spawn(_rank_main, args=(ranks, os.path.join(tmp, "store"), cfg, methods, result, count), nprocs=ranks)
        return json.loads(Path(result).read_text())


def run(cfg: DDPBenchConfig, ranks: int = 2, methods: tuple[str, ...] = METHODS, verbose: bool = True) -> dict:
    """Best step and iteration times at 1 and `ranks` processes, alternated cfg.repeats times."""
    if ranks < 2:
        raise ValueError(f"ranks must be >= 2 (1 is always measured), got {ranks}")
    one: dict[str, dict] = {}
    many: dict[str, dict] = {}
    for r in range(cfg.repeats):
        with torch_threads(1):   # the counts are the same every time: only the first repeat counts
            _keep_best(one, measure(cfg, methods, count=r == 0))
        _keep_best(many, measure_spawned(cfg, methods, ranks, count=r == 0))
    rows = []
    for m in methods:
        row = {"method": m, "share": many[m]["share"],
               # what the ranks' own step CPU times say: the busiest rank's part of their sum, and
               # that sum against one process's step (above 1: work the split adds or repeats)
               "measured_share": many[m]["step_cpu_s"] / many[m]["step_cpu_total_s"],
               "total_cpu_vs_1": many[m]["step_cpu_total_s"] / one[m]["step_cpu_s"],
               # the same without the all-gather: the update work the split adds or repeats
               "update_cpu_vs_1": many[m]["update_cpu_total_s"] / one[m]["step_cpu_s"],
               # counted, not timed: repeated matrix work (flops above 1) or per-call work (calls)
               "flops_vs_1": many[m]["step_flops_total"] / one[m]["step_flops_total"],
               "calls_vs_1": many[m]["step_calls_total"] / one[m]["step_calls_total"]}
        for key in ("step_s", "step_cpu_s", "iteration_s"):
            row[f"{key[:-2]}_1_ms"], row[f"{key[:-2]}_{ranks}_ms"] = 1e3 * one[m][key], 1e3 * many[m][key]
            row[f"{key[:-2]}_speedup"] = one[m][key] / many[m][key]
        rows.append(row)
    if verbose:
        print(f"MLP width {cfg.width} depth {cfg.depth}, global batch {cfg.batch}, 1 thread per process, "
              f"{os.cpu_count()} CPUs visible; ms per iteration, 1 vs {ranks} processes; step CPU: "
              "the busiest rank's own thread; share: the busiest rank's part of the cost model, measured: "
              "of the ranks' summed step CPU; total: that sum / one process's step CPU; update: the same "
              "without the ranks' all-gather of the new weights; flops, calls: the ranks' summed step FLOPs "
              "and operator calls / one process's (counted)")
        print(f"{'method':8s} {'share':>5s} {'measured':>8s} {'total':>6s} {'update':>6s} {'flops':>6s} {'calls':>6s} | "
              f"{'step wall':^24s} | {'step CPU':^24s} | {'iteration wall':^24s}")
        for r in rows:
            cells = " | ".join(f"{r[f'{k}_1_ms']:7.2f} {r[f'{k}_{ranks}_ms']:7.2f} {r[f'{k}_speedup']:6.2f}x"
                               for k in ("step", "step_cpu", "iteration"))
            print(f"{r['method']:8s} {r['share']:5.2f} {r['measured_share']:8.2f} {r['total_cpu_vs_1']:5.2f}x "
                  f"{r['update_cpu_vs_1']:5.2f}x {r['flops_vs_1']:5.3f}x {r['calls_vs_1']:5.2f}x | {cells}")
    return {"config": asdict(cfg), "ranks": ranks, "rows": rows}


def _keep_best(best: dict, new: dict) -> None:
    """Per method, the min of every time over the repeats (the counts, measured once, are kept)."""
    for m, v in new.items():
        best[m] = v if m not in best else {**best[m], **{k: min(best[m][k], v[k]) for k in v}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller MLP and fewer blocks")
    parser.add_argument("--ranks", type=int, default=2, help="processes of the data-parallel run (default 2)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.ranks < 2:
        parser.error(f"--ranks must be >= 2 (1 is always measured), got {args.ranks}")
    if args.json and not args.json.resolve().parent.is_dir():
        parser.error(f"--json {args.json}: folder {args.json.resolve().parent} does not exist")
    result = run(QUICK if args.quick else FULL, args.ranks)
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
