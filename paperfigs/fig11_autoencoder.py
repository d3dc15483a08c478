"""Figure 11 (TNT paper): deep autoencoder on real digits, training loss vs epoch and vs wall-clock.

Data: the 5,000 real MNIST digits of MNIST-5k (pixels in [0, 1], all images used for training:
the paper's autoencoder plots are training loss). Model: experiments.autoencoder.DeepAutoencoder,
784-1000-500-250-30 (mirrored) in full mode. Quick mode average-pools the digits 2x2 to 14x14
(196 pixels, still in [0, 1]) and uses 196-128-64-16: the 784 x 784 Kronecker factors of
TNT/KFAC/Shampoo dominate a CPU step otherwise. Loss: per-pixel binary cross-entropy, summed over
the pixels and averaged over images (loss "bce").

Methods: TNT (official autoencoder setting T1 = 1, T2 = 20, eps = 0.1, no weight decay), KFAC
(same T1/T2 schedule, damping 1), Shampoo (the registry's practical configuration), Adam, SGD with momentum
0.9. Each method is run at every lr of its own grid (half-decade spacing); the tuned lr is the one
with the lowest final full-training-set loss (the paper's protocol: lrs tuned on training loss),
and that run's curve is drawn. Grids and every grid score are stored in the JSON.

Claims (thresholds fixed before running):
- TNT's final loss is below Adam's and below SGD-m's (ratio TNT / other < 1).
- "Comparable to KFAC and Shampoo" means: TNT's final loss is at most 10% above the better of
  the two (ratio TNT / min(KFAC, Shampoo) <= 1.10).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from experiments.autoencoder import DeepAutoencoder
from experiments.data import load_raw, pool_images
from experiments.lr_select import tune_over_grid
from experiments.lr_sweep import log_grid
from experiments.optim.curvature import mean_loss
from experiments.train import TrainConfig, train
from paperfigs.claims import at_most
from paperfigs.style import color



@dataclass(frozen=True)
class Fig11Config:
    encoder_sizes: tuple[int, ...] = (784, 1000, 500, 250, 30)
    n_images: int = 5000
    pool: int = 1                   # average-pool the 28x28 digits by this factor
    batch_size: int = 1000          # the official autoencoder batch size
    epochs: int = 100
    lr_points: int = 5              # lrs per method, half a decade apart around its centre
    # label -> (registry key, grid centre, optimizer kwargs)
    methods: tuple = (
        ("TNT", "tnt", 3e-4, (("curvature_frequency", 1), ("inverse_frequency", 20), ("eps", 0.1))),
        # damping 1 (per-example Fisher units): 1e-2 and 1e-1 gave loss spikes on this task
        ("KFAC", "kfac", 3e-2, (("curvature_frequency", 1), ("inverse_frequency", 20), ("damping", 1.0))),
        ("Shampoo", "shampoo", 1e-2, ()),
        ("Adam", "adam", 1e-2, ()),
        ("SGD-m", "sgd", 3e-2, ()),
    )


FULL = Fig11Config()
QUICK = dataclasses.replace(FULL, pool=2, encoder_sizes=(196, 128, 64, 16), batch_size=500, epochs=30, lr_points=3)
SMOKE = dataclasses.replace(FULL, pool=4, encoder_sizes=(49, 16, 4), n_images=400, batch_size=100, epochs=2,
                            lr_points=1)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}

COMPARABLE_FACTOR = 1.10


def _images(n: int, pool: int, seed: int) -> torch.Tensor:
    """n MNIST-5k images average-pooled by `pool`, flattened to (n, (28 / pool)^2) in [0, 1];
    a seeded subset when n < 5000."""
    raw = load_raw("mnist5k")
    idx = np.sort(np.random.default_rng(seed).permutation(len(raw.x))[:n])
    return pool_images(torch.from_numpy(raw.x[idx].astype(np.float32)), pool).flatten(1)


def _loss_evaluator(X: torch.Tensor, chunk: int = 1000):
    def evaluate(model: torch.nn.Module, step: int) -> dict:
        device = next(model.parameters()).device
        total = 0.0
        for i in range(0, len(X), chunk):
            x = X[i:i + chunk].to(device)
            total += float(mean_loss(model(x), x, "bce")) * len(x)
        return {"train_loss_full": total / len(X)}
    return evaluate


def _final(history: dict) -> float | None:
    v = history["metrics"]["train_loss_full"][-1]
    return v if history["status"] == "ok" and np.isfinite(v) else None


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    X = _images(cfg.n_images, cfg.pool, seed)
    steps_per_epoch = cfg.n_images // cfg.batch_size
    steps = cfg.epochs * steps_per_epoch
    evaluate = _loss_evaluator(X)
    series, grids, tuned, notes, finals = {}, {}, {}, [], {}
    for label, key, centre, kwargs in cfg.methods:
        def run(lr, key=key, kwargs=kwargs):
            torch.manual_seed(seed)  # same initial weights for every method and lr
            model = DeepAutoencoder(cfg.encoder_sizes)
            tc = TrainConfig(optimizer=key, lr=lr, steps=steps, batch_size=cfg.batch_size,
                             eval_every=steps_per_epoch, seed=seed, device=device, loss="bce",
                             optimizer_kwargs=kwargs)
            return train(model, X, X, tc, evaluate, progress=False)

        grid = log_grid(centre, cfg.lr_points, 0.5 * (cfg.lr_points - 1))
        best, h, scores = tune_over_grid(grid, run, _final, label, notes)
        grids[label] = {"lrs": list(scores), "final_loss": list(scores.values())}
        tuned[label] = best
        finals[label] = _final(h)
        epochs = [s / steps_per_epoch for s in h["step"]]
        loss = h["metrics"]["train_loss_full"]
        series[f"{label}|epoch"] = {"x": epochs, "y": loss}
        series[f"{label}|wall"] = {"x": h["wall_s"], "y": loss}

    def ratio(a, b):
        fa, fb = finals.get(a), finals.get(b)
        return None if fa is None or fb is None else fa / fb

    best_second = min((finals[m] for m in ("KFAC", "Shampoo") if finals.get(m) is not None), default=None)
    claims = [
        at_most("tnt_below_adam", "TNT's final training loss / Adam's (each at its tuned lr) is below 1",
                ratio("TNT", "Adam"), 1.0),
        at_most("tnt_below_sgdm", "TNT's final training loss / SGD-m's (each at its tuned lr) is below 1",
                ratio("TNT", "SGD-m"), 1.0),
        at_most("tnt_comparable_kfac_shampoo",
                f"TNT's final training loss is at most {COMPARABLE_FACTOR:.2f}x the better of KFAC's and Shampoo's",
                None if finals.get("TNT") is None or best_second is None else finals["TNT"] / best_second,
                COMPARABLE_FACTOR),
    ]
    params = {
        "dataset": "mnist5k", "n_images": cfg.n_images, "image_size": 28 // cfg.pool,
        "data_source": {"mnist5k": load_raw("mnist5k").source},
        "encoder_sizes": list(cfg.encoder_sizes),
        "activation": "ReLU hidden, linear code, logit output",
        "loss": "per-pixel BCE summed over pixels, mean over images",
        "batch_size": cfg.batch_size, "epochs": cfg.epochs, "steps": steps,
        "lr_grid_rule": f"{cfg.lr_points} lrs per method, factor 10^0.5 apart around its centre; "
                        "tuned lr = lowest final full-training-set loss",
        "optimizer_kwargs": {label: dict(kw) for label, _, _, kw in cfg.methods},
        "lr": tuned, "final_loss": finals,
    }
    return {"params": params, "series": series, "claims": claims, "tables": {"lr_grid": grids}, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharey=True)
    for name, s in result["series"].items():
        label, axis = name.split("|")
        ax = axes[0] if axis == "epoch" else axes[1]
        lr = result["params"]["lr"].get(label)
        ax.plot(s["x"], s["y"], color=color(label), label=f"{label} (lr {lr:.2g})" if lr else label)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training wall-clock (s)")
    axes[0].set_ylabel("training loss (BCE, nats / image)")
    for ax in axes:
        ax.set_yscale("log")
    p = result["params"]
    shape = "-".join(str(d) for d in p["encoder_sizes"])
    axes[0].set_title(f"Autoencoder {shape} (mirrored), MNIST-5k {p['image_size']}px", fontsize=8)
    axes[1].set_title("same runs vs time")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    return fig
