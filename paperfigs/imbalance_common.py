"""What figures 1 and 7 share: the configuration, the engine runs (tuning and reporting), the
series, the sensitivity table and the plot. The task itself (split, model, training, per-class
evaluation and the read-outs) is experiments.tasks.imbalance.

Both figures train several optimizers on a step-imbalanced real image split (minority classes keep
n_max / rho training images) and follow the mean per-class TEST accuracy of the minority and the
majority classes over training (mean over seeds, band = min..max over seeds).

Protocol (the same for every method, including user optimizers given with --optimizer):
- lr selection on the balanced VALIDATION split of the tuning seeds (TUNING_SEEDS, disjoint from the
  reporting seeds seed..seed+seeds-1), on a quarter-decade grid around `centers`, extended by the
  engine past an optimum on the grid's edge and upward to the divergence edge; the score is the
  figure's `select_score` (a time-window score matching its claim, never an end-of-run value);
- the starting grid follows the figure's `grid_rule`: "snapped" (protocol.grid_of: the centre
  snapped to the nearest quarter-decade point, so every method starts from the same number of
  points, 2 x 4 x grid_half_width + 1) or "centred" (protocol.centred_grid: the quarter-decade
  points within grid_half_width decades of the centre itself, one point fewer when the centre lies
  between two of them). Only figure 1 keeps "centred": its full-scale selections are committed
  records whose tuning keys hash those very grids (its module docstring lists them);
- Muon's AdamW fallback runs at a fixed ratio of Muon's lr (paperfigs.methods), so tuning Muon's lr
  tunes both on one grid;
- a claim that reads a run with status other than ok (the method's or the baseline's) is
  inconclusive without a value (claims.stopped_claim; stop 18): a stopped run is NaN-padded, and
  neither a time to reach a level nor a window mean of such a curve is a number of the method;
- each claim is judged over paired reporting seeds (a 95% interval and a verdict), again at
  each lr tied with the selected one within one standard error, and over the method's whole grid
  (the sensitivity table: the method at each lr against the baseline at its selected lr, on the
  tuning seeds' test curves, which the tuning runs already hold).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from experiments.engine import RunSpec
from experiments.tasks.imbalance import group_curves, split_of
from paperfigs import protocol
from paperfigs.methods import LABELS, MUON_FALLBACK_RATIO, Method, claimed_of, label
from paperfigs.methods import methods as method_list
from paperfigs.protocol import TUNING_SEEDS
from paperfigs.stats import SEED_BAND, over_seeds
from paperfigs.style import band, color

# Paper A's mechanism is the spectral update of the classifier matrix itself (the linear model W of
# its theory), while Muon as registered hands the head (and biases) to AdamW: figures 1 and 7 run
# both, "muon" and "muon_head" (paperfigs.methods.VARIANTS), and claim both.


@dataclass(frozen=True)
class ImbalanceConfig:
    dataset: str
    rho: float
    minority: tuple[int, ...]
    n_max: int | None
    n_val_per_class: int
    n_test_per_class: int
    model: str  # "mlp" | "resnet"
    width: int
    depth: int  # MLP: linear layers; ResNet: residual blocks per stage, stages = len(blocks)
    blocks: tuple[int, ...]
    steps: int
    batch_size: int
    eval_every: int
    seeds: int
    early_frac: float  # the "early in training" window is (0, early_frac * steps]
    optimizers: tuple[str, ...]
    centers: tuple[tuple[str, float], ...]  # lr grid centre per method (half a decade each side)
    tuning_seeds: tuple[int, ...] = TUNING_SEEDS
    grid_half_width: float = 0.5  # decades on each side of the centre
    grid_rule: str = "snapped"    # starting grid: "snapped" (protocol.grid_of) or "centred" (centred_grid)
    extend: int = 2               # grid points the engine may add on each side
    # label -> fixed optimizer kwargs besides the Muon variants (e.g. SPlus's EMA rate)
    kwargs: tuple[tuple[str, tuple], ...] = ()
    pool: int = 1                 # 2: images averaged over 2 x 2 pixel blocks (28 x 28 -> 14 x 14)


GRID_RULES = {"snapped": protocol.grid_of, "centred": protocol.centred_grid}


def start_grid(cfg: ImbalanceConfig, m: Method) -> list[float]:
    """The starting lr grid of method m (the engine extends it)."""
    if cfg.grid_rule not in GRID_RULES:
        raise ValueError(f"grid_rule {cfg.grid_rule!r}: one of {sorted(GRID_RULES)}")
    return GRID_RULES[cfg.grid_rule](center_of(cfg, m), cfg.grid_half_width)


def methods(cfg: ImbalanceConfig, ctx) -> list[Method]:
    return method_list(cfg.optimizers, ctx, {k: dict(v) for k, v in cfg.kwargs})


def run_spec(cfg: ImbalanceConfig, m: Method, lr: float, seed: int, device: str) -> RunSpec:
    config = {"dataset": cfg.dataset, "rho": cfg.rho, "minority": list(cfg.minority), "n_max": cfg.n_max,
              "n_val_per_class": cfg.n_val_per_class, "n_test_per_class": cfg.n_test_per_class,
              "pool": cfg.pool, "model": cfg.model, "width": cfg.width, "depth": cfg.depth, "blocks": list(cfg.blocks),
              "steps": cfg.steps, "batch_size": cfg.batch_size, "eval_every": cfg.eval_every,
              "optimizer": m.optimizer, "lr": float(lr), "optimizer_kwargs": m.optimizer_kwargs(lr), "seed": int(seed),
              "device": device, "data_root": os.environ.get("PAPER_REPRO_DATA_ROOT")}
    return RunSpec("imbalance", config)


def balanced_val(result: dict) -> np.ndarray:
    """Balanced validation accuracy over time (mean of the per-class accuracies)."""
    return np.nanmean(np.asarray(result["val_per_class"], float), axis=1)


def ok(result: dict) -> bool:
    return result["status"] == "ok"


def center_of(cfg: ImbalanceConfig, m: Method) -> float:
    centers = dict(cfg.centers)
    # a user optimizer: centred on Adam's grid (most torch.optim classes are Adam-scaled)
    return centers.get(m.name, centers.get("adam", 1e-3))


def study(cfg: ImbalanceConfig, mode: str, seed: int, device: str, ctx,
          select_score: Callable[[dict], float | None], criterion: str, claimed: tuple[str, ...]):
    """Tune every method, run the reporting seeds at the selected lrs, and at the tied lrs of the
    claimed methods (the baseline's and the unclaimed methods' tied lrs enter no claim).

    Returns (methods, claimed, selections, runs, tied_runs, params): claimed, the claimed methods
    present and every user optimizer (methods.claimed_of); runs[name] is the list of reporting
    results at the selected lr (seed order); tied_runs[name][lr] likewise at each other tied lr of
    a claimed method."""
    ms = methods(cfg, ctx)
    claimed = claimed_of(ms, claimed)
    seeds = protocol.reporting_seeds(seed, cfg.seeds, cfg.tuning_seeds)
    selections, runs, tied_runs = protocol.tune_and_report(
        ctx, ms, lambda m, lr, s: run_spec(cfg, m, lr, s, device), seeds, select_score, True, criterion,
        lambda m: start_grid(cfg, m), cfg.extend, claimed,
        cfg.tuning_seeds)
    first = runs[ms[0].name][0]
    n_train = int(sum(first["train_counts"]))
    params = {
        **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("centers", "kwargs")},
        "methods": {m.name: {"optimizer": m.optimizer, "kwargs": m.kwargs} for m in ms},
        "lr": {m.name: selections[m.name].lr for m in ms},
        "lr_selection": {m.name: selections[m.name].to_json() for m in ms},
        "muon_fallback_lr": f"{MUON_FALLBACK_RATIO} x Muon's lr (tuned together on one grid)",
        "seed_list": seeds, "n_train": n_train, "train_counts": first["train_counts"],
        "split": split_of(run_spec(cfg, ms[0], 1.0, seeds[0], device).config).info,
        "epochs": cfg.steps * cfg.batch_size / n_train, "device": device,
        "eval_split": "test (balanced); lr selection on the balanced validation split", "band": SEED_BAND,
    }
    return ms, claimed, selections, runs, tied_runs, params


def sensitivity(ctx, cfg, ms, selections, device, baseline: str, claimed, value_of) -> dict:
    """The claim's value for each claimed method at each lr of its grid against the baseline at its
    selected lr, on the tuning seeds (paired). value_of(method_results, baseline_results) -> float."""
    base_m = next(m for m in ms if m.name == baseline)
    base_lr = selections[baseline].lr
    base = protocol.stored_grid(ctx, selections[baseline], lambda lr, s: run_spec(cfg, base_m, lr, s, device),
                                [base_lr])
    table = {}
    for m in ms:
        if m.name not in claimed:
            continue
        grid = protocol.stored_grid(ctx, selections[m.name], lambda lr, s, m=m: run_spec(cfg, m, lr, s, device))
        if missing := protocol.not_stored({m.name: grid, baseline: base}):
            table[m.name] = missing
            continue
        b = base[base_lr]
        # a stopped run of the method or of the baseline: no value (its NaN-padded curve is no measurement)
        table[m.name] = {repr(lr): (value_of(rs, b) if all(map(ok, rs)) and all(map(ok, b)) else None)
                         for lr, rs in sorted(grid.items())}
    return table


def series(runs: dict[str, list[dict]], minority, epochs_per_step: float) -> dict:
    """One series per (method, panel), each naming its method, label and panel."""
    out = {}
    for name, results in runs.items():
        curves = [group_curves(r, minority) for r in results]
        x = [s * epochs_per_step for s in max((r["steps"] for r in results), key=len)]
        for panel in ("minority", "majority"):
            # a stopped seed (NaN-padded) leaves the survivors' mean, not a gap
            out[f"{label(name)} {panel}"] = {"x": x, **over_seeds([g[panel] for g in curves]),
                                             "method": name, "label": label(name),
                                             "panel": panel, "dashed": name in LABELS}
    return out


def checkpoint_table(runs: dict[str, list[dict]], lrs: dict, minority, early_step: int) -> dict:
    """Mean-over-seeds minority/majority test accuracy at an early checkpoint and at the end."""
    table = {}
    for name, results in runs.items():
        g = [group_curves(r, minority) for r in results]
        steps = np.asarray(results[0]["steps"])
        i = int(np.argmin(np.abs(steps - early_step)))
        table[name] = {
            "lr": lrs[name], "early_step": int(steps[i]),
            **{f"{grp}_{when}": float(np.mean([x[grp][j] for x in g]))
               for grp in ("minority", "majority") for when, j in (("early", i), ("final", -1))},
            "train_s_per_seed": float(np.mean([r["wall_s"] for r in results])),
            "statuses": sorted({r["status"] for r in results}),
        }
    return table


def stopped_notes(runs: dict[str, list[dict]]) -> list[str]:
    return [f"{label(o)} stopped on seed(s): {sorted({r['status'] for r in rs} - {'ok'})}"
            for o, rs in runs.items() if any(not ok(r) for r in rs)]


def plot(result: dict, suptitle: str):
    """Two panels (minority, majority): mean per-class test accuracy vs epochs, band over seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
    p = result["params"]
    for ax, group in zip(axes, ("minority", "majority")):
        for s in result["series"].values():
            if s["panel"] != group:
                continue
            c = color(s["method"].split("_")[0])
            ax.plot(s["x"], s["y"], color=c, label=s["label"], linestyle="--" if s["dashed"] else "-")
            band(ax, s, c)
        ax.axvspan(0, p["early_frac"] * p["epochs"], color="#999999", alpha=0.08, linewidth=0)
        classes = p["minority"] if group == "minority" else [c for c in range(len(p["train_counts"]))
                                                              if c not in p["minority"]]
        ax.set_title(f"{group} classes {','.join(map(str, classes))}")
        ax.set_xlabel("epochs over the imbalanced training set")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("mean per-class test accuracy")
    axes[1].legend(loc="lower right", ncol=2)  # the majority panel is empty below its curves
    fig.suptitle(f"{suptitle}: {p['dataset']}, step imbalance rho = {p['rho']:g}, "
                 f"{p['seeds']} seeds (band: min-max; shaded: early window)", fontsize=8.5)
    fig.tight_layout()
    return fig
