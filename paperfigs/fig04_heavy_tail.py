"""Figure 4: heavy-tailed classes. Linear softmax model, cross-entropy, finite samples.

DM with k = 20 classes, d = 200, p_c proportional to 1/c, class means mu_c = mu g_c with
g_c ~ N(0, I_d / d) (Gaussian, orthogonal only in expectation), x | c ~ N(mu_c, sigma^2 I).
Training set: n_train + n_val points drawn from the imbalanced DM (exact-rounding counts),
split at random into train and a validation split; the test set is class-balanced
(n_test / k per class) so every class's accuracy is measured with the same precision.
W: (k, d) from zero, full-batch steps W <- W - lr Delta(G) with G the mean cross-entropy
gradient: GD, NGD, SignGD, SpecGD (exact SVD) and Muon (beta = 0.9, Newton-Schulz)
(theory.softmax; one engine run, task softmax_numpy, per method, lr and seed; the seed draws
the class means and all three samples).

Learning rates (experiments.tuning): a quarter-decade grid per method, extended past an optimum
on its edge and upward to the divergence edge (below), scored on tuning seeds disjoint from the
reporting seeds by the best-over-time balanced VALIDATION accuracy (the claims are about the
early-stopped model). Sensitivity
(tables.sensitivity): each method's validation-stopped test accuracies at every lr of its grid,
on the tuning seeds.

Claims, on the reporting seeds: each run is stopped where its own balanced validation accuracy
peaks (ties: the earliest step), and its balanced and worst-class TEST accuracy at that step are
compared, paired over seeds: value = min over the other methods of the mean per-seed margin of
SpecGD over that method, with a 95% interval over paired seeds; holds when the interval is above 0. The
best-over-time test accuracy (an oracle that peeks at the test set) is reported beside it in
tables.per_method, and the same claims on it in tables.oracle. Where SpecGD's selection is tied
within one standard error, tables.claims_at_tied_lrs holds both claims at each tied lr.
Quick drops against full: n_train/n_val/n_test (1000/250/4000 against 4000/1000/10000), steps
(150 against 400), 2 of the 5 seeds, and the wider lr grids. No "paper" configuration: the paper's
relayed settings (k = 20, d = 200, p_c ~ 1/c, Gaussian means) are already those of quick and full;
its sample sizes and step counts are not relayed, so there is no larger setting to match.
Changes (recorded here, 2026-12): the claims compared the best-over-time seed-mean TEST accuracy
(the oracle) and chose lrs on the reporting seeds' validation; now they are judged at the
validation-stopped step with lrs from disjoint tuning seeds and a paired interval, as the issue
on the protocol asks. Threshold (margin 0) unchanged.
Stop 18 (settings; the claims, criterion and thresholds are unchanged):
- every method's starting grid spans the same number of decades, so every method starts from the
  same number of points (quick 1 decade, 5 points; full 2.5 decades, 11 points): full SignGD's
  grid was 1e-3..0.1 (2 decades, 9 points against 11 for the others), an unequal search budget;
  it now reaches 0.316 upward (its earlier full selection, 0.018, lay above the old centre).
- the search goes to the divergence edge like figures 1 and 6-8 (to_divergence) because it
  stopped at the top of the grid whenever the optimum was interior. A full-batch linear softmax
  model cannot blow up (the step is lr times a bounded direction; at lr 1e4 for GD, 1e3 for NGD,
  10 for the others a 150-step quick run stays finite with validation accuracy 0.38-0.56), so no
  lr diverges: the search adds its `extend` (3) points above every grid and records
  divergence_found False. Cost: 3 more lrs x 5 methods x 3 tuning seeds = 45 NumPy runs per
  scale (full: 234 runs / 359 CPU-s before, about 70 CPU-s more).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments.engine import RunSpec
from experiments.tuning import TuneSpec, quarter_decade_grid
from paperfigs import protocol
from paperfigs.claims import paired
from paperfigs.protocol import TUNING_SEEDS
from paperfigs.stats import SEED_BAND, over_seeds
from paperfigs.style import band, color
from theory import algorithms

METHODS = ("GD", "NGD", "SignGD", "SpecGD", "Muon")


@dataclass(frozen=True)
class Config:
    k: int = 20
    d: int = 200
    mu: float = 3.0
    sigma: float = 1.0
    n_train: int = 1000
    n_val: int = 250
    n_test: int = 4000
    steps: int = 150
    seeds: int = 3
    beta: float = 0.9
    eval_every: int = 5     # after step 20; every step before, where SpecGD peaks early
    # quarter-decade grid over [lo, hi] per method (10^-2.5 = 3.16e-3)
    lr_grid: tuple = (("GD", (1.0, 10.0)), ("NGD", (0.1, 1.0)), ("SignGD", (1e-2, 1e-1)),
                      ("SpecGD", (3.16e-3, 3.17e-2)), ("Muon", (3.16e-3, 3.17e-2)))
    tuning_seeds: tuple = TUNING_SEEDS
    extend: int = 3


FULL = Config(n_train=4000, n_val=1000, n_test=10000, steps=400, seeds=5, eval_every=5,
              lr_grid=(("GD", (0.1, 31.7)), ("NGD", (0.01, 3.17)), ("SignGD", (1e-3, 0.317)),
                       ("SpecGD", (3.16e-4, 0.1)), ("Muon", (3.16e-4, 0.1))))
QUICK = Config()
SMOKE = dataclasses.replace(QUICK, n_train=200, n_val=100, n_test=400, steps=12, seeds=2, eval_every=4,
                            lr_grid=(("GD", (1.0, 1.0)), ("NGD", (0.1, 0.1)), ("SignGD", (1e-2, 1e-2)),
                                     ("SpecGD", (1e-2, 1e-2)), ("Muon", (1e-2, 1e-2))),
                            tuning_seeds=TUNING_SEEDS[:1], extend=0)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def eval_steps(cfg: Config) -> list[int]:
    return sorted(set(range(0, min(20, cfg.steps) + 1)) | set(range(0, cfg.steps + 1, cfg.eval_every)))


def run_spec(cfg: Config, method: str, lr: float, seed: int) -> RunSpec:
    return RunSpec("softmax_numpy", {"k": cfg.k, "d": cfg.d, "mu": cfg.mu, "sigma": cfg.sigma, "n_train": cfg.n_train,
                                     "n_val": cfg.n_val, "n_test": cfg.n_test, "steps": cfg.steps,
                                     "eval_at": eval_steps(cfg), "beta": cfg.beta, "method": method.lower(),
                                     "lr": lr, "seed": seed})


def readout(result: dict) -> dict:
    """Validation-stopped and best-over-time test accuracies of one run."""
    val, test = np.array(result["val"], dtype=float), np.array(result["test"], dtype=float)  # (T, k); None: absent class
    val_bal = np.nanmean(val, axis=1)
    t = int(np.argmax(val_bal))
    bal, worst = np.nanmean(test, axis=1), np.nanmin(test, axis=1)
    return {"stop_step": result["step"][t], "val_balanced_best": float(val_bal[t]),
            "test_balanced_at_stop": float(bal[t]), "test_worst_at_stop": float(worst[t]),
            "test_balanced_best": float(bal.max()), "test_worst_best": float(worst.max()),
            "test_balanced": bal, "test_worst": worst}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    from paperfigs.context import Context

    ctx = ctx or Context()
    cfg = CONFIGS[mode]
    seeds = protocol.reporting_seeds(seed, cfg.seeds, cfg.tuning_seeds)
    grids = {m: quarter_decade_grid(lo, hi) for m, (lo, hi) in cfg.lr_grid}
    tune = [TuneSpec(m, grids[m], cfg.tuning_seeds, lambda lr, s, m=m: run_spec(cfg, m, lr, s),
                     lambda r: readout(r)["val_balanced_best"], higher_is_better=True, extend=cfg.extend,
                     to_divergence=True,
                     criterion="best-over-time balanced validation accuracy") for m in METHODS]
    selections = ctx.tune(tune)
    chosen = protocol.selected_lrs(selections)
    # one batch: every method at its selected lr, and SpecGD at each lr tied with its selected one
    runs, tied_runs = protocol.report(ctx, tune, selections, seeds, ("SpecGD",), desc="fig4 reporting runs")
    reads = {(m, s): readout(r) for m in METHODS for s, r in zip(seeds, runs[m])}
    steps = eval_steps(cfg)

    table, series = [], {}
    for m in METHODS:
        rs = [reads[(m, s)] for s in seeds]
        for name, key in (("balanced", "test_balanced"), ("worst-class", "test_worst")):
            series[f"{m} {name}"] = {"x": steps, **over_seeds([r[key] for r in rs]),
                                     "method": m, "panel": name, "label": f"{m} (lr {chosen[m]:.3g})"}
        sel = selections[m]
        table.append({"method": m, "lr": chosen[m], "lr_source": sel.source, "lr_grid": sorted(sel.grid),
                      "lr_at_grid_edge": sel.at_edge, "tied_within_1se": sel.tied,
                      **{key: float(np.mean([r[key] for r in rs]))
                         for key in ("val_balanced_best", "test_balanced_at_stop", "test_worst_at_stop",
                                     "test_balanced_best", "test_worst_best")},
                      "val_stop_steps": [r["stop_step"] for r in rs]})
    others = [m for m in METHODS if m != "SpecGD"]

    def claim(metric: str, key: str, spec_reads: list[dict], what: str, suffix: str = ""):
        spec = [r[key] for r in spec_reads]
        margins = {m: np.array(spec) - [reads[(m, s)][key] for s in seeds] for m in others}
        runner_up = min(others, key=lambda m: margins[m].mean())
        return paired(
            f"specgd_best_{metric.replace('-', '_')}_above_all",
            f"{metric} TEST accuracy of SpecGD {what} above every other method's, paired over {len(seeds)} seeds"
            f"{suffix}: value = min over methods of the mean margin (closest: {runner_up})",
            [margins[m] for m in others], 0.0, ">=", statistic=lambda *ds: float(min(np.mean(d) for d in ds)),
            strict=True)

    metrics = (("balanced", "test_balanced"), ("worst-class", "test_worst"))
    spec_reads = [reads[("SpecGD", s)] for s in seeds]
    claims = [claim(metric, f"{key}_at_stop", spec_reads, "at its validation-stopped step (theirs at theirs)")
              for metric, key in metrics]
    # The oracle peeks at the test set (best over time); reported beside the claims, never instead.
    oracle = {c.name: claim(metric, f"{key}_best", spec_reads, "at its best step on test (the oracle)").to_json()
              for c, (metric, key) in zip(claims, metrics)}
    # Issue 10.1: where SpecGD's lr is tied within one standard error, the claims at every tied lr.
    at_tied = protocol.claims_at_tied(
        tied_runs, lambda name, results, suffix: [
            claim(metric, f"{key}_at_stop", [readout(r) for r in results], "at its validation-stopped step", suffix)
            for metric, key in metrics])

    sensitivity = {}
    for m in METHODS:
        grid = protocol.stored_grid(ctx, selections[m], lambda lr, s, m=m: run_spec(cfg, m, lr, s))
        sensitivity[m] = protocol.not_stored({m: grid}) or {
            repr(lr): {key: float(np.mean([readout(r)[key] for r in rs]))
                       for key in ("test_balanced_at_stop", "test_worst_at_stop")}
            for lr, rs in sorted(grid.items())}
    notes = [f"lr chosen on validation (tuning seeds {list(cfg.tuning_seeds)}): {chosen}"]
    edge = [r["method"] for r in table if r["lr_at_grid_edge"]]
    if edge:
        notes.append(f"chosen lr at the edge of its (extended) grid for: {', '.join(edge)}")
    return {
        "params": {"d": cfg.d, "k": cfg.k, "mu": cfg.mu, "sigma": cfg.sigma, "priors": "p_c ~ 1/c",
                   "n_train": cfg.n_train, "n_val": cfg.n_val, "n_test": cfg.n_test, "steps": cfg.steps,
                   "seeds": cfg.seeds, "seed_list": seeds, "beta_muon": cfg.beta, "lr": chosen,
                   "lr_selection": {m: sel.to_json() for m, sel in selections.items()},
                   "test_set": "class-balanced", "band": SEED_BAND, "muon_polar": "Newton-Schulz (5 quintic steps)",
                   "specgd_polar": f"truncated SVD, relative tol {algorithms.SPEC_TOL:g}",
                   "stopping": "per run, the step of its best balanced validation accuracy (earliest on ties)"},
        "series": series,
        "claims": claims,
        "tables": {"per_method": table, "oracle": oracle, "claims_at_tied_lrs": at_tied, "sensitivity": sensitivity},
        "notes": notes,
    }


def plot(result: dict):
    import matplotlib.pyplot as plt

    p = result["params"]
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8), sharex=True)
    for ax, metric in zip(axes, ("balanced", "worst-class")):
        for method in METHODS:
            s = next(v for v in result["series"].values() if (v["method"], v["panel"]) == (method, metric))
            ax.plot(s["x"], s["y"], color=color(method), label=s["label"])
            band(ax, s, color(method))
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{metric} test accuracy")
        ax.set_title(f"{metric.capitalize()} accuracy, k={p['k']}, d={p['d']}, p_c ~ 1/c")
    axes[0].legend(frameon=False, fontsize=6.5)
    fig.suptitle(f"Linear softmax, cross-entropy, n_train={p['n_train']}, {p['seeds']} seeds (band: min-max)",
                 y=1.02)
    fig.tight_layout()
    return fig
