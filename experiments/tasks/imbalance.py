"""Engine task "imbalance": one optimizer on one step-imbalanced image split (figures 1 and 7).

    config = {"dataset": "mnist5k", "rho": 20.0, "minority": [5, 6, 7, 8, 9], "n_max": None,
              "n_val_per_class": 50, "n_test_per_class": 100, "pool": 1, "model": "mlp", "width": 128,
              "depth": 3, "blocks": [], "steps": 300, "batch_size": 128, "eval_every": 15,
              "optimizer": "muon", "lr": 0.02, "optimizer_kwargs": {"head_fallback": False},
              "seed": 0, "device": "cpu", "data_root": None}
    result = run(config)   # {"steps", "val_per_class", "test_per_class", "status", "wall_s"}

The seed fixes the split (which images go to train/val/test; minority classes keep n_max / rho
training images), the initial weights and the batch order, so every optimizer on seed s starts
from the same split and the same weights (a paired comparison across methods). Per-class accuracy
is evaluated on the balanced validation split (for lr selection) and the balanced test split (for
the figures) at step 0, every eval_every steps and at the end. A run stopped by a non-finite loss
keeps its evaluations, padded with NaN to the full length (a diverged network has no accuracy to
carry forward: repeating its last value would let a stopped run "reach" a level later, or count in
a window mean, with numbers it never produced); its status says where it stopped. Every read-out
below propagates the NaN. The read-outs the claims use (class-group curves, early-window means, gap closing) are
below, so a figure only analyses results.
"""
from __future__ import annotations

import functools

import numpy as np

VERSION = 2  # 2: stopped runs padded with NaN instead of their last evaluation; a pool option


def data_version(config: dict) -> int | None:
    """The split's version where it changed since VERSION (experiments.engine adds it to the run key):
    2 for a dataset without its own test split (a test pool fixed for every seed since stop 18), None
    for one with (Fashion-MNIST, MNIST, CIFAR-10: splits and run keys unchanged)."""
    from experiments.data.images import split_version

    return split_version(config.get("dataset"))


@functools.lru_cache(maxsize=8)
def _split(dataset: str, rho: float, minority: tuple, n_max, n_val: int, n_test: int, seed: int, data_root):
    # Cached per process: a worker trains every optimizer of a seed on the same split.
    from experiments.data.images import load_image_split

    return load_image_split(dataset, profile="step", rho=rho, minority=minority, n_max=n_max,
                            n_val_per_class=n_val, n_test_per_class=n_test, seed=seed, data_root=data_root)


@functools.lru_cache(maxsize=8)
def _pooled(dataset: str, rho: float, minority: tuple, n_max, n_val: int, n_test: int, seed: int, data_root,
            pool: int):
    import dataclasses

    import torch

    from experiments.data.groups import avg_pool

    split = _split(dataset, rho, minority, n_max, n_val, n_test, seed, data_root)
    if pool == 1:
        return split
    images = {k: torch.from_numpy(avg_pool(getattr(split, k).numpy(), pool))
              for k in ("x_train", "x_val", "x_test")}
    return dataclasses.replace(split, **images, info={**split.info, "pool": pool})


def split_of(config: dict):
    """The run's split; pool > 1 averages pool x pool pixel blocks of every image (pool 2: 28 x 28
    -> 14 x 14, a 4x cheaper convolution) after the split is drawn, so the split is the same."""
    pool = int(config["pool"])
    if pool < 1:
        raise ValueError(f"pool must be an integer >= 1, got {config['pool']!r}")
    return _pooled(config["dataset"], float(config["rho"]), tuple(config["minority"]), config.get("n_max"),
                   int(config["n_val_per_class"]), int(config["n_test_per_class"]), int(config["seed"]),
                   config.get("data_root"), pool)


def make_model(config: dict, split):
    import torch

    from experiments.models.vision import MLP, ResNetCNN

    g = torch.Generator().manual_seed(int(config["seed"]))
    c, h, w = split.image_shape
    if config["model"] == "mlp":
        return MLP(c * h * w, split.num_classes, int(config["width"]), int(config["depth"]), generator=g)
    if config["model"] == "resnet":
        return ResNetCNN(c, split.num_classes, int(config["width"]), tuple(config["blocks"]), generator=g)
    raise ValueError(f"model must be 'mlp' or 'resnet', got {config['model']!r}")


def run(config: dict) -> dict:
    from experiments.metrics import classification_evaluator
    from experiments.train import train, train_config

    split = split_of(config)
    model = make_model(config, split)
    evaluate = classification_evaluator({"val": (split.x_val, split.y_val), "test": (split.x_test, split.y_test)},
                                        split.num_classes)
    cfg = train_config(config)
    h = train(model, split.x_train, split.y_train, cfg, evaluate, progress=False)
    steps = expected_steps(cfg.steps, cfg.eval_every)
    out = {"steps": steps, "status": h["status"], "wall_s": h["wall_s"][-1],
           "train_counts": split.train_counts.tolist()}
    for part in ("val", "test"):
        out[f"{part}_per_class"] = _pad(np.asarray(h["metrics"][f"{part}/per_class"], float), len(steps)).tolist()
    return out


def expected_steps(steps: int, eval_every: int) -> list[int]:
    out = list(range(0, steps + 1, eval_every))
    return out if out[-1] == steps else out + [steps]


def _pad(per_class: np.ndarray, length: int) -> np.ndarray:
    if len(per_class) >= length:
        return per_class[:length]
    return np.concatenate([per_class, np.full((length - len(per_class), per_class.shape[1]), np.nan)])


# ------------------------------------------------------------------ read-outs of results
def group_curves(result: dict, minority, part: str = "test") -> dict[str, np.ndarray]:
    """{"minority": (E,), "majority": (E,)}: mean per-class accuracy of each class group over time."""
    pc = np.asarray(result[f"{part}_per_class"], float)
    mino = np.zeros(pc.shape[1], bool)
    mino[list(minority)] = True
    return {"minority": pc[:, mino].mean(1), "majority": pc[:, ~mino].mean(1)}


def early_mean(curve, steps, frac: float) -> float:
    """Mean of curve (E,) over evaluations with 0 < step <= frac * last step."""
    steps = np.asarray(steps)
    window = (steps > 0) & (steps <= frac * steps[-1])
    if not window.any():
        raise ValueError(f"no evaluation falls in the early window (0, {frac} * {steps[-1]}]")
    return float(np.mean(np.asarray(curve)[window]))


def gap_close_step(majority, minority, steps, rel_gap: float, floor: float) -> int | None:
    """First step with majority >= floor and (majority - minority) <= rel_gap * majority; None if never.
    The floor rules out the untrained state (both near chance); the relative form keeps a method
    from 'closing' the gap by learning the majority classes slowly."""
    from theory.metrics import first_step

    a, b = np.asarray(majority, dtype=float), np.asarray(minority, dtype=float)
    excess = np.where(a >= floor, (a - b) - rel_gap * a, np.inf)  # <= 0 exactly when the gap is closed
    return first_step(steps, excess, 0.0, "<=")
