"""Engine task "width_mlp": figure 15's MLP at one width, trained by one optimizer at one lr; the
result is the final validation loss (and the status).

    config = {"dataset": "mnist5k", "pool": 4, "n_val_per_class": 50, "n_test_per_class": 50,
              "split_seed": 0, "width": 64, "depth": 5, "steps": 200, "batch_size": 64,
              "optimizer": "splus", "lr": 0.1, "optimizer_kwargs": {...}, "seed": 0, "device": "cpu"}
    result = run(config)   # {"val_loss": float | None, "status": "ok" | "stopped: ..."}

Data: a balanced split of the dataset drawn by `split_seed` (the same for every run of a figure:
the lr curves of different seeds and widths are on one validation set), images average-pooled by
`pool` and flattened. Model: experiments.models.MLP d-w-...-w-10 with `depth` linear layers, drawn
from `seed`'s generator; `seed` also fixes the batch order. The loss is evaluated at the end with
optimizer.eval() when the optimizer has it (SPlus: its EMA weights; see experiments.train).
"""
from __future__ import annotations

import functools
import math

import torch

VERSION = 1


@functools.lru_cache(maxsize=4)
def _split(dataset: str, pool: int, n_val: int, n_test: int, split_seed: int, data_root):
    # Cached per process: every width, lr and seed of a worker trains on the same split.
    from experiments.data import load_image_split, pool_images

    split = load_image_split(dataset, profile="none", n_val_per_class=n_val, n_test_per_class=n_test,
                             seed=split_seed, data_root=data_root)
    return split, pool_images(split.x_train, pool), pool_images(split.x_val, pool)


def run(config: dict) -> dict:
    import torch.nn.functional as F

    from experiments.models import MLP
    from experiments.train import TrainConfig, train

    split, xtr, xva = _split(config["dataset"], int(config["pool"]), int(config["n_val_per_class"]),
                             int(config["n_test_per_class"]), int(config["split_seed"]), config.get("data_root"))
    seed = int(config["seed"])
    model = MLP(xtr[0].numel(), split.num_classes, width=int(config["width"]), depth=int(config["depth"]),
                generator=torch.Generator().manual_seed(seed))

    def evaluate(m, step):
        logits = m(xva.to(next(m.parameters()).device))
        return {"val_loss": float(F.cross_entropy(logits, split.y_val.to(logits.device)))}

    steps = int(config["steps"])
    cfg = TrainConfig(config["optimizer"], float(config["lr"]), steps, int(config["batch_size"]), max(1, steps),
                      seed=seed, device=config.get("device", "cpu"), loss="ce",
                      optimizer_kwargs=tuple(sorted(dict(config.get("optimizer_kwargs") or {}).items())))
    h = train(model, xtr, split.y_train, cfg, evaluate, progress=False)
    v = h["metrics"]["val_loss"][-1]
    ok = h["status"] == "ok" and math.isfinite(v)
    return {"val_loss": float(v) if ok else None, "status": h["status"]}
