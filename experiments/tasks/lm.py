"""The language-model task: next-token prediction on real English text with a tiny transformer.

One run = one optimizer at one lr from one seed, for figures 9, 13 and 14:

    config = {"corpus": "both", "vocab": 256, "max_train_tokens": 200_000, "T": 16,
              "d_model": 32, "n_layers": 1, "n_heads": 2, "batch_size": 16, "steps": 400,
              "eval_every": 10, "seed": 0, "optimizer": "adam", "lr": 1e-3, "optimizer_kwargs": {},
              "val_windows": 256, "test_windows": 0,                # read-outs: validation / test loss
              "bucket_edges": [32, 128], "bucket_windows": 128, "top_k": 5}   # read-out: buckets
    result = run(config)
    result["metrics"]["val_loss"]            # per evaluation: mean next-token cross-entropy (nats)
    result["metrics"]["val/top1"]            # per evaluation: (3,) accuracy per frequency bucket

Data (experiments.data.text): the corpus split by document (test documents held out with a fixed
seed, the same for every seed; `seed` splits the others into train and validation), a vocabulary of the `vocab`-2
most frequent training words, disjoint length-T training windows; the training split may be
capped at `max_train_tokens` (the leading documents). `seed` also draws the initial weights
(experiments.models.transformer.TinyTransformer through its own generator) and the batch order
(experiments.train), so every optimizer starts from the same weights on the same data.

Read-outs, at step 0, every `eval_every` steps and at the end (SPlus at its EMA weights):
- `val_windows` > 0: "val_loss", the mean cross-entropy over the first `val_windows` disjoint
  validation windows (documents disjoint from training: for selection);
- `test_windows` > 0: "test_loss", likewise over the first `test_windows` windows of the held-out
  test documents (for claims about held-out text; default 0, not read out);
- `bucket_edges` given: per frequency bucket of the TARGET word (frequent / middle / rare by
  training-count rank, experiments.data.text.frequency_buckets), top-1 and top-`top_k` accuracy on a
  fixed seeded sample of `bucket_windows` training windows ("train/top1", "train/topk"), of
  validation windows ("val/top1", "val/topk": for selection) and of test windows ("test/top1",
  "test/topk": for claims about held-out text); <unk>/<eos> targets are left out and <unk> is
  never counted as a prediction (with a small vocabulary it is the most frequent target).
The result also carries "train_windows" (how many the training split holds: steps x batch_size
beyond it means the run repeats data) and the training-loss history of experiments.train.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

VERSION = 2  # 2: test documents fixed for every seed (experiments.data.text, stop 18); test read-outs
DEFAULTS = {"corpus": "both", "vocab": 256, "max_train_tokens": 200_000, "T": 16, "d_model": 32, "n_layers": 1,
            "n_heads": 2, "batch_size": 16, "steps": 100, "eval_every": 10, "optimizer_kwargs": {},
            "val_windows": 256, "test_windows": 0, "bucket_edges": None, "bucket_windows": 128, "top_k": 5, "device": "cpu"}


@functools.lru_cache(maxsize=8)
def corpus(name: str, seed: int, vocab: int, max_train_tokens: int | None):
    """experiments.data.text.load_corpus, cached per process (every run of a seed shares it)."""
    from experiments.data.text import load_corpus

    return load_corpus(name, seed=seed, vocab_size=vocab, max_train_tokens=max_train_tokens)


@functools.lru_cache(maxsize=8)
def windows(name: str, seed: int, vocab: int, max_train_tokens: int | None, T: int):
    """(X, Y, X_val, Y_val): disjoint training and validation windows of the cached corpus."""
    from experiments.data.text import make_windows

    c = corpus(name, seed, vocab, max_train_tokens)
    return (*make_windows(c.train, T), *make_windows(c.val, T))


@functools.lru_cache(maxsize=8)
def test_windows(name: str, seed: int, vocab: int, max_train_tokens: int | None, T: int):
    """(X_test, Y_test): disjoint windows of the cached corpus's held-out test documents."""
    from experiments.data.text import make_windows

    return make_windows(corpus(name, seed, vocab, max_train_tokens).test, T)


def with_defaults(config: dict) -> dict:
    unknown = set(config) - set(DEFAULTS) - {"seed", "optimizer", "lr"}
    if unknown:
        raise ValueError(f"lm task: unknown config keys {sorted(unknown)}")
    return {**DEFAULTS, **config}


def bucket_readout(c: dict):
    """(buckets (V,), never_predict, {split: (X, Y)} evaluation samples) for the bucket read-out."""
    from experiments.data.text import UNK, frequency_buckets

    cor = corpus(c["corpus"], c["seed"], c["vocab"], c["max_train_tokens"])
    X, Y, Xv, Yv = windows(c["corpus"], c["seed"], c["vocab"], c["max_train_tokens"], c["T"])
    g = torch.Generator().manual_seed(int(c["seed"]))
    tr = torch.randperm(len(X), generator=g)[: c["bucket_windows"]]
    va = torch.randperm(len(Xv), generator=g)[: c["bucket_windows"]]
    Xt, Yt = test_windows(c["corpus"], c["seed"], c["vocab"], c["max_train_tokens"], c["T"])
    te = torch.randperm(len(Xt), generator=g)[: c["bucket_windows"]]
    buckets = torch.from_numpy(frequency_buckets(cor.vocab, tuple(c["bucket_edges"])))
    return buckets, (cor.vocab.itos.index(UNK),), {"train": (X[tr], Y[tr]), "val": (Xv[va], Yv[va]),
                                                   "test": (Xt[te], Yt[te])}


def run(config: dict) -> dict:
    from experiments.models.transformer import TinyTransformer
    from experiments.data.text import bucket_accuracy
    from experiments.train import train, train_config

    c = with_defaults(config)
    seed = int(c["seed"])
    X, Y, Xv, Yv = windows(c["corpus"], seed, c["vocab"], c["max_train_tokens"], c["T"])
    Xv, Yv = Xv[: c["val_windows"]], Yv[: c["val_windows"]]
    Xt, Yt = (test_windows(c["corpus"], seed, c["vocab"], c["max_train_tokens"], c["T"]) if c["test_windows"] > 0
              else (Xv[:0], Yv[:0]))
    Xt, Yt = Xt[: c["test_windows"]], Yt[: c["test_windows"]]
    readout = bucket_readout(c) if c["bucket_edges"] is not None else None
    k = int(c["top_k"])

    def mean_loss(model, X_, Y_, dev) -> float:
        total = 0.0
        for i in range(0, len(X_), 512):
            logits = model(X_[i:i + 512].to(dev))
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y_[i:i + 512].to(dev).reshape(-1),
                                           reduction="sum"))
        return total / Y_.numel()

    def evaluate(model, step):
        dev = next(model.parameters()).device
        out = {}
        if len(Xv):
            out["val_loss"] = mean_loss(model, Xv, Yv, dev)
        if len(Xt):
            out["test_loss"] = mean_loss(model, Xt, Yt, dev)
        if readout is not None:
            buckets, never, samples = readout
            for split, (x, y) in samples.items():
                r = bucket_accuracy(model(x.to(dev)), y.to(dev), buckets, 3, k, never)
                out[f"{split}/top1"] = (r["top1"] / r["n"]).cpu().tolist()
                out[f"{split}/topk"] = (r["topk"] / r["n"]).cpu().tolist()
        return out

    model = TinyTransformer(c["vocab"], c["d_model"], c["n_layers"], c["n_heads"], c["T"],
                            generator=torch.Generator().manual_seed(seed))
    tc = train_config(c)
    h = train(model, X, Y, tc, evaluate, progress=False)
    return {"step": h["step"], "wall_s": h["wall_s"], "train_loss": h["train_loss"], "metrics": h["metrics"],
            "status": h["status"], "train_windows": int(len(X)), "train_tokens": int(X.numel())}


def info(config: dict) -> dict:
    """JSON description of a config's data for a figure's params (reads the cached corpus only)."""
    c = with_defaults(config)
    cor = corpus(c["corpus"], int(c["seed"]), c["vocab"], c["max_train_tokens"])
    X = windows(c["corpus"], int(c["seed"]), c["vocab"], c["max_train_tokens"], c["T"])[0]
    return {"corpus": c["corpus"], "data_source": cor.data_source, "vocab": c["vocab"],
            "train_tokens": int(len(cor.train)),
            "val_tokens": int(len(cor.val)), "test_tokens": int(len(cor.test)),
            "split": "test documents held out with a fixed seed (the same for every seed); train/val per seed",
            "train_windows": int(len(X)), "T": c["T"],
            "epochs": c["steps"] * c["batch_size"] / len(X), "unk_share_train": float(np.mean(cor.train == 0)),
            "model": f"TinyTransformer(d_model={c['d_model']}, n_layers={c['n_layers']}, n_heads={c['n_heads']})"}
