"""The MLP image task: an MLP classifier (experiments.models.vision.MLP) of a given width and depth on a
class-balanced split of a small image dataset, trained by one optimizer at one lr from one seed.

    config = {"dataset": "mnist5k", "pool": 1, "width": 128, "depth": 3, "steps": 300,
              "batch_size": 64, "eval_every": 10, "seed": 0, "optimizer": "adam", "lr": 1e-3,
              "optimizer_kwargs": {}, "n_val_per_class": 50, "n_test_per_class": 50,
              "train_loss_eval": True}
    result = run(config)
    result["metrics"]["val_loss"]      # per evaluation: cross-entropy on the validation split
    result["metrics"]["train_loss"]    # per evaluation: cross-entropy on the WHOLE training split

`seed` draws the split (experiments.data.load_image_split, profile "none"), the initial weights
(through the model's generator) and the batch order. `pool` > 1 average-pools the images
(experiments.data.pool_images) for a smaller input. Evaluations at step 0, every `eval_every`
steps and at the end, SPlus at its EMA weights. The full-training-set loss is the well-posed
target of an optimisation-speed comparison (the validation loss of a model that overfits has a
minimum, and "the final value" depends on when the run stops); it costs one forward pass over
the training split per evaluation, so `train_loss_eval` can switch it off.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

VERSION = 1
DEFAULTS = {"dataset": "mnist5k", "pool": 1, "width": 128, "depth": 3, "steps": 100, "batch_size": 64,
            "eval_every": 10, "optimizer_kwargs": {}, "n_val_per_class": 50, "n_test_per_class": 50,
            "train_loss_eval": True, "device": "cpu"}


def data_version(config: dict) -> int | None:
    """The split's version where it changed since VERSION (experiments.engine adds it to the run key):
    2 for a dataset without its own test split, MNIST-5k (a test pool fixed for every seed since
    stop 18), None for one with (splits and run keys unchanged)."""
    from experiments.data.images import split_version

    return split_version(config.get("dataset", DEFAULTS["dataset"]))


def with_defaults(config: dict) -> dict:
    unknown = set(config) - set(DEFAULTS) - {"seed", "optimizer", "lr"}
    if unknown:
        raise ValueError(f"width_mlp task: unknown config keys {sorted(unknown)}")
    return {**DEFAULTS, **config}


@functools.lru_cache(maxsize=8)
def split(dataset: str, seed: int, n_val_per_class: int, n_test_per_class: int, pool: int):
    """(split, x_train, x_val) with the images pooled; cached per process."""
    from experiments.data.images import load_image_split, pool_images

    s = load_image_split(dataset, profile="none", n_val_per_class=n_val_per_class,
                         n_test_per_class=n_test_per_class, seed=seed)
    return s, pool_images(s.x_train, pool), pool_images(s.x_val, pool)


def run(config: dict) -> dict:
    from experiments.models.vision import MLP
    from experiments.train import train, train_config

    c = with_defaults(config)
    seed = int(c["seed"])
    s, Xtr, Xv = split(c["dataset"], seed, int(c["n_val_per_class"]), int(c["n_test_per_class"]), int(c["pool"]))
    ytr, yv = s.y_train, s.y_val

    def evaluate(model, step):
        dev = next(model.parameters()).device
        out = {"val_loss": float(F.cross_entropy(model(Xv.to(dev)), yv.to(dev)))}
        if c["train_loss_eval"]:
            out["train_loss"] = float(F.cross_entropy(model(Xtr.to(dev)), ytr.to(dev)))
        return out

    model = MLP(Xtr[0].numel(), s.num_classes, width=int(c["width"]), depth=int(c["depth"]),
                generator=torch.Generator().manual_seed(seed))
    tc = train_config(c)
    h = train(model, Xtr, ytr, tc, evaluate, progress=False)
    return {"step": h["step"], "wall_s": h["wall_s"], "batch_loss": h["train_loss"], "metrics": h["metrics"],
            "status": h["status"], "n_train": int(len(Xtr))}


def info(config: dict) -> dict:
    c = with_defaults(config)
    s = split(c["dataset"], int(c["seed"]), int(c["n_val_per_class"]), int(c["n_test_per_class"]), int(c["pool"]))[0]
    return {"dataset": c["dataset"], "data_source": s.info.get("data_source"), "pool": c["pool"], "n_train": int(len(s.y_train)), "n_val": int(len(s.y_val)),
            "epochs": c["steps"] * c["batch_size"] / len(s.y_train),
            "model": f"MLP(width={c['width']}, depth={c['depth']})"}
