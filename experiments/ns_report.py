"""How well and how fast Muon's Newton-Schulz orthogonalises, measured side by side in one run.

    python -m experiments.ns_report [--quick] [--device cpu|cuda|auto] [--threads N] [--json PATH]

1. Singular-value bands. Newton-Schulz keeps the singular vectors of its input M and maps each
   singular value to a "gain" g_i = u_i^T O v_i (exactly 1 for the polar factor U V^T). For each
   input the band [min g_i, max g_i] over the directions the exact polar factor keeps (singular
   values above rtol * s_max) after 5 steps with the classic quintic, with Polar Express, and for
   the exact polar factor (SVD in float32), with the iteration in float32 and in bfloat16:
   - random matrices with singular values log-spaced from 1 to 1/kappa, kappa = 1e1 .. 1e6
     (rtol 0.5 / kappa: every designed direction counts);
   - the gradients of the hidden matrices of figure 1's MLP and figure 7's ResNet (quick
     configurations) at initialisation on a batch of their training data (rtol: SpecGD's
     max(rows, cols) * eps(float32)); the band is over all of a model's matrices.
   The basis u_i, v_i is the float64 SVD of M as the iteration sees it (rounded to its dtype).
2. Speed per matrix size: Muon.step() with ns_dtype="auto" (and float32, for comparison) against
   torch.optim.Muon.step() on one parameter with a fixed gradient, and Newton-Schulz alone against
   its 15 matrix products in the same dtype (the floor), timed with torch.utils.benchmark's
   blocked_autorange at an explicit thread count (one thread on a CPU: this thread's CPU time,
   experiments.cost.clock; wall time with CUDA synchronised otherwise). The methods are interleaved over `rounds`
   rounds and each keeps its best round median (load on a shared machine only adds time).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from experiments import cost
from experiments.data.images import load_image_split
from experiments.models.vision import MLP, ResNetCNN
from experiments.optim.muon import NS_COEFFICIENTS, Muon, auto_ns_dtype, newton_schulz, ns_schedule
from experiments.optim.param_groups import matrix_view, split_parameters
from experiments.optim.specgd import truncated_polar
from experiments.fileio import atomic_write_json

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
METHODS = ("classic", "polar_express", "exact")


@dataclass(frozen=True)
class ReportConfig:
    shape: tuple[int, int] = (512, 256)              # random test matrices
    kappas: tuple[float, ...] = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
    dataset: str = "mnist5k"
    mlp: tuple[int, int] = (128, 3)                  # figure 1 quick: width, depth
    cnn: tuple[int, tuple[int, ...]] = (8, (1, 1))   # figure 7 quick: width, blocks
    batch: int = 128
    sizes: tuple[tuple[int, int], ...] = ((32, 32), (64, 64), (128, 128), (256, 256), (512, 512), (1024, 1024),
                                         (2048, 512))
    min_run_time: float = 1.0                        # seconds per blocked_autorange
    rounds: int = 3
    seed: int = 0


FULL = ReportConfig()
QUICK = replace(FULL, shape=(256, 128),
                sizes=((32, 32), (64, 64), (128, 128), (256, 256), (512, 512), (1024, 256)),
                min_run_time=0.3, rounds=2)


# ---- 1. singular-value bands ----------------------------------------------------------------

def _orthogonalise(method: str, M: torch.Tensor, dtype: torch.dtype, rtol: float) -> torch.Tensor:
    if method == "exact":
        return truncated_polar(M.to(dtype).float(), rtol)
    coefficients = NS_COEFFICIENTS if method == "classic" else "polar_express"
    return newton_schulz(M, 5, ns_schedule(coefficients, 5), dtype)


def gains(M: torch.Tensor, method: str, dtype: torch.dtype, rtol: float) -> torch.Tensor:
    """u_i^T O v_i for the singular directions of M (as rounded to `dtype`) with s_i > rtol s_max."""
    seen = M.to(dtype).double()
    U, S, Vh = torch.linalg.svd(seen, full_matrices=False)
    keep = S > rtol * S[0]
    O = _orthogonalise(method, M, dtype, rtol).double()
    return torch.einsum("mi,mn,in->i", U[:, keep], O, Vh[keep])


def random_matrix(shape: tuple[int, int], kappa: float, generator: torch.Generator) -> torch.Tensor:
    """float32 (m, n) with singular values log-spaced from 1 to 1/kappa and random singular vectors."""
    m, n = shape
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=generator, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), k, dtype=torch.float64)
    return ((U * s) @ V.T).float()


def model_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of the hidden matrices (as Muon sees them) for one cross-entropy batch."""
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return [matrix_view(p.grad).detach().clone() for p in split_parameters(model)[0]]


def band_inputs(cfg: ReportConfig) -> list[tuple[str, list[torch.Tensor], float | None]]:
    """(label, matrices, rtol); rtol None means SpecGD's default."""
    g = torch.Generator().manual_seed(cfg.seed)
    rows = [(f"random {cfg.shape[0]}x{cfg.shape[1]}, kappa 1e{round(torch.log10(torch.tensor(k)).item())}",
             [random_matrix(cfg.shape, k, g)], 0.5 / k) for k in cfg.kappas]
    split = load_image_split(cfg.dataset, seed=cfg.seed)
    idx = torch.randperm(len(split.y_train), generator=g)[:cfg.batch]
    x, y = split.x_train[idx], split.y_train[idx]
    c, h, w = split.image_shape
    width, depth = cfg.mlp
    mlp = MLP(c * h * w, split.num_classes, width, depth, generator=torch.Generator().manual_seed(cfg.seed))
    cnn_width, blocks = cfg.cnn
    cnn = ResNetCNN(c, split.num_classes, cnn_width, blocks, generator=torch.Generator().manual_seed(cfg.seed))
    rows.append((f"fig 1 MLP gradients ({cfg.dataset})", model_gradients(mlp, x, y), None))
    rows.append((f"fig 7 ResNet gradients ({cfg.dataset})", model_gradients(cnn, x, y), None))
    return rows


def bands(cfg: ReportConfig) -> list[dict]:
    out = []
    for label, mats, rtol in band_inputs(cfg):
        for dname, dtype in DTYPES.items():
            row = {"input": label, "dtype": dname}
            for method in METHODS:
                gs = []
                for M in mats:
                    r = rtol if rtol is not None else max(M.shape) * torch.finfo(torch.float32).eps
                    gs.append(gains(M, method, dtype, r))
                gs = torch.cat(gs)
                row[method] = [gs.min().item(), gs.max().item()]
            out.append(row)
    return out


# ---- 2. speed -------------------------------------------------------------------------------

def _step_fn(make, shape: tuple[int, int], device: torch.device, generator: torch.Generator):
    p = nn.Parameter(torch.randn(shape, generator=generator).to(device))
    p.grad = (torch.randn(shape, generator=generator) * 1e-2).to(device)
    opt = make([p])
    opt.step()  # state allocated outside the timing
    return opt.step


def _products_fn(shape: tuple[int, int], dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """Newton-Schulz's 15 products on (s, l) = (min, max side) inputs, nothing else."""
    s, l = min(shape), max(shape)
    X = torch.randn(s, l, generator=generator).to(device, dtype)
    A = torch.randn(s, s, generator=generator).to(device, dtype)
    XT = X.T.contiguous()

    def run():
        for _ in range(5):
            X @ XT
            A @ A
            A @ X
    return run


def speed(cfg: ReportConfig, device: torch.device, threads: int) -> list[dict]:
    auto = auto_ns_dtype(device.type)[0]
    out = []
    for shape in cfg.sizes:
        g = torch.Generator().manual_seed(cfg.seed)
        M = torch.randn(shape, generator=g).to(device)
        fns = {
            "muon_auto_s": _step_fn(lambda ps: Muon(ps, lr=1e-3), shape, device, g),
            "muon_float32_s": _step_fn(lambda ps: Muon(ps, lr=1e-3, ns_dtype="float32"), shape, device, g),
            "torch_muon_s": _step_fn(lambda ps: torch.optim.Muon(ps, lr=1e-3, weight_decay=0.0), shape, device, g),
            "ns_auto_s": lambda: newton_schulz(M, 5, NS_COEFFICIENTS, auto),
            "products_auto_s": _products_fn(shape, auto, device, g),
        }
        best = {k: float("inf") for k in fns}
        for _ in range(cfg.rounds):
            for k, fn in fns.items():
                best[k] = min(best[k], cost.median_time(fn, device, threads, cfg.min_run_time))
        out.append({"shape": list(shape), **best,
                    "muon_auto_over_torch": best["muon_auto_s"] / best["torch_muon_s"],
                    "muon_float32_over_torch": best["muon_float32_s"] / best["torch_muon_s"],
                    "ns_over_products": best["ns_auto_s"] / best["products_auto_s"]})
    return out


# ---- driver -----------------------------------------------------------------------------------

def run(cfg: ReportConfig, device: torch.device, threads: int, verbose: bool = True) -> dict:
    dtype, why = auto_ns_dtype(device.type)
    result = {"config": asdict(cfg), "device": str(device), "threads": threads, "torch": torch.__version__,
              "clock": cost.clock(device, threads)[1],
              "auto_ns_dtype": str(dtype).removeprefix("torch."), "auto_reason": why}
    if verbose:
        print(f"ns_dtype='auto' on {device}: {result['auto_ns_dtype']} ({why})\n")
    result["bands"] = bands(cfg)
    if verbose:
        print("singular-value gains after 5 steps, [min, max] over the kept directions")
        print(f"{'input':42s} {'dtype':9s} " + " ".join(f"{m:>17s}" for m in METHODS))
        for r in result["bands"]:
            print(f"{r['input']:42s} {r['dtype']:9s} "
                  + " ".join(f"[{r[m][0]:6.3f}, {r[m][1]:6.3f}]" for m in METHODS))
    result["speed"] = speed(cfg, device, threads)
    if verbose:
        print(f"\nstep time per matrix size ({threads} thread(s), {result['clock']}, best of {cfg.rounds} "
              "interleaved rounds)")
        print(f"{'shape':>11s} {'Muon auto':>10s} {'Muon fp32':>10s} {'torch Muon':>10s} {'auto/torch':>10s} "
              f"{'fp32/torch':>10s} {'NS/products':>11s}")
        for r in result["speed"]:
            print(f"{'x'.join(map(str, r['shape'])):>11s} {r['muon_auto_s'] * 1e3:8.3f}ms {r['muon_float32_s'] * 1e3:8.3f}ms "
                  f"{r['torch_muon_s'] * 1e3:8.3f}ms {r['muon_auto_over_torch']:10.2f} "
                  f"{r['muon_float32_over_torch']:10.2f} {r['ns_over_products']:11.2f}")
        faster = [r for r in result["speed"] if r["muon_float32_s"] < r["muon_auto_s"]]
        if result["auto_ns_dtype"] != "float32" and faster:
            print("ns_dtype='float32' steps faster than auto's "
                  f"{result['auto_ns_dtype']} here at " + ", ".join(
                      f"{'x'.join(map(str, r['shape']))} ({r['muon_float32_s'] / r['muon_auto_s']:.2f}x)"
                      for r in faster))
    return result


def main(argv=None) -> None:
    from experiments.bench import parse_bench_args
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller matrices and shorter timings (about a minute)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads for the timings (default 1)")
    args, device = parse_bench_args(ap, argv, "ns_report.json")
    t0 = time.perf_counter()
    result = run(QUICK if args.quick else FULL, device, args.threads)
    result["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {result['total_s']:.0f} s")
    if args.json:
        atomic_write_json(Path(args.json), result)


if __name__ == "__main__":
    main()
