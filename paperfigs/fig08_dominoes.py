"""Figure 8 (paper A): dominoes, worst-group and decoded worst-group test accuracy over training.

Data (experiments.data.groups.dominoes): an MNIST-5k digit 0/1 (spurious, easy) stacked on a
Fashion-MNIST pullover/coat (core, decides the label); the halves agree on 95% of training images,
and the decode and test splits are group-balanced. Model: an MLP (3 linear layers); optimizers
SGD (momentum 0.9), Adam, Muon (hidden matrices; AdamW fallback on head and biases) and Shampoo.

Measured at each evaluation: worst-group test accuracy of the trained network, and the decoded
worst-group accuracy: the head's input features are frozen, a logistic-regression head is
refitted on the group-balanced decode split, and its worst test-group accuracy is reported (is
the core feature in the representation at all?).
Claims (paper): decoded worst-group accuracy of Muon, and of Shampoo, above SGD's at the end of
training; value = the mean over paired reporting seeds of (method - SGD), judged against 0 with a
95% interval over paired seeds (the verdict comes from the interval).
Learning rates: tuned by the engine (experiments.tuning) on a quarter-decade grid around CENTERS
(extended past an edge optimum and to the divergence edge) on tuning seeds 1000-1002, disjoint from
the reporting seeds; score = the decoded worst-group accuracy within the group-balanced DECODE
split (val/decoded_worst: head refitted on one half, scored on the other; until stop 18 the trained
network's own worst-group accuracy there) averaged over the evaluations in the second half of
training (the claim is about the end of training; a late-window mean rather than the last
evaluation, which under a constant lr is one noisy step). Test is never looked at. Muon's AdamW fallback is tied to its lr (paperfigs.methods).
Tied lrs (issue 10.1): each claim is also judged at every other lr tied with the claimed method's
selected one within one standard error, against SGD at its selected lr (tables.claims_at_tied_lrs).
History: until the engine (issue 10) the lrs came from one sweep seed's final decode-split
worst-group accuracy and the claims were judged on the mean difference without an interval; the
claims' definitions are unchanged.
Stop 18 (settings, before any full run of this figure; the claims are unchanged): starting grids
snap their centre to the nearest quarter-decade point (protocol.grid_of; was centred_grid) because
centred_grid gave Adam and Shampoo (centres on quarter-decade points) 5 points and SGD and Muon 4,
an unequal search budget between a claimed method and its baseline. Now 5 for every method
(smoke 3).

Stop 18 (selection criterion, before any full run of this figure; the claims are unchanged; the
mismatch was flagged by the stop-18 audit before the run quoted here): the lrs were selected on the trained network's own worst-group accuracy on the decode split, a
different quantity from the claims' decoded worst-group accuracy; on the quick run after the
stop-18 data and grid changes this picked Muon's top lr 0.18, where its features decode to 0.44
against SGD's 0.79 and 0.71 untrained (claim: fails, -0.35). The criterion is now the claims'
quantity on validation data: val/decoded_worst, the decoding refitted on one half of the decode
split and scored on the other half (groups task version 4), late-window mean. Test is still never
looked at for selection.

Quick mode drops: 8000 -> 4000 training and 2000 -> 800 decode images, 56x28 -> 28x14 px, width
256 -> 128, 2000 -> 500 steps, 5 -> 3 reporting seeds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from experiments.engine import RunSpec
from experiments.data.groups import GROUP_NAMES
from experiments.tasks.groups import splits_of
from paperfigs import protocol
from paperfigs.claims import paired
from paperfigs.methods import Method, claimed_of, label, methods
from paperfigs.stats import SEED_BAND, over_seeds

NUMBER = 8
BASELINE, CLAIMED = "sgd", ("muon", "shampoo")
# lr grid centres: the one-seed sweep's choices before the engine.
CENTERS = {"sgd": 0.05, "adam": 1e-3, "muon": 0.02, "shampoo": 0.01}
LATE = 0.5  # the selection score averages the evaluations after this fraction of the steps


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
    tuning_seeds: tuple[int, ...] = (1000, 1001, 1002)
    grid_half_width: float = 0.5  # decades each side of the centre
    extend: int = 3


FULL = Config()
QUICK = replace(FULL, n_train=4000, n_decode=800, pool=2, width=128, steps=500, eval_every=50, seeds=3, extend=2)
SMOKE = replace(QUICK, n_train=400, n_decode=80, n_test=200, width=16, steps=6, eval_every=3, seeds=2,
                tuning_seeds=(1000,), grid_half_width=0.25, extend=1)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def run_spec(cfg: Config, m: Method, lr: float, seed: int, device: str) -> RunSpec:
    return RunSpec("groups", {"dataset": "dominoes", "agreement": cfg.agreement, "pool": cfg.pool,
                              "n_train": cfg.n_train, "n_decode": cfg.n_decode, "n_test": cfg.n_test,
                              "fashion_classes": list(cfg.fashion_classes), "width": cfg.width, "depth": cfg.depth,
                              "steps": cfg.steps, "batch_size": cfg.batch_size, "eval_every": cfg.eval_every,
                              "optimizer": m.optimizer, "lr": float(lr), "optimizer_kwargs": m.optimizer_kwargs(lr),
                              "seed": int(seed), "device": device})


def late_score(result: dict) -> float | None:
    """Mean validation decoded worst-group accuracy (val/decoded_worst: the decoding fitted on one half
    of the decode split, scored on the other) over the evaluations after LATE of the steps."""
    if result["status"] != "ok":
        return None
    steps = np.asarray(result["steps"])
    return float(np.mean(np.asarray(result["metrics"]["val/decoded_worst"])[steps > LATE * steps[-1]]))


def _final(result: dict, metric: str) -> float:
    return result["metrics"][metric][-1] if result["status"] == "ok" else math.nan


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    from paperfigs.context import Context

    ctx = ctx or Context()
    cfg = CONFIGS[mode]
    seeds = protocol.reporting_seeds(seed, cfg.seeds, cfg.tuning_seeds)
    ms = methods(cfg.optimizers, ctx)
    criterion = (f"decoded worst-group accuracy within the decode split (head refitted on one half, scored on the "
                 f"other), mean over the evaluations after {LATE:.0%} of the steps and over tuning seeds")
    # a user optimizer: centred on Adam's grid (most torch.optim classes are Adam-scaled)
    center = {m.name: CENTERS.get(m.name, CENTERS["adam"]) for m in ms}
    claimed = claimed_of(ms, CLAIMED)

    def spec(m, lr, s):
        return run_spec(cfg, m, lr, s, device)

    # Reporting runs at the selected lrs, and at every other lr tied with a claimed method's
    # selected one: its claim is judged there too (issue 10.1).
    selections, runs, tied_runs = protocol.tune_and_report(
        ctx, ms, spec, seeds, late_score, True, criterion,
        lambda m: protocol.grid_of(center[m.name], cfg.grid_half_width), cfg.extend, claimed, cfg.tuning_seeds)
    lrs = {k: sel.lr for k, sel in selections.items()}
    series, final, statuses = {}, {}, {}
    for m in ms:
        rs = runs[m.name]
        longest = max(rs, key=lambda r: len(r["steps"]))  # a stopped (non-finite) run ends early
        for key, panel in (("test/worst", "worst-group"), ("test/decoded_worst", "decoded worst-group")):
            series[f"{label(m.name)} {panel}"] = {
                "x": longest["steps"], **over_seeds([r["metrics"][key] for r in rs]),
                "method": m.name, "label": label(m.name), "panel": panel}
            ends = np.array([_final(r, key) for r in rs])
            final.setdefault(m.name, {})[key.split("/")[1]] = {
                "mean": float(np.mean(ends)), "min": float(np.min(ends)), "max": float(np.max(ends)),
                "per_seed": ends.tolist()}
        statuses[m.name] = [r["status"] for r in rs]

    base = np.array(final[BASELINE]["decoded_worst"]["per_seed"])

    def claim(o, results, suffix=""):
        ends = [_final(r, "test/decoded_worst") for r in results]
        statement = (f"{label(o)}'s decoded worst-group test accuracy at the end of training exceeds "
                     f"{label(BASELINE)}'s (paired over {cfg.seeds} seeds); value = mean difference{suffix}")
        return paired(f"{o}_decoded_wga_above_sgd", statement, [np.asarray(ends) - base], 0.0, strict=True)

    claims, at_tied = protocol.claims_with_tied(claimed, runs, tied_runs, claim)
    # Sensitivity: the method at each lr of its grid against SGD at its selected lr, on the tuning
    # seeds' test results (the tuning runs hold them); no selection involved.
    base_m = next(m for m in ms if m.name == BASELINE)
    base_tuning = protocol.stored_grid(ctx, selections[BASELINE], lambda lr, s: spec(base_m, lr, s), [lrs[BASELINE]])
    sensitivity = {}
    for o in claimed:
        m = next(x for x in ms if x.name == o)
        grid = protocol.stored_grid(ctx, selections[o], lambda lr, s: spec(m, lr, s))
        if missing := protocol.not_stored({o: grid, BASELINE: base_tuning}):
            sensitivity[o] = missing
            continue
        b = base_tuning[lrs[BASELINE]]
        sensitivity[o] = {repr(lr): float(np.mean([_final(x, "test/decoded_worst") - _final(y, "test/decoded_worst")
                                                   for x, y in zip(rs, b)])) for lr, rs in grid.items()}

    probe = runs[ms[0].name][0]
    params = {**asdict(cfg), "correlation": cfg.agreement,
              "model": f"MLP, {cfg.depth} linear layers, width {cfg.width}",
              "lr per optimizer": lrs, "lr_selection": {k: sel.to_json() for k, sel in selections.items()},
              "methods": {m.name: m.optimizer for m in ms}, "seed_list": seeds,
              "device": device, "groups": list(GROUP_NAMES), "train_group_counts": probe["train_group_counts"],
              "image_shape": probe["image_shape"],
              "data_source": splits_of(run_spec(cfg, ms[0], 1.0, seeds[0], device).config)[0].data_source,
              "core": f"Fashion-MNIST classes {cfg.fashion_classes} (pullover y=0, coat y=1), bottom half",
              "spurious": "MNIST-5k digit 0 vs 1, top half",
              "decoder": "L2 logistic regression (C = 1) on standardised head inputs, decode split subsampled to "
                         "equal group sizes",
              "band": SEED_BAND}
    notes = [f"{label(o)} stopped: {v}" for o, v in statuses.items() if any(s != "ok" for s in v)]
    # The step-0 evaluation decodes the features of the untrained network: the floor that training
    # has to beat for "the core feature was learned" to mean anything.
    at_init = [s["y"][0] for s in series.values() if s["panel"] == "decoded worst-group"]
    notes.append(f"decoded worst-group accuracy of the untrained (random-feature) network: "
                 f"{float(np.mean(at_init)):.3f} (mean over optimizers' step-0 evaluations)")
    tables = {"final": final, "claims_at_tied_lrs": at_tied, "sensitivity": sensitivity,
              "sensitivity_definition": "decoded worst-group test accuracy at the end, method at each lr of its grid "
                                        "minus SGD at its selected lr, mean over the tuning seeds"}
    return {"params": params, "series": series, "claims": claims, "tables": tables, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    from paperfigs.style import band, color

    p = result["params"]
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
    for ax, (suffix, title) in zip(axes, ((" worst-group", "trained network"),
                                         (" decoded worst-group", "decoded: head refit on frozen features"))):
        for s in result["series"].values():
            if s["panel"] != suffix.strip():
                continue
            c = color(s["method"])
            ax.plot(s["x"], s["y"], color=c, label=s["label"])
            band(ax, s, c)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("worst-group test accuracy")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Fig. 8: dominoes (MNIST 0/1 over Fashion pullover/coat), {p['correlation']:.0%} agreement in "
                 f"training;\n{p['model']}; {p['seeds']} seeds (band: min-max)", fontsize=8.5)
    fig.tight_layout()
    return fig
