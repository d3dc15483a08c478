"""A small next-token task on the project's real text, shared by the SPlus figures (13, 14, 15).

    task = make_lm_task(LMTaskConfig(vocab_size=256, T=16, ...), seed)
    model = task.model(seed)                        # experiments.lm.TinyTransformer
    history = train(model, task.X, task.Y, cfg, task.evaluate)
    history["metrics"]["val_loss"]                  # mean next-token cross-entropy (nats/token)

Training windows are disjoint length-T windows of the training split (experiments.text); the
validation loss is measured on the first `n_val_windows` disjoint windows of the validation split
(documents disjoint from training). The model is rebuilt from the seed for every run, so every
optimizer starts from the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from experiments.lm import TinyTransformer
from experiments.text import load_corpus, make_windows


@dataclass(frozen=True)
class LMTaskConfig:
    corpus: str = "both"
    vocab_size: int = 256
    max_train_tokens: int | None = 200_000
    T: int = 16
    d_model: int = 32
    n_layers: int = 1
    n_heads: int = 2
    n_val_windows: int = 256


@dataclass(frozen=True)
class LMTask:
    config: LMTaskConfig
    X: torch.Tensor        # (n, T) training inputs
    Y: torch.Tensor        # (n, T) next-token targets
    X_val: torch.Tensor
    Y_val: torch.Tensor
    info: dict             # JSON-ready description for a figure's params

    def model(self, seed: int, d_model: int | None = None) -> TinyTransformer:
        c = self.config
        torch.manual_seed(seed)  # TinyTransformer draws its init from the global generator
        return TinyTransformer(c.vocab_size, d_model=d_model or c.d_model, n_layers=c.n_layers,
                               n_heads=c.n_heads, T=c.T)

    @property
    def evaluate(self) -> Callable[[torch.nn.Module, int], dict]:
        Xv, Yv = self.X_val, self.Y_val

        def evaluate(model: torch.nn.Module, step: int) -> dict:
            device = next(model.parameters()).device
            total = 0.0
            for i in range(0, len(Xv), 512):
                logits = model(Xv[i:i + 512].to(device))
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               Yv[i:i + 512].to(device).reshape(-1), reduction="sum"))
            return {"val_loss": total / Yv.numel()}

        return evaluate


def make_lm_task(config: LMTaskConfig, seed: int) -> LMTask:
    corpus = load_corpus(config.corpus, seed=seed, vocab_size=config.vocab_size,
                         max_train_tokens=config.max_train_tokens)
    X, Y = make_windows(corpus.train, config.T)
    Xv, Yv = make_windows(corpus.val, config.T)
    Xv, Yv = Xv[:config.n_val_windows], Yv[:config.n_val_windows]
    info = {"corpus": config.corpus, "vocab_size": config.vocab_size, "train_tokens": int(len(corpus.train)),
            "train_windows": int(len(X)), "val_windows": int(len(Xv)), "T": config.T, "data_source": corpus.data_source,
            "model": f"TinyTransformer(d_model={config.d_model}, n_layers={config.n_layers}, "
                     f"n_heads={config.n_heads})"}
    return LMTask(config, X, Y, Xv, Yv, info)
