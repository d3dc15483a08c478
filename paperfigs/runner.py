"""Run one figure: compute, time, save JSON/PNG/PDF atomically, update CLAIMS.md."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from paperfigs.claims import Claim
from paperfigs.output import atomic_savefig, atomic_write_json, jsonable, write_claims_md
from paperfigs.registry import FIGURES
from paperfigs.style import apply_style

MODES = ("full", "quick", "smoke")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "matplotlib", "torch"):
        mod = sys.modules.get(name)
        if mod is None and name != "torch":
            mod = __import__(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def validate_result(result: dict) -> None:
    """Raise ValueError if a figure's result does not follow the figures.md JSON format."""
    for key in ("figure", "title", "paper", "mode", "seed", "params", "series", "claims", "runtime_s", "versions"):
        if key not in result:
            raise ValueError(f"figure result is missing key {key!r}")
    if not isinstance(result["series"], dict) or not result["series"]:
        raise ValueError("figure result has no series")
    for label, s in result["series"].items():
        if "x" not in s or "y" not in s or len(s["x"]) != len(s["y"]):
            raise ValueError(f"series {label!r} needs x and y of equal length")
    for c in result["claims"]:
        base = {"name", "statement", "value", "threshold", "holds"}
        if not base <= set(c) <= base | {"ci", "verdict"} or not isinstance(c["holds"], bool):
            raise ValueError(f"malformed claim: {c}")
        if "verdict" in c and (c["verdict"] not in ("holds", "fails", "inconclusive")
                               or (c["verdict"] == "holds") != c["holds"]):
            raise ValueError(f"claim verdict disagrees with holds: {c}")


def run_figure(number: int, mode: str, seed: int, device: str, out_dir: Path, threads: int = 1,
               ctx=None) -> dict:
    """Compute figure `number`, write figN.{json,png,pdf} into out_dir and refresh CLAIMS.md.

    Training runs go through `ctx.engine` (paperfigs.context.Context); without a ctx, one is made
    whose engine runs inline and stores runs under `<out_dir>/runs/`, so a rerun reads them back.
    torch runs with `threads` intra-op CPU threads (default 1; see experiments/cpu_threads.py):
    the figures train many small models, where extra threads mostly add overhead, and a fixed
    count keeps the numbers independent of the host's core count."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from experiments.cpu_threads import torch_threads
    from experiments.engine import Engine
    from paperfigs.context import Context

    spec = FIGURES[number]
    module = spec.load()
    own = ctx is None
    if own:
        ctx = Context(engine=Engine(store=Path(out_dir) / "runs", threads=threads))
    t0 = time.perf_counter()
    try:
        with torch_threads(threads):
            computed = module.compute(mode=mode, seed=seed, device=device, ctx=ctx)
    finally:
        if own:
            ctx.engine.close()
    runtime = time.perf_counter() - t0
    claims = [c.to_json() if isinstance(c, Claim) else c for c in computed["claims"]]
    result = {
        "figure": number,
        "title": spec.title,
        "paper": spec.paper,
        "mode": mode,
        "seed": seed,
        "params": computed["params"],
        "series": computed["series"],
        "claims": claims,
        "runtime_s": runtime,
        "threads": threads,
        "versions": versions(),
    }
    for extra in ("tables", "notes"):
        if extra in computed:
            result[extra] = computed[extra]
    result = jsonable(result)
    validate_result(result)
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / f"fig{number}.json", result)
    draw(result, out_dir)
    write_claims_md(out_dir)
    return result


def draw(result: dict, out_dir: Path) -> None:
    """Draw a figure from its (saved) result into figN.png and figN.pdf."""
    import matplotlib.pyplot as plt

    apply_style()
    number = result["figure"]
    fig = FIGURES[number].load().plot(result)
    try:
        for ext in ("png", "pdf"):
            atomic_savefig(fig, Path(out_dir) / f"fig{number}.{ext}")
    finally:
        plt.close(fig)


def replot(number: int, out_dir: Path) -> dict:
    """Re-draw figN from figN.json without recomputing."""
    path = Path(out_dir) / f"fig{number}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run --figure {number} first")
    result = json.loads(path.read_text())
    draw(result, out_dir)
    return result
