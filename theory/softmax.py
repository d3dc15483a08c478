"""Linear softmax regression (cross-entropy) trained full-batch by GD, NGD, SignGD, SpecGD or Muon.

    data = heavy_tail_data(k=20, d=200, mu=3.0, sigma=1.0, n_train=1000, n_val=250, n_test=4000, seed=0)
    acc = train_softmax(data, "specgd", lrs=[1e-2, 3e-2], steps=150, eval_at=[0, 5, ...])
    acc["val"], acc["test"]        # (len(eval_at), len(lrs), k) per-class accuracies

W: (k, d) from zero; each step W <- W - lr Delta(G), G the mean cross-entropy gradient over the
training set and Delta the method's direction (theory.algorithms; Muon: EMA momentum beta, then
Newton-Schulz, theory.algorithms.muon_direction). Several lrs of one method train as one stack
(B, k, d), so a grid costs one batched pass. Pure NumPy; randomness only through the seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from theory import algorithms
from theory.data_model import DataModel, inverse_priors, one_hot

METHODS = ("gd", "ngd", "signgd", "specgd", "muon")


@dataclass(frozen=True)
class SoftmaxData:
    x: np.ndarray       # (n_train, d) training inputs
    y: np.ndarray       # (n_train,) labels
    evals: dict         # name -> (x, y): "val" (imbalanced, like train) and "test" (class-balanced)
    k: int


def heavy_tail_data(k: int, d: int, mu: float, sigma: float, n_train: int, n_val: int, n_test: int,
                    seed: int) -> SoftmaxData:
    """The DM with p_c ~ 1/c and Gaussian class means mu g_c, g_c ~ N(0, I_d / d) (basis from seed):
    n_train + n_val imbalanced samples split at random into train and validation, and a
    class-balanced test set (n_test / k per class) with the same means."""
    rng = np.random.default_rng(seed)
    dm = DataModel(mu, sigma, tuple(inverse_priors(k)), d, means="gaussian", basis_seed=seed)
    x_all, y_all = dm.sample(n_train + n_val, rng)  # sample() shuffles
    test_dm = dataclasses.replace(dm, priors=(1.0 / k,) * k)
    x_test, y_test = test_dm.sample(n_test, rng)
    return SoftmaxData(x_all[:n_train], y_all[:n_train],
                       {"val": (x_all[n_train:], y_all[n_train:]), "test": (x_test, y_test)}, k)


def class_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class accuracy of stacked models w: (B, k, d) on (x, y) -> (B, k); absent class: NaN."""
    B, k, _ = w.shape
    pred = np.argmax((x @ w.reshape(B * k, -1).T).reshape(len(x), B, k), axis=2)  # (n, B)
    counts = np.bincount(y, minlength=k).astype(float)
    hits = np.stack([np.bincount(y, weights=pred[:, b] == y, minlength=k) for b in range(B)])
    return np.divide(hits, counts, out=np.full((B, k), np.nan), where=counts > 0)


def softmax_gradient(w: np.ndarray, x: np.ndarray, y_hot: np.ndarray) -> np.ndarray:
    """Mean cross-entropy gradient of each stacked model: w (B, k, d) -> (B, k, d)."""
    B, k, d = w.shape
    logits = (x @ w.reshape(B * k, d).T).reshape(len(x), B, k)
    logits -= logits.max(axis=2, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=2, keepdims=True)
    resid = (prob - y_hot[:, None, :]).reshape(len(x), B * k)
    return (resid.T @ x).reshape(B, k, d) / len(x)


def train_softmax(data: SoftmaxData, method: str, lrs, steps: int, eval_at, beta: float = 0.9,
                  how: str = "ns") -> dict[str, np.ndarray]:
    """Train one model per lr from W = 0; per-class accuracy on each eval set at the steps in
    eval_at: {name: (len(eval_at), len(lrs), k)}. Muon's polar factor: how in algorithms.POLARS."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    eval_at = sorted(set(int(t) for t in eval_at))
    if eval_at and (eval_at[0] < 0 or eval_at[-1] > steps):
        raise ValueError(f"eval_at must lie in [0, {steps}], got {eval_at[0]}..{eval_at[-1]}")
    lrs = np.asarray(lrs, dtype=float)
    d = data.x.shape[1]
    w = np.zeros((len(lrs), data.k, d))
    mom = np.zeros_like(w)
    y_hot = one_hot(data.y, data.k)
    out = {name: [] for name in data.evals}
    todo = set(eval_at)
    for t in range(steps + 1):
        if t in todo:
            for name, (x, y) in data.evals.items():
                out[name].append(class_accuracy(w, x, y))
        if t == steps:
            break
        g = softmax_gradient(w, data.x, y_hot)
        if method == "muon":
            delta, mom = algorithms.muon_direction(g, mom, beta, how)
        else:
            delta = algorithms.DIRECTIONS[method](g)
        w = w - lrs[:, None, None] * delta
    return {name: np.stack(v) for name, v in out.items()}
