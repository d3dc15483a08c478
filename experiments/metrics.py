"""Classification metrics: per-class and per-group accuracy, and batched model evaluation."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def per_class_accuracy(logits, y, num_classes: int) -> np.ndarray:
    """acc_c = #{i : y_i = c, argmax logits_i = c} / #{i : y_i = c}; logits (n, C), y (n,) -> (C,).

    A class absent from y gets nan (not 0: no evidence either way).
    """
    pred = _np(logits).argmax(axis=1)
    y = _np(y)
    correct = np.bincount(y[pred == y], minlength=num_classes)[:num_classes].astype(float)
    total = np.bincount(y, minlength=num_classes)[:num_classes].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def group_accuracy(pred, y, groups) -> dict[int, float]:
    """Accuracy within each group id present: {g: mean(pred_i == y_i over i with groups_i = g)}."""
    pred, y, groups = _np(pred), _np(y), _np(groups)
    hit = pred == y
    return {int(g): float(hit[groups == g].mean()) for g in np.unique(groups)}


@torch.no_grad()
def predict_logits(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 1024, device: str | None = None) -> torch.Tensor:
    """model(X) in batches on `device` (default: the model's device); returns CPU logits (n, ...).

    The caller sets model.eval(); this only avoids building the whole batch on the device at once.
    """
    if device is None:
        device = next(model.parameters()).device
    outs = [model(X[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(outs)


def classification_evaluator(splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                             batch_size: int = 1024) -> Callable[[torch.nn.Module, int], dict]:
    """An `evaluate(model, step)` for experiments.train.train on named (X, y) splits.

    For each split name s it returns s/acc (mean over examples), s/balanced_acc (mean of the
    per-class accuracies) and s/per_class (list of C accuracies).
    """
    def evaluate(model: torch.nn.Module, step: int) -> dict:
        out = {}
        for name, (X, y) in splits.items():
            logits = predict_logits(model, X, batch_size)
            pc = per_class_accuracy(logits, y, num_classes)
            out[f"{name}/acc"] = float((logits.argmax(1) == y.cpu()).float().mean())
            out[f"{name}/balanced_acc"] = float(np.nanmean(pc))
            out[f"{name}/per_class"] = pc.tolist()
        return out

    return evaluate
