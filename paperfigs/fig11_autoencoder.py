"""Figure 11 (TNT paper): deep autoencoder on real digits, training loss vs epoch and vs wall-clock.

Task: experiments.tasks.autoencoder (model, data, training and the full-training-set loss after
every epoch). Full mode: 196-500-250-125-30 (mirrored: half the paper's hidden widths, its
30-unit code, and a 196-pixel input) on the 5,000 MNIST-5k digits average-pooled 2x2, batch
1000, 100 epochs. Quick mode uses
196-128-64-16, batch 500, 30 epochs. Paper scale (--scale paper) is the TNT paper's
784-1000-500-250-30 on all 60,000 MNIST training images.

Full mode resized (issue 10, before any full run of this figure; quick, smoke and paper unchanged):
it was the paper's 784-1000-500-250-30 on MNIST-5k, which measured (paperfigs.estimate, on this
2-core machine while other runs shared it) 120 CPU-s a run with SGD-m or Adam, 230-260 with Shampoo,
340 with KFAC and 395 with TNT, a first batch (90 runs, grids of +-0.5 decade) of 22,000 CPU-s
and about 4-5 hours in all. The initial grid is now +-0.25 decade (3 points, as in quick; the
engine still extends it past an edge optimum): 54 first-batch runs. Pooling alone
(196-1000-500-250-30) still measured 85-334 CPU-s a run, 10,800 CPU-s for those 54: the
1000-wide layer and its 1000 x 1000 Kronecker factors dominate. With half the hidden widths a run
takes 29 (SGD-m, Adam) to 88 (KFAC) CPU-s and the 54 runs 2,850 CPU-s (about an hour in all with
--jobs 2). The run length (100 epochs) is kept: the audit behind issue 10 saw the
TNT-vs-Shampoo ratio move with it (1.14 at 30 epochs, 1.03 at 90).

Methods: TNT (official autoencoder setting T1 = 1, T2 = 20, eps = 0.1), KFAC (same T1/T2, damping
1), Shampoo as the TNT paper ran it (its official code: statistics of every variable as an
exponential average with decay 0.9 like TNT's, inverse roots every T2 = 20 steps, momentum on the
gradient, no grafting; eps 1e-4, fixed before any run of this figure; it has no warm start here),
"Shampoo (grafted)" (the project's practical configuration: Adam grafting, inverse roots every 10
steps; reported separately, it is not the paper's comparator), Adam, SGD with momentum 0.9, and any
user optimizer (--optimizer). No weight decay.

Protocol (issue 10): each method's lr is tuned on a quarter-decade grid (extended past an edge
optimum and up to divergence) on TUNING_SEEDS, disjoint from the reporting seeds. Score: the
full-training-set loss averaged over the last quarter of the epochs, mean over tuning seeds. It is
a training-loss score because every claim is about optimisation (the paper's own protocol tuned
on training loss; there is no held-out quantity in these claims), and a late-window mean rather
than the last value because a constant-lr end point is one noisy sample.

Claims (thresholds unchanged since before the engine; values are ratios of mean final training
losses over the paired reporting seeds, with a 95% interval and a verdict):
- TNT's final loss is below Adam's and below SGD-m's (and below each user optimizer's): ratio < 1.
- "Comparable to KFAC and Shampoo": TNT's final loss is at most 1.10x the better of KFAC's and the
  TNT paper's Shampoo's. Changed with the engine (issue 10): the comparator was the grafted
  Shampoo, which is not the configuration the paper compared against; the grafted one is
  reported in tables.grafted_shampoo with the same statistic. Each TNT claim is also reported at
  every lr tied with TNT's selected one, and over TNT's whole grid (tables.sensitivity).

Quick mode drops: the narrower net (196-128-64-16), batch 1000 -> 500, 100 -> 30 epochs, 5 -> 3
reporting seeds, and the engine's grid extension 3 -> 2 points past an edge.
Budget (issue 10): a fresh clone reads the committed selections and computes only the 18 reporting
runs, 79 s of CPU in all (about 40 s with --jobs 2), inside the figure's 80 s share, so quick is
unchanged. Paper scale (--scale paper, for a GPU): the paper's net on all 60,000 standard MNIST
training images; see PAPER for what is and is not matched.
stop 18 (analysis only): a stopped run (status other than ok) has a NaN final loss, so every claim
reading one was and stays inconclusive; ratio_to_best now takes np.min, because Python's min()
skipped a NaN comparator that came second (min(x, nan) is x), which left a stopped Shampoo out of
the sensitivity table's "vs the better of KFAC and Shampoo" instead of giving no value.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments.data.images import load_raw
from experiments.engine import RunSpec
from paperfigs import protocol
from paperfigs.claims import paired
from paperfigs.methods import Method, with_extras
from paperfigs.stats import SEED_BAND, over_seeds
from paperfigs.style import band, color

NUMBER = 11
COMPARABLE_FACTOR = 1.10
AE_T = {"curvature_frequency": 1, "inverse_frequency": 20}
METHODS = (
    Method("TNT", "tnt", 3e-4, {**AE_T, "eps": 0.1}),
    # damping 1 (per-example Fisher units): 1e-2 and 1e-1 gave loss spikes on this task
    Method("KFAC", "kfac", 3e-2, {**AE_T, "damping": 1.0}),
    Method("Shampoo", "shampoo", 3e-3, {"momentum": 0.9, "beta": 0.9, "eps": 1e-4, "precondition_frequency": 20,
                                        "start_preconditioning_step": 1, "grafting": "none"}),
    Method("Shampoo (grafted)", "shampoo", 1e-2),
    Method("Adam", "adam", 1e-2),
    Method("SGD-m", "sgd", 3e-2),
)
FIRST_ORDER = ("Adam", "SGD-m")
VARIANTS = ("Shampoo (grafted)",)   # a second configuration of a method already shown: drawn dashed


@dataclass(frozen=True)
class Fig11Config:
    """Defaults: the TNT paper's autoencoder on MNIST-5k (the full configuration before its resize)."""
    encoder_sizes: tuple[int, ...] = (784, 1000, 500, 250, 30)
    dataset: str = "mnist5k"
    n_images: int | None = 5000     # None: every image of the dataset
    pool: int = 1
    batch_size: int = 1000          # the official autoencoder batch size
    epochs: int = 100
    seeds: int = 5
    half_width: float = 0.5         # initial grid: decades each side of the centre
    extend: int = 3
    tuning_seeds: tuple[int, ...] = protocol.TUNING_SEEDS


FULL = dataclasses.replace(Fig11Config(), pool=2, encoder_sizes=(196, 500, 250, 125, 30), half_width=0.25)
QUICK = dataclasses.replace(FULL, pool=2, encoder_sizes=(196, 128, 64, 16), batch_size=500, epochs=30, seeds=3,
                            half_width=0.25, extend=2)
SMOKE = dataclasses.replace(FULL, pool=4, encoder_sizes=(49, 16, 4), n_images=400, batch_size=100, epochs=2,
                            seeds=2, half_width=0.0, extend=1, tuning_seeds=(1000,))
# The TNT paper's MNIST autoencoder: the 784-1000-500-250-30 net on the 60,000 standard MNIST
# training images (from --data-root), batch 1000, no weight decay, TNT with T1 = 1, T2 = 20,
# eps = 0.1 (the official code's autoencoder setting), grids of +-0.5 decade. Not matched: the
# paper's FACES and CURVES autoencoders, and its run length, which is not taken from the paper here
# (100 epochs, as full).
PAPER = dataclasses.replace(Fig11Config(), dataset="mnist", n_images=None)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE, "paper": PAPER}


def run_spec(cfg: Fig11Config, m: Method, lr: float, seed: int, device: str) -> RunSpec:
    return RunSpec("autoencoder", {"encoder_sizes": list(cfg.encoder_sizes), "dataset": cfg.dataset, "n_images": cfg.n_images,
                                   "pool": cfg.pool, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                                   "optimizer": m.optimizer, "lr": float(lr), "optimizer_kwargs": dict(m.kwargs),
                                   "seed": int(seed), "data_seed": 0, "device": device})


def _loss(result: dict) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in result["train_loss"]], float)


def late_loss(result: dict) -> float | None:
    """Full-training-set loss averaged over the last quarter of the epochs (None: stopped)."""
    loss = _loss(result)
    tail = loss[-max(1, (len(loss) - 1) // 4):]
    return float(tail.mean()) if result["status"] == "ok" and np.all(np.isfinite(tail)) else None


def final(results: list[dict]) -> np.ndarray:
    """Final full-training-set loss per seed (NaN for a stopped run)."""
    return np.array([_loss(r)[-1] if r["status"] == "ok" else np.nan for r in results])


def ratio(a, b) -> float:
    return float(np.mean(a) / np.mean(b))


def ratio_to_best(a, *others) -> float:
    # np.min, not min(): a stopped comparator's NaN propagates (min(x, nan) is x, which dropped it)
    return float(np.mean(a) / np.min([np.mean(o) for o in others]))


def claims_for(tnt: list[dict], runs: dict[str, list[dict]], comparators: list[str], suffix: str = "") -> list:
    t = final(tnt)
    out = [paired(f"tnt_below_{name.lower().replace('-', '').replace(' ', '_')}",
                  f"TNT's final training loss / {name}'s (mean over paired seeds, each at its tuned lr) is "
                  f"below 1{suffix}", [t, final(runs[name])], 1.0, "<=", statistic=ratio, strict=True)
           for name in comparators]
    out.append(paired("tnt_comparable_kfac_shampoo",
                      f"TNT's final training loss is at most {COMPARABLE_FACTOR:.2f}x the better of KFAC's and "
                      f"Shampoo's (the TNT paper's configuration; means over paired seeds){suffix}",
                      [t, final(runs["KFAC"]), final(runs["Shampoo"])], COMPARABLE_FACTOR, "<=",
                      statistic=ratio_to_best))
    return out


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    from paperfigs.context import Context

    ctx = ctx or Context()
    cfg = CONFIGS[mode]
    # Read (and so check) the data here: a missing or malformed file is then the CLI's one-line error,
    # not a failure inside a worker's run.
    source = load_raw(cfg.dataset).source
    methods = with_extras(list(METHODS), ctx, center=1e-2)
    extras = [m.name for m in methods[len(METHODS):]]
    seeds = protocol.reporting_seeds(seed, cfg.seeds, cfg.tuning_seeds)

    def spec(m, lr, s):
        return run_spec(cfg, m, lr, s, device)

    criterion = "full-training-set loss averaged over the last quarter of the epochs, mean over tuning seeds"
    selections, runs, tied_runs = protocol.tune_and_report(
        ctx, methods, spec, seeds, late_loss, False, criterion, lambda m: protocol.grid_of(m.center, cfg.half_width),
        cfg.extend, claimed=("TNT",), tuning_seeds=cfg.tuning_seeds)
    comparators = list(FIRST_ORDER) + extras
    claims, at_tied = protocol.claims_with_tied(
        ("TNT",), runs, tied_runs, lambda name, rs, suffix="": claims_for(rs, runs, comparators, suffix),
        lambda name, lr: f" (TNT at tied lr {lr:.3g})")
    grafted = paired("tnt_comparable_kfac_grafted_shampoo",
                     "TNT's final training loss / the better of KFAC's and grafted Shampoo's (reported, not "
                     "claimed: the grafted Shampoo is not the paper's comparator)",
                     [final(runs["TNT"]), final(runs["KFAC"]), final(runs["Shampoo (grafted)"])],
                     COMPARABLE_FACTOR, "<=", statistic=ratio_to_best)

    # Sensitivity: TNT at every lr of its grid against the others at their selected lrs (tuning seeds).
    others = {m.name: protocol.stored_grid(ctx, selections[m.name], lambda lr, s, m=m: spec(m, lr, s),
                                           [selections[m.name].lr]) for m in methods[1:]}
    grid = protocol.stored_grid(ctx, selections["TNT"], lambda lr, s: spec(methods[0], lr, s))
    sensitivity = protocol.not_stored({"TNT": grid, **others})
    if sensitivity is None:
        best = {name: final(g[selections[name].lr]) for name, g in others.items()}
        sensitivity = {}
        for lr, rs in sorted(grid.items()):
            t = final(rs)
            ok = np.all(np.isfinite(t))
            row = {f"vs_{name}": (ratio(t, best[name]) if ok else None) for name in comparators}
            row["vs_best_of_kfac_shampoo"] = ratio_to_best(t, best["KFAC"], best["Shampoo"]) if ok else None
            sensitivity[repr(lr)] = row

    series = {}
    for m in methods:
        rs = runs[m.name]
        losses = over_seeds([_loss(r) for r in rs])
        walls = over_seeds([np.array([np.nan if v is None else v for v in r["wall_s"]], float) for r in rs])
        for panel, x in (("epoch", rs[0]["epoch"]), ("wall", walls["y"])):
            series[f"{m.name}|{panel}"] = {"x": list(map(float, x)), **losses,
                                           "method": m.name, "panel": panel, "label": m.name,
                                           "optimizer": m.optimizer, "dashed": m.name in VARIANTS}
    finals = {m.name: float(np.nanmean(final(runs[m.name]))) for m in methods}
    params = {
        "dataset": cfg.dataset, "n_images": cfg.n_images, "image_size": 28 // cfg.pool,
        "data_source": {cfg.dataset: source},
        "encoder_sizes": list(cfg.encoder_sizes), "activation": "ReLU hidden, linear code, logit output",
        "loss": "per-pixel BCE summed over pixels, mean over images", "batch_size": cfg.batch_size,
        "epochs": cfg.epochs, "seed_list": seeds, "device": device,
        "methods": {m.name: {"optimizer": m.optimizer, "kwargs": m.kwargs} for m in methods},
        "lr": {m.name: selections[m.name].lr for m in methods},
        "lr_selection": {m.name: selections[m.name].to_json() for m in methods},
        "final_loss_mean": finals, "band": SEED_BAND,
    }
    tables = {"claims_at_tied_lrs": at_tied,
              "grafted_shampoo": grafted.to_json(), "sensitivity": sensitivity,
              "sensitivity_definition": "TNT's mean final loss at each lr of its grid / the comparator's at its "
                                        "selected lr, on the tuning seeds"}
    notes = [f"{name} stopped on seed(s) {[s for s, r in zip(seeds, rs) if r['status'] != 'ok']}"
             for name, rs in runs.items() if any(r["status"] != "ok" for r in rs)]
    notes += [f"{m.name}: the selected lr {selections[m.name].lr:.3g} is on the edge of its extended grid"
              for m in methods if selections[m.name].at_edge]
    return {"params": params, "series": series, "claims": claims, "tables": tables, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharey=True)
    lrs = result["params"]["lr"]
    for s in result["series"].values():
        ax = axes[0] if s["panel"] == "epoch" else axes[1]
        c = color(s["optimizer"])
        ax.plot(s["x"], s["y"], color=c, ls="--" if s["dashed"] else "-",
                label=f"{s['label']} (lr {lrs[s['method']]:.2g})")
        band(ax, s, c)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training wall-clock (s, mean over seeds)")
    axes[0].set_ylabel("training loss (BCE, nats / image)")
    for ax in axes:
        ax.set_yscale("log")
    p = result["params"]
    shape = "-".join(str(d) for d in p["encoder_sizes"])
    data = {"mnist5k": "MNIST-5k", "mnist": "MNIST"}.get(p["dataset"], p["dataset"])
    axes[0].set_title(f"Autoencoder {shape} (mirrored), {data} {p['image_size']}px", fontsize=8)
    axes[1].set_title(f"same runs vs time ({len(p['seed_list'])} seeds, band min-max)", fontsize=8)
    axes[1].legend(loc="upper right", fontsize=6)
    fig.tight_layout()
    return fig
