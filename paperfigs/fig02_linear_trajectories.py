"""Figure 2: diagonal entries alpha_c(t) of the population linear model under GD, NGD, SpecGD.

DM with d = k = 3, p = (0.5, 0.3, 0.2), squared loss, W(0) = 0. Trajectories come from the
full-matrix reference (theory.algorithms.run_discrete, SpecGD by truncated SVD); the closed
forms of theory.closed_forms are overlaid (GD: alpha*(1 - (1 - lr s_xx)^t); SpecGD: lr t up to
the overshoot step ceil(alpha*/lr), then a bounce across alpha*).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from paperfigs.claims import at_most, verdict
from paperfigs.style import color
from theory import algorithms, closed_forms, models
from theory.data_model import DataModel
from theory.metrics import first_crossing


@dataclass(frozen=True)
class Config:
    mu: float = 1.0
    sigma: float = 1.0
    priors: tuple = (0.5, 0.3, 0.2)
    lr: float = 0.01
    steps: int = 3000


FULL = Config()
QUICK = dataclasses.replace(FULL, steps=1500)
SMOKE = dataclasses.replace(FULL, steps=200)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}
METHODS = ("gd", "ngd", "specgd")
LABEL = {"gd": "GD", "ngd": "NGD", "specgd": "SpecGD"}


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    dm = DataModel(cfg.mu, cfg.sigma, cfg.priors, d=len(cfg.priors))  # deterministic: no sampling
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    grads = algorithms.product_gradient(lambda w: models.population_grad(w, sxx, syx))
    record = lambda fs: models.diagonal(models.product(fs), v)  # noqa: E731
    t = np.arange(cfg.steps + 1)
    star = dm.alpha_star()
    trajs = {m: algorithms.run_discrete(grads, [np.zeros((dm.k, dm.d))], m, cfg.lr, cfg.steps, record)
             for m in METHODS}
    closed = {"gd": closed_forms.gd_discrete(dm.s_xx(), dm.s_yx(), cfg.lr, t[:, None]),
              "specgd": closed_forms.spec_discrete(star, cfg.lr, t[:, None])}

    series = {}
    for m, traj in trajs.items():
        for c in range(dm.k):
            series[f"{LABEL[m]} c={c + 1}"] = {"x": t, "y": traj[:, c], "method": m, "panel": m,
                                               "label": f"class {c + 1} (p={cfg.priors[c]:g})", "class": c + 1,
                                               "closed_form": False}
            if m in closed:
                series[f"{LABEL[m]} c={c + 1} closed form"] = {"x": t, "y": closed[m][:, c], "method": m, "panel": m,
                                                               "label": "closed form", "class": c + 1,
                                                               "closed_form": True}

    spec = trajs["specgd"]
    sat = first_crossing(spec, star)
    first = int(sat[sat >= 0].min()) if np.any(sat >= 0) else cfg.steps
    spread = float(np.max(np.ptp(spec[:first], axis=1)))
    # GD order by prior: majority ahead both in alpha_c and in the fraction alpha_c / alpha*_c.
    order = np.argsort(-dm.p)
    gd = trajs["gd"][1:]
    # Only while GD is still moving: at convergence all fractions round to exactly 1.
    gd = gd[np.all(np.abs(gd - star) > 1e-9, axis=1)]
    ordered = np.mean(np.all(np.diff(gd[:, order], axis=1) < 0, axis=1)
                      & np.all(np.diff((gd / star)[:, order], axis=1) < 0, axis=1))
    final_dev = max(float(np.max(np.abs(tr[-1] - star))) for tr in trajs.values())
    closed_err = max(float(np.max(np.abs(trajs[m] - closed[m]))) for m in closed)
    claims = [
        at_most("specgd_equal_until_first_saturation",
                "SpecGD's diagonal entries are equal (max spread across classes) until the first saturation",
                spread, 1e-9),
        verdict("specgd_minority_saturates_first",
                f"the first SpecGD entry to saturate is the minority class (saturation steps {sat.tolist()})",
                int(np.argmin(np.where(sat >= 0, sat, np.inf))) == dm.minority and np.all(sat >= 0),
                value=first, threshold=float(np.ceil(star.min() / cfg.lr))),
        at_most("gd_ordered_by_prior",
                "GD's entries (and their fractions of alpha*) are ordered by prior at every step before "
                "convergence: value = 1 - fraction of ordered steps",
                1.0 - ordered, 0.0),
        at_most("all_reach_alpha_star",
                "every method ends within lr of alpha* (max |alpha_c(T) - alpha*_c| over methods)",
                final_dev, cfg.lr),
        at_most("closed_forms_match",
                "max |simulation - closed form| for GD and SpecGD", closed_err, 1e-9),
    ]
    return {
        "params": {"mu": cfg.mu, "sigma": cfg.sigma, "lr": cfg.lr, "priors": list(cfg.priors),
                   "steps": cfg.steps, "d": dm.d, "k": dm.k, "alpha_star": star,
                   "specgd_saturation_steps": sat, "init": "W = 0",
                   "specgd_solver": f"truncated SVD, relative tol {algorithms.SPEC_TOL:g}"},
        "series": series,
        "claims": claims,
    }


def plot(result: dict):
    import matplotlib.pyplot as plt

    p = result["params"]
    star = p["alpha_star"]
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.6), sharey=True)
    styles = ["-", "--", ":"]
    # Normalised methods finish within ~2 alpha*_max / lr steps; GD needs the whole run.
    short = int(2 * np.ceil(max(star) / p["lr"]))
    for ax, m in zip(axes, METHODS):
        t_max = p["steps"] if m == "gd" else min(short, p["steps"])
        every = max(1, t_max // 25)
        for s in result["series"].values():
            if s["panel"] != m:
                continue
            c = s["class"] - 1
            x, y = np.asarray(s["x"][:t_max + 1]), np.asarray(s["y"][:t_max + 1])
            if s["closed_form"]:
                ax.plot(x[::every], y[::every], "o", color="k", ms=1.8, label=s["label"] if c == 0 else None)
            else:
                ax.plot(x, y, styles[c % 3], color=color(LABEL[s["method"]]), label=s["label"])
                ax.axhline(star[c], color="0.6", lw=0.7, ls=styles[c % 3])
        ax.set_xlim(0, t_max)
        ax.set_title(LABEL[m])
        ax.set_xlabel("iteration t")
    axes[0].set_ylabel(r"$\alpha_c(t)=e_c^\top W v_c$")
    axes[0].legend(loc="lower right", frameon=False)
    fig.suptitle(f"Population linear model, p={tuple(p['priors'])}, lr={p['lr']:g} (grey: alpha*)", y=1.02)
    fig.tight_layout()
    return fig
