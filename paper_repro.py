#!/usr/bin/env python3
"""Regenerate the figures of three optimisation papers, with their claims measured.

  A. Vasudeva et al. 2025, "How Muon's Spectral Design Benefits Generalization" (figures 1-10)
  B. Ren and Goldfarb 2021, "Tensor Normal Training for Deep Learning Models" (figures 11-12)
  C. Frans, Levine and Abbeel 2025, "A Stable Whitening Optimizer" (SPlus, figures 13-15)

Each figure N writes figN.png, figN.pdf and figN.json (data, parameters, claims) into --out,
prints its claims table and refreshes CLAIMS.md there.
"""
from __future__ import annotations

import os
import signal
import sys


def _quit_interrupted(signum, frame):
    sys.stderr.write("\ninterrupted before any figure was computed; no output was changed\n")
    sys.stderr.flush()
    os._exit(130)


# First thing, before any import that takes time (even the standard library's): a Ctrl-C during
# start-up exits cleanly. See _quit_on_ctrl_c for the rest of the run.
if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _quit_interrupted)

import argparse  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from experiments.envvars import (CPU_KERNELS, DATA_ROOT_ENV, NS_DTYPE_ENV, forced_ns_dtype,  # noqa: E402
                                 use_cpu_kernels)  # (no torch)
from paperfigs.registry import FIGURES, PAPER_LETTER, data_root_warning  # noqa: E402

# Kept here rather than imported from paperfigs.runner, which pulls in numpy and matplotlib: --help
# and argument errors stay instant. tests/test_cli.py checks the two agree.
SEED_MAX = 2_000_000_000


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paper_repro.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  python paper_repro.py --list\n  python paper_repro.py --figure 2 3 --quick\n"
               "  python paper_repro.py --all --quick --out /tmp/figs\n",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--figure", "-f", nargs="+", action="extend", metavar="N",
                      help="figure number(s) to produce, 1-15 (see --list); may be repeated")
    what.add_argument("--all", action="store_true",
                      help="produce every figure; keeps going past a figure that crashes "
                           "and exits non-zero at the end if any did")
    what.add_argument("--list", action="store_true", help="list the figures, their papers and quick budgets, then exit")
    p.add_argument("--quick", action="store_true",
                   help="reduced configuration (fewer seeds/steps, smaller models) that keeps each claim's "
                        "meaning and fits the figure's budget on a 2-core CPU; the same as --scale quick")
    p.add_argument("--scale", choices=("quick", "full", "paper"), default=None,
                   help="quick: see --quick; full (default): most torch figures in about an hour on a "
                        "2-core CPU with --jobs 2 (figure 1: 3.5 hours if it tunes afresh, one from the committed "
                        "selections, on either kind of CPU; `python -m "
                        "paperfigs.estimate --figure N` measures it on your machine); paper: the papers' own model and data sizes where "
                        "they are larger than full (for a GPU; figures without one are skipped by "
                        "--all and refused by --figure)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for figN.{png,pdf,json} and CLAIMS.md (default: figures/, and "
                        "figures/avx2/ with --cpu-kernels avx2)")
    p.add_argument("--seed", type=int, default=0,
                   help=f"base random seed in 0..{SEED_MAX}; same seed, same numbers (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where torch figures train: auto picks cuda when present (theory figures use NumPy)")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder with user-supplied datasets (MNIST IDX, CIFAR-10 python batches, Fashion-MNIST); "
                        "sets PAPER_REPRO_DATA_ROOT for experiments.data.images")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op CPU threads (default 1: the figures train many small models, where "
                        "more threads mostly add overhead, and a fixed count keeps numbers host-independent)")
    p.add_argument("--ns-dtype", choices=("auto", "float32", "bfloat16"), default=None,
                   help="the Newton-Schulz precision Muon's ns_dtype='auto' resolves to (default: the "
                        "environment's PAPER_REPRO_NS_DTYPE, else auto: bfloat16 on CUDA and on CPUs with "
                        "native bfloat16, float32 elsewhere). It is part of Muon runs' keys, so it decides "
                        "which committed Muon selection records are read: float32 reads and writes, on any "
                        "machine, the records a CPU without native bfloat16 uses; sets PAPER_REPRO_NS_DTYPE")
    p.add_argument("--cpu-kernels", choices=CPU_KERNELS, default="native",
                   help="native (default): torch computes with the widest instruction set this CPU has. avx2: "
                        "an x86 CPU with AVX-512 computes as a CPU with AVX2 and without AVX-512 or native "
                        "bfloat16 does (torch's, oneDNN's and MKL's kernels at AVX2, float32 Newton-Schulz), so "
                        "that runs give that kind of CPU's numbers bit for bit and a verdict can be checked for "
                        "both kinds of CPU on one machine. Run keys do not name the kernels, so its runs go to "
                        "their own folder (default --out figures/avx2); CPU runs only")
    p.add_argument("--replot", action="store_true",
                   help="re-draw figN.png/pdf from an existing figN.json in --out without recomputing "
                        "(and rebuild CLAIMS.md)")
    run = p.add_argument_group("training runs (torch figures; stored under OUT/runs/ and reused)")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                     help="runs in parallel, each with --threads torch threads (default: the CPU count)")
    run.add_argument("--executor", default="local", choices=["local", "ray"],
                     help="local: this process (--jobs 1) or a process pool; ray: Ray tasks (pip install ray)")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="an existing Ray cluster (e.g. auto or ray://host:10001); default: start a local one")
    run.add_argument("--fresh", action="store_true",
                     help="recompute every run (and selection) instead of reading OUT/runs/ and the record")
    run.add_argument("--lr", action="append", default=[], metavar="METHOD=VALUE",
                     help="use this lr for METHOD instead of tuning it (exploration; marked 'override' in "
                          "figN.json); METHOD as in figN.json's lr_selection or the figure's label, in any case, "
                          "other characters as '_' (muon, muon_head or 'Muon (incl. head)', splus, sgd-m, ...); "
                          "figure 14 also takes lm|METHOD or image|METHOD for one task, figure 6 "
                          "METHOD@depth2 or @depth4 for one depth; a name the figure does not tune is "
                          "reported and not used; repeatable")
    run.add_argument("--optimizer", action="append", default=[], metavar="NAME=package.module:Class[:JSON]",
                     help="add a torch.optim.Optimizer class to every torch figure, tuned and judged like the "
                          "others; JSON: keyword arguments besides lr, e.g. 'radam=torch.optim:RAdam' or "
                          "'asgd=torch.optim:ASGD:{\"t0\": 100}'; NAME may not be a figure's method or "
                          "registry name, compared as --lr compares them; repeatable")
    run.add_argument("--record-selections", action="store_true",
                     help="write the lr selections computed in this run into experiments/selections/ "
                          "(the committed record a fresh clone reads instead of re-running the tuning), with "
                          "their tuning runs under experiments/selections/runs/ (up to 100 KB gzipped each), "
                          "from which a fresh clone's sensitivity tables are computed")
    return p


def _use_cpu_kernels(args) -> None:
    """--cpu-kernels: set the kernels' environment before torch loads, and confirm them in torch."""
    if args.device == "cuda":
        raise CliError(f"--cpu-kernels {args.cpu_kernels} chooses CPU kernels; give --device cpu")
    args.device = "cpu"   # auto would pick a GPU where one is present
    try:
        use_cpu_kernels(args.cpu_kernels)
    except (ValueError, RuntimeError) as e:
        raise CliError(f"--cpu-kernels {args.cpu_kernels}: {e}") from None


def _check_ns_dtype_env() -> None:
    """A bad PAPER_REPRO_NS_DTYPE stops the command here, with the variable named, not in a worker."""
    try:
        forced_ns_dtype()
    except ValueError as e:
        raise CliError(str(e)) from None


def _figure_numbers(raw: list[str]) -> list[int]:
    numbers = []
    for tok in raw:
        try:
            n = int(tok)
        except ValueError:
            raise CliError(f"figure number must be an integer, got {tok!r} (see --list)") from None
        if n not in FIGURES:
            raise CliError(f"no figure {n}: figures are numbered {min(FIGURES)}-{max(FIGURES)} (see --list)")
        if n not in numbers:
            numbers.append(n)
    return numbers


def _output_dir(path: str) -> Path:
    if not path:
        raise CliError("--out must name a folder, got an empty string")
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create output folder {out}: {e.strerror}") from None
    if not out.is_dir() or not os.access(out, os.R_OK | os.W_OK | os.X_OK):  # read: the folder lock
        raise CliError(f"output folder {out} is not readable and writable")
    return out


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the host's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    try:
        from experiments.runtime.device import resolve_device
    except ImportError:  # no torch: the theory figures still run
        if device == "cuda":
            raise CliError("--device cuda needs torch (pip install -r requirements.txt)") from None
        return "cpu"
    try:
        return resolve_device(device).type
    except ValueError as e:
        raise CliError(f"--device: {e}") from None


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*")


def _lr_overrides(raw: list[str]) -> dict[str, float]:
    # names are read as the figures read them (paperfigs.context): "Muon (incl. head)", "lm|SPlus",
    # "muon@depth4" are all well formed; what they reach is decided per figure
    from paperfigs.context import lr_name_ok

    out = {}
    for item in raw:
        method, sep, value = item.partition("=")
        if not sep or not lr_name_ok(method):
            raise CliError(f"--lr takes METHOD=VALUE (e.g. muon=0.02), got {item!r}")
        try:
            lr = float(value)
        except ValueError:
            raise CliError(f"--lr {method}: {value!r} is not a number") from None
        if not (math.isfinite(lr) and lr > 0):
            raise CliError(f"--lr {method}: the lr must be a positive finite number, got {value}")
        out[method] = lr
    return out


def _external_optimizers(raw: list[str]):
    """--optimizer NAME=package.module:Class[:JSON] -> ExternalOptimizer, checked now (importable,
    a torch.optim.Optimizer subclass, JSON an object) so a typo stops the run before any compute."""
    import json

    from paperfigs.context import ExternalOptimizer, clashing_names

    out, names = [], set()
    for item in raw:
        name, sep, rest = item.partition("=")
        if not sep or not _NAME.fullmatch(name):
            raise CliError(f"--optimizer takes NAME=package.module:Class[:JSON], got {item!r}")
        module, _, tail = rest.partition(":")
        cls, _, text = tail.partition(":")
        if not module or not cls:
            raise CliError(f"--optimizer {name}: name the class as package.module:Class, got {rest!r}")
        kwargs = {}
        if text:
            try:
                kwargs = json.loads(text)
            except ValueError as e:
                raise CliError(f"--optimizer {name}: keyword arguments are not valid JSON ({e})") from None
            if not isinstance(kwargs, dict):
                raise CliError(f"--optimizer {name}: keyword arguments must be a JSON object, got {text}")
            if "lr" in kwargs or "params" in kwargs:
                raise CliError(f"--optimizer {name}: lr is tuned by the figures and params are the model's; "
                               "leave both out of the JSON")
        from experiments.optim.registry import OPTIMIZERS, load_external

        if clashing_names([name], (*OPTIMIZERS, *names)):  # "MUON" would share muon's --lr
            raise CliError(f"--optimizer {name}: the name is already taken (registry optimizers: "
                           f"{', '.join(sorted(OPTIMIZERS))})")
        try:
            load_external(f"{module}:{cls}")
        except ValueError as e:
            raise CliError(f"--optimizer {name}: {e}") from None
        names.add(name)
        out.append(ExternalOptimizer(name, f"{module}:{cls}", tuple(sorted(kwargs.items()))))
    return tuple(out)


def _run_store(out: Path) -> Path:
    store = out / "runs"
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create run store {store}: {e.strerror}") from None
    if not os.access(store, os.W_OK | os.X_OK):
        raise CliError(f"run store {store} is not writable")
    return store


def _check_executor(args) -> None:
    if args.jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {args.jobs}")
    if args.ray_address and args.executor != "ray":
        raise CliError("--ray-address needs --executor ray")
    if args.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise CliError("--executor ray needs the ray package: pip install 'ray>=2.40'")


def _context(args, store: Path, overrides: dict, extra: tuple):
    """The engine and its settings every figure of this invocation shares (one pool, one store).
    Its worker pool or Ray instance closes when the process exits."""
    from experiments.engine import Engine
    from paperfigs.context import Context

    engine = Engine(store=store, jobs=args.jobs, executor=args.executor, ray_address=args.ray_address,
                    fresh=args.fresh, threads=args.threads)
    return Context(engine=engine, lr_overrides=overrides, extra_optimizers=extra, use_record=not args.fresh,
                   write_record=args.record_selections)


def _list() -> None:
    print(f"{'N':>3}  {'paper':5}  {'quick s':>7}  title")
    for n, spec in FIGURES.items():
        print(f"{n:>3}  {PAPER_LETTER[spec.paper]:5}  {spec.quick_budget_s:>7}  {spec.title}")


@contextmanager
def _quit_on_ctrl_c():
    """Ctrl-C quits the process at once during the block (main thread, unless SIGINT is ignored)."""
    handler = signal.getsignal(signal.SIGINT)
    ours = (threading.current_thread() is threading.main_thread()
            and handler in (signal.default_int_handler, _quit_interrupted))
    if ours:
        signal.signal(signal.SIGINT, _quit_interrupted)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the first figure started (e.g. while importing numpy/torch)
        print("\ninterrupted before any figure was computed; no output was changed", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed by a pager or `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141


def _main(argv: list[str] | None) -> int:
    # Until the first figure starts, Ctrl-C quits at once with one line: nothing has been written,
    # and a KeyboardInterrupt raised inside numpy's, scipy's or torch's import machinery can leave
    # them half-initialised (a later RecursionError) instead of reaching main.
    with _quit_on_ctrl_c():
        args = _parser().parse_args(argv)
        try:
            if args.data_root:
                if not Path(args.data_root).is_dir():  # a typo would otherwise fall back to other sources silently
                    raise CliError(f"--data-root {args.data_root} is not a folder")
                os.environ[DATA_ROOT_ENV] = args.data_root
            if args.ns_dtype is not None:
                os.environ[NS_DTYPE_ENV] = args.ns_dtype
            _check_ns_dtype_env()   # no torch: a bad value in the environment stops here, in one line
            if args.out is None:
                args.out = "figures" if args.cpu_kernels == "native" else f"figures/{args.cpu_kernels}"
            if args.cpu_kernels != "native" and not args.list and not args.replot:
                _use_cpu_kernels(args)
            if args.list:
                _list()
                return 0
            if args.all:
                numbers = list(FIGURES)
            else:
                numbers = _figure_numbers(args.figure)
            if args.quick and args.scale not in (None, "quick"):
                raise CliError(f"--quick contradicts --scale {args.scale}")
            mode = "quick" if args.quick else (args.scale or "full")
            if mode == "paper" and not args.replot:
                from paperfigs.registry import has_paper_scale
                without = [n for n in numbers if not has_paper_scale(n)]
                if without and not args.all:
                    raise CliError(f"figure(s) {', '.join(map(str, without))} have no paper-scale configuration: "
                                   "their full configuration is already at the papers' scale")
                if without:
                    print(f"no paper-scale configuration (full is the papers' scale), skipped: "
                          f"{', '.join(map(str, without))}")
                numbers = [n for n in numbers if n not in without]
            if args.threads < 1:
                raise CliError(f"--threads must be >= 1, got {args.threads}")
            if not 0 <= args.seed <= SEED_MAX:  # figures add offsets to it; see paperfigs.runner.SEED_MAX
                raise CliError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")
            cores = _cpu_count()
            if args.threads > cores:
                print(f"paper_repro.py: warning: --threads {args.threads} is above the {cores} CPU core(s) "
                      "available here; the extra threads only add overhead", file=sys.stderr)
            out = _output_dir(args.out)
            device = "cpu" if args.replot else _resolve_device(args.device)
            if not args.replot:
                _check_executor(args)
                overrides = _lr_overrides(args.lr)
                extra = _external_optimizers(args.optimizer)
                store = _run_store(out)
        except CliError as e:
            print(f"paper_repro.py: error: {e}", file=sys.stderr)
            return 2

        from experiments.data.files import DataFormatError
        from paperfigs.output import InterruptedAfterWrite, OutputError, claims_table, recover
        from paperfigs.result import ResultError
        from paperfigs.runner import replot, run_figure

        if not args.replot:
            import experiments.runtime.threads  # noqa: F401  (torch, which every run_figure loads)
        for n in numbers:  # load the figure code and its libraries now, while Ctrl-C simply quits
            try:
                FIGURES[n].load()
            except Exception:  # reported by that figure's run below, which loads it again
                pass

        finished, removed = recover(out)
        if finished or removed:
            print(f"repaired {out} after a killed run: {finished} figure set(s) completed, "
                  f"{removed} temporary file(s) removed")
    ctx = None if args.replot else _context(args, store, overrides, extra)
    if args.data_root and not args.replot and (warning := data_root_warning(numbers, mode, args.data_root)):
        print(f"paper_repro.py: warning: {warning}", file=sys.stderr)
    crashed = []
    t_all = time.perf_counter()
    for n in numbers:
        written = False
        try:
            if args.replot:
                replot(n, out)
                written = True
                print(f"figure {n}: re-drawn from {out / f'fig{n}.json'}")
                continue
            print(f"== figure {n} ({mode}, device {device}): {FIGURES[n].title}", flush=True)
            before = dict(ctx.engine.counts)
            result = run_figure(n, mode=mode, seed=args.seed, device=device, out_dir=out,
                                threads=args.threads, ctx=ctx)
            written = True
            print(claims_table(result))
            computed = ctx.engine.counts["computed"] - before["computed"]
            stored = ctx.engine.counts["stored"] - before["stored"]
            cpu = ctx.engine.counts["cpu_s"] - before["cpu_s"]
            print(f"   wrote {out}/fig{n}.png, .pdf, .json; runs: {computed} computed ({cpu:.0f} s of CPU), "
                  f"{stored} read from {out / 'runs'}", flush=True)
        except KeyboardInterrupt as e:
            if written or isinstance(e, InterruptedAfterWrite):
                state = "its new files were written"
            else:
                state = "its previous files, if any, are unchanged"
            print(f"\ninterrupted during figure {n}: {state}. Each figN.png/.pdf/.json in {out} is a set "
                  "from one run and CLAIMS.md matches the JSON files.", file=sys.stderr)
            return 130
        except OutputError as e:
            crashed.append(n)
            print(f"figure {n} failed: {e}", file=sys.stderr)
        except (FileNotFoundError, DataFormatError, ResultError) as e:  # a missing or malformed file: one line
            if len(numbers) == 1 and not args.all:
                print(f"paper_repro.py: error: {e}", file=sys.stderr)
                return 2
            crashed.append(n)
            print(f"figure {n} failed: {e}", file=sys.stderr)
        except Exception:  # keep going: one figure's crash must not stop --all
            crashed.append(n)
            print(f"figure {n} crashed:", file=sys.stderr)
            traceback.print_exc()
    if ctx is not None:
        ctx.engine.close()
    if len(numbers) > 1:
        print(f"done in {time.perf_counter() - t_all:.1f} s; claims summary in {out / 'CLAIMS.md'}")
    if crashed:
        print(f"figures that crashed: {', '.join(map(str, crashed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
