"""Check the committed selection records against the figures' current code (training nothing
unless --recompute is given).

    python -m paperfigs.audit --scale quick          # every figure
    python -m paperfigs.audit --scale full --figure 7 9
    python -m paperfigs.audit --scale full --figure 4 --recompute --jobs 2

A selection record (experiments/selections) is used when its tuning key matches, and the key
hashes the criterion's text, not the score function's code. Each figure is started with an empty
run store: every record its tuning reads is restored from its archive and its tuning runs are
rescored with the figure's current score function (experiments.tuning.check_record), and the
computation is stopped at its first batch of training runs. A record is

- `ok` when every one of its tuning runs was at hand and each rescored to the recorded value;
- `stale` when one did not (the figure would set the record aside and select again: re-run it
  with --record-selections and commit the new record);
- `differs` when some of its runs were trained again rather than read from its archive (by
  `--recompute`, or found in `--store`) and their scores differ from the recorded ones but select
  the same lr. Training runs on another kind of CPU round differently (on an AVX2-only CPU figure
  1's quick SGD, Adam and Shampoo tuning runs scored up to 0.05 from the records made on a CPU with
  avx512_bf16, one run diverging on one machine only, and all three selected the same lrs); such
  runs cannot tell an edited score function from the machine's numerics, archived runs can
  (`--cpu-kernels avx2` trains, on an x86 CPU with AVX-512, what an AVX2-only CPU would, bit for
  bit, so that CPU's records can be checked exactly);
- `unchecked` when some of its runs are in no archive (figure 4's full records, over the archive
  size cap) and not in `--store`; it is used as it is. `--recompute` trains those runs first (into
  `--store` when given, so that a stopped audit resumes), then checks the record against them:
  figure 4 at full scale takes about 5 minutes with `--jobs 2`.

What the first batch is says the rest: reporting runs when every selection came from a record;
tuning runs when a selection has no record (new settings, or a figure that selects nothing and
sweeps). Only the records read before that first batch are checked. Exit status 1 when a record
is stale.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from experiments.engine import Engine
from experiments.envvars import CPU_KERNELS, use_cpu_kernels
from paperfigs.context import Context
from paperfigs.estimate import first_call


def _status(c: dict) -> str:
    if not c["stale"]:
        return "ok" if c["available"] == c["runs"] else "unchecked"
    # Runs trained again (not the record's archived ones) carry this machine's numerics: another CPU's
    # matrix kernels round differently, so their scores move a little, and only a changed selection
    # says the record is wrong for this machine
    if c["archived"] < c["runs"] and c["lr_now"] == c["lr"]:
        return "differs"
    return "stale"


def _pass(number: int, mode: str, seed: int, store) -> dict:
    with Engine(store=store) as engine:
        ctx = Context(engine=engine, record_checks=[])
        desc, specs = first_call(number, mode, seed, "cpu", ctx)
    for c in ctx.record_checks:
        c["status"] = _status(c)
    return {"figure": number, "records": ctx.record_checks, "next": desc, "next_runs": len(specs)}


def audit(number: int, mode: str, seed: int = 0, store: str | Path | None = None, recompute: bool = False,
          jobs: int = 1) -> dict:
    """{"figure", "records": [check_record dicts + "status"], "next": description, "next_runs": n,
    "recomputed": n}. `store`: a run store to look runs up in (and, with `recompute`, to keep the
    recomputed runs in, so that a stopped audit resumes); default an empty temporary one.
    `recompute`: train the tuning runs of the records that no archive or store holds (with `jobs`
    workers), then check them like archived ones."""
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(tempfile.TemporaryDirectory())
        a = _pass(number, mode, seed, store)
        missing = {}   # run key -> spec: records of one figure may share runs
        for c in a["records"]:
            if c["status"] == "unchecked" and recompute:
                missing.update(c["missing_specs"])
        a["recomputed"] = 0
        if missing:
            with Engine(store=store, jobs=jobs) as engine:
                engine.run(list(missing.values()), desc=f"figure {number}: tuning runs of unarchived records")
            a = _pass(number, mode, seed, store)
            a["recomputed"] = len(missing)
    return a


def main(argv=None) -> int:
    from paperfigs import registry

    ap = argparse.ArgumentParser(prog="python -m paperfigs.audit", description=" ".join(__doc__.split("\n\n")[0].split()),
                                 epilog="Run from the repository root; it reads experiments/selections.")
    ap.add_argument("--figure", type=int, nargs="*", help="figure numbers (default: every figure)")
    ap.add_argument("--scale", default="quick", choices=("quick", "full", "paper"),
                    help="which configuration's records to check (default quick)")
    ap.add_argument("--recompute", action="store_true",
                    help="train the tuning runs of records that have no archive (figure 4 at full scale: "
                         "about 5 minutes with --jobs 2), then check them; without it such records are reported unchecked")
    ap.add_argument("--store", default=None,
                    help="a run store to read tuning runs from and keep recomputed ones in, so that a stopped "
                         "--recompute resumes (e.g. figures/runs after a --fresh figure run); default: a "
                         "temporary one")
    ap.add_argument("--jobs", type=int, default=1, help="parallel training runs for --recompute (default 1)")
    ap.add_argument("--cpu-kernels", choices=CPU_KERNELS, default="native",
                    help="avx2: train recomputed runs with the kernels of a CPU with AVX2 and without AVX-512 "
                         "or native bfloat16, and check the Muon records of that kind of CPU (float32 "
                         "Newton-Schulz); on an x86 CPU with AVX-512 its runs are that kind of CPU's bit for "
                         "bit, so records tuned on that kind of CPU come out ok or stale, never differs (see "
                         "paper_repro.py --help); give it a --store of its own: run keys do not name the kernels")
    args = ap.parse_args(argv)
    try:
        use_cpu_kernels(args.cpu_kernels)
    except (ValueError, RuntimeError) as e:
        ap.error(f"--cpu-kernels {args.cpu_kernels}: {e}")
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    figures = args.figure or sorted(registry.FIGURES)
    unknown = [n for n in figures if n not in registry.FIGURES]
    if unknown:
        ap.error(f"no figure {unknown[0]}; figures are {sorted(registry.FIGURES)}")
    n_stale = 0
    for n in figures:
        a = audit(n, args.scale, store=args.store, recompute=args.recompute, jobs=args.jobs)
        if not a["records"] and not a["next_runs"]:
            print(f"figure {n}: trains nothing (closed forms or NumPy simulations)")
            continue
        counts = {s: sum(c["status"] == s for c in a["records"]) for s in ("ok", "differs", "stale", "unchecked")}
        n_stale += counts["stale"]
        print(f"figure {n}: {len(a['records'])} record(s) read: {counts['ok']} ok, "
              + (f"{counts['differs']} differs, " if counts["differs"] else "") + f"{counts['stale']} stale, "
              f"{counts['unchecked']} unchecked; next: {a['next'] or 'nothing'} ({a['next_runs']} runs)"
              + (f"; {a['recomputed']} tuning runs recomputed" if a["recomputed"] else ""))
        for c in a["records"]:
            if c["status"] == "differs":
                print(f"  differs: {c['method']} ({c['tuning_key']}): {len(c['stale'])} of {c['runs']} scores differ "
                      f"(by up to {c['max_diff']:.3g}) on runs trained again, not archived; the same lr "
                      f"{c['lr']:.4g} is selected")
            elif c["status"] != "ok":
                detail = (f"at lr {c['stale'][0][0]:.4g}, seed {c['stale'][0][1]}: recorded {c['stale'][0][2]}, "
                          f"now {c['stale'][0][3]}"
                          + (f"; these runs select lr {c['lr_now']:.4g}, not {c['lr']:.4g}"
                             if c["archived"] < c["runs"] and c["lr_now"] is not None else "")
                          if c["stale"] else f"{c['available']}/{c['runs']} runs at hand")
                print(f"  {c['status']}: {c['method']} ({c['tuning_key']}): {detail}")
    return 1 if n_stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
