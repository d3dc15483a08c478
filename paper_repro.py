#!/usr/bin/env python3
"""Regenerate the figures of three optimisation papers, with their claims measured.

  A. Vasudeva et al. 2025, "How Muon's Spectral Design Benefits Generalization" (figures 1-10)
  B. Ren and Goldfarb 2021, "Tensor Normal Training for Deep Learning Models" (figures 11-12)
  C. Frans, Levine and Abbeel 2025, "A Stable Whitening Optimizer" (SPlus, figures 13-15)

Each figure N writes figN.png, figN.pdf and figN.json (data, parameters, claims) into --out,
prints its claims table and refreshes CLAIMS.md there.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from experiments.datafiles import DataFormatError
from paperfigs.registry import FIGURES, PAPER_LETTER, data_root_warning


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
    what.add_argument("--figure", "-f", nargs="+", metavar="N",
                      help="figure number(s) to produce, 1-15 (see --list)")
    what.add_argument("--all", action="store_true",
                      help="produce every implemented figure; keeps going past a figure that crashes "
                           "and exits non-zero at the end if any did")
    what.add_argument("--list", action="store_true", help="list the figures, their papers and status, then exit")
    p.add_argument("--quick", action="store_true",
                   help="reduced configuration (fewer seeds/steps, smaller models) that keeps each claim's "
                        "meaning and fits the figure's budget on a 2-core CPU; default is the paper's scale")
    p.add_argument("--out", default="figures", metavar="DIR",
                   help="output folder for figN.{png,pdf,json} and CLAIMS.md (default: figures/)")
    p.add_argument("--seed", type=int, default=0, help="base random seed; same seed, same numbers (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where torch figures train: auto picks cuda when present (theory figures use NumPy)")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder with user-supplied datasets (MNIST IDX, CIFAR-10 python batches, Fashion-MNIST); "
                        "sets PAPER_REPRO_DATA_ROOT for experiments.data")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op CPU threads (default 1: the figures train many small models, where "
                        "more threads mostly add overhead, and a fixed count keeps numbers host-independent)")
    p.add_argument("--replot", action="store_true",
                   help="re-draw figN.png/pdf from an existing figN.json in --out without recomputing")
    return p


def _figure_numbers(raw: list[str]) -> list[int]:
    numbers = []
    for tok in raw:
        try:
            n = int(tok)
        except ValueError:
            raise CliError(f"figure number must be an integer, got {tok!r} (see --list)") from None
        if n not in FIGURES:
            raise CliError(f"no figure {n}: figures are numbered {min(FIGURES)}-{max(FIGURES)} (see --list)")
        if not FIGURES[n].implemented:
            raise CliError(f"figure {n} ({FIGURES[n].title}) is not implemented yet")
        if n not in numbers:
            numbers.append(n)
    return numbers


def _output_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create output folder {out}: {e.strerror}") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"output folder {out} is not writable")
    return out


def _resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "cuda":
            raise CliError("--device cuda needs torch (pip install -r requirements.txt)") from None
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda asked for, but torch sees no CUDA device")
    return "cuda" if torch.cuda.is_available() else "cpu"


def _list() -> None:
    print(f"{'N':>3}  {'paper':5}  {'quick s':>7}  status       title")
    for n, spec in FIGURES.items():
        paper = PAPER_LETTER[spec.paper]
        status = "ready" if spec.implemented else "not yet"
        print(f"{n:>3}  {paper:5}  {spec.quick_budget_s:>7}  {status:11}  {spec.title}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.data_root:
            if not Path(args.data_root).is_dir():  # a typo would otherwise fall back to other sources silently
                raise CliError(f"--data-root {args.data_root} is not a folder")
            os.environ["PAPER_REPRO_DATA_ROOT"] = args.data_root
        if args.list:
            _list()
            return 0
        if args.all:
            numbers = [n for n, s in FIGURES.items() if s.implemented]
            skipped = [n for n, s in FIGURES.items() if not s.implemented]
            if skipped:
                print(f"not implemented yet, skipped: {', '.join(map(str, skipped))}")
        else:
            numbers = _figure_numbers(args.figure)
        if args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        if args.seed < 0:  # numpy's SeedSequence (data splits, theory figures) rejects negative seeds
            raise CliError(f"--seed must be >= 0, got {args.seed}")
        out = _output_dir(args.out)
        device = "cpu" if args.replot else _resolve_device(args.device)
    except CliError as e:
        print(f"paper_repro.py: error: {e}", file=sys.stderr)
        return 2

    from paperfigs.output import claims_table
    from paperfigs.runner import replot, run_figure

    mode = "quick" if args.quick else "full"
    if args.data_root and not args.replot and (warning := data_root_warning(numbers, mode, args.data_root)):
        print(f"paper_repro.py: warning: {warning}", file=sys.stderr)
    crashed = []
    t_all = time.perf_counter()
    for n in numbers:
        try:
            if args.replot:
                replot(n, out)
                print(f"figure {n}: re-drawn from {out / f'fig{n}.json'}")
                continue
            print(f"== figure {n} ({mode}, device {device}): {FIGURES[n].title}", flush=True)
            result = run_figure(n, mode=mode, seed=args.seed, device=device, out_dir=out,
                                threads=args.threads)
            print(claims_table(result))
            print(f"   wrote {out}/fig{n}.png, .pdf, .json", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: outputs already written are complete (writes are atomic)", file=sys.stderr)
            return 130
        except (FileNotFoundError, DataFormatError) as e:  # a missing or malformed data file: one line
            if len(numbers) == 1 and not args.all:
                print(f"paper_repro.py: error: {e}", file=sys.stderr)
                return 2
            crashed.append(n)
            print(f"figure {n} failed: {e}", file=sys.stderr)
        except Exception:  # keep going: one figure's crash must not stop --all
            crashed.append(n)
            print(f"figure {n} crashed:", file=sys.stderr)
            traceback.print_exc()
    if len(numbers) > 1:
        print(f"done in {time.perf_counter() - t_all:.1f} s; claims summary in {out / 'CLAIMS.md'}")
    if crashed:
        print(f"figures that crashed: {', '.join(map(str, crashed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
