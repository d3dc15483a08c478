"""Figure 8 (paper A): dominoes, worst-group and decoded worst-group test accuracy over training.

Data (experiments.groups.dominoes): an MNIST-5k digit 0/1 (spurious, easy) stacked on a
Fashion-MNIST pullover/coat (core, decides the label); the halves agree on 95% of training images,
and the decode and test splits are group-balanced. Model: an MLP (3 linear layers); optimizers
SGD (momentum 0.9), Adam, Muon (hidden matrices; AdamW fallback on head and biases) and Shampoo.

Measured at each evaluation: worst-group test accuracy of the trained network, and the decoded
worst-group accuracy: the head's input features are frozen, a logistic-regression head is
refitted on the group-balanced decode split, and its worst test-group accuracy is reported (is
the core feature in the representation at all?).
Claims (paper): decoded worst-group accuracy of Muon, and of Shampoo, above SGD's -- at the end
of training, mean over seeds; value = difference, holds when > 0.
Learning rates: from `python -m experiments.lr_sweep --figure 8 --quick` when stored (score:
final worst-group accuracy of the trained network on the group-balanced decode split, never on
test), else the optimizers' usual values, marked "default (untuned)" in params.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from experiments.groups import GROUP_NAMES, decoded_worst_group_accuracy, dominoes, head_inputs, worst_group_accuracy
from experiments.lr_sweep import SweepProblem, stored_lrs
from experiments.metrics import predict_logits
from experiments.models import MLP
from experiments.optim.registry import OPTIMIZERS
from experiments.train import TrainConfig, train
from paperfigs.claims import verdict
from paperfigs.style import color, display

NUMBER = 8
SWEEP_SEED = 1000
BASELINE, CLAIMED = "sgd", ("muon", "shampoo")
CENTERS = {"sgd": 0.05, "adam": 1e-3, "muon": 0.02, "shampoo": 1e-3}


@dataclass(frozen=True)
class Config:
    optimizers: tuple[str, ...] = ("sgd", "adam", "muon", "shampoo")
    agreement: float = 0.95
    fashion_classes: tuple[int, int] = (2, 4)  # pullover (y=0) vs coat (y=1)
    n_train: int = 8000
    n_decode: int = 2000
    n_test: int = 2000
    pool: int = 1            # 2: 28 x 14 images
    width: int = 256
    depth: int = 3           # linear layers
    steps: int = 2000
    batch_size: int = 128
    eval_every: int = 100
    seeds: int = 5


FULL = Config()
QUICK = replace(FULL, n_train=4000, n_decode=800, pool=2, width=128, steps=500, eval_every=50, seeds=3)
SMOKE = replace(QUICK, n_train=400, n_decode=80, n_test=200, width=16, steps=6, eval_every=3, seeds=1)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def one_run(cfg: Config, optimizer: str, lr: float, seed: int, device: str, decoded: bool = True) -> dict:
    """Train one MLP; per evaluation: worst-group test accuracy, decoded worst-group test accuracy,
    and worst-group accuracy on the decode split (the sweep's score)."""
    tr, dec, te = dominoes(seed, cfg.n_train, cfg.n_decode, cfg.n_test, cfg.agreement, cfg.fashion_classes,
                           pool=cfg.pool)
    model = MLP(int(np.prod(tr.x.shape[1:])), 2, cfg.width, cfg.depth, generator=torch.Generator().manual_seed(seed))

    def evaluate(m, step):
        out = {"worst": worst_group_accuracy(predict_logits(m, te.x).argmax(1), te.y, te.g),
               "worst_decode_split": worst_group_accuracy(predict_logits(m, dec.x).argmax(1), dec.y, dec.g)}
        if decoded:
            out["decoded_worst"] = decoded_worst_group_accuracy(
                head_inputs(m, dec.x).numpy(), dec.y.numpy(), dec.g.numpy(),
                head_inputs(m, te.x).numpy(), te.y.numpy(), te.g.numpy(), seed=seed)["worst"]
        return out

    tc = TrainConfig(optimizer, lr, cfg.steps, cfg.batch_size, cfg.eval_every, seed=seed, device=device)
    h = train(model, tr.x, tr.y, tc, evaluate, progress=False)
    return {"step": h["step"], **h["metrics"], "status": h["status"]}


def compute(mode: str, seed: int, device: str) -> dict:
    cfg = CONFIGS[mode]
    present = [o for o in cfg.optimizers if o in OPTIMIZERS]
    missing = [o for o in cfg.optimizers if o not in OPTIMIZERS]
    lrs, source = stored_lrs(NUMBER, "quick" if mode == "smoke" else mode, {o: CENTERS[o] for o in present})
    seeds = list(range(seed, seed + cfg.seeds))
    series, final, statuses = {}, {}, {}
    for o in present:
        runs = [one_run(cfg, o, lrs[o], s, device) for s in seeds]
        n = min(len(r["step"]) for r in runs)
        for key, label in (("worst", "worst-group"), ("decoded_worst", "decoded worst-group")):
            curves = np.array([r[key][:n] for r in runs])
            series[f"{display(o)} {label}"] = {"x": runs[0]["step"][:n], "y": curves.mean(0).tolist(),
                                               "y_lo": curves.min(0).tolist(), "y_hi": curves.max(0).tolist()}
            ends = [r[key][-1] if r["status"] == "ok" else math.nan for r in runs]
            final.setdefault(o, {})[key] = {"mean": float(np.mean(ends)), "min": float(np.min(ends)),
                                            "max": float(np.max(ends)), "per_seed": ends}
        statuses[o] = [r["status"] for r in runs]

    claims = []
    for o in CLAIMED:
        statement = (f"{display(o)}'s decoded worst-group test accuracy at the end of training (mean over "
                     f"{cfg.seeds} seeds) exceeds {display(BASELINE)}'s; value = difference")
        if o not in final or BASELINE not in final:
            claims.append(verdict(f"{o}_decoded_wga_above_sgd", statement + " [not measured: optimizer not in the "
                                  "registry]", False, None, 0.0))
            continue
        diff = final[o]["decoded_worst"]["mean"] - final[BASELINE]["decoded_worst"]["mean"]
        claims.append(verdict(f"{o}_decoded_wga_above_sgd", statement, diff > 0, diff, 0.0))

    tr, _, _ = dominoes(seed, cfg.n_train, cfg.n_decode, cfg.n_test, cfg.agreement, cfg.fashion_classes,
                        pool=cfg.pool)
    params = {**asdict(cfg), "correlation": cfg.agreement,
              "model": f"MLP, {cfg.depth} linear layers, width {cfg.width}",
              "lr per optimizer": lrs, "lr_source": source, "optimizers_missing": missing, "seed_list": seeds,
              "device": device, "groups": list(GROUP_NAMES), "train_group_counts": tr.group_counts(),
              "image_shape": list(tr.x.shape[1:]), "data_source": tr.data_source,
              "core": f"Fashion-MNIST classes {cfg.fashion_classes} (pullover y=0, coat y=1), bottom half",
              "spurious": "MNIST-5k digit 0 vs 1, top half",
              "decoder": "L2 logistic regression (C = 1) on standardised head inputs, decode split subsampled to "
                         "equal group sizes",
              "band": "min..max over seeds"}
    notes = [f"{display(o)} not in the optimizer registry: not run" for o in missing]
    notes += [f"{display(o)} stopped: {v}" for o, v in statuses.items() if any(s != "ok" for s in v)]
    # The step-0 evaluation decodes the features of the untrained network: the floor that training
    # has to beat for "the core feature was learned" to mean anything.
    at_init = [s["y"][0] for k, s in series.items() if k.endswith(" decoded worst-group")]
    if at_init:
        notes.append(f"decoded worst-group accuracy of the untrained (random-feature) network: "
                     f"{float(np.mean(at_init)):.3f} (mean over optimizers' step-0 evaluations)")
    return {"params": params, "series": series, "claims": claims, "tables": {"final": final}, "notes": notes}


def sweep_problem(mode: str, device: str) -> SweepProblem:
    """5 lrs over two decades per optimizer; score = final worst-group accuracy on the decode split."""
    cfg = CONFIGS[mode]
    present = tuple(o for o in cfg.optimizers if o in OPTIMIZERS)

    def score(o: str, lr: float) -> float:
        r = one_run(cfg, o, lr, SWEEP_SEED, device, decoded=False)
        return r["worst_decode_split"][-1] if r["status"] == "ok" else -math.inf

    return SweepProblem(NUMBER, mode, present, {o: CENTERS[o] for o in present}, score,
                        "final worst-group accuracy of the trained network on the group-balanced decode split "
                        f"(one run, split/init seed {SWEEP_SEED}); a diverged run scores -inf", points=5, decades=2.0)


def plot(result: dict):
    import matplotlib.pyplot as plt

    p = result["params"]
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
    for ax, (suffix, title) in zip(axes, ((" worst-group", "trained network"),
                                         (" decoded worst-group", "decoded: head refit on frozen features"))):
        for label, s in result["series"].items():
            if not label.endswith(suffix) or (suffix == " worst-group" and label.endswith(" decoded worst-group")):
                continue
            method = label[: -len(suffix)]
            ax.plot(s["x"], s["y"], color=color(method), label=method)
            lo = [math.nan if v is None else v for v in s["y_lo"]]
            hi = [math.nan if v is None else v for v in s["y_hi"]]
            ax.fill_between(s["x"], lo, hi, color=color(method), alpha=0.15, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("worst-group test accuracy")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Fig. 8: dominoes (MNIST 0/1 over Fashion pullover/coat), {p['correlation']:.0%} agreement in "
                 f"training;\n{p['model']}; {p['seeds']} seeds (band: min-max)", fontsize=8.5)
    fig.tight_layout()
    return fig
