"""What figures 1 and 7 share: the config, the run, the series/tables, the plot and the lr sweep.

Both figures train several optimizers on a step-imbalanced real image split (minority classes keep
n_max / rho training images) and follow the mean per-class TEST accuracy of the minority and the
majority classes over training (mean over seeds, band = min..max over seeds).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from experiments.class_imbalance import StudyRun, available, checkpoint_table, group_curves, run_study
from experiments.data import ImageSplit, load_image_split
from experiments.lr_sweep import SweepProblem, stored_lrs
from experiments.train import TrainConfig
from paperfigs.style import color, display

SWEEP_SEED = 1000  # the sweep's split and init: not one of the figure's seeds
# Muon as the project registers it hands the output head (and biases) to AdamW; paper A's
# mechanism is the spectral update of the classifier matrix itself (theory.md: the linear model W),
# so figures 1 and 7 also run Muon on every matrix including the head, and claim both.
MUON_HEAD = ("muon_head", ("muon", (("head_fallback", False),)))
# Legend names of variants; the "(...)" keeps the base method's colour and is drawn dashed.
VARIANT_LABELS = {"muon_head": "Muon (incl. head)"}


def label(name: str) -> str:
    return VARIANT_LABELS.get(name, display(name))


@dataclass(frozen=True)
class ImbalanceConfig:
    dataset: str
    rho: float
    minority: tuple[int, ...]
    n_max: int | None
    n_val_per_class: int
    n_test_per_class: int
    model: str  # "mlp" | "resnet"
    width: int
    depth: int  # MLP: linear layers; ResNet: residual blocks per stage, stages = len(blocks)
    blocks: tuple[int, ...]
    steps: int
    batch_size: int
    eval_every: int
    seeds: int
    early_frac: float  # the "early in training" window is (0, early_frac * steps]
    optimizers: tuple[str, ...]
    default_lrs: tuple[tuple[str, float], ...]  # used only where no tuned lr is stored
    # label -> (registry key, optimizer_kwargs) for optimizers run with non-default arguments
    variants: tuple[tuple[str, tuple[str, tuple]], ...] = ()


def make_split(cfg: ImbalanceConfig, seed: int) -> ImageSplit:
    return load_image_split(cfg.dataset, profile="step", rho=cfg.rho, minority=cfg.minority, n_max=cfg.n_max,
                            n_val_per_class=cfg.n_val_per_class, n_test_per_class=cfg.n_test_per_class, seed=seed)


def make_model(cfg: ImbalanceConfig, split: ImageSplit, seed: int) -> torch.nn.Module:
    from experiments.models import MLP, ResNetCNN

    g = torch.Generator().manual_seed(seed)
    c, h, w = split.image_shape
    if cfg.model == "mlp":
        return MLP(c * h * w, split.num_classes, cfg.width, cfg.depth, generator=g)
    return ResNetCNN(c, split.num_classes, cfg.width, cfg.blocks, generator=g)


def base_train_config(cfg: ImbalanceConfig, device: str) -> TrainConfig:
    return TrainConfig("sgd", 1.0, cfg.steps, cfg.batch_size, cfg.eval_every, device=device)


def run(cfg: ImbalanceConfig, figure: int, mode: str, seed: int, device: str) -> tuple[dict[str, StudyRun], dict]:
    """Train every registered optimizer of cfg on seeds seed..seed+cfg.seeds-1; return runs and params."""
    present, missing = available(list(cfg.optimizers), dict(cfg.variants))
    lrs, source = stored_lrs(figure, "quick" if mode == "smoke" else mode, dict(cfg.default_lrs))
    runs = run_study(lambda s: make_split(cfg, s), lambda sp, s: make_model(cfg, sp, s), present,
                     lrs, base_train_config(cfg, device), list(range(seed, seed + cfg.seeds)),
                     variants=dict(cfg.variants))
    split = make_split(cfg, seed)
    n_train = int(split.train_counts.sum())
    params = {
        **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "default_lrs"},
        "lr": {o: lrs[o] for o in present}, "lr_source": {o: source[o] for o in present},
        "optimizers_missing": missing, "seed_list": list(range(seed, seed + cfg.seeds)),
        "n_train": n_train, "train_counts": split.train_counts.tolist(),
        "epochs": cfg.steps * cfg.batch_size / n_train, "split": split.info, "device": device,
        "eval_split": "test (balanced)", "band": "min..max over seeds",
    }
    return runs, params


def series(runs: dict[str, StudyRun], minority: list[int], epochs_per_step: float) -> dict:
    out = {}
    for name, r in runs.items():
        for group, curves in group_curves(r, minority).items():
            out[f"{label(name)} {group}"] = {
                "x": [s * epochs_per_step for s in r.steps], "y": curves.mean(0).tolist(),
                "y_lo": curves.min(0).tolist(), "y_hi": curves.max(0).tolist()}
    return out


def tables(runs: dict[str, StudyRun], minority: list[int], early_step: int) -> dict:
    return {"checkpoints": checkpoint_table(runs, minority, early_step)}


def sweep_problem_for(cfg: ImbalanceConfig, figure: int, mode: str, device: str, centers: dict) -> SweepProblem:
    """Each trial: one run on the SWEEP_SEED split; score = final balanced VALIDATION accuracy."""
    present, missing = available(list(cfg.optimizers), dict(cfg.variants))
    base = base_train_config(cfg, device)

    def score(name: str, lr: float) -> float:
        r = run_study(lambda s: make_split(cfg, s), lambda sp, s: make_model(cfg, sp, s), [name], {name: lr},
                      base, [SWEEP_SEED], eval_split="val", variants=dict(cfg.variants))[name]
        if any(s != "ok" for s in r.statuses):
            return -math.inf
        return float(np.nanmean(r.per_class[0, -1]))

    notes = (f"not in the registry when swept: {', '.join(missing)}",) if missing else ()
    return SweepProblem(figure, mode, tuple(present), {o: centers[o] for o in present}, score,
                        "final balanced accuracy on the balanced validation split (one run, split/init seed "
                        f"{SWEEP_SEED}); a diverged run scores -inf", notes=notes)


def plot(result: dict, suptitle: str):
    """Two panels (minority, majority): mean per-class test accuracy vs epochs, band over seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
    p = result["params"]
    for ax, group in zip(axes, ("minority", "majority")):
        for label, s in result["series"].items():
            if not label.endswith(f" {group}"):
                continue
            method = label.rsplit(" ", 1)[0]
            ax.plot(s["x"], s["y"], color=color(method), label=method, linestyle="--" if "(" in method else "-")
            if s.get("y_lo") is not None:
                lo = [math.nan if v is None else v for v in s["y_lo"]]
                hi = [math.nan if v is None else v for v in s["y_hi"]]
                ax.fill_between(s["x"], lo, hi, color=color(method), alpha=0.15, linewidth=0)
        ax.axvspan(0, p["early_frac"] * p["epochs"], color="#999999", alpha=0.08, linewidth=0)
        classes = p["minority"] if group == "minority" else [c for c in range(len(p["train_counts"]))
                                                              if c not in p["minority"]]
        ax.set_title(f"{group} classes {','.join(map(str, classes))}")
        ax.set_xlabel("epochs over the imbalanced training set")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("mean per-class test accuracy")
    axes[1].legend(loc="lower right", ncol=2)  # the majority panel is empty below its curves
    fig.suptitle(f"{suptitle}: {p['dataset']}, step imbalance rho = {p['rho']:g}, "
                 f"{p['seeds']} seeds (band: min-max; shaded: early window)", fontsize=8.5)
    fig.tight_layout()
    return fig
