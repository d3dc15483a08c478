"""Learning-rate sweeps: a log grid per optimizer, chosen on a VALIDATION split, stored for figures.

    grid = log_grid(center, points=5, decades=2.0)   # center * 10^linspace(-1, 1, 5)
    record = sweep(problem)                          # runs points x len(optimizers) trials

A figure module that supports tuning defines `sweep_problem(mode, device) -> SweepProblem`; its
`score(optimizer, lr)` trains on the training split and returns a validation number (higher is
better, -inf for a diverged run) -- the test split is never looked at. The CLI

    python -m experiments.lr_sweep --figure 9 [--quick] [--device cpu]

writes the chosen lr per optimizer, the grid, every score, the criterion, the date and the command
into experiments/tuned_lrs.json under "fig9" / "quick" (or "full"). Figures read it with
`stored_lrs`, which also says where each lr came from (recorded in the figure's params).
A chosen lr on the edge of its grid is flagged in the record: the grid should then be moved.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fcntl
import importlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from experiments.cpu_threads import torch_threads
from experiments.lr_select import select_lr

STORE = Path(__file__).resolve().with_name("tuned_lrs.json")


@dataclass(frozen=True)
class SweepProblem:
    figure: int
    mode: str
    optimizers: tuple[str, ...]
    centers: dict  # optimizer -> grid centre
    score: Callable[[str, float], float]
    criterion: str  # what score measures, in words
    points: int = 5
    decades: float = 2.0  # the grid spans centre * 10^(-decades/2 ... +decades/2)
    notes: tuple[str, ...] = field(default_factory=tuple)


def log_grid(center: float, points: int = 5, decades: float = 2.0) -> list[float]:
    """`points` learning rates evenly spaced in log10 over center * 10^[-decades/2, decades/2]."""
    if not center > 0 or points < 1:
        raise ValueError(f"need center > 0 and points >= 1, got {center}, {points}")
    if points == 1:
        return [float(center)]
    return [float(center * 10 ** e) for e in np.linspace(-decades / 2, decades / 2, points)]


def select(scores: dict[float, float]) -> tuple[float, bool]:
    """(lr with the highest finite score, whether it is at the grid's edge); ties go to the smaller
    lr. The rule is experiments.lr_select.select_lr on negated scores (one selection rule for the
    whole project). ValueError if every run diverged."""
    best, at_edge = select_lr({lr: -s for lr, s in scores.items()})
    if best is None:
        raise ValueError("every learning rate in the grid diverged: move the grid down")
    return best, at_edge


def sweep(problem: SweepProblem, log: Callable[[str], None] = print) -> dict:
    """Run the grid for every optimizer of `problem`; return the JSON-ready record."""
    record = {"lrs": {}, "grids": {}, "scores": {}, "at_grid_edge": [], "criterion": problem.criterion,
              "trials_per_optimizer": problem.points, "notes": list(problem.notes)}
    for name in problem.optimizers:
        grid = log_grid(problem.centers[name], problem.points, problem.decades)
        scores = {}
        for lr in grid:
            t0 = time.perf_counter()
            scores[lr] = float(problem.score(name, lr))
            log(f"  {name:8s} lr={lr:.3g}  score={scores[lr]:.4f}  ({time.perf_counter() - t0:.1f} s)")
        best, at_edge = select(scores)
        record["lrs"][name] = best
        record["grids"][name] = grid
        record["scores"][name] = [s if math.isfinite(s) else None for s in scores.values()]
        if at_edge:
            record["at_grid_edge"].append(name)
    return record


def load_store(path: Path = STORE) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def write_record(figure: int, mode: str, record: dict, command: str, path: Path = STORE) -> None:
    """Add/replace store[figN][mode]; an exclusive lock keeps concurrent sweeps of different
    figures from losing each other's records in the read-modify-write."""
    path = Path(path)
    record = {**record, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command}
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = load_store(path)
        store.setdefault(f"fig{figure}", {})[mode] = record
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)


def stored_lrs(figure: int, mode: str, defaults: dict[str, float], path: Path = STORE) -> tuple[dict, dict]:
    """(lr per optimizer, where each came from) for figure/mode.

    Looks in the stored record for `mode`, then (for smoke and full) the "quick" record; an
    optimizer missing from both gets defaults[name], marked "default (untuned)".
    """
    entry = load_store(path).get(f"fig{figure}", {})
    order = [mode] + (["quick"] if mode != "quick" else [])
    lrs, source = {}, {}
    for name, default in defaults.items():
        for m in order:
            rec = entry.get(m)
            if rec and name in rec.get("lrs", {}):
                lrs[name] = float(rec["lrs"][name])
                source[name] = f"tuned ({m} sweep, {rec.get('date', '?')})"
                break
        else:
            lrs[name], source[name] = float(default), "default (untuned)"
    return lrs, source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.lr_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--figure", type=int, required=True, help="figure number whose module defines sweep_problem")
    p.add_argument("--quick", action="store_true", help="tune the --quick configuration (default: full)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--optimizers", nargs="+", help="only these optimizers (others keep their stored lrs)")
    p.add_argument("--store", default=str(STORE), help=f"tuned-lr file (default {STORE})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op CPU threads (default 1, as paper_repro.py: see experiments/cpu_threads.py)")
    args = p.parse_args(argv)
    from paperfigs.registry import FIGURES

    spec = FIGURES.get(args.figure)
    module = importlib.import_module(spec.module) if spec and spec.module else None
    if module is None or not hasattr(module, "sweep_problem"):
        print(f"lr_sweep: figure {args.figure} has no sweep_problem", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"lr_sweep: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        import torch

        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            print(f"lr_sweep: --device {args.device} asked for, but torch sees no CUDA device", file=sys.stderr)
            return 2
    except RuntimeError:
        print(f"lr_sweep: unknown --device {args.device!r} (cpu, cuda)", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    problem = module.sweep_problem(mode, args.device)
    if args.optimizers:
        unknown = [o for o in args.optimizers if o not in problem.centers]
        if unknown:
            print(f"lr_sweep: figure {args.figure} does not sweep {', '.join(unknown)}; "
                  f"it sweeps {', '.join(problem.optimizers)}", file=sys.stderr)
            return 2
        problem = dataclasses.replace(problem, optimizers=tuple(args.optimizers))
    print(f"figure {args.figure} ({mode}): {len(problem.optimizers)} optimizers x {problem.points} lrs; "
          f"criterion: {problem.criterion}")
    with torch_threads(args.threads):
        record = sweep(problem)
    old = load_store(Path(args.store)).get(f"fig{args.figure}", {}).get(mode, {})
    if args.optimizers and old:  # a partial sweep keeps the other optimizers' stored results
        for key in ("lrs", "grids", "scores"):
            record[key] = {**old.get(key, {}), **record[key]}
        record["at_grid_edge"] = sorted(set(old.get("at_grid_edge", [])) - set(problem.optimizers)
                                        | set(record["at_grid_edge"]))
    write_record(args.figure, mode, record, "python -m experiments.lr_sweep " + " ".join(sys.argv[1:] if argv is None else argv),
                 Path(args.store))
    print(f"chosen: {record['lrs']}; at grid edge: {record['at_grid_edge'] or 'none'}; written to {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
