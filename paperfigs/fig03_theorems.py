"""Figure 3: Theorems 1-2, SpecGF vs GF and NGF on (0, t*], and where the bounds stop holding.

Top row, one admissible reference setting: minority and balanced loss under GF, NGF, SpecGF;
each gap divided by mu t against the relayed constants (Thm 1: 1/4 minority, 1/2 balanced;
Thm 2: 1/2 minority); the singular values of the gradient G(t) under GF and SpecGF (diagonal
in the shared bases, so they are |s_xx[c] alpha_c(t) - s_yx[c]|).
Bottom row, sweeps with theory.theorems.theorem_ratios: a map over (mu, p_m / bound) at fixed
sigma and k of the worst ratio/constant of the three bounded comparisons, with the assumption
region outlined; and the minimum ratio per group of settings: admissible, and each assumption
violated in turn (mu < 1, k < 3 mu, p_m > 1/(5 SNR + 6k)).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from paperfigs.claims import at_least
from paperfigs.style import color
from theory import closed_forms, theorems

BOUNDED = ("thm1_minority", "thm1_balanced", "thm2_minority")
COMPARISONS = ("thm1_minority", "thm1_balanced", "thm2_minority", "thm2_balanced")
# The flow each comparison sets against SpecGF, and its legend text.
BASELINE = {"thm1_minority": "GF", "thm1_balanced": "GF", "thm2_minority": "NGF", "thm2_balanced": "NGF"}
COMPARISON_LABEL = {"thm1_minority": "GF, minority", "thm1_balanced": "GF, balanced",
                    "thm2_minority": "NGF, minority", "thm2_balanced": "NGF, balanced"}


@dataclass(frozen=True)
class Config:
    mu: float = 1.0
    sigma: float = 1.0
    priors: tuple = (0.5, 0.46, 0.04)   # p_m = 0.04 <= 1/(5 + 18): admissible
    n_t: int = 200
    # Admissible grid: p_m = fraction * bound; the other classes share 1 - p_m uniformly or ~ 1/c.
    grid_mu: tuple = (1.0, 1.5, 2.0, 3.0)
    grid_sigma: tuple = (0.5, 1.0, 2.0)
    grid_k_factor: tuple = (1, 2, 5)      # k = factor * ceil(3 mu)
    grid_pm_fraction: tuple = (1.0, 0.3, 0.05)
    # Violations, one assumption at a time.
    small_mu: tuple = (0.25, 0.5, 0.75)
    big_mu_small_k: tuple = ((2.0, 3), (2.0, 5), (3.0, 3), (3.0, 6), (5.0, 3), (5.0, 10))
    pm_over_bound: tuple = (2.0, 5.0, 20.0)
    # Map over (mu, p_m / bound) at sigma = map_sigma, k = map_k.
    map_sigma: float = 1.0
    map_k: int = 6
    map_n: int = 16


FULL = Config(grid_mu=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0), grid_sigma=(0.25, 0.5, 1.0, 2.0, 4.0),
              grid_k_factor=(1, 2, 4, 10), grid_pm_fraction=(1.0, 0.5, 0.2, 0.05, 0.01), map_n=30, n_t=400)
QUICK = Config()
SMOKE = dataclasses.replace(QUICK, grid_mu=(1.0,), grid_sigma=(1.0,), grid_k_factor=(1,), grid_pm_fraction=(1.0,),
                            small_mu=(0.5,), big_mu_small_k=((3.0, 3),), pm_over_bound=(5.0,), map_n=3, n_t=40)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def bound(mu: float, sigma: float, k: int) -> float:
    return 1.0 / (5.0 * mu**2 / sigma**2 + 6.0 * k)


def priors_with_minority(k: int, p_m: float, shape: str) -> np.ndarray:
    """One minority class of prior p_m; the other k - 1 share 1 - p_m uniformly or ~ 1/c.

    p_m must not exceed the smallest of the others (so that class k is the minority).
    """
    w = np.ones(k - 1) if shape == "uniform" else 1.0 / np.arange(1, k)
    rest = (1.0 - p_m) * w / w.sum()
    return np.append(rest, p_m)


def _settings(cfg: Config):
    """(group, mu, sigma, p) for the admissible grid and each violation group."""
    out = []
    for mu, sigma, kf, frac, shape in itertools.product(cfg.grid_mu, cfg.grid_sigma, cfg.grid_k_factor,
                                                        cfg.grid_pm_fraction, ("uniform", "inverse")):
        k = int(kf * np.ceil(3 * mu))
        p = priors_with_minority(k, frac * bound(mu, sigma, k), shape)
        if p[:-1].min() >= p[-1]:
            out.append(("admissible", mu, sigma, p))
    for mu, sigma, shape in itertools.product(cfg.small_mu, cfg.grid_sigma, ("uniform", "inverse")):
        out.append(("mu < 1", mu, sigma, priors_with_minority(3, bound(mu, sigma, 3), shape)))
    for (mu, k), sigma, shape in itertools.product(cfg.big_mu_small_k, cfg.grid_sigma, ("uniform", "inverse")):
        out.append(("k < 3 mu", mu, sigma, priors_with_minority(k, bound(mu, sigma, k), shape)))
    for mu, sigma, f in itertools.product(cfg.grid_mu, cfg.grid_sigma, cfg.pm_over_bound):
        k = int(np.ceil(3 * mu))
        p_m = f * bound(mu, sigma, k)
        if p_m <= 1.0 / k:  # beyond 1/k the "minority" would not be the smallest class
            out.append(("p_m > bound", mu, sigma, priors_with_minority(k, p_m, "uniform")))
    return out


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    p = np.asarray(cfg.priors, float)
    mu, sigma = cfg.mu, cfg.sigma
    ref = theorems.theorem_ratios(mu, sigma, p, cfg.n_t)
    m = int(np.argmin(p))
    s_yx, s_xx = mu * p, mu**2 * p + sigma**2
    t_star = s_yx[m] / s_xx[m]
    t = theorems.time_grid(t_star, cfg.n_t)
    losses = theorems.loss_paths(mu, sigma, p, t)
    series = {}
    for name, lab in (("gf", "GF"), ("ngf", "NGF"), ("specgf", "SpecGF")):
        series[f"{lab} minority loss"] = {"x": t / t_star, "y": losses[name][:, m], "method": lab,
                                          "panel": "minority loss", "label": lab}
        series[f"{lab} balanced loss"] = {"x": t / t_star, "y": losses[name].mean(axis=1), "method": lab,
                                          "panel": "balanced loss", "label": lab}
    spec = losses["specgf"]
    for key, base, which in (("thm1_minority", "gf", "m"), ("thm1_balanced", "gf", "bal"),
                             ("thm2_minority", "ngf", "m"), ("thm2_balanced", "ngf", "bal")):
        gap = (losses[base][:, m] - spec[:, m]) if which == "m" else (losses[base].mean(1) - spec.mean(1))
        series[f"ratio {key}"] = {"x": t / t_star, "y": gap / (mu * t), "method": key, "panel": "ratios",
                                  "label": COMPARISON_LABEL[key], "baseline": BASELINE[key]}
    # Gradient spectrum past t* up to the majority's saturation, where SpecGF's G vanishes.
    ts = np.linspace(0, 1.2 * (s_yx / s_xx).max(), 200)
    for lab, alpha in (("GF", closed_forms.gd_flow(s_xx, s_yx, ts[:, None])),
                       ("SpecGF", closed_forms.spec_flow(s_yx / s_xx, ts[:, None]))):
        sv = np.sort(np.abs(s_xx * alpha - s_yx), axis=1)[:, ::-1]
        for i in range(p.size):
            series[f"{lab} singular value {i + 1}"] = {"x": ts / t_star, "y": sv[:, i], "method": lab,
                                                       "panel": "gradient spectrum", "label": lab, "index": i + 1}

    rows = []
    for group, g_mu, g_sigma, g_p in _settings(cfg):
        r = theorems.theorem_ratios(g_mu, g_sigma, g_p, cfg.n_t)
        rows.append({"group": group, "mu": g_mu, "sigma": g_sigma, "k": len(g_p), "p_m": float(g_p[-1]),
                     "assumptions_hold": r.assumptions["all"], **r.ratios})
    groups = ["admissible", "mu < 1", "k < 3 mu", "p_m > bound"]
    summary = {}
    for g in groups:
        sel = [r for r in rows if r["group"] == g]
        summary[g] = {"n": len(sel)}
        for c in COMPARISONS:
            vals = np.array([r[c] for r in sel])
            summary[g][f"min {c}"] = float(vals.min()) if len(vals) else None
            const = theorems.CONSTANTS[c]
            if const is not None:
                summary[g][f"fails {c}"] = int(np.sum(vals < const))
    for c in COMPARISONS:
        series[f"group min {c}"] = {"x": list(range(len(groups))), "y": [summary[g][f"min {c}"] for g in groups],
                                    "method": c, "panel": "group minima", "label": COMPARISON_LABEL[c],
                                    "baseline": BASELINE[c], "groups": groups}
    if not all(r["assumptions_hold"] for r in rows if r["group"] == "admissible"):
        raise RuntimeError("the admissible grid contains a setting that violates the assumptions")

    mus = np.geomspace(0.3, 4.0, cfg.map_n)
    fracs = np.geomspace(0.05, 5.0, cfg.map_n)
    heat = np.full((fracs.size, mus.size), np.nan)
    for j, g_mu in enumerate(mus):
        for i, f in enumerate(fracs):
            p_m = f * bound(g_mu, cfg.map_sigma, cfg.map_k)
            g_p = priors_with_minority(cfg.map_k, p_m, "uniform")
            if g_p[:-1].min() >= p_m:
                r = theorems.theorem_ratios(g_mu, cfg.map_sigma, g_p, cfg.n_t).ratios
                heat[i, j] = min(r[c] / theorems.CONSTANTS[c] for c in BOUNDED)

    adm = summary["admissible"]
    claims = [
        at_least(f"{c}_admissible_min", f"min over {adm['n']} admissible settings and t in (0, t*] of gap/(mu t) "
                 f"for {c.replace('_', ' ')} (relayed constant {theorems.CONSTANTS[c]:g})",
                 adm[f"min {c}"], theorems.CONSTANTS[c])
        for c in BOUNDED
    ]
    claims += [
        at_least(f"{c}_reference", f"gap/(mu t) min over (0, t*] at the reference setting mu={mu:g}, sigma={sigma:g}, "
                 f"p={tuple(cfg.priors)}", ref.ratios[c], theorems.CONSTANTS[c])
        for c in BOUNDED
    ]
    notes = [f"Thm 2 balanced: no relayed constant; min ratio {adm['min thm2_balanced']:.3f} on the admissible grid, "
             f"{ref.ratios['thm2_balanced']:.3f} at the reference setting."]
    for g in groups[1:]:
        s = summary[g]
        fails = ", ".join(f"{c}: {s[f'fails {c}']}/{s['n']} fail (min {s[f'min {c}']:.3f})" for c in BOUNDED)
        notes.append(f"{g}: {fails}")
    return {
        "params": {"mu": mu, "sigma": sigma, "k": int(p.size), "priors": list(cfg.priors), "t_star": t_star,
                   "assumptions": ref.assumptions, "n_t": cfg.n_t, "constants": theorems.CONSTANTS,
                   "map_sigma": cfg.map_sigma, "map_k": cfg.map_k,
                   "grid": {"mu": cfg.grid_mu, "sigma": cfg.grid_sigma, "k_factor": cfg.grid_k_factor,
                            "pm_fraction_of_bound": cfg.grid_pm_fraction, "prior_shapes": ["uniform", "1/c"]}},
        "series": series,
        "claims": claims,
        "tables": {"reference_ratios": ref.ratios, "groups": summary, "settings": rows,
                   "map": {"mu": mus, "pm_over_bound": fracs, "worst_ratio_over_constant": heat}},
        "notes": notes,
    }


def plot(result: dict):
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    p, s = result["params"], result["series"]
    fig, axes = plt.subplots(2, 3, figsize=(7.4, 5.0))
    loss_axes = {"minority loss": axes[0, 0], "balanced loss": axes[0, 1]}
    ratio_styles = dict(zip(COMPARISONS, ["-", "-.", "--", ":"]))
    sv_styles = ["-", "--", ":"]
    for d in s.values():
        if d["panel"] in loss_axes:
            loss_axes[d["panel"]].plot(d["x"], d["y"], color=color(d["method"]), label=d["label"],
                                       ls="--" if d["method"] == "NGF" else "-")
        elif d["panel"] == "ratios":
            ls = ratio_styles[d["method"]]
            line, = axes[0, 2].plot(d["x"], d["y"], ls, color=color(d["baseline"]), label=d["label"])
            const = p["constants"][d["method"]]
            if const is not None:
                axes[0, 2].axhline(const, color=line.get_color(), ls=ls, lw=0.7, alpha=0.7)
        elif d["panel"] == "gradient spectrum":
            axes[1, 0].plot(d["x"], d["y"], color=color(d["method"]), ls=sv_styles[(d["index"] - 1) % 3],
                            label=d["label"] if d["index"] == 1 else None)
    for panel, ax in loss_axes.items():
        ax.set_xlabel(r"time $t/t^*$")
        ax.set_ylabel(panel)
        ax.set_title(f"{panel.capitalize().replace('loss', 'test loss')}")
    axes[0, 0].legend(frameon=False)
    ax = axes[0, 2]
    ax.set_xlabel(r"time $t/t^*$")
    ax.set_ylabel(r"gap / ($\mu t$)")
    ax.set_title("Gap ratios (thin: relayed constants)")
    ax.set_ylim(0, 1.4)
    ax.legend(frameon=False, fontsize=6, ncol=2, loc="upper center")
    ax = axes[1, 0]
    ax.axvline(1.0, color="0.5", lw=0.7)
    ax.set_xlabel(r"time $t/t^*$")
    ax.set_ylabel(r"singular values of $\nabla L(W_t)$")
    ax.set_title("Gradient spectrum")
    ax.legend(frameon=False)
    ax = axes[1, 1]
    mp = result["tables"]["map"]
    heat = np.array([[np.nan if v is None else v for v in row] for row in mp["worst_ratio_over_constant"]], float)
    mus, fr = np.asarray(mp["mu"]), np.asarray(mp["pm_over_bound"])
    finite = heat[np.isfinite(heat)]
    lo, hi = (min(finite.min(), 0.9), max(finite.max(), 1.1)) if finite.size else (0.0, 2.0)
    im = ax.pcolormesh(mus, fr, heat, shading="nearest", cmap="RdBu", norm=TwoSlopeNorm(1.0, lo, hi))
    if finite.size and lo < 1.0 < hi and heat.shape[0] > 1 and heat.shape[1] > 1:
        ax.contour(mus, fr, heat, levels=[1.0], colors="k", linewidths=1.0)
    k = p["map_k"]
    ax.add_patch(plt.Rectangle((1.0, fr.min()), k / 3.0 - 1.0, 1.0 - fr.min(), fill=False, ec="gold", lw=1.5,
                               label="assumptions hold"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([0.3, 1, 2, 4])
    ax.set_xticklabels(["0.3", "1", "2", "4"])
    ax.minorticks_off()
    ax.set_xlabel(r"$\mu$ ($\sigma$=%g, k=%d)" % (p["map_sigma"], k))
    ax.set_ylabel(r"$p_m$ / (1/(5 SNR + 6k))")
    ax.set_title("Worst ratio / constant (black: = 1)")
    ax.legend(frameon=False, loc="lower left", fontsize=6.5)
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax = axes[1, 2]
    width = 0.2
    bars = [d for d in s.values() if d["panel"] == "group minima"]
    for i, d in enumerate(bars):
        xs = np.asarray(d["x"], float) + (i - (len(bars) - 1) / 2) * width
        ax.bar(xs, [np.nan if y is None else y for y in d["y"]], width, color=color(d["baseline"]),
               alpha=[1.0, 0.55, 0.8, 0.35][i % 4], label=d["label"])
    groups = bars[0]["groups"]
    for const, ls in ((0.25, ":"), (0.5, "--")):
        ax.axhline(const, color="k", lw=0.7, ls=ls)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups, rotation=20, fontsize=7)
    ax.set_ylabel(r"min gap / ($\mu t$)")
    ax.set_title("Min ratio per group of settings")
    ax.legend(frameon=False, fontsize=6)
    fig.suptitle(r"Theorems 1-2 at $\mu$=%g, $\sigma$=%g, p=%s, and sweeps" % (p["mu"], p["sigma"], tuple(p["priors"])))
    fig.tight_layout()
    return fig
