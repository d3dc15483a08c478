"""Figure 12 (TNT paper): CNN classification, test accuracy vs epoch, and per-iteration cost.

Data: Fashion-MNIST (Debian package), balanced train / validation / test split of
experiments.data.load_image_split (all of it in full mode; a per-class subset, and images
average-pooled 2x2 to 14x14, in quick). Model: experiments.models.ResNetCNN (BatchNorm ResNet).
Methods: TNT (official CNN setting T1 = 10, T2 = 100, eps = 0.01), KFAC (same T1/T2), Shampoo
(registry configuration), Adam, SGD with momentum 0.9; no weight decay for any of them, so that
the comparison is of the preconditioners alone. Each method is run at every lr of its own grid
(half-decade spacing); the tuned lr has the highest final validation accuracy, and its test
accuracy curve is drawn.

Cost table: experiments.cost.measure_step_costs (the harness experiments.bench uses too) runs all
methods (plus SPlus, for the SPlus paper's cost question) side by side on copies of the same model
and batches: seconds per iteration (forward + sampled-label backward when due + backward + step;
median over timed whole periods of each method's periodic work, past its start-up phase) and
optimizer-state bytes, both relative to SGD-m.

Claims (thresholds fixed before running): TNT's time per iteration is at most 2x SGD-m's, and
its optimizer-state memory at most 3x SGD-m's (SGD-m keeps one momentum buffer; TNT keeps the
momentum plus a factor and its inverse per tensor mode).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from experiments.data import load_image_split, pool_images
from experiments.lr_select import tune_over_grid
from experiments.lr_sweep import log_grid
from experiments.metrics import classification_evaluator
from experiments.models import ResNetCNN
from experiments.cost import clock, measure_step_costs
from experiments.train import TrainConfig, train
from paperfigs.claims import at_most
from paperfigs.style import color

TNT_KW = (("curvature_frequency", 10), ("inverse_frequency", 100), ("eps", 0.01))


@dataclass(frozen=True)
class Fig12Config:
    n_train_per_class: int | None = None   # None: every training image
    n_val_per_class: int = 500
    n_test_per_class: int = 1000
    pool: int = 1                          # average-pool images by this factor (1: 28x28)
    width: int = 16
    blocks: tuple[int, ...] = (1, 1, 1)
    batch_size: int = 128
    epochs: int = 10
    lr_points: int = 5
    # label -> (registry key, grid centre, optimizer kwargs)
    methods: tuple = (
        ("TNT", "tnt", 3e-4, TNT_KW),
        ("KFAC", "kfac", 1e-1, (("curvature_frequency", 10), ("inverse_frequency", 100))),
        ("Shampoo", "shampoo", 1e-2, ()),
        ("Adam", "adam", 1e-2, ()),
        ("SGD-m", "sgd", 3e-2, ()),
    )
    # extra rows of the cost table only (not trained for the accuracy panel)
    cost_only: tuple = (("SPlus", "splus", 0.1, ()),)
    cost_rounds: int = 3            # timed rounds per method, interleaved (see experiments.cost)
    cost_min_run_time: float = 0.2  # seconds per Timer.blocked_autorange call


FULL = Fig12Config()
QUICK = dataclasses.replace(FULL, n_train_per_class=200, n_val_per_class=30, n_test_per_class=100, pool=2,
                            width=8, blocks=(1, 1), batch_size=64, epochs=4, lr_points=3, cost_rounds=2)
SMOKE_KW = (("curvature_frequency", 2), ("inverse_frequency", 4))  # short periods: the cost harness times whole ones
SMOKE = dataclasses.replace(QUICK, n_train_per_class=16, n_val_per_class=4, n_test_per_class=4, pool=4,
                            width=4, batch_size=32, epochs=1, lr_points=1, cost_rounds=1, cost_min_run_time=1e-3,
                            methods=tuple((label, key, centre, SMOKE_KW if key in ("tnt", "kfac") else kw)
                                          for label, key, centre, kw in QUICK.methods),
                            cost_only=(("SPlus", "splus", 0.1, (("inverse_steps", 4),)),))
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}

TIME_FACTOR = 2.0
MEMORY_FACTOR = 3.0


def _model(cfg: Fig12Config, seed: int) -> ResNetCNN:
    return ResNetCNN(1, 10, width=cfg.width, blocks=cfg.blocks, generator=torch.Generator().manual_seed(seed))


def _val_error(history: dict) -> float | None:
    return 1.0 - history["metrics"]["val/acc"][-1] if history["status"] == "ok" else None


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    split = load_image_split("fashion", profile="none", n_max=cfg.n_train_per_class,
                             n_val_per_class=cfg.n_val_per_class, n_test_per_class=cfg.n_test_per_class, seed=seed)
    Xtr, Xva, Xte = (pool_images(x, cfg.pool) for x in (split.x_train, split.x_val, split.x_test))
    n = len(Xtr)
    steps_per_epoch = n // cfg.batch_size
    steps = cfg.epochs * steps_per_epoch
    evaluate = classification_evaluator({"val": (Xva, split.y_val), "test": (Xte, split.y_test)}, 10)

    series, grids, tuned, notes, final_test = {}, {}, {}, [], {}
    for label, key, centre, kwargs in cfg.methods:
        def run(lr, key=key, kwargs=kwargs):
            tc = TrainConfig(optimizer=key, lr=lr, steps=steps, batch_size=cfg.batch_size,
                             eval_every=steps_per_epoch, seed=seed, device=device, loss="ce",
                             optimizer_kwargs=kwargs)
            return train(_model(cfg, seed), Xtr, split.y_train, tc, evaluate, progress=False)

        grid = log_grid(centre, cfg.lr_points, 0.5 * (cfg.lr_points - 1))
        # Validation error as the score: lower is better, a stopped (diverged) run has none.
        best, h, scores = tune_over_grid(grid, run, _val_error, label, notes)
        grids[label] = {"lrs": list(scores), "val_error": list(scores.values())}
        tuned[label] = best
        final_test[label] = h["metrics"]["test/acc"][-1]
        series[label] = {"x": [s / steps_per_epoch for s in h["step"]], "y": h["metrics"]["test/acc"]}

    # Cost: same model init and batches for every method, at its tuned lr (SPlus at its default).
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    batches = []
    for _ in range(4):
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        batches.append((Xtr[idx].to(dev), split.y_train[idx].to(dev)))
    cost_methods = {label: (key, tuned[label], dict(kw)) for label, key, _, kw in cfg.methods}
    cost_methods.update({label: (key, lr, dict(kw)) for label, key, lr, kw in cfg.cost_only})
    costs = measure_step_costs(_model(cfg, seed).to(dev), cost_methods, batches, "ce", seed=seed,
                               rounds=cfg.cost_rounds, min_run_time=cfg.cost_min_run_time)
    base = costs["SGD-m"]
    cost_table = {
        label: {"s_per_iter": c.seconds_per_step, "time_rel_sgdm": c.seconds_per_step / base.seconds_per_step,
                "state_mb": c.state_bytes / 2 ** 20, "memory_rel_sgdm": c.state_bytes / base.state_bytes}
        for label, c in costs.items()
    }
    claims = [
        at_most("tnt_time_per_iter_vs_sgdm",
                f"TNT's time per iteration (side by side, amortised over inverse periods) is at most "
                f"{TIME_FACTOR:g}x SGD-m's", cost_table["TNT"]["time_rel_sgdm"], TIME_FACTOR),
        at_most("tnt_state_memory_vs_sgdm",
                f"TNT's optimizer-state memory is at most {MEMORY_FACTOR:g}x SGD-m's (momentum buffer)",
                cost_table["TNT"]["memory_rel_sgdm"], MEMORY_FACTOR),
    ]
    params = {
        "dataset": "fashion", "split": split.info | {"normalisation": "train mean/std"},
        "image_size": int(Xtr.shape[-1]), "pool": cfg.pool,
        "model": f"ResNetCNN(width={cfg.width}, blocks={list(cfg.blocks)})",
        "n_params": sum(p.numel() for p in _model(cfg, seed).parameters()),
        "batch_size": cfg.batch_size, "epochs": cfg.epochs, "steps": steps, "weight_decay": 0.0,
        "lr_grid_rule": f"{cfg.lr_points} lr(s) per method, factor 10^0.5 apart around its centre; "
                        "tuned lr = highest final validation accuracy",
        "optimizer_kwargs": {label: dict(kw) for label, _, _, kw in cfg.methods + cfg.cost_only},
        "lr": tuned, "final_test_acc": final_test,
        "cost_protocol": f"experiments.cost: untimed start-up (whole periods), then {cfg.cost_rounds} interleaved rounds of "
                         f"Timer.blocked_autorange (min_run_time {cfg.cost_min_run_time} s) over whole periods "
                         f"({', '.join(f'{k} {c.period}' for k, c in costs.items())} steps); median per step, "
                         f"{costs['SGD-m'].replicates} SGD-m replicates; clock: "
                         f"{clock(dev, torch.get_num_threads())[1]}; state = distinct storages in optimizer.state",
    }
    return {"params": params, "series": series, "claims": claims,
            "tables": {"cost": cost_table, "lr_grid": grids}, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    fig, (ax, tab) = plt.subplots(1, 2, figsize=(7.0, 2.8), gridspec_kw={"width_ratios": [1.15, 1]})
    lrs = result["params"]["lr"]
    for label, s in result["series"].items():
        ax.plot(s["x"], [100 * v for v in s["y"]], color=color(label), marker="o", ms=3,
                label=f"{label} (lr {lrs[label]:.2g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fashion-MNIST {result['params']['image_size']}px, {result['params']['model']}", fontsize=8)
    ax.legend(loc="lower right")
    cost = result["tables"]["cost"]
    rows = list(cost)
    cells = [[f"{1000 * cost[r]['s_per_iter']:.1f}", f"{cost[r]['time_rel_sgdm']:.2f}x",
              f"{cost[r]['state_mb']:.3f}", f"{cost[r]['memory_rel_sgdm']:.2f}x"] for r in rows]
    tab.axis("off")
    t = tab.table(cellText=cells, rowLabels=rows, loc="center", cellLoc="center",
                  colLabels=["ms/iter", "time\nvs SGD-m", "state\nMB", "memory\nvs SGD-m"])
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    t.scale(1.0, 1.4)
    for (row, _), cell in t.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 1.8)
    tab.set_title("cost per iteration, measured side by side")
    fig.tight_layout()
    return fig
