"""Run one figure: compute, time, draw in memory, then replace figN.{png,pdf,json} as one set and
rebuild CLAIMS.md (see paperfigs/output.py for how a crash is survived)."""
from __future__ import annotations

import io
import time
from pathlib import Path

from paperfigs.claims import Claim
from experiments.engine import versions as run_versions
from experiments.fileio import json_bytes, jsonable
from paperfigs.output import publish, source_tag
from paperfigs.registry import FIGURES, has_paper_scale
from paperfigs.result import MODES, ResultError, invalid_result, read_result, validate_result
from paperfigs.style import apply_style

__all__ = ["MODES", "SEED_MAX", "ResultError", "check_seed", "replot", "run_figure", "validate_result"]

# Figures add offsets to the seed (seed + 1..seeds for repeats, + 1_000_003 for TNT/KFAC's sampled
# labels); this bound keeps every derived seed below 2**31, which every generator here (numpy,
# torch CPU and CUDA) and common int32 seed APIs accept.
SEED_MAX = 2_000_000_000


def check_seed(seed) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in 0..{SEED_MAX}, got {seed!r}")


def versions() -> dict:
    return run_versions(load=("numpy", "scipy", "matplotlib"))


def run_figure(number: int, mode: str, seed: int, device: str, out_dir: Path, threads: int = 1,
               ctx=None) -> dict:
    """Compute figure `number`, write figN.{json,png,pdf} into out_dir and refresh CLAIMS.md.

    Training runs go through `ctx.engine` (paperfigs.context.Context); without a ctx, one is made
    whose engine runs inline and stores runs under `<out_dir>/runs/`, so a rerun reads them back.
    torch runs with `threads` intra-op CPU threads (default 1; see experiments/runtime/threads.py):
    the figures train many small models, where extra threads mostly add overhead, and a fixed
    count keeps the numbers independent of the host's core count."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_seed(seed)
    from experiments.runtime.threads import torch_threads
    from experiments.engine import Engine
    from paperfigs.context import Context

    spec = FIGURES[number]
    module = spec.load()
    if mode == "paper" and not has_paper_scale(number):
        raise ValueError(f"figure {number} has no paper-scale configuration: its full configuration is already "
                         "at the papers' scale (run it without --scale paper)")
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
    validate_result(result, number)
    data = json_bytes(result)
    try:
        images = render(result, data)
    except Exception:
        # Keep the computed result (a fixed plot can redraw it with --replot); the old png/pdf go,
        # as they are of another run.
        publish(out_dir, number, {"json": data})
        raise
    publish(out_dir, number, {**images, "json": data})
    return result


def render(result: dict, json_data: bytes) -> dict[str, bytes]:
    """figN.png and figN.pdf drawn in memory from `result`, each naming the JSON bytes it came from."""
    import matplotlib.pyplot as plt

    apply_style()
    number = result["figure"]
    fig = FIGURES[number].load().plot(result)
    tag = source_tag(number, json_data)
    images = {}
    try:
        for ext, metadata in (("png", {"Source": tag}), ("pdf", {"Subject": tag})):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, bbox_inches="tight", metadata=metadata)
            images[ext] = buf.getvalue()
    finally:
        plt.close(fig)
    return images


def replot(number: int, out_dir: Path) -> dict:
    """Re-draw figN.png/pdf from figN.json without recomputing, and rebuild CLAIMS.md.

    FileNotFoundError if there is no figN.json; ResultError (one line) if it is not a valid result
    of figure `number` or cannot be drawn."""
    result, data = read_result(Path(out_dir) / f"fig{number}.json", number)
    try:
        images = render(result, data)
    except Exception as e:  # the JSON is the only input: a plot that fails on it means a bad file
        raise invalid_result(number, f"cannot be drawn: {type(e).__name__}: {e}") from None
    publish(out_dir, number, images, drawn_from=data)
    return result
