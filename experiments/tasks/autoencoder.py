"""Engine task "autoencoder": the deep autoencoder of the second-order literature on MNIST-5k
(figure 11), trained by one optimizer, with its full-training-set loss after every epoch.

    config = {"encoder_sizes": [196, 128, 64, 16], "dataset": "mnist5k", "n_images": 5000, "pool": 2,
              "batch_size": 500,
              "epochs": 30, "optimizer": "tnt", "lr": 3e-4,
              "optimizer_kwargs": {"curvature_frequency": 1, "inverse_frequency": 20, "eps": 0.1},
              "seed": 0, "data_seed": 0, "device": "cpu"}
    result = run(config)   # {"epoch", "train_loss", "wall_s", "status"}

Model: experiments.models.autoencoder.DeepAutoencoder, trained with per-pixel binary
cross-entropy against intensities in [0, 1] (loss "bce" of experiments.train: summed over
pixels, averaged over images).

Data: `n_images` digits of `dataset` (required; "mnist5k": the 5,000 MNIST-5k digits;
"mnist": the 60,000 training images of standard MNIST from --data-root; None or the whole set:
all of them, fewer: a subset drawn by `data_seed`), average-pooled by `pool`, every image used
for training (the paper's autoencoder curves are training loss). `seed` draws the initial weights,
the batch order and TNT/KFAC's sampled labels: seed s gives every optimizer the same start (paired
across methods). A run stopped by a non-finite loss keeps its evaluations and is padded with NaN to
the full length.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from experiments.models.autoencoder import DeepAutoencoder

VERSION = 1


@functools.lru_cache(maxsize=4)
def images(dataset: str, n: int | None, pool: int, data_seed: int) -> torch.Tensor:
    """n images of `dataset` (None: all) average-pooled by `pool`, flattened to (n, (28 / pool)^2) in
    [0, 1] (cached per process: every run of a worker trains on the same tensor)."""
    from experiments.data.images import load_raw, pool_images

    raw = load_raw(dataset)
    n = len(raw.x) if n is None else n
    if not 1 <= n <= len(raw.x):
        raise ValueError(f"n_images must be in [1, {len(raw.x)}] for {dataset}, got {n}")
    idx = np.arange(len(raw.x)) if n == len(raw.x) else np.sort(
        np.random.default_rng(data_seed).permutation(len(raw.x))[:n])
    return pool_images(torch.from_numpy(raw.x[idx].astype(np.float32)), pool).flatten(1)


def full_loss(model: nn.Module, X: torch.Tensor, chunk: int = 1000) -> float:
    """Mean per-image BCE (summed over pixels) over all of X."""
    from experiments.optim.curvature import mean_loss

    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(X), chunk):
        x = X[i:i + chunk].to(device)
        total += float(mean_loss(model(x), x, "bce")) * len(x)
    return total / len(X)


def run(config: dict) -> dict:
    from experiments.train import train, train_config

    n = config["n_images"]
    X = images(config["dataset"], None if n is None else int(n), int(config["pool"]),
               int(config.get("data_seed", 0)))
    seed = int(config["seed"])
    model = DeepAutoencoder(tuple(config["encoder_sizes"]), generator=torch.Generator().manual_seed(seed))
    batch = int(config["batch_size"])
    per_epoch = max(1, len(X) // batch)
    epochs = int(config["epochs"])
    cfg = train_config(config, steps=epochs * per_epoch, eval_every=per_epoch, loss="bce")
    h = train(model, X, X, cfg, lambda m, step: {"train_loss": full_loss(m, X)}, progress=False)
    n = epochs + 1
    loss = [float(v) for v in h["metrics"]["train_loss"]][:n]
    wall = [float(v) for v in h["wall_s"]][:n]
    pad = n - len(loss)
    return {"epoch": list(range(n)), "train_loss": loss + [float("nan")] * pad,
            "wall_s": wall + [float("nan")] * pad, "status": h["status"]}
