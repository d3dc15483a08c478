"""Figure 14 (SPlus paper): steps and wall-clock to reach Adam's final loss, as a fraction of Adam's,
for SPlus (at its EMA weights), Shampoo and Muon, on a small language model and a small image
classifier, over paired seeds.

Tasks, each on a target that does not move with overfitting:
(a) experiments.tasks.lm: next-token prediction over the real text (TinyTransformer), less than
    one pass over the training windows (fresh data every step), target = the loss on held-out test
    documents (lrs selected on the validation documents' loss);
(b) experiments.tasks.width_mlp: an MLP on the MNIST-5k digits, target = the loss on the whole
    training split (the validation loss of this task overfits within a few hundred steps, so
    "Adam's final validation loss" depended on when the run stopped).
Every method trains for the same steps from the same initial weights (the seed draws split,
weights and batch order). Adam's target on reporting seed s is its own final target loss on s; a
method's steps-to-target is the first evaluation at which its target loss <= that value
(theory.metrics.first_step; Adam's own count uses the same rule), and likewise wall-clock
(training time only). A method that never reaches it is censored: its fraction is reported as the
lower bound run length / Adam's steps.
SPlus: betas (0.9, 0.95) as in the paper's runs, EMA horizon a tenth of the run (ema_rate =
1 - 10 / steps), and the paper's treatment of the nonstandard layers (input layer, embeddings,
head and non-matrices step by sign(momentum) x c, c = 1 / width: the shape scale 2/(m+n) of a
width x width matrix, which is what the paper's 0.001 is at its width 768). Shampoo is the
registry's practical configuration (Adam grafting, roots every 10 steps); Muon the registry's
(hidden matrices; AdamW on the rest, at MUON_FALLBACK_RATIO x Muon's lr) and, reported beside it,
Muon incl. head (the head a Muon matrix too). Any --optimizer is added like the others.

Learning rates (experiments.tuning, one rule for every figure): a quarter-decade grid per method
and task, extended past an optimum on its edge, over tuning seeds disjoint from the reporting
seeds. Criterion: Adam, the lowest target loss over the run (best over time; with a target that
does not overfit it is the final one); every other method, the mean target loss over the run's
evaluations (area under the curve: lower earlier is better, which is what "reaches sooner"
asks). Sensitivity: each method's step fraction at every lr of its grid against Adam at its
selected lr, on the tuning seeds (tables.sensitivity).

Claims (paired over the reporting seeds, 95% interval): SPlus's step fraction is below
1 on each task (paper: 0.42 LLM, 0.50 ViT); SPlus has the smallest step fraction of SPlus,
Shampoo and Muon on both tasks (paper: SPlus 0.44 < SOAP 0.58 < Muon 0.83), value = the smaller
over the two tasks of the mean per-seed margin min(Shampoo, Muon) - SPlus (holds when its interval
is above 0). Both are also reported with SPlus at each lr tied with its selected one within one
standard error on a task (tables.claims_at_tied_lrs: that task's claims, the other methods at their
selected lrs).
Changes to the claims' measurement (recorded here, 2026-12): one seed -> paired seeds with an
interval; lrs selected on tuning seeds (were: the lowest final validation loss of the reporting
run); the image target is the training loss instead of the overfitting validation loss; the LM
runs stay within one pass over the data; SPlus's nonstandard layers as in the paper; the rank
claim's value is a per-seed margin instead of SPlus's worst rank. Thresholds unchanged.
Stop 18 (settings, before any full run of this figure; claims' definitions and thresholds unchanged):
- Muon's AdamW fallback (embeddings, head, norms, biases) runs at paperfigs.methods.MUON_FALLBACK_RATIO
  (0.05) x Muon's lr, tuned together on one grid as in figures 1, 6-9, because it was a fixed,
  untuned AdamW 1e-3 while every other method had all its parameters' step tuned. A fixed ratio
  cannot give the fallback Adam's best lr and the hidden matrices theirs at once when their
  ratio is not 0.05; the selection then trades the two off (the quick selection before this
  change chose Muon 0.0056 on the LM, where the tie would give its embeddings and head AdamW
  2.8e-4, against Adam's selected 3e-3): watch Muon's selection and its sensitivity table.
- "Muon (incl. head)" runs beside Muon on both tasks (grid centre Muon's), because both models
  have an output head Muon could take and registered Muon leaves it to AdamW. It is reported
  (fractions, sensitivity, plot) but is not one of the rivals of splus_ranks_first: the SPlus
  paper's Muon baseline is Muon on the hidden matrices with Adam on the rest, which is "Muon".
- the search goes to the divergence edge (to_divergence, as figures 1, 6-8, 11, 12) because it
  stopped at the top of the grid whenever the optimum was interior: up to `extend` (3) lrs more
  above each grid until a tuning seed diverges; each selection says whether one did
  (divergence_found).
Cost (from the configuration; full's first batch was 4 methods x 2 tasks x 5 lrs x 3 seeds = 120
tuning runs, 5,250 CPU-s): Muon incl. head adds 30 tuning runs (about 1,300 CPU-s) and 10
reporting runs; the divergence search adds at most 3 lrs x 10 (task, method) x 3 seeds = 90 runs
(about 3,900 CPU-s), fewer where a run diverges first. Tuning at most about 10,500 CPU-s, 2x.
Stop 18 (claims, before any full run of this figure; thresholds unchanged): (a) the LM's claims
read the TEST loss (test_loss: held-out documents fixed for every seed, experiments.data.text)
while its lrs are selected on the validation loss, because claim and selection read the same
validation windows (audit); Adam's target is its final test loss. The image task keeps the
training loss for both (an optimisation-speed claim; its tuning seeds are disjoint). (b) A censored
seed's fraction is a lower bound, so a "holds" of splus_fraction_below_1 with SPlus censored on a
seed, or of splus_ranks_first with SPlus censored (its margin an upper bound), and a "fails" of
splus_ranks_first with a rival censored (a lower bound) are reported inconclusive.
stop 18 (audit finding 2; analysis only, no run or selection changes): (a) a stopped run (status
other than ok, e.g. a non-finite loss) has no step fraction, and a claim that reads one (SPlus's,
Adam's or, for the rank claim, Shampoo's or Muon's run on a seed of a task in the claim) is
inconclusive, because a stopped run was censored at its last evaluation, so an SPlus run that
diverged at step 150 of 400 counted 0.25 toward "below 1" (censoring at the configured length
instead would count a diverged rival as slow, which is no measurement either); (b) splus_ranks_first
is inconclusive (censored) when on some seed of a task SPlus and both Shampoo and Muon were
censored, because their margin there is 0 by construction (two equal lower bounds, the true sign
unknown), which made the strict claim read "fails" where nothing was measured. A seed where only
SPlus is censored still counts (its margin is an upper bound, so a failure stays a failure), and
so does one where only the rivals are (a lower bound).
Stop 25 (cost, before any full run of this figure; claims, criteria and thresholds unchanged): the
full configuration was re-sized toward an hour with --jobs 2 (the first such run then took about
90 min, 9 of them beside a CI run: tuning 150 runs, three extension rounds of 30-36, 65 reporting). A probe of the earlier one
(paperfigs.estimate, and a side-by-side timing of one LM run at two lengths and two evaluation
counts) measured a first batch of 150 runs and 10,145 CPU-s, about 3.5 h for the whole run. In an
LM run, 51 evaluations over 512 validation and 512 test windows took about 84 of its about 107
CPU-s (1.65 s each) and 400 training steps about 23. The changes: LM validation windows 512 -> 128
(8,192 tokens, which only rank lrs), test windows 512 -> 256 (16,384 tokens, the claims' target),
50 -> 25 evaluations per run (steps-to-target resolution 1/25 of the run, 0.04 of Adam's steps, against
the paper's fractions of 0.42-0.83), and the image MLP 2000 -> 1000 steps (its Shampoo runs were
44 CPU-s). The LM's training (400 steps of 16 x 64 tokens within one pass) is unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments.engine import RunSpec
from experiments.tasks import lm as lm_task
from experiments.tasks import width_mlp
from experiments.tuning import TuneSpec
from paperfigs import protocol
from paperfigs.claims import Claim, paired, stopped_claim, stopped_runs
from paperfigs.methods import MUON_FALLBACK_RATIO
from paperfigs.protocol import TUNING_SEEDS
from paperfigs.stats import SEED_BAND, over_seeds
from paperfigs.style import band, color
from theory.metrics import first_step

MUON_HEAD = "Muon (incl. head)"
BUILTIN = ("Adam", "SPlus", "Shampoo", "Muon", MUON_HEAD)
CLAIMED = "SPlus"
# label -> (registry key, fixed kwargs); Muon's AdamW fallback lr is set per run (run_spec)
KEYS = {"Adam": ("adam", {}), "SPlus": ("splus", {}), "Shampoo": ("shampoo", {}), "Muon": ("muon", {}),
        MUON_HEAD: ("muon", {"head_fallback": False})}
TASKS = ("lm", "image")
# the loss each task's claims read, and the one its lrs are selected on (stop 18: the LM's claims
# read held-out test documents, its selection the validation documents)
TARGET = {"lm": "test_loss", "image": "train_loss"}
SELECT = {"lm": "val_loss", "image": "train_loss"}
SPLUS_BETAS = (0.9, 0.95)  # the paper's runs (the optimizer's default b2 is 0.999)
EXTERNAL_CENTRE = 1e-3


@dataclass(frozen=True)
class Fig14Config:
    lm: tuple = (("vocab", 1024), ("max_train_tokens", None), ("T", 64), ("d_model", 128), ("n_layers", 2),
                 ("n_heads", 4), ("val_windows", 128), ("test_windows", 256), ("steps", 400), ("batch_size", 16))
    image: tuple = (("width", 256), ("depth", 3), ("steps", 1000), ("batch_size", 128))
    n_evals: int = 25            # evaluations per run (the resolution of steps-to-target)
    lr_points: int = 5           # quarter-decade points around each centre
    seeds: int = 5
    tuning_seeds: tuple[int, ...] = TUNING_SEEDS
    extend: int = 3              # grid points the tuner may add past an optimum on an edge
    # task -> method -> grid centre
    centres: tuple = (
        ("lm", (("Adam", 3e-3), ("SPlus", 0.3), ("Shampoo", 3e-3), ("Muon", 1e-2), (MUON_HEAD, 1e-2))),
        ("image", (("Adam", 3e-3), ("SPlus", 0.1), ("Shampoo", 3e-4), ("Muon", 1e-2), (MUON_HEAD, 1e-2))),
    )


FULL = Fig14Config()
# Quick drops: the LM's size (vocab 1024 -> 256, T 64 -> 16, d_model 128 -> 32, 2 -> 1 layers; 0.5
# epoch of a 200k-token training subset, so still within one pass), the MLP's width 256 -> 128
# and 1000 -> 300 steps of batch 64, 40 evaluations per run instead of 25 (its runs are cheap),
# 5 -> 3 grid points per method (extended automatically), 5 -> 3 reporting seeds; the targets, criteria and claims stay. Smoke
# (tests only) tunes on one seed without extension.
QUICK = dataclasses.replace(FULL, lm=(("vocab", 256), ("max_train_tokens", 200_000), ("T", 16), ("d_model", 32),
                                      ("n_layers", 1), ("n_heads", 2), ("val_windows", 256), ("test_windows", 256), ("steps", 400),
                                      ("batch_size", 16)),
                            image=(("width", 128), ("depth", 3), ("steps", 300), ("batch_size", 64)),
                            n_evals=40, lr_points=3, seeds=3)
SMOKE = dataclasses.replace(QUICK, lm=(("corpus", "political"), ("vocab", 64), ("max_train_tokens", 5000), ("T", 8),
                                       ("d_model", 16), ("n_layers", 1), ("n_heads", 2), ("val_windows", 32), ("test_windows", 32),
                                       ("steps", 6), ("batch_size", 8)),
                            image=(("width", 16), ("depth", 2), ("steps", 6), ("batch_size", 16)),
                            n_evals=3, lr_points=1, seeds=2, tuning_seeds=TUNING_SEEDS[:1], extend=0)
# Paper scale (for a GPU; --scale paper): the LM in the SPlus paper's 160M-class shape (width 768,
# 12 layers, 12 heads) with a 4,096-word vocabulary and 128-token windows; 400 steps of batch 8
# stay within one pass over the about 3,600 training windows, so the validation target does not
# move with overfitting. The image task: a width-1024, depth-4 MLP for 3,000 steps. Not matched: the
# paper's data (OpenWebText-scale text, ImageNet with a ViT), its run lengths and batch sizes.
PAPER = dataclasses.replace(FULL, lm=(("vocab", 4096), ("max_train_tokens", None), ("T", 128), ("d_model", 768),
                                      ("n_layers", 12), ("n_heads", 12), ("val_windows", 512), ("test_windows", 512), ("steps", 400),
                                      ("batch_size", 8)),
                            image=(("width", 1024), ("depth", 4), ("steps", 3000), ("batch_size", 128)))
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE, "paper": PAPER}


def methods(ctx) -> dict[str, tuple[str, dict]]:
    """label -> (optimizer name for the run config, extra kwargs before the task-specific ones)."""
    out = {m: (KEYS[m][0], dict(KEYS[m][1])) for m in BUILTIN}
    for ext in ctx.extra_optimizers:
        out[ext.name] = (ext.target, dict(ext.kwargs))
    return out


def run_spec(cfg: Fig14Config, task: str, method: str, opt: tuple[str, dict], lr: float, seed: int,
             device: str) -> RunSpec:
    base = dict(cfg.lm if task == "lm" else cfg.image)
    steps = base["steps"]
    name, kw = opt[0], dict(opt[1])
    if method == "SPlus":
        width = base["d_model"] if task == "lm" else base["width"]
        kw.update({"ema_rate": 1 - 10 / max(steps, 20), "betas": list(SPLUS_BETAS), "nonstandard_layers": True,
                   "nonstandard_constant": 1.0 / width})
    if name == "muon":  # its AdamW fallback tied to its lr, tuned together (paperfigs.methods)
        kw["fallback_lr"] = MUON_FALLBACK_RATIO * lr
    config = {**base, "optimizer": name, "lr": lr, "optimizer_kwargs": kw, "eval_every": max(1, steps // cfg.n_evals),
              "seed": seed, "device": device}
    if task == "lm":
        return RunSpec("lm", lm_task.with_defaults(config))
    return RunSpec("width_mlp", width_mlp.with_defaults(config))


def target_curve(result: dict, task: str, metrics=TARGET) -> list:
    return result["metrics"][metrics[task]]


def _finite(values) -> np.ndarray | None:
    x = np.array(values, dtype=float)
    return x if np.all(np.isfinite(x)) else None


def score_best(task):
    def score(result):
        x = _finite(target_curve(result, task, SELECT))
        return None if result["status"] != "ok" or x is None else float(x.min())
    return score


def score_auc(task):
    def score(result):
        x = _finite(target_curve(result, task, SELECT))
        return None if result["status"] != "ok" or x is None else float(x.mean())
    return score


def steps_to(result: dict, task: str, target: float) -> tuple[int | None, float | None]:
    """(step, training wall seconds) of the first evaluation at or below target, or (None, None)."""
    s = first_step(result["step"], target_curve(result, task), target, "<=")
    if s is None:
        return None, None
    return s, result["wall_s"][result["step"].index(s)]


def fraction(result: dict, adam: dict, task: str) -> dict:
    """Step and wall fractions of Adam's, against Adam's final target loss (same seed); censored
    (never reached within the run): the lower bound run length / Adam's steps. A stopped run (its
    own or Adam's status other than "ok") has no fraction: step_fraction NaN, "stopped" its status
    (a diverged run is neither fast nor censored at the step where it stopped)."""
    stopped = next((r["status"] for r in (result, adam) if r["status"] != "ok"), None)
    if stopped is not None:
        return {"target": None, "steps": None, "adam_steps": None, "step_fraction": float("nan"),
                "wall_fraction": None, "censored": False, "stopped": stopped}
    target = target_curve(adam, task)[-1]
    a_step, a_wall = steps_to(adam, task, target)
    s, w = steps_to(result, task, target)
    censored = s is None
    if censored:  # a run with status ok recorded its last step: the run length
        s, w = result["step"][-1], result["wall_s"][-1]
    return {"target": target, "steps": s, "adam_steps": a_step, "step_fraction": s / a_step,
            "wall_fraction": w / a_wall if a_wall else None, "censored": censored, "stopped": None}


def both_censored(splus: list[dict], shampoo: list[dict], muon: list[dict]) -> bool:
    """Whether on some seed SPlus and its best rival min(Shampoo, Muon) were both censored (fraction
    dicts per seed): their margin there is 0 by construction (two equal lower bounds), no measurement."""
    return any(p["censored"] and a["censored"] and b["censored"] for p, a, b in zip(splus, shampoo, muon))


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    from paperfigs.context import Context

    ctx = ctx or Context()
    cfg = CONFIGS[mode]
    reporting = protocol.reporting_seeds(seed, cfg.seeds, cfg.tuning_seeds)
    opts = methods(ctx)
    centres = {t: dict(c) for t, c in cfg.centres}

    def grid(task, m):
        return protocol.grid_around(centres[task].get(m, EXTERNAL_CENTRE), cfg.lr_points)

    tune = []
    for task in TASKS:
        for m, opt in opts.items():
            best = m == "Adam"
            tune.append(TuneSpec(
                f"{task}|{m}", grid(task, m), cfg.tuning_seeds,
                lambda lr, s, task=task, m=m, opt=opt: run_spec(cfg, task, m, opt, lr, s, device),
                score_best(task) if best else score_auc(task), higher_is_better=False,
                criterion=(f"lowest {SELECT[task]} over the run (best over time)" if best else
                           f"mean {SELECT[task]} over the run's evaluations (area under the curve)"),
                extend=cfg.extend, to_divergence=True))
    # --lr splus=V sets SPlus's lr on both tasks; --lr "lm|splus=V" on one (paperfigs.context)
    selections = ctx.tune(tune)
    lrs = protocol.selected_lrs(selections)

    # the reporting seeds at every method's selected lr, and at each lr tied with SPlus's (within one SE)
    runs, tied_runs = protocol.report(ctx, tune, selections, reporting, [f"{t}|{CLAIMED}" for t in TASKS],
                                      desc="fig14 reporting runs")
    results = {(t, m, s): r for t in TASKS for m in opts for s, r in zip(reporting, runs[f"{t}|{m}"])}

    fractions, series, notes = {}, {}, []
    for task in TASKS:
        fractions[task] = {}
        for m in opts:
            per = [fraction(results[(task, m, s)], results[(task, "Adam", s)], task) for s in reporting]
            stopped = [s for s, p in zip(reporting, per) if p["stopped"]]
            fractions[task][m] = {
                "lr": lrs[f"{task}|{m}"], "per_seed": per,
                # NaN (null) when a seed stopped: a stopped run has no fraction
                "step_fraction": float(np.mean([p["step_fraction"] for p in per])),
                "wall_fraction": float(np.mean([p["wall_fraction"] for p in per if p["wall_fraction"] is not None]
                                               or [np.nan])),
                "censored_seeds": int(sum(p["censored"] for p in per)), "stopped_seeds": stopped}
            if fractions[task][m]["censored_seeds"]:
                notes.append(f"{task}/{m}: never reached Adam's final {TARGET[task]} on "
                             f"{fractions[task][m]['censored_seeds']} of {len(reporting)} seeds "
                             "(its fraction there is the lower bound run length / Adam's steps)")
            if stopped:
                notes.append(f"{task}/{m}: no step fraction on seed(s) {stopped} (its run or Adam's stopped: "
                             f"{sorted({p['stopped'] for p in per if p['stopped']})}); claims reading them are "
                             "inconclusive")
            rs = [results[(task, m, s)] for s in reporting]
            series[f"{task}|{m}"] = {"x": max((r["step"] for r in rs), key=len),
                                     **over_seeds([target_curve(r, task) for r in rs]),
                                     "method": m, "panel": task, "label": m, "metric": TARGET[task]}
        fractions[task]["target"] = [p["target"] for p in fractions[task]["Adam"]["per_seed"]]

    def claim_runs(tasks, methods, splus_runs=None):
        """{label: results} of the runs a claim reads (SPlus's own, e.g. at a tied lr, if given)."""
        return {f"{t}/{m}": (splus_runs[t] if m == CLAIMED and splus_runs else [results[(t, m, s)] for s in reporting])
                for t in tasks for m in methods}

    def bounded(c, no_hold: bool, no_fail: bool, why: str):
        """c, inconclusive where its verdict rests on censored seeds' bounds pointing the other way: a
        censored seed's fraction is a lower bound, so "holds" read from a censored SPlus (or "fails"
        from a censored rival) is not shown by the data (stop 18)."""
        if (c.verdict == "holds" and no_hold) or (c.verdict == "fails" and no_fail):
            return Claim(c.name, f"{c.statement} [{why}: inconclusive]", c.value, c.threshold, False, c.ci,
                         "inconclusive")
        return c

    def below_1(task, splus, splus_runs=None, suffix=""):
        name = f"splus_fraction_below_1_{task}"
        statement = (f"SPlus reaches Adam's final {TARGET[task]} in fewer steps than Adam ({task} task): mean over "
                     f"{len(reporting)} seeds of the step fraction < 1 (a censored seed counts run length / Adam's "
                     f"steps){suffix}")
        stopped = stopped_runs(claim_runs((task,), ("Adam", CLAIMED), splus_runs), reporting)
        if stopped:
            return stopped_claim(name, statement, 1.0, stopped)
        c = paired(name, statement, [[p["step_fraction"] for p in splus]], 1.0, "<=", strict=True)
        return bounded(c, any(p["censored"] for p in splus), False,
                       "SPlus censored on a seed, its fraction there only a lower bound")

    def ranks_first(tasks, splus, splus_runs=None, suffix=""):
        name = "splus_ranks_first"
        statement = (f"SPlus has the smallest step fraction among SPlus, Shampoo, Muon on {' and '.join(tasks)}: value "
                     "= the smaller over the tasks of the mean per-seed margin min(Shampoo, Muon) - SPlus, holds when "
                     f"its interval is above 0{suffix}")
        stopped = stopped_runs(claim_runs(tasks, ("Adam", CLAIMED, "Shampoo", "Muon"), splus_runs), reporting)
        if stopped:
            return stopped_claim(name, statement, 0.0, stopped)
        per = {t: {m: fractions[t][m]["per_seed"] for m in ("Shampoo", "Muon")} for t in tasks}
        margins = [np.minimum(*([p["step_fraction"] for p in per[t][m]] for m in ("Shampoo", "Muon")))
                   - np.array([p["step_fraction"] for p in splus[t]]) for t in tasks]
        censored = any(both_censored(splus[t], per[t]["Shampoo"], per[t]["Muon"]) for t in tasks)
        if censored:
            statement += (" [SPlus and both rivals censored on a seed: their margin there is 0 by construction, "
                          "no measurement, so the verdict is inconclusive]")
        c = paired(name, statement, margins, 0.0, ">=", statistic=lambda *ds: float(min(np.mean(d) for d in ds)),
                   censored=censored, strict=True)
        # a censored SPlus makes its margin an upper bound, a censored rival a lower bound
        splus_cens = any(p["censored"] for t in tasks for p in splus[t])
        rival_cens = any(p["censored"] for t in tasks for m in ("Shampoo", "Muon") for p in per[t][m])
        return bounded(c, splus_cens, rival_cens, "a margin on a censored seed is only a bound")

    splus = {t: fractions[t][CLAIMED]["per_seed"] for t in TASKS}
    claims = [below_1(t, splus[t]) for t in TASKS] + [ranks_first(TASKS, splus)]
    # at each tied SPlus lr of one task: that task's claims, the other methods at their selected lrs
    def tied_claims(key, rs, suffix):
        t = key.split("|")[0]
        fr = [fraction(r, results[(t, "Adam", s)], t) for r, s in zip(rs, reporting)]
        return [below_1(t, fr, {t: rs}, suffix), ranks_first((t,), {t: fr}, {t: rs}, suffix)]

    at_tied = protocol.claims_at_tied(tied_runs, tied_claims,
                                      lambda key, lr: f" (SPlus at tied lr {lr:.3g} on {key.split('|')[0]})")

    def stored(task, m, lrs=None):
        return protocol.stored_grid(ctx, selections[f"{task}|{m}"],
                                    lambda lr, s: run_spec(cfg, task, m, opts[m], lr, s, device), lrs)

    sensitivity = {}
    for task in TASKS:
        adam = stored(task, "Adam", [lrs[f"{task}|Adam"]])
        sensitivity[task] = {}
        for m in opts:
            grid = stored(task, m)
            if missing := protocol.not_stored({f"{task}|{m}": grid, f"{task}|Adam": adam}):
                sensitivity[task][m] = missing
                continue
            row = {}
            for lr, rs in sorted(grid.items()):
                fr = [fraction(r, a, task) for r, a in zip(rs, adam[lrs[f"{task}|Adam"]])]
                row[repr(lr)] = {"step_fraction": float(np.mean([f["step_fraction"] for f in fr])),
                                 "censored_seeds": int(sum(f["censored"] for f in fr)),
                                 "stopped_seeds": int(sum(bool(f["stopped"]) for f in fr))}
            sensitivity[task][m] = row

    params = {
        "lm_task": lm_task.info(run_spec(cfg, "lm", "Adam", opts["Adam"], 1e-3, reporting[0], device).config),
        "image_task": width_mlp.info(run_spec(cfg, "image", "Adam", opts["Adam"], 1e-3, reporting[0], device).config),
        "target": TARGET, "evals_per_run": cfg.n_evals, "reporting_seeds": reporting, "band": SEED_BAND,
        "lr": {t: {m: lrs[f"{t}|{m}"] for m in opts} for t in TASKS},
        "lr_selection": {key: sel.to_json() for key, sel in selections.items()},
        "splus": f"betas {SPLUS_BETAS}, ema_rate 1 - 10 / steps, nonstandard layers sign x 1/width",
        "external_optimizers": {e.name: e.target for e in ctx.extra_optimizers},
    }
    return {"params": params, "series": series, "claims": claims,
            "tables": {"fractions": fractions, "claims_at_tied_lrs": at_tied, "sensitivity": sensitivity}, "notes": notes}


def plot(result: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    titles = {"lm": "small LM (real text)", "image": "MLP on MNIST-5k"}
    short = {"lm": "LM", "image": "MLP"}
    fr = result["tables"]["fractions"]
    labels = dict((s["method"], s["label"]) for s in result["series"].values())
    for ax, task in zip(axes[:2], TASKS):
        for s in result["series"].values():
            if s["panel"] == task:
                ax.plot(s["x"], s["y"], color=color(s["method"]), label=s["label"])
                if "y_lo" in s:  # JSON of earlier releases has no band
                    band(ax, s, color(s["method"]))
        targets = np.array([np.nan if v is None else v for v in fr[task]["target"]], dtype=float)
        if np.isfinite(targets).any():  # None: Adam's run on that seed stopped
            target = float(np.nanmean(targets))
            ax.axhline(target, color=color("Adam"), ls=":", lw=1)
            ax.set_ylim(0.85 * target, 2.0 * target)  # the approach to the target is what matters
        ax.set_xlabel("step")
        ax.set_ylabel(f"{result['params']['target'][task].replace('_', ' ')} (nats)")
        ax.set_title(titles[task])
    axes[0].legend(loc="upper right")
    ax = axes[2]
    others = [m for m in labels if m != "Adam"]
    width = 0.8 / max(1, len(others))
    for i, method in enumerate(others):
        for j, (key, hatch) in enumerate((("step_fraction", None), ("wall_fraction", "//"))):
            vals = [np.nan if fr[t][method][key] is None else fr[t][method][key] for t in TASKS]  # null: stopped
            xs = np.arange(len(TASKS)) + (i - (len(others) - 1) / 2) * width + (j - 0.5) * width / 2
            ax.bar(xs, vals, width / 2, color=color(method), hatch=hatch, label=labels[method] if j == 0 else None,
                   edgecolor="white")
    ax.axhline(1.0, color=color("Adam"), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(TASKS)), [short[t] for t in TASKS])
    ax.set_ylabel("fraction of Adam's steps (plain)\nor wall-clock (hatched)")
    ax.set_title("to reach Adam's final loss")
    ax.legend(loc="upper left", fontsize=6.5)
    fig.tight_layout()
    return fig
