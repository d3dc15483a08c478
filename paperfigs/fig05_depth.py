"""Figure 5: depth. Deep linear W = W_L ... W_1 (L = 1..4), population DM, squared loss.

Layer-wise SpecGD from the aligned balanced init of scale eps moves every factor's diagonal by
lr per step, so alpha_c = (eps + lr t)^L until the saturation step
t_c = ((alpha*_c)^(1/L) - eps) / lr, and the minority/majority gap of saturation times
DeltaT(L) = t_M / t_m - 1 -> ((SNR + 1/p_m)/(SNR + 1/p_M))^(1/L) - 1 shrinks with L.
GD from the same kind of init (its own eps, lr) is measured by the time each class needs to
reach half of alpha*_c; the ratio minority/majority of those times says how sequential it is.
Trajectories come from the O(k) fast path (theory.fast_path), which the tests check against
the full-matrix SVD path.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from paperfigs.claims import at_most, verdict
from paperfigs.style import color
from theory import closed_forms
from theory.data_model import DataModel
from theory.fast_path import diagonal_dynamics
from theory.metrics import first_crossing


@dataclass(frozen=True)
class Config:
    mu: float = 1.0
    sigma: float = 1.0
    priors: tuple = (0.5, 0.3, 0.2)
    depths: tuple = (1, 2, 3, 4)
    lr: float = 1e-3          # SpecGD
    eps: float = 1e-3         # SpecGD init scale
    lr_gd: float = 0.05
    eps_gd: float = 0.1       # GD needs a larger init: its depth-L plateau grows like eps^(2 - L)
    steps_gd: int = 12000


FULL = Config(lr=2.5e-4, steps_gd=16000)
QUICK = Config()
SMOKE = dataclasses.replace(QUICK, depths=(1, 2), lr=1e-2, eps=1e-2, steps_gd=800)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}
NAMES = {"specgd": "SpecGD", "gd": "GD"}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    dm = DataModel(cfg.mu, cfg.sigma, cfg.priors, d=len(cfg.priors))  # deterministic population run
    star, m, big = dm.alpha_star(), dm.minority, dm.majority
    series, rows = {}, []
    sat_err, dt_meas, dt_formula, dt_formula0, dt_bound, gd_ratio = [], [], [], [], [], []
    for depth in cfg.depths:
        eps = cfg.eps if depth > 1 else 0.0
        t_formula = closed_forms.saturation_time(star, cfg.lr, depth, eps)
        steps = int(np.ceil(t_formula.max() * 1.3)) + 2
        spec = diagonal_dynamics(dm.s_xx(), dm.s_yx(), "specgd", cfg.lr, steps, depth=depth, eps=eps)
        sat = first_crossing(spec, star)
        sat_err.append(float(np.max(np.abs(sat - t_formula))))
        dt_meas.append(sat[big] / sat[m] - 1.0)
        dt_formula.append(t_formula[big] / t_formula[m] - 1.0)
        dt_formula0.append(float(closed_forms.delta_t(dm.snr, dm.p[m], dm.p[big], depth)))
        # Each measured step rounds its real saturation time up by less than one step.
        dt_bound.append((1.0 + t_formula[big] / t_formula[m]) / t_formula[m])
        stride = max(1, steps // 400)
        t = np.arange(steps + 1)
        for c in range(dm.k):
            series[f"SpecGD L={depth} c={c + 1}"] = {"x": t[::stride], "y": spec[::stride, c], "method": "specgd",
                                                     "panel": "specgd trajectories", "label": f"L={depth}",
                                                     "depth": depth, "class": c + 1}

        eps_gd = cfg.eps_gd if depth > 1 else 0.0
        gd = diagonal_dynamics(dm.s_xx(), dm.s_yx(), "gd", cfg.lr_gd, cfg.steps_gd, depth=depth, eps=eps_gd)
        half = first_crossing(gd, star / 2)
        ratio = half[m] / half[big] if half[m] > 0 and half[big] > 0 else float("nan")
        gd_ratio.append(ratio)
        # Log-spaced samples keep the JSON small and still resolve the early L = 1 dynamics.
        tg = np.unique(np.geomspace(1, cfg.steps_gd, 300).astype(int))
        for c in range(dm.k):
            series[f"GD L={depth} c={c + 1}"] = {"x": tg, "y": gd[tg, c] / star[c], "method": "gd",
                                                 "panel": "gd trajectories", "label": f"L={depth}", "depth": depth,
                                                 "class": c + 1}
        rows.append({"L": depth, "specgd_saturation_steps": sat.tolist(),
                     "specgd_saturation_formula": np.round(t_formula, 2).tolist(),
                     "deltaT_measured": dt_meas[-1], "deltaT_formula_eps": dt_formula[-1],
                     "deltaT_formula_eps0": dt_formula0[-1],
                     "gd_half_times": half.tolist(), "gd_minority_over_majority": ratio})
    depths = list(cfg.depths)
    series["DeltaT SpecGD measured"] = {"x": depths, "y": dt_meas, "method": "specgd", "panel": "depth",
                                        "label": "SpecGD DeltaT, measured"}
    series["DeltaT formula"] = {"x": depths, "y": dt_formula0, "method": "formula", "panel": "depth",
                                "label": "formula (eps = 0)"}
    # Plotted as ratio - 1, on DeltaT's scale (both are relative minority/majority time gaps).
    series["GD time ratio minority/majority"] = {"x": depths, "y": gd_ratio, "method": "gd", "panel": "depth",
                                                 "label": "GD: t_m / t_M - 1 (half-learning)"}
    dt_err = float(np.max(np.abs(np.array(dt_meas) - np.array(dt_formula))))
    claims = [
        at_most("saturation_within_one_step",
                "SpecGD saturation steps within one step of ((alpha*)^(1/L) - eps)/lr (max over L, c)",
                max(sat_err), 1.0),
        verdict("deltaT_decreasing",
                f"measured DeltaT(L) decreases with L: {np.round(dt_meas, 4).tolist()}",
                bool(np.all(np.diff(dt_meas) < 0)), value=dt_meas[-1], threshold=dt_meas[0]),
        at_most("deltaT_matches_formula",
                "max_L |DeltaT measured - formula| (threshold: the one-step rounding of both saturation steps)",
                dt_err, max(dt_bound)),
        verdict("gd_more_sequential_with_depth",
                "GD's minority/majority ratio of half-learning times grows with L (relayed: depth makes GD "
                f"more sequential): {np.round(gd_ratio, 3).tolist()}",
                bool(np.all(np.diff(gd_ratio) > 0)), value=gd_ratio[-1], threshold=gd_ratio[0]),
    ]
    return {
        "params": {"mu": cfg.mu, "sigma": cfg.sigma, "priors": list(cfg.priors), "lr": cfg.lr, "eps": cfg.eps,
                   "depths": depths, "lr_gd": cfg.lr_gd, "eps_gd": cfg.eps_gd, "steps_gd": cfg.steps_gd,
                   "alpha_star": star, "init": "aligned, balanced: W_1 = eps V^T, W_l = eps I (eps = 0 at L = 1)"},
        "series": series,
        "claims": claims,
        "tables": {"per_depth": rows},
    }


def plot(result: dict):
    import matplotlib.pyplot as plt

    p = result["params"]
    depths = p["depths"]
    fig, axes = plt.subplots(1, 3, figsize=(7.4, 2.6))
    styles = ["-", "--", ":"]
    shades = np.linspace(1.0, 0.35, len(depths))
    shade = dict(zip(depths, shades))
    panels = {"specgd trajectories": axes[0], "gd trajectories": axes[1]}
    for s in result["series"].values():
        if s["panel"] in panels:
            panels[s["panel"]].plot(s["x"], s["y"], styles[(s["class"] - 1) % 3], color=color(NAMES[s["method"]]),
                                    alpha=float(shade[s["depth"]]), lw=1.1, label=s["label"] if s["class"] == 1 else None)
    for ax in panels.values():
        ax.set_xlabel("iteration t")
    axes[0].set_ylabel(r"$\alpha_c(t)$")
    axes[0].set_title(f"SpecGD, lr={p['lr']:g}, eps={p['eps']:g}")
    for c, star in enumerate(p["alpha_star"]):
        axes[0].axhline(star, color="0.6", lw=0.6, ls=styles[c % 3])
    axes[1].set_ylabel(r"$\alpha_c(t)/\alpha^*_c$")
    axes[1].set_xscale("log")
    axes[1].set_title(f"GD, lr={p['lr_gd']:g}, eps={p['eps_gd']:g}")
    axes[0].legend(frameon=False, loc="lower right")
    ax = axes[2]
    marks = {"specgd": "o", "formula": "-", "gd": "s--"}
    gd_gap = [0.0]
    for s in result["series"].values():
        if s["panel"] != "depth":
            continue
        y = np.asarray(s["y"], float) - (1.0 if s["method"] == "gd" else 0.0)
        if s["method"] == "gd":
            gd_gap = y
        ax.plot(s["x"], y, marks[s["method"]], color="k" if s["method"] == "formula" else color(NAMES[s["method"]]),
                lw=0.8 if s["method"] == "formula" else None, label=s["label"])
    ax.set_xticks(depths)
    ax.set_xlabel("depth L")
    ax.set_ylabel("relative minority/majority\ntime gap")
    ax.set_title("Sequential learning vs depth")
    ax.set_ylim(0, 1.25 * max(1.0, np.nanmax(gd_gap)) + 0.5)
    ax.legend(frameon=False, fontsize=6.5, loc="upper left")
    fig.suptitle("Deep linear model; line style = class (solid: p=%g, dashed: p=%g, dotted: p=%g)"
                 % tuple(p["priors"][:3]), y=1.02)
    fig.tight_layout()
    return fig
