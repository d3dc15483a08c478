"""Cost of every registered optimizer, measured side by side in one run.

    python -m experiments.bench [--quick] [--device cpu|cuda] [--threads N] [--json PATH]

For an MLP and a small ResNet-style CNN at two widths each, on synthetic 28x28 inputs:
1. time of a full training iteration (zero_grad, forward, curvature_step, backward, step) and of
   the step alone, relative to SGD with momentum. Each measurement is the mean over a block of
   `block` = 10 consecutive iterations, so every-10-steps work (TNT/KFAC sampled backward and
   factors, the registry Shampoo's inverse roots) is amortised in it; blocks of all methods are
   interleaved and the best block is kept (timeit's convention: load on a shared machine only
   ever adds time). SPlus's eigenbasis refresh every 100 steps is not in the blocks;
2. optimizer memory (parameters + state) / parameter memory, measured from optimizer.state and
   against each method's formula (SPlus 3mn + 2(m^2 + n^2), Adam 3mn, ...);
3. the arithmetic floor of each method's extra work, timed on the model's own shapes (Muon: 15
   products per matrix; Shampoo cached: 2 statistics + 2 preconditioning products per matrix;
   SPlus: 4 rotations + 2 statistics; TNT/KFAC: one sampled backward and the factor products every
   T1 steps plus the preconditioning products), and the target
       iteration time <= 1.2 x (SGD-m iteration + floor);
4. ours against a peer doing the same work on the MLP's parameters (optimizer step only):
   torch.optim.Muon (hidden 2-D matrices), pytorch_optimizer.SPlus (all parameters), and
   pytorch_optimizer.Shampoo (original configuration) when "shampoo" is registered;
5. Muon's Newton-Schulz time / the time of its 15 matrix products alone.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import pytorch_optimizer
from experiments.models import MLP, ResNetCNN
from experiments.optim.curvature import curvature_step
from experiments.train import sync_device
from experiments.optim.muon import Muon, newton_schulz
from experiments.optim.param_groups import matrix_view, split_parameters
from experiments.optim.registry import OPTIMIZERS, build_optimizer
from experiments.optim.splus import SPlus


@dataclass(frozen=True)
class BenchConfig:
    mlp_widths: tuple[int, ...] = (256, 1024)
    mlp_depth: int = 3
    cnn_widths: tuple[int, ...] = (16, 32)
    batch: int = 128
    warmup: int = 3        # untimed steps per optimizer (step 1 builds state and eigenbases)
    block: int = 10        # iterations per timed block (a whole TNT/KFAC curvature period)
    rounds: int = 5        # timed blocks per optimizer, methods interleaved block by block
    floor_repeats: int = 20
    lr: float = 1e-4       # small, so no method diverges during timing
    seed: int = 0


FULL = BenchConfig()
QUICK = replace(FULL, mlp_widths=(128, 256), cnn_widths=(8, 16), batch=64, rounds=2, floor_repeats=10)
SMOKE = replace(FULL, mlp_widths=(16,), mlp_depth=2, cnn_widths=(4,), batch=8, warmup=1, block=2, rounds=1,
                floor_repeats=1)  # seconds; for the tests

TARGET_FACTOR = 1.2


def clock(device: torch.device):
    """The timer: this thread's CPU time on a CPU with one intra-op thread (all torch work then runs
    on the calling thread, autograd's backward included, and other processes' load cannot inflate
    it: on the shared 2-core machine wall time was 2x CPU time); wall time otherwise."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def _best_time(fn, repeats: int, device: torch.device) -> float:
    """Best wall time of fn() over `repeats` calls (after one untimed call)."""
    fn()
    now, times = clock(device), []
    for _ in range(repeats):
        sync_device(device)
        t0 = now()
        fn()
        sync_device(device)
        times.append(now() - t0)
    return min(times)


# ---- models and data ----------------------------------------------------------------------

def make_model(kind: str, width: int, cfg: BenchConfig, device: torch.device) -> nn.Module:
    g = torch.Generator().manual_seed(cfg.seed)
    if kind == "mlp":
        model = MLP(784, 10, width=width, depth=cfg.mlp_depth, generator=g)
    else:
        model = ResNetCNN(1, 10, width=width, generator=g)
    return model.to(device)


def make_batch(cfg: BenchConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    X = torch.randn(cfg.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (cfg.batch,), generator=g)
    return X.to(device), y.to(device)


# ---- 1. iteration and step times ----------------------------------------------------------

def _iteration(model, opt, X, y, generator, device) -> tuple[float, float]:
    """One training iteration; returns (iteration seconds, step seconds)."""
    now = clock(device)
    sync_device(device)
    t0 = now()
    opt.zero_grad(set_to_none=True)
    out = model(X)
    loss = F.cross_entropy(out, y)
    curvature_step(opt, out, "ce", generator)
    loss.backward()
    sync_device(device)
    t1 = now()
    opt.step()
    sync_device(device)
    t2 = now()
    return t2 - t0, t2 - t1


def time_methods(kind: str, width: int, names: list[str], cfg: BenchConfig, device: torch.device) -> dict:
    """Interleaved block timing of every method on its own copy of one model; returns per-method
    best-block means and the optimizer objects (their state is measured afterwards)."""
    base = make_model(kind, width, cfg, device)
    X, y = make_batch(cfg, device)
    runs = {}
    for name in names:
        model = copy.deepcopy(base)
        opt = build_optimizer(name, model, cfg.lr)
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        for _ in range(cfg.warmup):
            _iteration(model, opt, X, y, g, device)
        runs[name] = {"model": model, "opt": opt, "gen": g, "iter": [], "step": []}
    for _ in range(cfg.rounds):
        for name in names:
            r = runs[name]
            times = [_iteration(r["model"], r["opt"], X, y, r["gen"], device) for _ in range(cfg.block)]
            r["iter"].append(sum(t[0] for t in times) / cfg.block)
            r["step"].append(sum(t[1] for t in times) / cfg.block)
    return {name: {"iter_s": min(r["iter"]), "step_s": min(r["step"]),
                   "opt": r["opt"], "model": r["model"]} for name, r in runs.items()}


def forward_backward_times(model: nn.Module, cfg: BenchConfig, device: torch.device) -> tuple[float, float]:
    """(forward, backward) seconds of one batch: the backward is what a sampled-label pass costs."""
    X, y = make_batch(cfg, device)

    def fwd():
        with torch.no_grad():
            model(X)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(X), y).backward()

    t_f = _best_time(fwd, cfg.floor_repeats, device)
    return t_f, max(_best_time(fwd_bwd, cfg.floor_repeats, device) - t_f, 0.0)


# ---- 2. memory ----------------------------------------------------------------------------

def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(_tensor_bytes(s) for s in opt.state.values())


def _linear_like(model: nn.Module):
    """(weight, fan_in incl. bias column, fan_out) of every Linear/Conv2d (KFAC's layers)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel() + (m.bias is not None)
            yield m.weight, fan_in, m.weight.shape[0]


def _shampoo_dims(p: torch.Tensor, max_dim: int = 4096) -> list[int]:
    return [d for d in p.shape if d <= max_dim]


def _tnt_dims(p: torch.Tensor) -> list[int]:
    if p.ndim <= 2:
        return list(p.shape) or [1]
    return [p.shape[0], p.shape[1], math.prod(p.shape[2:])]


def formula_state_numel(name: str, model: nn.Module) -> int | None:
    """State elements each method's definition implies (scalars ignored); None when unknown."""
    params = list(model.parameters())
    numel = sum(p.numel() for p in params)
    if name == "sgd":
        return numel                                   # momentum
    if name in ("adam", "adamw"):
        return 2 * numel                               # first and second moments
    if name in ("muon", "nmd", "signum", "specgd"):
        hidden, fallback = split_parameters(model)
        per_hidden = 0 if name == "specgd" else 1      # momentum buffer (SpecGD has none)
        return per_hidden * sum(p.numel() for p in hidden) + 2 * sum(p.numel() for p in fallback)
    if name == "splus":                                # momentum, EMA; L, R, Q_L, Q_R per matrix
        total = 2 * numel
        for p in params:
            if p.ndim >= 2:
                total += 2 * sum(d * d for d in matrix_view(p).shape if d < 10000)
        return total
    if name == "shampoo":                              # momentum, Adam graft, H_j and cached roots
        return 2 * numel + sum(2 * d * d for p in params for d in _shampoo_dims(p))
    if name == "tnt":                                  # momentum, factors and inverses per mode
        return numel + sum(2 * d * d for p in params for d in _tnt_dims(p))
    if name == "kfac":                                 # momentum, A, G and their inverses per layer
        return numel + sum(2 * (a * a + g * g) for _, a, g in _linear_like(model))
    return None


# ---- 3. arithmetic floors -----------------------------------------------------------------

def _products_time(shapes: list[tuple[int, int, int]], cfg: BenchConfig, device: torch.device) -> float:
    """Best time of the products (a x b) @ (b x c) for all shapes, on random float32 inputs."""
    g = torch.Generator().manual_seed(cfg.seed)
    pairs = [(torch.randn(a, b, generator=g).to(device), torch.randn(b, c, generator=g).to(device))
             for a, b, c in shapes]

    def run():
        for A, B in pairs:
            A @ B

    return _best_time(run, cfg.floor_repeats, device) if pairs else 0.0


def ns_products(rows: int, cols: int, steps: int = 5) -> list[tuple[int, int, int]]:
    """Shapes of Newton-Schulz's 3 products per step on X: (s, l), s = min, l = max side."""
    s, l = min(rows, cols), max(rows, cols)
    return [(s, l, s), (s, s, s), (s, s, l)] * steps


def splus_products(m: int, n: int) -> list[tuple[int, int, int]]:
    """4 rotations (Q_L^T M, . Q_R, Q_L U, . Q_R^T) and 2 statistics (G G^T, G^T G)."""
    return [(m, m, n), (m, n, n), (m, m, n), (m, n, n), (m, n, m), (n, m, n)]


def _mode_products(dims: list[int], numel: int, stats: bool, precond: bool) -> list[tuple[int, int, int]]:
    """Per mode j of a tensor with sides `dims`: statistic G_(j) G_(j)^T and preconditioning R_j G_(j)."""
    out = []
    for d in dims:
        rest = numel // d
        if stats:
            out.append((d, rest, d))
        if precond:
            out.append((d, d, rest))
    return out


def method_floors(model: nn.Module, cfg: BenchConfig, device: torch.device, backward_s: float) -> dict[str, float]:
    """Seconds per iteration of each method's extra arithmetic beyond SGD-m (0: elementwise only)."""
    params = list(model.parameters())
    hidden, _ = split_parameters(model)
    hidden_shapes = [matrix_view(p).shape for p in hidden]
    matrices = [matrix_view(p).shape for p in params if p.ndim >= 2]
    floors = {name: 0.0 for name in ("sgd", "adam", "adamw", "nmd", "signum")}
    floors["muon"] = _products_time([s for m, n in hidden_shapes for s in ns_products(m, n)], cfg, device)
    floors["splus"] = _products_time([s for m, n in matrices for s in splus_products(m, n)], cfg, device)
    svd_inputs = [torch.randn(m, n).to(device) for m, n in hidden_shapes]
    floors["specgd"] = _best_time(lambda: [torch.linalg.svd(G, full_matrices=False) for G in svd_inputs],
                                  max(3, cfg.floor_repeats // 4), device)
    floors["shampoo"] = _products_time(
        [s for p in params for s in _mode_products(_shampoo_dims(p), p.numel(), True, True)], cfg, device)
    t1_tnt = OPTIMIZERS["tnt"].defaults.get("curvature_frequency", 10) if "tnt" in OPTIMIZERS else 10
    tnt_stats = _products_time([s for p in params for s in _mode_products(_tnt_dims(p), p.numel(), True, False)],
                               cfg, device)
    tnt_pre = _products_time([s for p in params for s in _mode_products(_tnt_dims(p), p.numel(), False, True)],
                             cfg, device)
    floors["tnt"] = (backward_s + tnt_stats) / t1_tnt + tnt_pre
    t1_kfac = OPTIMIZERS["kfac"].defaults.get("curvature_frequency", 10) if "kfac" in OPTIMIZERS else 10
    layers = list(_linear_like(model))
    # A conv layer's statistics have batch x positions rows; counting batch rows only makes the
    # KFAC floor a lower bound on CNNs (exact on MLPs).
    kfac_stats = _products_time([(a, cfg.batch, a) for _, a, _ in layers] + [(g, cfg.batch, g) for _, _, g in layers],
                                cfg, device)
    kfac_pre = _products_time([(g, g, a) for _, a, g in layers] + [(g, a, a) for _, a, g in layers], cfg, device)
    floors["kfac"] = (backward_s + kfac_stats) / t1_kfac + kfac_pre
    return floors


# ---- 4. ours vs peers, 5. Newton-Schulz vs its products -----------------------------------

def _step_time(make_opt, model: nn.Module, params: list[str], cfg: BenchConfig, device: torch.device) -> float:
    """Best optimizer.step() time with fixed gradients (same gradients for ours and the peer)."""
    model = copy.deepcopy(model)
    by_name = dict(model.named_parameters())
    ps = [by_name[n] for n in params]
    g = torch.Generator().manual_seed(cfg.seed)
    for p in ps:
        p.grad = (torch.randn(p.shape, generator=g) * 1e-2).to(device)
    opt = make_opt(ps)
    for _ in range(cfg.warmup):
        opt.step()
    return _best_time(opt.step, cfg.floor_repeats, device)


def peer_comparisons(model: nn.Module, cfg: BenchConfig, device: torch.device) -> list[dict]:
    lr = cfg.lr
    all_names = [n for n, _ in model.named_parameters()]
    hidden_ids = {id(p) for p in split_parameters(model)[0]}
    hidden_2d = [n for n, p in model.named_parameters() if id(p) in hidden_ids and p.ndim == 2]
    rows = []
    t_peer = _step_time(lambda ps: torch.optim.Muon(ps, lr=lr, weight_decay=0.0), model, hidden_2d, cfg, device)
    for dtype in ("float32", "bfloat16"):
        t_ours = _step_time(lambda ps: Muon(ps, lr=lr, ns_dtype=dtype), model, hidden_2d, cfg, device)
        rows.append({"ours": f"Muon (NS {dtype})", "peer": "torch.optim.Muon (NS bfloat16)",
                     "ours_s": t_ours, "peer_s": t_peer})
    rows.append({"ours": "SPlus", "peer": "pytorch_optimizer.SPlus",
                 "ours_s": _step_time(lambda ps: SPlus(ps, lr=lr), model, all_names, cfg, device),
                 "peer_s": _step_time(lambda ps: pytorch_optimizer.SPlus(ps, lr=lr), model, all_names, cfg, device)})
    if "shampoo" in OPTIMIZERS:
        original = {"momentum": 0.0, "beta": 1.0, "eps": 1e-6, "precondition_frequency": 1,
                    "start_preconditioning_step": 1, "grafting": "none"}
        shampoo_cls = type(build_optimizer("shampoo", copy.deepcopy(model), lr))
        rows.append({"ours": "Shampoo (original config)", "peer": "pytorch_optimizer.Shampoo",
                     "ours_s": _step_time(lambda ps: shampoo_cls(ps, lr=lr, **original), model, all_names, cfg, device),
                     "peer_s": _step_time(lambda ps: pytorch_optimizer.Shampoo(ps, lr=lr, momentum=0.0),
                                          model, all_names, cfg, device)})
    return rows


def newton_schulz_vs_products(model: nn.Module, cfg: BenchConfig, device: torch.device) -> dict:
    shapes = [matrix_view(p).shape for p in split_parameters(model)[0]]
    g = torch.Generator().manual_seed(cfg.seed)
    Ms = [torch.randn(m, n, generator=g).to(device) for m, n in shapes]
    t_ns = _best_time(lambda: [newton_schulz(M) for M in Ms], cfg.floor_repeats, device)
    t_products = _products_time([s for m, n in shapes for s in ns_products(m, n)], cfg, device)
    return {"shapes": [list(s) for s in shapes], "ns_s": t_ns, "products_s": t_products}


# ---- driver -------------------------------------------------------------------------------

def run(cfg: BenchConfig, device: torch.device, verbose: bool = True) -> dict:
    names = list(OPTIMIZERS)
    if "sgd" not in names:
        raise ValueError("the benchmark measures against registry entry 'sgd' (SGD with momentum)")
    results = {"config": asdict(cfg), "device": str(device), "threads": torch.get_num_threads(),
               "clock": "thread CPU time" if clock(device) is time.thread_time else "wall time",
               "torch": torch.__version__, "models": []}
    for kind, widths in (("mlp", cfg.mlp_widths), ("cnn", cfg.cnn_widths)):
        for width in widths:
            t0 = time.perf_counter()
            timed = time_methods(kind, width, names, cfg, device)
            model = timed["sgd"]["model"]
            param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            _, backward_s = forward_backward_times(model, cfg, device)
            floors = method_floors(model, cfg, device, backward_s)
            sgd_iter = timed["sgd"]["iter_s"]
            methods = {}
            for name in names:
                r = timed[name]
                formula = formula_state_numel(name, r["model"])
                floor = floors.get(name)
                methods[name] = {
                    "iter_s": r["iter_s"], "step_s": r["step_s"], "iter_vs_sgd": r["iter_s"] / sgd_iter,
                    "memory_vs_params": 1 + state_bytes(r["opt"]) / param_bytes,
                    "formula_memory_vs_params": None if formula is None else
                    1 + formula * 4 / param_bytes,  # float32 state
                    "floor_s": floor,
                    "iter_vs_sgd_plus_floor": None if floor is None else r["iter_s"] / (sgd_iter + floor),
                }
            entry = {"model": kind, "width": width, "params": sum(p.numel() for p in model.parameters()),
                     "backward_s": backward_s, "methods": methods}
            if kind == "mlp":
                entry["peers"] = peer_comparisons(model, cfg, device)
                entry["newton_schulz"] = newton_schulz_vs_products(model, cfg, device)
            entry["seconds"] = time.perf_counter() - t0
            results["models"].append(entry)
            if verbose:
                print_entry(entry)
    return results


def print_entry(e: dict) -> None:
    print(f"\n== {e['model'].upper()} width {e['width']}: {e['params']:,} parameters "
          f"(sampled backward {1e3 * e['backward_s']:.2f} ms; measured in {e['seconds']:.0f} s) ==")
    print(f"{'method':<9}{'iter ms':>9}{'step ms':>9}{'iter/SGD':>10}{'mem/param':>11}{'formula':>9}"
          f"{'floor ms':>10}{'iter/(SGD+floor)':>18}  target <= {TARGET_FACTOR}")
    for name, m in e["methods"].items():
        formula = "n/a" if m["formula_memory_vs_params"] is None else f"{m['formula_memory_vs_params']:.2f}"
        floor = "n/a" if m["floor_s"] is None else f"{1e3 * m['floor_s']:.2f}"
        ratio = m["iter_vs_sgd_plus_floor"]
        verdict = "" if ratio is None else (f"{ratio:.2f} " + ("ok" if ratio <= TARGET_FACTOR else "MISSED"))
        print(f"{name:<9}{1e3 * m['iter_s']:>9.2f}{1e3 * m['step_s']:>9.2f}{m['iter_vs_sgd']:>10.2f}"
              f"{m['memory_vs_params']:>11.2f}{formula:>9}{floor:>10}{verdict:>18}")
    if "splus" in e["methods"] and "adam" in e["methods"]:
        s, a = e["methods"]["splus"], e["methods"]["adam"]
        print(f"SPlus / Adam: iteration {s['iter_s'] / a['iter_s']:.2f}x, step {s['step_s'] / a['step_s']:.2f}x")
    for row in e.get("peers", []):
        print(f"{row['ours']:<28} {1e3 * row['ours_s']:8.2f} ms  vs {row['peer']:<32} {1e3 * row['peer_s']:8.2f} ms"
              f"  -> ours/peer {row['ours_s'] / row['peer_s']:.2f}")
    if "newton_schulz" in e:
        ns = e["newton_schulz"]
        print(f"Muon Newton-Schulz (float32) {1e3 * ns['ns_s']:.2f} ms vs its 15 products per matrix alone "
              f"{1e3 * ns['products_s']:.2f} ms -> {ns['ns_s'] / ns['products_s']:.2f}x the floor")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller widths and fewer iterations (about a minute)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared machine extra threads mostly contend)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                              ("cpu" if args.device == "auto" else args.device))
    except RuntimeError:
        ap.error(f"unknown --device {args.device!r} (cpu, cuda or auto)")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device} asked for, but torch sees no CUDA device")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        ap.error(f"--json {args.json}: folder {Path(args.json).resolve().parent} does not exist")
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    results = run(cfg, device)
    results["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {results['total_s']:.0f} s on {device}, {results['threads']} threads, timed by {results['clock']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
