"""Figure 15 (SPlus paper): learning-rate transfer across width. Final validation loss vs lr at
several widths for SPlus with its 2/(m+n) lr scaling, SPlus without it, and Adam.

Task: an MLP d-w-...-w-10 (experiments.models.MLP, `depth` layers) on the MNIST-5k digits
(balanced split of experiments.data; d = 784, or 196 in quick mode, where the digits are
average-pooled 2x2 so that SPlus's rotations by the input-side eigenbasis stay cheap on a CPU),
same steps and batch at every width. SPlus is evaluated at
its EMA weights (EMA horizon a tenth of the run, ema_rate = 1 - 10 / steps; betas (0.9, 0.95)
as in the paper's runs); "SPlus (no
scaling)" is the same optimizer with shape_scaling=False, so a matrix steps by lr itself.
For each method and width the best lr is the grid lr with the lowest final validation loss
(averaged over `seeds` initialisations and data orders: single runs made near-tied lrs flip); its
spread across widths is max - min of log10(best lr), counted in whole grid steps (resolution:
log10 of the grid's factor: a quarter decade).

Claim (fixed before running): SPlus's best lr moves least across widths: its spread is strictly
smaller than both the unscaled SPlus's and Adam's.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from experiments.data import load_image_split, pool_images
from experiments.lr_select import select_lr
from experiments.models import MLP
from experiments.train import TrainConfig, train
from paperfigs.claims import verdict
from paperfigs.style import color

# label -> (registry key, extra optimizer kwargs)
METHODS = {
    "SPlus": ("splus", ()),
    "SPlus (no scaling)": ("splus", (("shape_scaling", False),)),
    "Adam": ("adam", ()),
}
SPLUS_BETAS = (0.9, 0.95)  # the paper's runs (the optimizer's default b2 is 0.999)
LINESTYLES = {"SPlus": "-", "SPlus (no scaling)": "--", "Adam": "-"}


@dataclass(frozen=True)
class Fig15Config:
    widths: tuple[int, ...] = (8, 32, 128, 512)
    depth: int = 3
    pool: int = 1               # average-pool the 28x28 digits by this factor
    steps: int = 1000
    batch_size: int = 128
    seeds: int = 3              # final validation loss averaged over init/data-order seeds
    # lr grids: lo * factor^i, i = 0..points-1
    grid_factor: float = 10 ** 0.25
    grids: tuple = (("SPlus", 1e-2, 13), ("SPlus (no scaling)", 1e-4, 13), ("Adam", 1e-4, 13))


FULL = Fig15Config()
QUICK = dataclasses.replace(FULL, widths=(8, 32, 128), pool=2, steps=200, batch_size=64, seeds=2,
                            grids=(("SPlus", 1e-2, 11), ("SPlus (no scaling)", 1e-4, 11), ("Adam", 1e-4, 11)))
SMOKE = dataclasses.replace(QUICK, widths=(4, 16), depth=2, steps=5, batch_size=32, seeds=1, grid_factor=10 ** 0.5,
                            grids=(("SPlus", 1e-1, 2), ("SPlus (no scaling)", 1e-3, 2), ("Adam", 1e-3, 2)))
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    split = load_image_split("mnist5k", profile="none", n_val_per_class=50, n_test_per_class=50, seed=seed)
    Xtr, Xv, yv = pool_images(split.x_train, cfg.pool), pool_images(split.x_val, cfg.pool), split.y_val
    d_in = Xtr[0].numel()

    def evaluate(model, step):
        logits = model(Xv.to(next(model.parameters()).device))
        return {"val_loss": float(F.cross_entropy(logits, yv.to(logits.device)))}

    grids = {label: [lo * cfg.grid_factor ** i for i in range(n)] for label, lo, n in cfg.grids}
    series, best, results, notes = {}, {}, {}, []
    for label, (key, kw) in METHODS.items():
        best[label], results[label] = {}, {}
        for w in cfg.widths:
            scores = {}
            for lr in grids[label]:
                extra = (("ema_rate", 1 - 10 / max(cfg.steps, 20)), ("betas", SPLUS_BETAS)) if key == "splus" else ()
                finals = []
                for s in range(seed, seed + cfg.seeds):
                    tc = TrainConfig(optimizer=key, lr=lr, steps=cfg.steps, batch_size=cfg.batch_size,
                                     eval_every=cfg.steps, seed=s, device=device, loss="ce",
                                     optimizer_kwargs=kw + extra)
                    model = MLP(d_in, 10, width=w, depth=cfg.depth, generator=torch.Generator().manual_seed(s))
                    h = train(model, Xtr, split.y_train, tc, evaluate, progress=False)
                    v = h["metrics"]["val_loss"][-1]
                    finals.append(v if h["status"] == "ok" and math.isfinite(v) else math.nan)
                # A diverged seed makes the lr diverged; otherwise the mean over seeds.
                mean = float(np.mean(finals))
                scores[lr] = mean if math.isfinite(mean) else None
            lr_best, at_edge = select_lr(scores)
            if at_edge:
                notes.append(f"{label}, width {w}: best lr {lr_best:.3g} is at the edge of the grid")
            best[label][str(w)] = lr_best
            results[label][str(w)] = list(scores.values())
            series[f"{label}|{w}"] = {"x": list(scores), "y": list(scores.values())}

    def steps_spread(label):
        """Spread of the best lr across widths in grid steps (exact integers: no float ties)."""
        idx = [grids[label].index(v) for v in best[label].values() if v is not None]
        return max(idx) - min(idx) if len(idx) == len(cfg.widths) else None

    step_spreads = {label: steps_spread(label) for label in METHODS}
    decades_per_step = math.log10(cfg.grid_factor)
    spreads = {label: None if k is None else k * decades_per_step for label, k in step_spreads.items()}
    others = [step_spreads["SPlus (no scaling)"], step_spreads["Adam"]]
    ok = step_spreads["SPlus"] is not None and all(o is not None and step_spreads["SPlus"] < o for o in others)
    others = [spreads["SPlus (no scaling)"], spreads["Adam"]]
    claims = [verdict("splus_best_lr_moves_least",
                      "spread of log10(best lr) across widths: SPlus (2/(m+n) scaling) strictly below both "
                      "SPlus without scaling and Adam (threshold: the smaller of those two)",
                      ok, spreads["SPlus"], min((o for o in others if o is not None), default=None))]
    params = {
        "dataset": "mnist5k", "image_size": 28 // cfg.pool, "widths": list(cfg.widths), "depth": cfg.depth,
        "data_source": split.info["data_source"],
        "steps": cfg.steps,
        "batch_size": cfg.batch_size, "lr_grids": grids, "grid_factor": cfg.grid_factor,
        "selection": "best lr = lowest final validation loss, mean over seeds (SPlus at EMA weights, "
                     "ema_rate 1 - 10/steps)", "seeds": cfg.seeds,
        "splus_betas": SPLUS_BETAS,
        "best_lr": best, "log10_best_lr_spread": spreads, "best_lr_spread_grid_steps": step_spreads,
    }
    return {"params": params, "series": series, "claims": claims, "tables": {"val_loss": results}, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    widths = result["params"]["widths"]
    labels = list(METHODS)
    fig, axes = plt.subplots(1, len(labels), figsize=(7.0, 2.6), sharey=True)
    shades = plt.cm.viridis(np.linspace(0.0, 0.85, len(widths)))
    for ax, label in zip(axes, labels):
        for w, shade in zip(widths, shades):
            s = result["series"][f"{label}|{w}"]
            y = [np.nan if v is None else v for v in s["y"]]
            ax.plot(s["x"], y, color=shade, ls=LINESTYLES[label], marker="o", ms=2.5, label=f"width {w}")
            b = result["params"]["best_lr"][label][str(w)]
            if b is not None:
                ax.plot([b], [y[s["x"].index(b)]], marker="*", ms=9, color=shade, mec="black", mew=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        sp = result["params"]["log10_best_lr_spread"][label]
        ax.set_title(f"{label}\nbest-lr spread {'n/a' if sp is None else f'{sp:.2f}'} decades",
                     color=color(label.split()[0]))
    axes[0].set_ylabel("final validation loss (nats)")
    axes[0].legend(loc="upper right", fontsize=6.5)
    lo = min((v for s in result["series"].values() for v in s["y"] if v is not None), default=0.0)
    axes[0].set_ylim(lo * 0.8 if lo > 0 else None, min(3.0, axes[0].get_ylim()[1]))
    fig.tight_layout()
    return fig
