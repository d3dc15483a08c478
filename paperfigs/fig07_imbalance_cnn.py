"""Figure 7 (paper A): step-imbalanced image classification with a small ResNet-style CNN.

Classes 5-9 keep 1/rho of the training images of classes 0-4 (rho = 20); SGD (momentum 0.9),
Adam, Muon, Shampoo, TNT and SPlus (and Muon on every matrix including the head, "muon_head"),
plus any user optimizer (--optimizer). Per-class TEST accuracy is followed for the majority and the
minority classes. Runs, lr selection and the protocol: paperfigs.imbalance_common.

Selection score: the balanced validation accuracy averaged over every evaluation after step 0
(mean over tuning seeds): gap closing can happen anywhere in the run, so the score rewards being
accurate early over the whole run rather than at its end.

Claim (paper): the spectral/whitening methods close the majority-minority gap earlier than SGD.
Measured as: on the mean-over-seeds curves, a method's gap-closing time is the first evaluation at
which the RELATIVE gap (majority - minority) / majority is <= REL_GAP (the minority classes reach
half the majority classes' accuracy) while the majority accuracy is >= FLOOR (so the untrained
state, where both are near chance, does not count); a run that never gets there is censored at the
end of the run plus one evaluation interval. Value = SGD's time - the method's, in epochs, with a 95%
interval over the paired reporting seeds (paperfigs.stats; its bootstrap part recomputes both
mean-over-seeds curves); it holds when the interval clears one evaluation interval; when both
methods are censored on the mean curves the verdict is inconclusive (neither closed the gap is not
evidence against the claim).
History of the definition (each replaced because it was degenerate, not because of a verdict):
1. absolute gap <= 0.1: no method came near it in the quick run (with 17 training images per
   minority class the minority accuracy stays far below the majority's): all censored;
2. absolute gap <= SGD's final gap: SGD never learned the minority classes, so its final gap was
   its majority accuracy, and a method "closed" the gap by learning the majority classes slowly.
3. (engine, issue 10) the verdict comes from the paired-seed interval, and both-censored is
   inconclusive instead of a failure; the lrs are selected on the score above instead of one seed's
   final balanced validation accuracy. The gap definition and the threshold are unchanged.

4. (issue 10) the gap-closing times are kept in integer steps until the value is formed, and an
   interval that only touches the threshold is inconclusive (paperfigs.stats.verdict_of): TNT's
   [0, 1.046] against 1.046 read "fails" because one ulp of float rounding put the upper end below
   the threshold. A claim whose methods are both censored says so in its statement.

Stop 18 (settings; the claim's definition and threshold are unchanged):
- starting grids snap their centre to the nearest quarter-decade point (grid_rule "snapped",
  protocol.grid_of; was centred_grid) because centred_grid gave TNT (centre 1e-4, a quarter-decade
  point) 5 points and every other method 4. Now 5 for every method (smoke 3).
- SPlus runs with nonstandard_layers=True, the SPlus paper's treatment of a network's input and
  output layers (as figure 14): the stem conv, the head, BatchNorm parameters and biases step by
  sign(momentum) x lr x c instead of the stem and head being rotated like hidden convs (the paper's
  rotated update is for hidden layers only). c = 1 / (5 width), the 2/(m+n) of the first stage's
  hidden convs (splus_nonstandard_constant: 0.025 at width 8, 0.003 at the paper scale's 64),
  because the paper's constant 0.001 belongs to its width 768 and is to be scaled with width
  (the notes' optimizer spec); at the default 0.001 the BatchNorm parameters had been stepping
  1/25 as far as the hidden convs' entries.
5. stop 18 (audit finding 3; analysis only): a claim whose runs (the method's or SGD's, at the lr
   judged) include one with status other than ok is inconclusive, without a value, because a
   stopped run is NaN-padded and a NaN makes the whole mean-over-seeds curve "never close": one
   diverged SGD seed censored SGD, so every method's claim could hold. Such a method also has no
   gap-closing time in the table (null) and no "never closed" note; the sensitivity table leaves
   out an lr where the method's or SGD's run stopped.

2026-12-04 (protocol of every figure, experiments.tuning.EDGE_FACTOR; this figure's definition and
threshold are unchanged): the lr search now follows an optimum on a grid edge for up to 3 x extend
points instead of extend. It moved three of this figure's selections: quick SGD 0.56 -> 1.0 (its
optimum had been on the top edge; TNT's and SPlus's quick claims then went holds -> inconclusive,
same values, wider intervals), full SPlus 0.18 -> 0.1 (its "fails", -0.49 [-0.49, 0], rested on
the low edge; now -0.49 [-1.81, 0.84], inconclusive, and still "fails" at 0.18, a tied lr) and
full Muon incl. head (0.1, now interior).

Full mode (sized for about an hour on a 2-core CPU with --jobs 2): Fashion-MNIST (at most 5000
training images per majority class), images average-pooled 2 x 2 to 14 x 14, width 8 with three
stages, 1500 steps at batch 128 (about 7 epochs), an evaluation every 100 steps (as before the
resize, so the claim's threshold, one evaluation interval, is unchanged), 200 validation and 500
test images per class, 5 reporting seeds. History: until 2026-12-02 full mode trained at
28 x 28, width 16, 3000 steps and 1000 test images per class;
a cost probe then measured about 110 ms of CPU per training step and 500-650 CPU-s per run, so
some 180 runs (tuning, reporting, tied lrs) came to about 14 hours, and it was cut before any full
run had been made (the claim's definition is unchanged; its threshold stays one evaluation
interval of the mode).
Quick mode drops: Fashion-MNIST for MNIST-5k, three stages -> two, 1500 -> 360 steps at batch 64,
an evaluation every 30 steps (its own threshold), 100 test images per class, 5 -> 3 reporting seeds. The classes, rho,
the gap definition and the threshold (one evaluation interval) are those of the claim in every
mode.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from experiments.tasks.imbalance import early_mean, gap_close_step, group_curves
from paperfigs import imbalance_common as common
from paperfigs.claims import paired, stopped_claim, stopped_runs
from paperfigs.protocol import claims_with_tied
from paperfigs.style import display

NUMBER = 7
REL_GAP = 0.5
FLOOR = 0.5
BASELINE = "sgd"
CLAIMED = ("muon", "shampoo", "tnt", "splus", "muon_head")
# lr grid centres (half a decade each side; the engine extends past an edge optimum): the values
# the earlier one-seed sweep chose.
CENTERS = {"sgd": 0.05, "adam": 3.16e-3, "muon": 0.2, "shampoo": 0.0316, "tnt": 1e-4, "splus": 3.0, "muon_head": 2.0}
# SPlus evaluates an EMA of its weights; its default rate 0.999 (a ~1000-step horizon, set for runs
# of ~1e5 steps) averages the untrained weights into a run of a few hundred steps, and with
# BatchNorm the running statistics then no longer match the averaged weights (validation accuracy
# 0.25 at its best lr in a first sweep). The rate is scaled to the run length instead.
SPLUS_EMA = {"paper": 0.999, "full": 0.99, "quick": 0.9, "smoke": 0.9}


def splus_nonstandard_constant(width: int) -> float:
    """SPlus's step scale for its nonstandard layers (stem conv, head, BatchNorm and biases): the
    2/(m+n) of the first stage's hidden 3x3 convs, width x 9 width as matrices, i.e. 1 / (5 width)
    (figure 14's 1 / width is the same rule for its width x width matrices)."""
    return 2.0 / (width + 9 * width)


def _kwargs(mode: str, width: int) -> tuple:
    return (("splus", (("ema_rate", SPLUS_EMA[mode]), ("nonstandard_layers", True),
                       ("nonstandard_constant", splus_nonstandard_constant(width)))),)


FULL = common.ImbalanceConfig(
    dataset="fashion", rho=20.0, minority=(5, 6, 7, 8, 9), n_max=5000, n_val_per_class=200,
    n_test_per_class=500, model="resnet", width=8, depth=0, blocks=(1, 1, 1), steps=1500, batch_size=128,
    eval_every=100, seeds=5, early_frac=0.3, pool=2,
    optimizers=("sgd", "adam", "muon", "shampoo", "tnt", "splus", "muon_head"),
    centers=tuple(CENTERS.items()), extend=3, kwargs=_kwargs("full", 8))
QUICK = replace(FULL, dataset="mnist5k", n_max=None, n_val_per_class=50, n_test_per_class=100, pool=2, width=8,
                blocks=(1, 1), steps=360, batch_size=64, eval_every=30, seeds=3, extend=2, kwargs=_kwargs("quick", 8))
SMOKE = replace(QUICK, dataset="digits", n_max=40, n_val_per_class=10, n_test_per_class=20, width=4, blocks=(1,),
                steps=6, batch_size=32, eval_every=3, seeds=2, early_frac=0.5, tuning_seeds=(1000,),
                grid_half_width=0.25, extend=1, kwargs=_kwargs("smoke", 4))
# The papers' scale (--scale paper, meant for a GPU): paper A's CIFAR setting, CIFAR-10 (files the
# user supplies with --data-root) with the step imbalance rho = 20 on classes 5-9, every training
# image of the majority classes (5000 per class less the 200 held out for validation), the full
# balanced test split (1000 per class), 32 x 32 x 3 inputs. Not matched, because the notes this
# project follows do not give them: the paper's exact network (here ResNet-18's layout, width 64
# and two BasicBlocks in each of four stages, the standard CIFAR ResNet) and its schedule (here
# 40 epochs at batch 128, constant lr as in every mode, an evaluation every ~1 epoch); SPlus keeps
# its default EMA rate 0.999, whose ~1000-step horizon suits a run of 8000 steps.
PAPER = replace(FULL, dataset="cifar10", n_max=None, n_val_per_class=200, n_test_per_class=1000, pool=1, width=64,
                blocks=(2, 2, 2, 2), steps=8000, batch_size=128, eval_every=200, kwargs=_kwargs("paper", 64))
CONFIGS = {"paper": PAPER, "full": FULL, "quick": QUICK, "smoke": SMOKE}


def _groups(results: list[dict], cfg) -> np.ndarray:
    """(seeds, 2, E): majority and minority test-accuracy curves per seed."""
    return np.stack([[g["majority"], g["minority"]] for g in (group_curves(r, cfg.minority) for r in results)])


def _close_step(groups: np.ndarray, steps, censored: int) -> int:
    """Gap-closing step of the mean-over-seeds curves; `censored` if never. Kept in integer steps
    so that a difference of one evaluation interval is exactly the threshold once converted."""
    majority, minority = groups.mean(0)
    step = gap_close_step(majority, minority, steps, REL_GAP, FLOOR)
    return censored if step is None else int(step)


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    from paperfigs.context import Context

    ctx = ctx or Context()
    cfg = CONFIGS[mode]

    def score(result):
        if not common.ok(result):
            return None
        steps = np.asarray(result["steps"])
        return float(common.balanced_val(result)[steps > 0].mean())

    criterion = "balanced validation accuracy averaged over every evaluation after step 0, mean over tuning seeds"
    ms, claimed, selections, runs, tied_runs, params = common.study(cfg, mode, seed, device, ctx, score, criterion, CLAIMED)
    epochs_per_step = cfg.batch_size / params["n_train"]
    censored_step = cfg.steps + cfg.eval_every
    censored = censored_step * epochs_per_step
    interval = cfg.eval_every * epochs_per_step

    steps = runs[BASELINE][0]["steps"]

    def close_step(groups):
        return _close_step(groups, steps, censored_step)

    def advance(method_results, base_results):
        return (close_step(_groups(base_results, cfg)) - close_step(_groups(method_results, cfg))) * epochs_per_step

    def claim(name, results, suffix=""):
        mine, base = _groups(results, cfg), _groups(runs[BASELINE], cfg)

        def stat(idx):
            i = np.asarray(idx, int)
            return (close_step(base[i]) - close_step(mine[i])) * epochs_per_step

        statement = (f"{common.label(name)} closes the majority-minority gap (relative gap <= {REL_GAP} with "
                     f"majority >= {FLOOR}, mean-over-seeds curves) at least one evaluation ({interval:.2f} "
                     f"epochs) before {display(BASELINE)}; value = {display(BASELINE)}'s time - "
                     f"{common.label(name)}'s, in epochs{suffix}")
        stopped = stopped_runs({common.label(name): results, display(BASELINE): runs[BASELINE]}, params["seed_list"])
        if stopped:  # a NaN-padded mean curve never closes the gap: no time of either method
            return stopped_claim(f"{name}_closes_gap_before_sgd", statement, interval, stopped)
        both = all(close_step(g) == censored_step for g in (mine, base))
        if both:
            statement += (" [both censored: neither closed the gap within the run, so the value 0 is no "
                          "measurement and the verdict is inconclusive]")
        return paired(f"{name}_closes_gap_before_sgd", statement, [np.arange(len(results), dtype=float)],
                      interval, statistic=stat, censored=both)

    params.update(rel_gap=REL_GAP, floor=FLOOR, censored_at_epochs=censored)
    claims, at_tied = claims_with_tied(claimed, runs, tied_runs, claim)
    # a method with a stopped run has no gap-closing time (its NaN-padded mean curve never closes)
    close = {o: close_step(_groups(rs, cfg)) * epochs_per_step for o, rs in runs.items() if all(map(common.ok, rs))}
    early_gap = {}
    for o, rs in runs.items():
        g = [group_curves(r, cfg.minority) for r in rs]
        gap = np.mean([x["majority"] - x["minority"] for x in g], 0)
        early_gap[o] = early_mean(gap, rs[0]["steps"], cfg.early_frac)
    tabs = {"checkpoints": common.checkpoint_table(runs, params["lr"], cfg.minority, int(cfg.early_frac * cfg.steps)),
            "gap_close_epochs": {o: (None if o not in close or np.isclose(close[o], censored) else close[o])
                                 for o in runs},
            "early_window_gap": early_gap, "claims_at_tied_lrs": at_tied,
            "sensitivity": common.sensitivity(ctx, cfg, ms, selections, device, BASELINE, claimed, advance),
            "sensitivity_definition": "claim value of the method at each lr of its grid against SGD at its selected "
                                      "lr, on the tuning seeds' test curves (mean-over-seeds gap-closing times)"}
    notes = [f"{common.label(o)} never closed the gap within the run (censored at {censored:.2f} epochs)"
             for o, v in close.items() if np.isclose(v, censored)]
    notes += common.stopped_notes(runs)
    return {"params": params, "series": common.series(runs, cfg.minority, epochs_per_step), "claims": claims,
            "tables": tabs, "notes": notes}


def plot(result: dict):
    return common.plot(result, "Fig. 7, small ResNet")
