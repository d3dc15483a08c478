"""Figure 4's run: a linear softmax model on heavy-tailed Gaussian-mixture data, trained full-batch
by one method at one lr from one seed (theory.softmax, pure NumPy).

    config = {"k": 20, "d": 200, "mu": 3.0, "sigma": 1.0, "n_train": 1000, "n_val": 250,
              "n_test": 4000, "steps": 150, "eval_at": [0, 1, ..., 150], "beta": 0.9,
              "method": "specgd", "lr": 0.01, "seed": 0}
    result = run(config)     # {"step": eval steps, "val": (T, k), "test": (T, k) per-class accuracy}

`seed` draws the class means, the training/validation sample and the class-balanced test set
(theory.softmax.heavy_tail_data). The data of a seed is cached per process. BLAS runs on one
thread: the matrices are small, and on a shared CPU extra BLAS threads made a run 10-20x slower.
"""
from __future__ import annotations

import functools

VERSION = 1
DATA_KEYS = ("k", "d", "mu", "sigma", "n_train", "n_val", "n_test", "seed")


@functools.lru_cache(maxsize=16)
def data(k, d, mu, sigma, n_train, n_val, n_test, seed):
    from theory.softmax import heavy_tail_data

    return heavy_tail_data(k, d, mu, sigma, n_train, n_val, n_test, seed)


def run(config: dict) -> dict:
    from theory.softmax import train_softmax

    missing = set(DATA_KEYS + ("steps", "eval_at", "beta", "method", "lr")) - set(config)
    if missing:
        raise ValueError(f"softmax_numpy task: missing config keys {sorted(missing)}")
    # BLAS threads: set by the engine to the run's thread count (experiments.engine.execute).
    ds = data(*(config[key] for key in DATA_KEYS))
    acc = train_softmax(ds, config["method"], [float(config["lr"])], int(config["steps"]), config["eval_at"],
                        beta=float(config["beta"]))
    return {"step": sorted(set(int(t) for t in config["eval_at"])), "val": acc["val"][:, 0].tolist(),
            "test": acc["test"][:, 0].tolist(), "status": "ok"}
