"""Majority vs minority per-class accuracy over training, for several optimizers and seeds.

The experiment behind figures 1 and 7: for each seed s, one step-imbalanced split (split seed s)
and one initial model (init seed s) are shared by every optimizer (a paired comparison); each
optimizer trains a copy with experiments.train.train and the balanced TEST split is evaluated
along the way. Curves are summarised per optimizer as
    minority(t) = mean over minority classes c of acc_c(t),  majority(t) likewise,
then averaged over seeds (with the min and max over seeds as a band).

Two read-outs of "earlier" used by the claims:
    early_mean(curve, steps, frac):  mean of the curve over evaluations with 0 < step <= frac * T
    gap_close_step(majority, minority, steps, rel_gap, floor): first evaluation step at which the
        relative gap (majority - minority) / majority <= rel_gap while majority >= floor (the floor
        rules out the trivial "both near chance" state at initialisation; the relative form keeps a
        method from "closing" the gap by learning the majority classes slowly); None if never.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from experiments.data import ImageSplit
from experiments.metrics import classification_evaluator
from experiments.optim.registry import OPTIMIZERS
from experiments.train import TrainConfig, train


@dataclass(frozen=True)
class StudyRun:
    """One optimizer's curves: steps (E,), per_class (seeds, E, C) test accuracies, statuses."""

    optimizer: str
    lr: float
    steps: list[int]
    per_class: np.ndarray
    statuses: list[str]
    wall_s: list[float]  # total training time per seed


# A "variant" label names a registry optimizer with fixed extra arguments, e.g.
# {"muon_head": ("muon", (("head_fallback", False),))}; any other label is a registry key as is.
Variants = dict[str, tuple[str, tuple]]


def resolve(label: str, variants: Variants | None = None) -> tuple[str, tuple]:
    """(registry key, optimizer_kwargs) of an optimizer label."""
    return (variants or {}).get(label, (label, ()))


def available(optimizers: list[str], variants: Variants | None = None) -> tuple[list[str], list[str]]:
    """(in the optimizer registry, not yet there): figures name optimizers before they land."""
    present = [o for o in optimizers if resolve(o, variants)[0] in OPTIMIZERS]
    return present, [o for o in optimizers if o not in present]


def run_study(make_split: Callable[[int], ImageSplit], make_model: Callable[[ImageSplit, int], torch.nn.Module],
              optimizers: list[str], lrs: dict[str, float], base: TrainConfig, seeds: list[int],
              eval_split: str = "test", variants: Variants | None = None) -> dict[str, StudyRun]:
    """Train every optimizer on every seed's split; evaluate per-class accuracy on `eval_split`.

    make_split(seed) -> ImageSplit; make_model(split, seed) -> fresh model (same seed, same init).
    base gives steps, batch size, eval interval, device and loss; its optimizer/lr/seed (and, for a
    variant label, optimizer_kwargs) are replaced.
    A run stopped by a non-finite loss keeps its evaluations and is padded with its last values
    (its status records the stop).
    """
    curves: dict[str, list[np.ndarray]] = {o: [] for o in optimizers}
    statuses: dict[str, list[str]] = {o: [] for o in optimizers}
    walls: dict[str, list[float]] = {o: [] for o in optimizers}
    steps_ref: list[int] = []
    for seed in seeds:
        split = make_split(seed)
        X_eval, y_eval = getattr(split, f"x_{eval_split}"), getattr(split, f"y_{eval_split}")
        evaluate = classification_evaluator({"eval": (X_eval, y_eval)}, split.num_classes)
        init = make_model(split, seed).state_dict()
        for name in optimizers:
            model = make_model(split, seed)
            model.load_state_dict(init)
            key, kwargs = resolve(name, variants)
            cfg = dataclasses.replace(base, optimizer=key, lr=lrs[name], seed=seed,
                                      optimizer_kwargs=kwargs or base.optimizer_kwargs)
            h = train(model, split.x_train, split.y_train, cfg, evaluate, progress=False)
            steps_ref = _expected_steps(cfg)
            curves[name].append(_pad(np.asarray(h["metrics"]["eval/per_class"], float), len(steps_ref)))
            statuses[name].append(h["status"])
            walls[name].append(h["wall_s"][-1])
    return {o: StudyRun(o, lrs[o], steps_ref, np.stack(curves[o]), statuses[o], walls[o]) for o in optimizers}


def _expected_steps(cfg: TrainConfig) -> list[int]:
    steps = list(range(0, cfg.steps + 1, cfg.eval_every))
    return steps if steps[-1] == cfg.steps else steps + [cfg.steps]


def _pad(per_class: np.ndarray, length: int) -> np.ndarray:
    if len(per_class) >= length:
        return per_class[:length]
    return np.concatenate([per_class, np.repeat(per_class[-1:], length - len(per_class), axis=0)])


def group_curves(run: StudyRun, minority: list[int]) -> dict[str, np.ndarray]:
    """{"minority": (seeds, E), "majority": (seeds, E)}: mean accuracy over each class group."""
    C = run.per_class.shape[-1]
    mino = np.zeros(C, bool)
    mino[list(minority)] = True
    return {"minority": run.per_class[..., mino].mean(-1), "majority": run.per_class[..., ~mino].mean(-1)}


def early_mean(curve: np.ndarray, steps: list[int], frac: float) -> float:
    """Mean of curve (E,) over evaluations with 0 < step <= frac * last step."""
    steps = np.asarray(steps)
    window = (steps > 0) & (steps <= frac * steps[-1])
    if not window.any():
        raise ValueError(f"no evaluation falls in the early window (0, {frac} * {steps[-1]}]")
    return float(np.mean(curve[window]))


def gap_close_step(majority: np.ndarray, minority: np.ndarray, steps: list[int], rel_gap: float,
                   floor: float) -> int | None:
    """First step with majority >= floor and (majority - minority) <= rel_gap * majority; None if never."""
    for s, a, b in zip(steps, majority, minority):
        if a >= floor and a - b <= rel_gap * a:
            return int(s)
    return None


def checkpoint_table(runs: dict[str, StudyRun], minority: list[int], early_step: int) -> dict:
    """Mean-over-seeds minority/majority accuracy at an early checkpoint and at the end, per optimizer."""
    table = {}
    for name, run in runs.items():
        g = group_curves(run, minority)
        i = int(np.argmin(np.abs(np.asarray(run.steps) - early_step)))
        table[name] = {
            "lr": run.lr,
            "early_step": run.steps[i],
            "minority_early": float(g["minority"][:, i].mean()), "majority_early": float(g["majority"][:, i].mean()),
            "minority_final": float(g["minority"][:, -1].mean()), "majority_final": float(g["majority"][:, -1].mean()),
            "train_s_per_seed": float(np.mean(run.wall_s)),
            "statuses": sorted(set(run.statuses)),
        }
    return table
