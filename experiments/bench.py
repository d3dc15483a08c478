"""Cost of every registered optimizer, measured side by side in one run.

    python -m experiments.bench [--quick] [--device cpu|cuda|auto] [--threads N] [--json PATH]

For an MLP and a small ResNet-style CNN at two widths each, on synthetic 28x28 inputs (8x8 in the
smoke configuration of the tests):
1. time of a full training iteration (zero_grad, forward, curvature_step, backward, step) relative
   to SGD with momentum (taken within each round, median over the rounds), measured by the one
   cost harness `experiments.cost` (torch.utils.benchmark Timer over whole periods of each
   method's periodic work, after its start-up phase, methods interleaved round by round; see that
   module for the protocol), at a small lr (1e-5; timing does not depend on it) so that no method
   diverges while timed: one that does stops the run with a FloatingPointError naming the method,
   its lr and the model (the CLI prints that one line);
2. optimizer memory (parameters + state) / parameter memory, measured from optimizer.state and
   against each method's formula (SPlus 3mn + 2(m^2 + n^2), Adam 3mn, ...);
3. the arithmetic floor of each of this project's methods' extra work beyond SGD-m per
   iteration, timed with the same Timer on the model's own shapes with plain torch kernels, periodic
   work amortised at the method's own rate:
     Muon      15 Newton-Schulz products per hidden matrix
     SpecGD    one reduced SVD per hidden matrix
     SPlus     4 rotations + 2 statistics per matrix; eigh of both statistics every inverse_steps
     Shampoo   per mode: statistic G_(j) G_(j)^T and preconditioning product; every
               precondition_frequency steps eigh of each factor and Q diag(w) Q^T
     TNT       per mode: preconditioning product; every T1 a backward and the statistics; every
               T2 a Cholesky inverse of each factor
     KFAC      per layer: G^-1 grad A^-1; every T1 a backward to the layer outputs (no weight
               gradients), the im2col patches of conv inputs and the statistics over all batch x
               position rows; every T2 a Cholesky inverse of A and G
   and the target   iteration time <= 1.2 x (SGD-m iteration + floor),   so that the ratio measures
   waste only (elementwise work such as Shampoo's Adam graft is not in the floor). The floor
   kernels run back to back on reused buffers, eigh and Cholesky on random well-conditioned
   matrices: the ratio also charges the real loop's cold caches and fresh allocations. The kernels
   are the harness's extra callables: every round times each method's period and then each floor
   kernel, and forms each method's ratio from that round's times alone (its iteration, SGD-m's, its
   floor), so that a ratio never mixes two spells of a shared machine's load. The table and the
   JSON give the median over the rounds and the min-max range (the JSON also each round's ratio);
   the target is judged on the median. torch's own SGD-m, Adam and AdamW are reference rows: no
   floor (their elementwise work is in none) and no verdict;
4. ours against a peer doing the same work on the MLP's parameters (optimizer step only):
   torch.optim.Muon (hidden 2-D matrices), pytorch_optimizer.SPlus (all parameters), and
   pytorch_optimizer.Shampoo (original configuration) when "shampoo" is registered;
5. Muon's Newton-Schulz time / the time of its 15 matrix products alone, in float32 and in the
   precision ns_dtype="auto" picks on the device.
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import get_gradient_edge

import pytorch_optimizer
from experiments import cost
from experiments.models.vision import MLP, ResNetCNN
from experiments.runtime.device import resolve_device
from experiments.optim.muon import Muon, auto_ns_dtype, newton_schulz
from experiments.optim.param_groups import matrix_view, split_parameters
from experiments.optim.registry import OPTIMIZERS, build_optimizer
from experiments.optim.splus import SPlus
from experiments.optim.tnt import tnt_view
from experiments.fileio import atomic_write_json


@dataclass(frozen=True)
class BenchConfig:
    mlp_widths: tuple[int, ...] = (256, 1024)
    mlp_depth: int = 3
    cnn_widths: tuple[int, ...] = (16, 32)
    batch: int = 128
    image: int = 28             # side of the synthetic square images
    rounds: int = 5             # timed rounds, methods and floor kernels interleaved round by round
    min_run_time: float = 0.2   # seconds per blocked_autorange call (at least one whole period runs)
    floor_min_run_time: float = 0.1
    lr: float = 1e-5            # small, so no method diverges while timed (timing does not depend on lr)
    seed: int = 0
    # registry name -> keyword overrides (the smoke run shortens the periods)
    overrides: dict = field(default_factory=dict)


FULL = BenchConfig()
QUICK = replace(FULL, mlp_widths=(128, 256), cnn_widths=(8, 16), batch=64, min_run_time=0.05,
                floor_min_run_time=0.05)
SMOKE = replace(FULL, mlp_widths=(16,), mlp_depth=2, cnn_widths=(4,), batch=8, image=8, rounds=1, min_run_time=1e-3,
                floor_min_run_time=1e-3,
                overrides={"shampoo": {"precondition_frequency": 2, "start_preconditioning_step": 2},
                           "tnt": {"curvature_frequency": 2, "inverse_frequency": 4},
                           "kfac": {"curvature_frequency": 2, "inverse_frequency": 4},
                           "splus": {"inverse_steps": 4}})  # seconds; for the tests

TARGET_FACTOR = 1.2
EPILOG = ("Each round times every method's iterations and every floor's kernels back to back and gives "
          "each method one ratio iteration / (SGD-m iteration + floor); the table shows the median and the "
          f"min-max range over the rounds and judges the median against {TARGET_FACTOR}. torch's own SGD-m, "
          "Adam and AdamW are reference rows without a floor or a verdict (their elementwise work is in no "
          "floor). A method that diverges at the benchmark's lr stops the run with one line naming it and "
          "the model.")


# ---- models and data ----------------------------------------------------------------------

def make_model(kind: str, width: int, cfg: BenchConfig, device: torch.device) -> nn.Module:
    g = torch.Generator().manual_seed(cfg.seed)
    if kind == "mlp":
        model = MLP(cfg.image ** 2, 10, width=width, depth=cfg.mlp_depth, generator=g)
    else:
        model = ResNetCNN(1, 10, width=width, generator=g)
    return model.to(device)


def make_batch(cfg: BenchConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    X = torch.randn(cfg.batch, 1, cfg.image, cfg.image, generator=g)
    y = torch.randint(0, 10, (cfg.batch,), generator=g)
    return X.to(device), y.to(device)


def _time(fn, cfg: BenchConfig, device: torch.device) -> float:
    return cost.median_time(fn, device, torch.get_num_threads(), cfg.floor_min_run_time)


def backward_kernels(model: nn.Module, cfg: BenchConfig, device: torch.device) -> dict[str, Callable[[], object]]:
    """A no-grad forward of one batch, a forward + full backward (what TNT's sampled-label pass
    costs) and a forward + backward that stops at the Linear/Conv2d outputs (no weight gradients:
    what KFAC's costs, curvature_outputs), on a copy of `model` (it keeps the hooks that find those
    outputs); `backward_seconds` turns their times into the two backwards."""
    model = copy.deepcopy(model)
    X, y = make_batch(cfg, device)
    layers = {id(w) for w, _, _ in _linear_like(model)}
    edges = []

    def keep_edge(module, inputs, out):
        if out.requires_grad:  # not in the no-grad forward
            edges.append(get_gradient_edge(out))
    for m in model.modules():
        if id(getattr(m, "weight", None)) in layers:
            m.register_forward_hook(keep_edge)

    def fwd():
        with torch.no_grad():
            model(X)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(X), y).backward()
        edges.clear()

    def fwd_bwd_outputs():
        edges.clear()
        torch.autograd.grad(F.cross_entropy(model(X), y), list(edges), allow_unused=True)

    return {"forward": fwd, "forward+backward": fwd_bwd, "forward+backward to outputs": fwd_bwd_outputs}


def backward_seconds(t: dict[str, float]) -> tuple[float, float]:
    """(full backward, backward to the layer outputs) from one round's `backward_kernels` times,
    each less the same no-grad forward."""
    return (max(t["forward+backward"] - t["forward"], 0.0),
            max(t["forward+backward to outputs"] - t["forward"], 0.0))


# ---- 2. memory ----------------------------------------------------------------------------

def _linear_like(model: nn.Module):
    """(weight, fan_in incl. bias column, fan_out) of every Linear/Conv2d (KFAC's layers)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel() + (m.bias is not None)
            yield m.weight, fan_in, m.weight.shape[0]


def _shampoo_dims(p: torch.Tensor, max_dim: int = 4096) -> list[int]:
    return [d for d in (p.shape or (1,)) if d <= max_dim]


def _tnt_dims(p: torch.Tensor) -> list[int]:
    return list(tnt_view(p.shape))


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

def _products(shapes: list[tuple[int, int, int]], device: torch.device, seed: int,
              dtype: torch.dtype = torch.float32):
    """A callable running the products (a x b) @ (b x c) for all shapes, on random inputs of `dtype`."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(torch.randn(a, b, generator=g).to(device, dtype), torch.randn(b, c, generator=g).to(device, dtype))
             for a, b, c in shapes]
    return lambda: [A @ B for A, B in pairs]


def _spd(dims: list[int], device: torch.device, seed: int) -> list[torch.Tensor]:
    """Random well-conditioned symmetric positive definite matrices of the given sides."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in dims:
        X = torch.randn(d, 2 * d, generator=g)
        out.append((X @ X.T / (2 * d) + torch.eye(d)).to(device))
    return out


def _eigh_roots(dims: list[int], device: torch.device, seed: int):
    """eigh of each factor and its root Q diag(w) Q^T: Shampoo's periodic work."""
    mats = _spd(dims, device, seed)

    def run():
        for H in mats:
            w, Q = torch.linalg.eigh(H)
            (Q * w.rsqrt()) @ Q.T
    return run


def _eighs(dims: list[int], device: torch.device, seed: int):
    mats = _spd(dims, device, seed)
    return lambda: [torch.linalg.eigh(H) for H in mats]


def _cholesky_inverses(dims: list[int], device: torch.device, seed: int):
    mats = _spd(dims, device, seed)
    return lambda: [torch.cholesky_inverse(torch.linalg.cholesky(H)) for H in mats]


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


def layer_inputs(model: nn.Module, X: torch.Tensor) -> dict[nn.Module, tuple[int, ...]]:
    """Input shape of every Linear/Conv2d in one forward pass of X."""
    shapes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_pre_hook(lambda mod, inp: shapes.__setitem__(mod, tuple(inp[0].shape))))
    try:
        with torch.no_grad():
            model(X)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _kfac_statistics(model: nn.Module, X: torch.Tensor, device: torch.device, seed: int):
    """KFC's statistics of one batch: im2col of every conv input, then A = a^T a over all
    batch x position rows and G = g^T g over the output gradients' rows."""
    g = torch.Generator().manual_seed(seed)
    work = []
    for m, shape in layer_inputs(model, X).items():
        a_dim = m.weight[0].numel() + (m.bias is not None)
        if isinstance(m, nn.Conv2d):
            x = torch.randn(shape, generator=g).to(device)
            cols = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            rows = cols.shape[0] * cols.shape[2]
        else:
            x, rows = None, math.prod(shape[:-1])
        work.append((m, x, torch.randn(rows, a_dim, generator=g).to(device),
                     torch.randn(rows, m.weight.shape[0], generator=g).to(device)))

    def run():
        for m, x, a, gout in work:
            if x is not None:
                F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            a.T @ a
            gout.T @ gout
    return run


def floor_kernels(model: nn.Module, cfg: BenchConfig, device: torch.device, hyper: dict[str, dict]
                  ) -> dict[str, Callable[[], object]]:
    """Every kernel a floor is made of, by name (`method_floors` adds them up), built for the
    registered methods whose hyperparameters are in `hyper`."""
    params = list(model.parameters())
    hidden_shapes = [matrix_view(p).shape for p in split_parameters(model)[0]]
    seed = cfg.seed
    kernels = backward_kernels(model, cfg, device)
    # in the precision Muon's default ns_dtype="auto" runs Newton-Schulz in on this machine
    kernels["muon products"] = _products([s for m, n in hidden_shapes for s in ns_products(m, n)], device, seed,
                                         auto_ns_dtype(device.type)[0])
    svd_inputs = [torch.randn(m, n).to(device) for m, n in hidden_shapes]
    kernels["specgd svd"] = lambda: [torch.linalg.svd(G, full_matrices=False) for G in svd_inputs]
    if "splus" in hyper:
        matrices = [matrix_view(p).shape for p in params if p.ndim >= 2]
        sides = [d for m, n in matrices for d in (m, n) if d < hyper["splus"]["max_dim"]]
        kernels["splus products"] = _products([s for m, n in matrices for s in splus_products(m, n)], device, seed)
        kernels["splus eigh"] = _eighs(sides, device, seed)
    if "shampoo" in hyper:
        dims = {id(p): _shampoo_dims(p, hyper["shampoo"]["max_precond_dim"]) for p in params}
        kernels["shampoo products"] = _products(
            [s for p in params for s in _mode_products(dims[id(p)], max(p.numel(), 1), True, True)], device, seed)
        kernels["shampoo roots"] = _eigh_roots([d for p in params for d in dims[id(p)]], device, seed)
    if "tnt" in hyper:
        kernels["tnt statistics"] = _products(
            [s for p in params for s in _mode_products(_tnt_dims(p), p.numel(), True, False)], device, seed)
        kernels["tnt products"] = _products(
            [s for p in params for s in _mode_products(_tnt_dims(p), p.numel(), False, True)], device, seed)
        kernels["tnt inverses"] = _cholesky_inverses([d for p in params for d in _tnt_dims(p)], device, seed)
    if "kfac" in hyper:
        layers = list(_linear_like(model))
        X, _ = make_batch(cfg, device)
        kernels["kfac products"] = _products([(g, g, a) for _, a, g in layers] + [(g, a, a) for _, a, g in layers],
                                             device, seed)
        kernels["kfac statistics"] = _kfac_statistics(model, X, device, seed)
        kernels["kfac inverses"] = _cholesky_inverses([d for _, a, g in layers for d in (a, g)], device, seed)
    return kernels


def method_floors(t: dict[str, float], hyper: dict[str, dict]) -> dict[str, float]:
    """Seconds per iteration of each of this project's methods' extra arithmetic beyond SGD-m
    (0: elementwise only) from one round's `floor_kernels` times t, periodic work amortised at the
    rates in `hyper` (each registered method's hyperparameters). torch's own optimizers have none."""
    backward_s, output_backward_s = backward_seconds(t)
    floors = {"nmd": 0.0, "signum": 0.0, "muon": t["muon products"], "specgd": t["specgd svd"]}
    if "splus" in hyper:
        floors["splus"] = t["splus products"] + t["splus eigh"] / hyper["splus"]["inverse_steps"]
    if "shampoo" in hyper:
        floors["shampoo"] = t["shampoo products"] + t["shampoo roots"] / hyper["shampoo"]["precondition_frequency"]
    if "tnt" in hyper:
        h = hyper["tnt"]
        floors["tnt"] = (t["tnt products"] + (backward_s + t["tnt statistics"]) / h["curvature_frequency"]
                         + t["tnt inverses"] / h["inverse_frequency"])
    if "kfac" in hyper:
        h = hyper["kfac"]
        floors["kfac"] = (t["kfac products"] + (output_backward_s + t["kfac statistics"]) / h["curvature_frequency"]
                          + t["kfac inverses"] / h["inverse_frequency"])
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
    opt.step()  # builds the state (and SPlus's first eigenbases)
    return _time(opt.step, cfg, device)


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
    """Newton-Schulz on the hidden matrices' shapes against its 15 products per matrix alone, in
    float32 ("ns_s", "products_s") and in ns_dtype="auto"'s precision ("ns_auto_s", ...)."""
    shapes = [matrix_view(p).shape for p in split_parameters(model)[0]]
    g = torch.Generator().manual_seed(cfg.seed)
    Ms = [torch.randn(m, n, generator=g).to(device) for m, n in shapes]
    products = [s for m, n in shapes for s in ns_products(m, n)]
    auto = auto_ns_dtype(device.type)[0]
    out = {"shapes": [list(s) for s in shapes], "auto_dtype": str(auto).removeprefix("torch.")}
    for suffix, dtype in (("", torch.float32), ("_auto", auto)):
        out[f"ns{suffix}_s"] = _time(lambda dtype=dtype: [newton_schulz(M, dtype=dtype) for M in Ms], cfg, device)
        out[f"products{suffix}_s"] = _time(_products(products, device, cfg.seed, dtype), cfg, device)
    return out


# ---- driver -------------------------------------------------------------------------------

def run(cfg: BenchConfig, device: torch.device, verbose: bool = True) -> dict:
    names = list(OPTIMIZERS)
    if "sgd" not in names:
        raise ValueError("the benchmark measures against registry entry 'sgd' (SGD with momentum)")
    unknown = set(cfg.overrides) - set(names)
    if unknown:
        raise ValueError(f"overrides for unregistered optimizers: {sorted(unknown)}")
    threads = torch.get_num_threads()
    results = {"config": asdict(cfg), "device": str(device), "threads": threads,
               "clock": cost.clock(device, threads)[1], "torch": torch.__version__, "models": []}
    for kind, widths in (("mlp", cfg.mlp_widths), ("cnn", cfg.cnn_widths)):
        for width in widths:
            entry = measure_model(kind, width, names, cfg, device, threads)
            results["models"].append(entry)
            if verbose:
                print_entry(entry)
    return results


def measure_model(kind: str, width: int, names: list[str], cfg: BenchConfig, device: torch.device,
                  threads: int) -> dict:
    """Every method on one model: its iterations and all floor kernels timed round by round in the
    one harness, the ratios formed within each round (see the module docstring)."""
    t0 = time.perf_counter()
    model = make_model(kind, width, cfg, device)
    hyper, reference = {}, set()
    for name in names:
        # each method's full hyperparameters (defaults included), read off a built optimizer
        opt = build_optimizer(name, copy.deepcopy(model), cfg.lr, **cfg.overrides.get(name, {}))
        hyper[name] = opt.param_groups[0]
        if type(opt).__module__.startswith("torch."):
            reference.add(name)
    methods = {name: (name, cfg.lr, cfg.overrides.get(name, {})) for name in names}
    try:
        costs, kernel_rounds = cost.measure_step_costs(
            model, methods, [make_batch(cfg, device)], "ce", cfg.seed, rounds=cfg.rounds,
            min_run_time=cfg.min_run_time, threads=threads, extra=floor_kernels(model, cfg, device, hyper),
            extra_min_run_time=cfg.floor_min_run_time)
    except FloatingPointError as e:
        raise FloatingPointError(f"{kind.upper()} width {width}: {e}") from e
    rounds = [{k: v[r] for k, v in kernel_rounds.items()} for r in range(cfg.rounds)]
    floors = [method_floors(t, hyper) for t in rounds]
    sgd = costs["sgd"].round_seconds
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {}
    for name in names:
        c = costs[name]
        formula = formula_state_numel(name, model)
        has_floor = name not in reference and name in floors[0]
        ratios = [c.round_seconds[r] / (sgd[r] + floors[r][name]) for r in range(cfg.rounds)] if has_floor else None
        ratio = None if ratios is None else statistics.median(ratios)
        out[name] = {
            "iter_s": c.seconds_per_step, "period": c.period, "replicates": c.replicates,
            "round_iter_s": list(c.round_seconds),
            "iter_vs_sgd": statistics.median(c.round_seconds[r] / sgd[r] for r in range(cfg.rounds)),
            "memory_vs_params": 1 + c.state_bytes / param_bytes,
            "formula_memory_vs_params": None if formula is None else 1 + formula * 4 / param_bytes,  # float32 state
            "floor_s": statistics.median(f[name] for f in floors) if has_floor else None,
            "round_floor_s": [f[name] for f in floors] if has_floor else None,
            "round_ratios": ratios,
            "iter_vs_sgd_plus_floor": ratio,
            "iter_vs_sgd_plus_floor_range": None if ratios is None else [min(ratios), max(ratios)],
            "verdict": "reference" if name in reference else None if ratio is None
            else "ok" if ratio <= TARGET_FACTOR else "missed",
        }
    backwards = [backward_seconds(t) for t in rounds]
    entry = {"model": kind, "width": width, "params": sum(p.numel() for p in model.parameters()),
             "rounds": cfg.rounds, "backward_s": statistics.median(b[0] for b in backwards),
             "output_backward_s": statistics.median(b[1] for b in backwards),
             "kernel_round_s": {k: list(v) for k, v in kernel_rounds.items()}, "methods": out}
    if kind == "mlp":
        entry["peers"] = peer_comparisons(model, cfg, device)
        entry["newton_schulz"] = newton_schulz_vs_products(model, cfg, device)
    entry["seconds"] = time.perf_counter() - t0
    return entry


def print_entry(e: dict) -> None:
    print(f"\n== {e['model'].upper()} width {e['width']}: {e['params']:,} parameters "
          f"(sampled backward {1e3 * e['backward_s']:.2f} ms, to the layer outputs {1e3 * e['output_backward_s']:.2f} ms; measured in {e['seconds']:.0f} s) ==")
    print(f"{'method':<9}{'iter ms':>9}{'period':>7}{'iter/SGD':>10}{'mem/param':>11}{'formula':>9}"
          f"{'floor ms':>10}{'iter/(SGD+floor)':>18}{'range':>12}  median over {e['rounds']} rounds, "
          f"target <= {TARGET_FACTOR}")
    for name, m in e["methods"].items():
        formula = "n/a" if m["formula_memory_vs_params"] is None else f"{m['formula_memory_vs_params']:.2f}"
        if m["verdict"] == "reference":
            floor, ratio, spread, verdict = "-", "-", "", "reference"
        elif m["iter_vs_sgd_plus_floor"] is None:
            floor, ratio, spread, verdict = "n/a", "n/a", "", ""
        else:
            lo, hi = m["iter_vs_sgd_plus_floor_range"]
            floor, ratio = f"{1e3 * m['floor_s']:.2f}", f"{m['iter_vs_sgd_plus_floor']:.2f}"
            spread, verdict = f"{lo:.2f}-{hi:.2f}", m["verdict"].upper() if m["verdict"] == "missed" else m["verdict"]
        print(f"{name:<9}{1e3 * m['iter_s']:>9.2f}{m['period']:>7}{m['iter_vs_sgd']:>10.2f}"
              f"{m['memory_vs_params']:>11.2f}{formula:>9}{floor:>10}{ratio:>18}{spread:>12}  {verdict}")
    if "splus" in e["methods"] and "adam" in e["methods"]:
        s, a = e["methods"]["splus"], e["methods"]["adam"]
        print(f"SPlus / Adam: iteration {s['iter_s'] / a['iter_s']:.2f}x")
    for row in e.get("peers", []):
        print(f"{row['ours']:<28} {1e3 * row['ours_s']:8.2f} ms  vs {row['peer']:<32} {1e3 * row['peer_s']:8.2f} ms"
              f"  -> ours/peer {row['ours_s'] / row['peer_s']:.2f}")
    if "newton_schulz" in e:
        ns = e["newton_schulz"]
        for suffix, dtype in (("", "float32"), ("_auto", ns["auto_dtype"] + ", auto")):
            t_ns, t_products = ns[f"ns{suffix}_s"], ns[f"products{suffix}_s"]
            print(f"Muon Newton-Schulz ({dtype}) {1e3 * t_ns:.2f} ms vs its 15 products per matrix alone "
                  f"{1e3 * t_products:.2f} ms -> {t_ns / t_products:.2f}x the floor")


def parse_bench_args(ap: argparse.ArgumentParser, argv, json_example: str) -> tuple[argparse.Namespace, torch.device]:
    """Parse the common --device/--threads/--json options of the timing CLIs (this one and
    experiments.ns_report) and check them, each problem one argparse error line."""
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        ap.error(f"--device: {e}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.json:
        target = Path(args.json).resolve()
        if target.is_dir():
            ap.error(f"--json {args.json} is a folder; give a file path, e.g. {Path(args.json) / json_example}")
        if not target.parent.is_dir():
            ap.error(f"--json {args.json}: folder {target.parent} does not exist")
    return args, device


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG)
    ap.add_argument("--quick", action="store_true",
                    help="smaller models (MLP 128, 256; CNN 8, 16) and shorter timed runs: on a busy 2-core CPU "
                         "about 2 minutes for the MLPs and 6-15 for the CNNs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared machine extra threads mostly contend)")
    ap.add_argument("--mlp-widths", type=int, nargs="*", metavar="W",
                    help="MLP widths to time instead of the mode's (none: no MLP)")
    ap.add_argument("--cnn-widths", type=int, nargs="*", metavar="W",
                    help="CNN widths to time instead of the mode's (none: no CNN)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timed rounds instead of the mode's 5 (each round gives every method one ratio; the "
                         "table shows their median and range, and more rounds steady the median on a busy machine)")
    args, device = parse_bench_args(ap, argv, "bench.json")
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            ap.error(f"--rounds must be >= 1, got {args.rounds}")
        cfg = replace(cfg, rounds=args.rounds)
    for name in ("mlp_widths", "cnn_widths"):
        widths = getattr(args, name)
        if widths is not None:
            if any(w < 1 for w in widths):
                ap.error(f"--{name.replace('_', '-')} must be >= 1, got {widths}")
            cfg = replace(cfg, **{name: tuple(widths)})
    if not cfg.mlp_widths and not cfg.cnn_widths:
        ap.error("nothing to time: --mlp-widths and --cnn-widths are both empty")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        results = run(cfg, device)
    except FloatingPointError as e:
        raise SystemExit(f"experiments.bench: {e}") from e
    results["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {results['total_s']:.0f} s on {device}, {results['threads']} threads, timed by {results['clock']}")
    if args.json:
        atomic_write_json(Path(args.json), results)


if __name__ == "__main__":
    main()
