"""Figure 1 (paper A's motivation): minority vs majority per-class accuracy over training, MLP.

A step-imbalanced real digit/clothing set (classes 5-9 keep 1/rho of the images of classes 0-4,
rho = 20), an MLP, and SGD (momentum 0.9), Adam, Muon and Shampoo; Muon twice: as registered (head
and biases on AdamW) and on every matrix including the head ("muon_head", dashed; see
imbalance_common.MUON_HEAD). Learning rates tuned on a balanced validation split
(experiments/tuned_lrs.json, `python -m experiments.lr_sweep --figure 1`).

Claim (paper): Muon and Shampoo reach a higher minority-class accuracy than SGD early in training.
Measured as: mean over seeds of the minority-class test accuracy averaged over the evaluations in
the early window (0, early_frac * steps]; the claim holds for a method when its value exceeds
SGD's by at least MARGIN (one percentage point, fixed before any run).
"""
from __future__ import annotations

from dataclasses import replace

from experiments.class_imbalance import early_mean, group_curves
from experiments.lr_sweep import SweepProblem
from paperfigs import imbalance_common as common
from paperfigs.claims import at_least, verdict
from paperfigs.style import display

NUMBER = 1
MARGIN = 0.01
BASELINE = "sgd"
CLAIMED = ("muon", "shampoo", "muon_head")
# Grid centres for the lr sweep (and untuned fallbacks): the optimizers' usual values.
CENTERS = {"sgd": 0.05, "adam": 1e-3, "muon": 0.02, "shampoo": 1e-3, "muon_head": 0.02}

FULL = common.ImbalanceConfig(
    dataset="fashion", rho=20.0, minority=(5, 6, 7, 8, 9), n_max=5000, n_val_per_class=200,
    n_test_per_class=1000, model="mlp", width=512, depth=3, blocks=(), steps=4000, batch_size=128,
    eval_every=100, seeds=5, early_frac=0.2, optimizers=("sgd", "adam", "muon", "shampoo", "muon_head"),
    default_lrs=tuple(CENTERS.items()), variants=(common.MUON_HEAD,))
QUICK = replace(FULL, dataset="mnist5k", n_max=None, n_val_per_class=50, n_test_per_class=100, width=128,
                steps=300, eval_every=15, seeds=3)
SMOKE = replace(QUICK, dataset="digits", n_max=40, n_val_per_class=10, n_test_per_class=20, width=32, steps=12,
                batch_size=32, eval_every=3, seeds=2, early_frac=0.5)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    runs, params = common.run(cfg, NUMBER, mode, seed, device)
    minority = list(cfg.minority)
    early = {name: early_mean(group_curves(r, minority)["minority"].mean(0), r.steps, cfg.early_frac)
             for name, r in runs.items()}
    params["margin"] = MARGIN
    claims = []
    for name in CLAIMED:
        statement = (f"{common.label(name)}'s minority-class test accuracy, averaged over the early window "
                     f"(first {cfg.early_frac:.0%} of steps) and seeds, exceeds {display(BASELINE)}'s by "
                     f">= {MARGIN}")
        if name not in runs or BASELINE not in runs:
            claims.append(verdict(f"{name}_minority_early_above_sgd", statement + " [not measured: optimizer "
                                  "not in the registry]", False, None, MARGIN))
            continue
        claims.append(at_least(f"{name}_minority_early_above_sgd", statement, early[name] - early[BASELINE], MARGIN))
    early_step = int(cfg.early_frac * cfg.steps)
    tabs = common.tables(runs, minority, early_step)
    tabs["early_window_minority"] = early
    notes = [f"{display(o)} not in the optimizer registry yet: not run" for o in params["optimizers_missing"]]
    notes += [f"{display(o)} stopped on seed(s): {sorted(set(r.statuses) - {'ok'})}" for o, r in runs.items()
              if any(s != "ok" for s in r.statuses)]
    return {"params": params, "series": common.series(runs, minority, cfg.batch_size / params["n_train"]),
            "claims": claims, "tables": tabs, "notes": notes}


def sweep_problem(mode: str, device: str) -> SweepProblem:
    return common.sweep_problem_for(CONFIGS[mode], NUMBER, mode, device, CENTERS)


def plot(result: dict):
    return common.plot(result, "Fig. 1, MLP")
