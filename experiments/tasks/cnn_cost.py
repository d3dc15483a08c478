"""Engine task "cnn_cost": figure 12's CNN classification runs and its side-by-side cost table.

Two kinds of run, named by config["kind"]:

    "train": {"kind": "train", "dataset": "fashion", "n_train_per_class": 200, "n_val_per_class": 30,
              "n_test_per_class": 100, "pool": 2, "width": 8, "blocks": [1, 1], "batch_size": 64,
              "epochs": 4, "optimizer": "tnt", "lr": 3e-4, "optimizer_kwargs": {...}, "seed": 0,
              "device": "cpu", "data_root": None}
        -> {"epoch", "val_acc", "test_acc", "status", "n_train", "image_size", "n_params", "split"}
    "cost":  the same data and model fields, plus "methods": [[label, optimizer, lr, kwargs], ...],
             "optimizer_versions", "timed_code" (TIMED_CODE), "rounds", "min_run_time" (experiments.cost)
        -> {label: {"s_per_iter", "state_bytes"}}

Data: a balanced train / validation / test split of the dataset (experiments.data.load_image_split,
profile "none"; `seed` draws it), images average-pooled by `pool`. Model: experiments.models.vision
.ResNetCNN drawn from `seed`'s generator; `seed` also fixes the batch order and the sampled
labels, so seed s gives every optimizer the same split and start (paired across methods).
Accuracy is evaluated at step 0 and after every epoch; a stopped run is padded with NaN.

A cost run times every method on copies of one model and the same batches, in turns (see
experiments.cost): its timings are measured together, so the whole table is one stored run
(its optimizers' versions are in the config, hence in the key).
"""
from __future__ import annotations

import functools

import torch

VERSION = 2  # 2: timings by experiments.cost (whole periods, median), not step_cost's blocks
# The code whose speed a cost run measures, in its config (so in its key) and only there: the
# optimizers' VERSIONs follow their numerics, and a faster step with the same numbers must not
# reuse a stored timing. Bump it when an optimizer's speed changes. 2: TNT keeps its step plan
# between steps; KFAC takes its output gradients from the sampled backward's return value.
TIMED_CODE = 2


def data_version(config: dict) -> int | None:
    """The split's version where it changed since VERSION (experiments.engine adds it to the run key):
    2 for a dataset without its own test split (a test pool fixed for every seed since stop 18), None
    for one with (Fashion-MNIST, MNIST, CIFAR-10: splits and run keys unchanged)."""
    from experiments.data.images import split_version

    return split_version(config.get("dataset"))


@functools.lru_cache(maxsize=8)
def _split(dataset: str, n_train, n_val: int, n_test: int, pool: int, seed: int, data_root):
    # Cached per process: a worker trains every optimizer of a seed on the same split.
    from experiments.data.images import load_image_split, pool_images

    split = load_image_split(dataset, profile="none", n_max=n_train, n_val_per_class=n_val,
                             n_test_per_class=n_test, seed=seed, data_root=data_root)
    xs = tuple(pool_images(x, pool) for x in (split.x_train, split.x_val, split.x_test))
    return split, xs


def split_of(config: dict):
    """(split, (x_train, x_val, x_test) pooled) of a config."""
    return _split(config["dataset"], config.get("n_train_per_class"), int(config["n_val_per_class"]),
                  int(config["n_test_per_class"]), int(config["pool"]), int(config["seed"]), config.get("data_root"))


def make_model(config: dict, split):
    from experiments.models.vision import ResNetCNN

    return ResNetCNN(split.image_shape[0], split.num_classes, width=int(config["width"]),
                     blocks=tuple(config["blocks"]), generator=torch.Generator().manual_seed(int(config["seed"])))


def run(config: dict) -> dict:
    kind = config.get("kind")
    if kind == "train":
        return _train(config)
    if kind == "cost":
        return _cost(config)
    raise ValueError(f"cnn_cost: kind must be 'train' or 'cost', got {kind!r}")


def _train(config: dict) -> dict:
    from experiments.metrics import classification_evaluator
    from experiments.train import train, train_config

    split, (xtr, xva, xte) = split_of(config)
    model = make_model(config, split)
    batch = int(config["batch_size"])
    per_epoch = max(1, len(xtr) // batch)
    epochs = int(config["epochs"])
    evaluate = classification_evaluator({"val": (xva, split.y_val), "test": (xte, split.y_test)}, split.num_classes)
    cfg = train_config(config, steps=epochs * per_epoch, eval_every=per_epoch)
    h = train(model, xtr, split.y_train, cfg, evaluate, progress=False)
    n = epochs + 1
    out = {"epoch": list(range(n)), "status": h["status"], "n_train": len(xtr), "image_size": int(xtr.shape[-1]),
           "n_params": sum(p.numel() for p in model.parameters()), "split": split.info}
    for part in ("val", "test"):
        v = [float(x) for x in h["metrics"][f"{part}/acc"]][:n]
        out[f"{part}_acc"] = v + [float("nan")] * (n - len(v))
    return out


def _cost(config: dict) -> dict:
    from experiments.cost import measure_step_costs

    split, (xtr, _, _) = split_of(config)
    device = torch.device(config.get("device", "cpu"))
    gen = torch.Generator().manual_seed(int(config["seed"]))
    batch = int(config["batch_size"])
    batches = []
    for _ in range(4):
        idx = torch.randint(0, len(xtr), (batch,), generator=gen)
        batches.append((xtr[idx].to(device), split.y_train[idx].to(device)))
    methods = {label: (opt, float(lr), dict(kw)) for label, opt, lr, kw in config["methods"]}
    costs, _ = measure_step_costs(make_model(config, split).to(device), methods, batches, "ce", seed=int(config["seed"]),
                               rounds=int(config["rounds"]), min_run_time=float(config["min_run_time"]))
    return {label: {"s_per_iter": c.seconds_per_step, "state_bytes": c.state_bytes} for label, c in costs.items()}
