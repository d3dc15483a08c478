"""The training harness every torch figure uses: one loop, any registry optimizer, a history dict.

    cfg = TrainConfig(optimizer="muon", lr=0.02, steps=300, batch_size=128, eval_every=25, seed=0)
    history = train(model, X, Y, cfg, evaluate)      # evaluate(model, step) -> {name: value}
    save_history(path, history); history = load_history(path)

Each step: draw a batch (a seeded permutation per epoch), forward, loss (experiments.optim.curvature
.mean_loss: "ce" | "bce" | "mse"), then `curvature_step(optimizer, outputs, cfg.loss, generator)`
(the sampled-label backward for TNT/KFAC; a no-op for other optimizers), backward, optimizer.step().

Evaluation happens at step 0, every `eval_every` steps and after the last step, with model.eval(),
under torch.no_grad(), and with optimizer.eval()/optimizer.train() around it when the optimizer
has them (SPlus evaluates its EMA weights). Evaluation time is excluded from `wall_s`.

Warm start: if the optimizer has `warm_start`, it is called once before the first step as
    optimizer.warm_start(grad_batches)
where `grad_batches` is an iterable over one pass of the training data (batches of
cfg.batch_size, seeded order) at the initial weights, yielding for each batch the dict
of gradients of the batch-mean loss at labels sampled from the model (as curvature_step), what the
optimizer's update_curvature takes (experiments.optim.curvature.sampled_gradients: {param: gradient}
of TNT's `curvature_params()`, {(forward, call): gradient} of KFAC's layer outputs, without any weight
gradient). TNT and KFAC initialise their factors with the average over the pass (TNT's warm start).
Model buffers (BatchNorm running statistics) are restored afterwards. Warm-start time is counted
in wall_s (it is part of the method's cost) and reported separately as history["warm_start_s"].

A non-finite training loss stops the run cleanly: the history so far is kept and
history["status"] says "stopped: non-finite loss at step k" (k counts from 1); a FloatingPointError
from the optimizer (experiments.optim.kronecker.CurvatureError when a diverged curvature factor
cannot be decomposed) stops the run the same way.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from experiments.fileio import atomic_write_json
from experiments.optim.curvature import LOSS_KINDS, curvature_step, mean_loss, sample_labels, sampled_gradients
from experiments.optim.registry import build_optimizer
from experiments.runtime.device import sync_device


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str            # registry key, e.g. "muon"
    lr: float
    steps: int
    batch_size: int
    eval_every: int           # evaluate at step 0 and every eval_every steps, and at the end
    seed: int = 0             # data order (torch.Generator) and sampled labels
    device: str = "cpu"
    loss: str = "ce"          # "ce" | "bce" | "mse"  (same kinds as experiments.optim.curvature)
    optimizer_kwargs: tuple = ()   # ((key, value), ...) passed to build_optimizer

    def __post_init__(self):
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {LOSS_KINDS}, got {self.loss!r}")
        if self.steps < 0 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"need steps >= 0, batch_size >= 1, eval_every >= 1; got {self.steps}, "
                             f"{self.batch_size}, {self.eval_every}")


def train_config(config: dict, *, steps: int | None = None, eval_every: int | None = None,
                 loss: str = "ce") -> TrainConfig:
    """TrainConfig from a task's config dict (optimizer, lr, batch_size, seed, and steps/eval_every unless
    given; device defaults to "cpu", optimizer_kwargs to none), the one construction every task shares."""
    return TrainConfig(config["optimizer"], float(config["lr"]),
                       int(config["steps"]) if steps is None else steps, int(config["batch_size"]),
                       int(config["eval_every"]) if eval_every is None else eval_every,
                       seed=int(config["seed"]), device=config.get("device", "cpu"), loss=loss,
                       optimizer_kwargs=tuple(sorted(dict(config.get("optimizer_kwargs") or {}).items())))


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless stream of index batches: a fresh permutation of range(n) each epoch, split into
    batches of min(batch_size, n); an epoch's last incomplete batch is dropped (equal batch sizes)."""
    b = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - b + 1, b):
            yield perm[i:i + b]


def sampled_gradient_pass(model: torch.nn.Module, optimizer, X: torch.Tensor, Y: torch.Tensor, cfg: TrainConfig,
                          data_gen: torch.Generator, label_gen: torch.Generator) -> Iterator[dict]:
    """One pass over (X, Y) at the current weights, yielding the sampled-label gradients of each batch
    (the warm-start input; see the module docstring). Model buffers are restored at the end."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    stream = batch_indices(len(X), cfg.batch_size, data_gen)
    try:
        for _ in range(max(1, len(X) // min(cfg.batch_size, len(X)))):
            idx = next(stream)
            outputs = model(X[idx.to(X.device)])
            labels = sample_labels(outputs, cfg.loss, label_gen)
            yield sampled_gradients(optimizer, mean_loss(outputs, labels, cfg.loss), retain_graph=False)
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])


@contextmanager
def evaluation_mode(model: torch.nn.Module, optimizer):
    """model.eval() + no_grad, and optimizer.eval()/train() when the optimizer defines them."""
    opt_eval = getattr(optimizer, "eval", None)
    opt_train = getattr(optimizer, "train", None)
    was_training = model.training
    model.eval()
    if opt_eval is not None:
        opt_eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if opt_train is not None:
            opt_train()
        model.train(was_training)


def train(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, cfg: TrainConfig,
          evaluate: Callable[[torch.nn.Module, int], dict], progress: bool = True) -> dict:
    """Train `model` on (X, Y) with registry optimizer cfg.optimizer; return the history dict.

    X: (n, ...) inputs; Y: class ids (n,) for "ce" (or (n, T) token targets when the model returns
    (B, T, V) logits), targets shaped like the outputs for "bce"/"mse". Both are moved to
    cfg.device once (the datasets here are small).
    history = {"config": asdict(cfg), "step": [...], "wall_s": [...], "train_loss": [...],
               "metrics": {name: [...]}, "status": "ok" | "stopped: ...", "warm_start_s": float}
    train_loss at step 0 is the loss of the first batch at the initial weights; later entries are
    the mean training loss over the steps since the previous evaluation.
    """
    device = torch.device(cfg.device)
    model.to(device)
    X, Y = X.to(device), Y.to(device)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, **dict(cfg.optimizer_kwargs))
    data_gen = torch.Generator().manual_seed(cfg.seed)
    # multinomial/bernoulli need a generator on the outputs' device.
    label_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003)
    history = {"config": asdict(cfg), "step": [], "wall_s": [], "train_loss": [], "metrics": {},
               "status": "ok", "warm_start_s": 0.0}

    def record(step: int, wall: float, loss: float) -> None:
        with evaluation_mode(model, optimizer):
            values = evaluate(model, step)
        history["step"].append(step)
        history["wall_s"].append(wall)
        history["train_loss"].append(loss)
        for k, v in values.items():
            history["metrics"].setdefault(k, []).append(v)

    model.train()
    wall = 0.0
    if hasattr(optimizer, "warm_start"):
        sync_device(device)
        t0 = time.perf_counter()
        optimizer.warm_start(sampled_gradient_pass(model, optimizer, X, Y, cfg,
                                                   torch.Generator().manual_seed(cfg.seed + 7), label_gen))
        sync_device(device)
        history["warm_start_s"] = wall = time.perf_counter() - t0

    stream = batch_indices(len(X), cfg.batch_size, data_gen)
    first = next(batch_indices(len(X), cfg.batch_size, torch.Generator().manual_seed(cfg.seed)))
    model.eval()
    with torch.no_grad():
        initial_loss = float(mean_loss(model(X[first.to(device)]), Y[first.to(device)], cfg.loss))
    model.train()
    record(0, wall, initial_loss)

    bar = _progress_bar(cfg, progress)
    loss_sum, loss_count = 0.0, 0
    try:
        for step in range(1, cfg.steps + 1):
            sync_device(device)
            t0 = time.perf_counter()
            idx = next(stream).to(device)
            outputs = model(X[idx])
            loss = mean_loss(outputs, Y[idx], cfg.loss)
            value = float(loss.detach())
            if not math.isfinite(value):
                history["status"] = f"stopped: non-finite loss at step {step}"
                break
            optimizer.zero_grad(set_to_none=True)
            try:
                curvature_step(optimizer, outputs, cfg.loss, label_gen)
                loss.backward()
                optimizer.step()
            except FloatingPointError as e:  # e.g. a curvature factor that no longer decomposes
                history["status"] = f"stopped: {type(e).__name__} at step {step}: {e}"
                break
            sync_device(device)
            wall += time.perf_counter() - t0
            loss_sum, loss_count = loss_sum + value, loss_count + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                record(step, wall, loss_sum / loss_count)
                loss_sum, loss_count = 0.0, 0
    finally:
        if bar is not None:
            bar.close()
    return history


def _progress_bar(cfg: TrainConfig, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps, desc=f"{cfg.optimizer} lr={cfg.lr:.3g}", leave=False)


# ----------------------------------------------------------------------------- history I/O

def save_history(path: str | Path, history: dict) -> None:
    """Write a history (with its config) as JSON, atomically; NaN/inf become null. Uses the same
    JSON conversion and write-then-rename as the figure outputs (experiments.fileio)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, history)


def load_history(path: str | Path) -> dict:
    """Read a history written by save_history; null metric values come back as nan."""
    h = json.loads(Path(path).read_text())
    h["train_loss"] = [math.nan if v is None else v for v in h["train_loss"]]
    h["metrics"] = {k: [_nan_for_none(v) for v in vals] for k, vals in h["metrics"].items()}
    return h


def _nan_for_none(v):
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [_nan_for_none(x) for x in v]
    return v


def config_from_history(history: dict) -> TrainConfig:
    """The TrainConfig a history was trained with (tuples restored from their JSON lists)."""
    c = dict(history["config"])
    c["optimizer_kwargs"] = tuple(tuple(kv) for kv in c.get("optimizer_kwargs", ()))
    return TrainConfig(**c)
