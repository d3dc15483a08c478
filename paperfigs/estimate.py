"""What a figure's configuration will cost on this machine, measured before running it.

    python -m paperfigs.estimate --figure 8 --scale full

The figure's computation is started with an engine that records its first batch of training runs
(the tuning runs of a fresh store, or the reporting runs when the selections come from the
record) and stops it there. One run of each group of runs that differ only in lr and seed is then
timed at two short lengths (`--steps` and twice that; epochs 1 and 2 for epoch-based tasks), and the
difference is extrapolated to the configuration's length and number of evaluations (a run's
start-up cannot be told apart from its evaluations this way and is counted with them, so the
estimate errs high, never low). The total is
the first batch only: reporting runs, tied lrs and grid extensions come on top (typically a
third to a half again). CPU seconds of runs made as the engine makes them (one torch thread), so
the figure's wall time with `--jobs J` is about the total / J on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import importlib

from experiments.engine import RunSpec, execute


class _Captured(Exception):
    """Raised by the recording engine once it has the first batch."""


def first_call(number: int, mode: str, seed: int = 0, device: str = "cpu", ctx=None) -> tuple[str, list[RunSpec]]:
    """(description, specs) of the first batch of training runs figure `number` submits in `mode`
    through `ctx` (a fresh Context by default); ("", []) when it trains nothing. Nothing trains:
    the figure's computation is stopped at its first call of the engine."""
    from paperfigs import registry
    from paperfigs.context import Context

    module = importlib.import_module(registry.FIGURES[number].module)
    ctx = ctx or Context()
    captured: list[tuple[str, list[RunSpec]]] = []

    def record(specs, desc="runs"):
        captured.append((desc, list(specs)))
        raise _Captured

    ctx.engine.run = record
    try:
        module.compute(mode, seed, device, ctx)
    except _Captured:
        pass
    return captured[0] if captured else ("", [])


def first_batch(number: int, mode: str, seed: int = 0, device: str = "cpu") -> list[RunSpec]:
    """The first batch of training runs figure `number` submits in `mode` (empty: none)."""
    return first_call(number, mode, seed, device)[1]


def _cpu_seconds(spec: RunSpec, **changes) -> float:
    """CPU seconds of one run as the engine runs it (one torch thread, BLAS limited to match)."""
    return execute(spec.task, {**spec.config, **changes})["cpu_s"]


def run_cost(spec: RunSpec, short: int = 30) -> float:
    """Estimated CPU seconds of one run of `spec` (see the module docstring)."""
    c = spec.config
    if "epochs" in c:
        _cpu_seconds(spec, epochs=1)  # data loading and first-call costs out of the way
        one, two = _cpu_seconds(spec, epochs=1), _cpu_seconds(spec, epochs=2)
        return one + (two - one) * (int(c["epochs"]) - 1)
    if "steps" not in c or "eval_at" in c:  # no step count to shorten: time it whole
        return _cpu_seconds(spec)
    steps, every = int(c["steps"]), c.get("eval_every")
    if steps <= 2 * short:
        return _cpu_seconds(spec)
    # both short runs evaluate exactly twice (at step 0 and at their end), so their difference is
    # steps only; what is left of the shorter one is start-up plus two evaluations
    changes = {"eval_every": 2 * short} if every else {}
    _cpu_seconds(spec, steps=2, **changes)
    a, b = _cpu_seconds(spec, steps=short, **changes), _cpu_seconds(spec, steps=2 * short, **changes)
    per_step = max(0.0, (b - a) / short)
    fixed = max(0.0, a - short * per_step)
    if not every:
        return fixed + per_step * steps
    every = int(every)
    evaluations = steps // every + 1 + (steps % every != 0)
    return per_step * steps + fixed / 2 * evaluations


def _group_key(spec: RunSpec) -> str:
    rest = {k: v for k, v in spec.config.items() if k not in ("lr", "seed")}
    return RunSpec(spec.task, rest).key()


def estimate(number: int, mode: str, short: int = 30, seed: int = 0) -> dict:
    """{"runs": n, "cpu_s": total, "groups": [{"task", "optimizer", "runs", "cpu_s_per_run"}]}."""
    specs = first_batch(number, mode, seed)
    groups: dict[str, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault(_group_key(s), []).append(s)
    rows = []
    for members in groups.values():
        s = members[0]
        rows.append({"task": s.task, "optimizer": s.config.get("optimizer", s.config.get("method")),
                     "runs": len(members), "cpu_s_per_run": run_cost(s, short)})
    return {"runs": len(specs), "cpu_s": sum(r["runs"] * r["cpu_s_per_run"] for r in rows), "groups": rows}


def main(argv=None) -> None:
    from paperfigs import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", type=int, required=True, help="figure number")
    ap.add_argument("--scale", default="full", choices=("quick", "full", "paper"))
    ap.add_argument("--steps", type=int, default=30, help="length of the short timing runs (default 30)")
    args = ap.parse_args(argv)
    if args.figure not in registry.FIGURES:
        ap.error(f"no figure {args.figure}; figures are {sorted(registry.FIGURES)}")
    if args.steps < 2:
        ap.error(f"--steps must be >= 2, got {args.steps}")
    est = estimate(args.figure, args.scale, args.steps)
    if not est["runs"]:
        print(f"figure {args.figure} ({args.scale}): no training runs (closed forms or NumPy simulations)")
        return
    for g in est["groups"]:
        print(f"  {g['task']:14s} {str(g['optimizer']):10s} {g['runs']:4d} runs x {g['cpu_s_per_run']:8.1f} CPU-s")
    print(f"figure {args.figure} ({args.scale}): first batch {est['runs']} runs, {est['cpu_s']:.0f} CPU-s "
          f"(about {est['cpu_s'] / 2 / 3600:.2f} h with --jobs 2, before reporting runs)")


if __name__ == "__main__":
    main()
