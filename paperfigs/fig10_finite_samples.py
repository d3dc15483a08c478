"""Figure 10: finite samples and random init against the population predictions (Prop. 1).

DM (k = 3, d = 10, rotated orthonormal means, p = (0.5, 0.3, 0.2)), linear model, squared
loss on n samples drawn with exact-rounding class counts, W(0) with i.i.d. N(0, init^2)
entries. Methods: SpecGD (exact truncated SVD) and Muon with beta = 0.9 under three polar
factors: exact (truncated SVD), five classic Newton-Schulz steps (NS), five Polar Express steps
(per-step minimax quintics, theory.polar_express). Through alpha_c(t) = e_c^T W v_c:
    pre-saturation window: t <= t_1 = ceil(alpha*_m / lr) (Prop. 1's regime: every entry is lr t);
    deviation from the population run: max_c max_t |alpha_c - alpha_c^pop| of the same method
        run on the population moments from W = 0 (pre-saturation and over the whole run);
    departure from SpecGD: max_c max_{t <= t_1} |alpha_c^Muon - alpha_c^SpecGD| / alpha*_m, both on
        the same sample and init.

Why NS Muon departs, and what its band predicts: Newton-Schulz maps each normalised singular
value x = s / ||M||_F of the momentum through a composed quintic P, so component c moves by
lr P(x_c) per step instead of lr. For x in [BAND_LOWER, 1] P lies in a band [lo, hi]
(theory.algorithms.singular_value_band: classic about [0.68, 1.20], Polar Express [0.87, 1.12],
exact [1, 1]); over t_1 steps a component can then drift from lr t by at most
    band bound = max(1 - lo, hi - 1) lr t_1 / alpha*_m   (relative to alpha*_m),
and the majority can move at most hi / lo times faster than the minority.

Claims (definitions fixed before the runs that judge them):
- specgd_deviation_shrinks_with_n, specgd_deviation_small: finite-n SpecGD against its population
  run (whole run): the seed-mean deviation falls at every step of n (value = the largest change of
  the mean from one n to the next, holds when its interval lies below 0), and at the largest n it
  is within one step lr (mean over draws, interval below lr).
- {exact,ns,polar_express}_muon_presaturation_deviation_shrinks: the first for each Muon, pre-saturation.
- exact_muon_follows_prop1_until_saturation (<= 1e-9), {ns,polar_express}_muon_close_to_prop1_until_saturation
  (<= 10% of alpha*_m): population Muon against the Prop. 1 path lr t, pre-saturation.
- {exact,ns,polar_express}_muon_tracks_specgd: departure from SpecGD at the largest n, per seed,
  mean with a 95% interval over paired seeds; holds when the interval lies below 10% of alpha*_m.
- {ns,polar_express}_muon_departure_within_band: the same per-seed departures against that
  variant's band bound (holds when the interval lies below it): is the departure what the band
  predicts?
CHANGES (2026-12): Muon (Polar Express) added, with its claims; the *_tracks_specgd and
*_departure_within_band claims are new (the population *_close_to_prop1 claims, 10% threshold,
are unchanged): the NS claim failed because NS's singular values are not 1, so the figure now
asks whether the exact-polar and Polar Express variants track SpecGD and whether NS's departure
is the one its band allows.
CHANGES (2026-12-03): the *_shrinks and specgd_deviation_small claims carry a 95% interval over
the draws, as every other claim (the issue's protocol; they were judged on seed means alone). The
quantity each judges is unchanged; "decreases with n" is now read as "the largest step-to-step
change of the mean is below 0", which is the same event for the means, with an interval. Draws at
different n are independent, so pairing them by index gives the paired t-interval of independent
differences (valid, not narrower). Decided before the run that judges it; the draws are unchanged.
Quick drops against full: n = 300000 and 7 of the 10 seeds (3 seeds keep the intervals).
No "paper" configuration: the paper's relayed settings (k, d, p, beta = 0.9) are those of full, and
its sample sizes and step counts are not relayed, so there is no larger setting to match.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from paperfigs.claims import at_most, paired, verdict
from paperfigs.style import color
from theory import algorithms, closed_forms, models
from theory.data_model import DataModel, empirical_moments


@dataclass(frozen=True)
class Variant:
    key: str          # the series' "method"
    label: str
    algorithm: str    # theory.algorithms.run_discrete method
    polar: str        # theory.algorithms.POLARS
    marker: str | None


VARIANTS = (
    Variant("specgd", "SpecGD", "specgd", "svd", None),
    Variant("muon_exact", "Muon (exact polar)", "muon", "svd", None),
    Variant("muon_ns", "Muon (Newton-Schulz)", "muon", "ns", "."),
    Variant("muon_polar_express", "Muon (Polar Express)", "muon", "polar_express", "x"),
)
MUONS = [v for v in VARIANTS if v.algorithm == "muon"]
CLAIM_PREFIX = {"svd": "exact", "ns": "ns", "polar_express": "polar_express"}
TRACKING_THRESHOLD = 0.10  # departure from SpecGD / Prop. 1, relative to alpha*_m


@dataclass(frozen=True)
class Config:
    mu: float = 1.0
    sigma: float = 1.0
    priors: tuple = (0.5, 0.3, 0.2)
    d: int = 10
    lr: float = 0.01
    steps: int = 80
    beta: float = 0.9
    init: float = 1e-4
    ns: tuple = (300, 3000, 30000)
    seeds: int = 3


FULL = Config(ns=(300, 3000, 30000, 300000), seeds=10)
QUICK = Config()
SMOKE = dataclasses.replace(QUICK, ns=(100, 1000), seeds=2, steps=30)
CONFIGS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def _runner(sigma_xx, sigma_yx, v, lr, steps, beta):
    grads = algorithms.product_gradient(lambda w: models.population_grad(w, sigma_xx, sigma_yx))
    record = lambda fs: models.diagonal(models.product(fs), v)  # noqa: E731

    def run(w0, variant: Variant):
        return algorithms.run_discrete(grads, [w0], variant.algorithm, lr, steps, record, beta=beta,
                                       how=variant.polar)
    return run


def band_table(pop: dict, prop1: np.ndarray, star: np.ndarray, lr: float, t1: int, majority: int,
               minority: int) -> dict:
    """Per Muon variant: its band, the per-step speeds it produced before the first saturation on
    the population run, the majority/minority speed-up, and the departure the band allows."""
    rows = {}
    for v in MUONS:
        lo, hi = algorithms.singular_value_band(v.polar)
        speed = np.diff(pop[v.key], axis=0)[:t1] / lr                      # (t1, k), steps 1..t1
        rows[v.key] = {
            "band": [lo, hi], "band_lower_input": algorithms.BAND_LOWER,
            "speed_min": float(speed.min()), "speed_max": float(speed.max()),
            "mean_speed_per_class": speed.mean(axis=0).tolist(),
            "majority_over_minority_speedup": float(speed[:, majority].mean() / speed[:, minority].mean()),
            "speedup_allowed_by_band": hi / lo,
            "departure_from_prop1": float(np.abs(pop[v.key] - prop1)[:t1 + 1].max() / star.min()),
            "band_bound": max(1 - lo, hi - 1) * lr * t1 / star.min(),
        }
    return rows


def compute(mode: str, seed: int, device: str, ctx=None) -> dict:
    cfg = CONFIGS[mode]
    dm = DataModel(cfg.mu, cfg.sigma, cfg.priors, cfg.d, basis_seed=seed)
    v, star = dm.directions(), dm.alpha_star()
    t = np.arange(cfg.steps + 1)
    t1 = int(np.ceil(star.min() / cfg.lr))
    prop1 = closed_forms.spec_discrete(star, cfg.lr, t[:, None])
    pop_run = _runner(dm.sigma_xx(), dm.sigma_yx(), v, cfg.lr, cfg.steps, cfg.beta)
    pop = {var.key: pop_run(np.zeros((dm.k, dm.d)), var) for var in VARIANTS}
    bands = band_table(pop, prop1, star, cfg.lr, t1, dm.majority, dm.minority)

    series = {}
    for c in range(dm.k):
        series[f"Prop. 1 c={c + 1}"] = {"x": t, "y": prop1[:, c], "method": "prop1", "panel": "trajectories",
                                        "label": "Prop. 1", "class": c + 1}
    for var in MUONS:
        speed = np.diff(pop[var.key], axis=0) / cfg.lr
        for c in range(dm.k):
            series[f"{var.label} population speed c={c + 1}"] = {
                "x": t[1:], "y": speed[:, c], "method": var.key, "panel": "speeds",
                "label": f"{var.label}, band [{bands[var.key]['band'][0]:.2f}, {bands[var.key]['band'][1]:.2f}]",
                "class": c + 1}
    shape = (len(cfg.ns), cfg.seeds)
    dev_pre = {var.key: np.zeros(shape) for var in VARIANTS}
    dev_run = {var.key: np.zeros(shape) for var in VARIANTS}
    departure = {var.key: np.zeros(shape) for var in MUONS}
    rngs = np.random.default_rng(seed).spawn(len(cfg.ns) * cfg.seeds)
    for i, n in enumerate(cfg.ns):
        for s in range(cfg.seeds):
            rng = rngs[i * cfg.seeds + s]
            x, y = dm.sample(n, rng, counts="exact")
            syx, sxx = empirical_moments(x, y, dm.k)
            run = _runner(sxx, syx, v, cfg.lr, cfg.steps, cfg.beta)
            w0 = models.random_init([(dm.k, dm.d)], cfg.init, rng)[0]
            trajs = {var.key: run(w0, var) for var in VARIANTS}
            for var in VARIANTS:
                err = np.abs(trajs[var.key] - pop[var.key])
                dev_pre[var.key][i, s] = err[:t1 + 1].max()
                dev_run[var.key][i, s] = err.max()
                if var.algorithm == "muon":
                    gap = np.abs(trajs[var.key] - trajs["specgd"])[:t1 + 1].max()
                    departure[var.key][i, s] = gap / star.min()
                if s == 0 and i in (0, len(cfg.ns) - 1):
                    panel = "specgd trajectories" if var.key == "specgd" else "muon trajectories"
                    for c in range(dm.k):
                        series[f"{var.label} n={n} c={c + 1}"] = {
                            "x": t, "y": trajs[var.key][:, c], "method": var.key, "panel": panel,
                            "label": f"{var.label}, n={n}", "class": c + 1, "n": n}
    ns = list(cfg.ns)
    for var in VARIANTS:
        for window, dev in (("pre-saturation", dev_pre[var.key]), ("whole run", dev_run[var.key])):
            series[f"{var.label} deviation {window}"] = {
                "x": ns, "y": dev.mean(axis=1), "y_lo": dev.min(axis=1), "y_hi": dev.max(axis=1),
                "method": var.key, "panel": "deviation", "label": f"{var.label}, {window}", "window": window}

    def worst_step(*rows):
        # The largest change of the seed-mean deviation from one n to the next: below 0 exactly
        # when the mean deviation decreases at every step of n.
        return float(max(np.mean(b - a) for a, b in zip(rows[:-1], rows[1:])))

    def shrinks(name, label, dev, window):
        means = np.round(dev.mean(axis=1), 4).tolist()
        return paired(name, f"{label}: seed-mean max deviation from its population run ({window}) decreases "
                      f"at every step of n ({means} for n={ns}): value = the largest change of the mean from "
                      f"one n to the next, below 0 ({cfg.seeds} independent draws per n, paired by index)",
                      list(dev), 0.0, "<=", statistic=worst_step, strict=True)

    claims = [
        shrinks("specgd_deviation_shrinks_with_n", "SpecGD", dev_run["specgd"], "whole run"),
        paired("specgd_deviation_small",
               f"SpecGD: max deviation over the whole run at n={ns[-1]} within one step lr (mean over "
               f"{cfg.seeds} draws)", [dev_run["specgd"][-1]], cfg.lr, "<="),
    ]
    for var in MUONS:
        claims.append(shrinks(f"{CLAIM_PREFIX[var.polar]}_muon_presaturation_deviation_shrinks",
                              f"{var.label}, beta={cfg.beta:g}", dev_pre[var.key], "pre-saturation"))
    claims.append(at_most("exact_muon_follows_prop1_until_saturation",
                          f"population Muon (exact polar, beta={cfg.beta:g}) equals the Prop. 1 path lr t up to "
                          "the first saturation (max |alpha - lr t|)",
                          float(np.abs(pop["muon_exact"] - prop1)[:t1 + 1].max()), 1e-9))
    for var in MUONS[1:]:
        claims.append(at_most(f"{CLAIM_PREFIX[var.polar]}_muon_close_to_prop1_until_saturation",
                              f"population {var.label}: max deviation from Prop. 1 before the first saturation, "
                              f"relative to alpha*_m (threshold {TRACKING_THRESHOLD:.0%})",
                              bands[var.key]["departure_from_prop1"], TRACKING_THRESHOLD))
    for var in MUONS:
        claims.append(paired(
            f"{CLAIM_PREFIX[var.polar]}_muon_tracks_specgd",
            f"{var.label}, beta={cfg.beta:g}, n={ns[-1]}, random init: max departure from SpecGD (same sample "
            f"and init) before the first saturation, relative to alpha*_m, below {TRACKING_THRESHOLD:.0%} "
            f"({cfg.seeds} seeds)", [departure[var.key][-1]], TRACKING_THRESHOLD, "<="))
    for var in MUONS[1:]:
        b = bands[var.key]
        claims.append(paired(
            f"{CLAIM_PREFIX[var.polar]}_muon_departure_within_band",
            f"{var.label}: the same departures against what its singular-value band "
            f"[{b['band'][0]:.3f}, {b['band'][1]:.3f}] allows over t_1 = {t1} steps, "
            "max(1 - lo, hi - 1) lr t_1 / alpha*_m", [departure[var.key][-1]], b["band_bound"], "<="))
    departures = {var.key: {"n": ns, "mean": departure[var.key].mean(axis=1).tolist(),
                            "per_seed": departure[var.key].tolist()} for var in MUONS}
    notes = [f"after saturation population Muon (exact) departs from Prop. 1 by up to "
             f"{np.abs(pop['muon_exact'] - prop1).max():.3f} (momentum overshoots the bounce); "
             f"SpecGD's bounce has amplitude lr = {cfg.lr:g}."]
    for var in MUONS[1:]:
        b = bands[var.key]
        notes.append(f"{var.label}: per-step speeds {b['speed_min']:.3f}..{b['speed_max']:.3f} within its band "
                     f"[{b['band'][0]:.3f}, {b['band'][1]:.3f}]; majority/minority speed-up "
                     f"{b['majority_over_minority_speedup']:.3f} (band allows {b['speedup_allowed_by_band']:.3f}); "
                     f"departure from Prop. 1 {b['departure_from_prop1']:.3f} of alpha*_m (band allows "
                     f"{b['band_bound']:.3f}).")
    return {
        "params": {"n": ns, "init_scale": cfg.init, "beta": cfg.beta, "lr": cfg.lr, "steps": cfg.steps,
                   "mu": cfg.mu, "sigma": cfg.sigma, "priors": list(cfg.priors), "d": cfg.d, "k": dm.k,
                   "seeds": cfg.seeds, "alpha_star": star, "first_saturation_step": t1,
                   "class_counts": "exact rounding", "ns_steps": algorithms.NS_STEPS,
                   "ns_coefficients": list(algorithms.NS_COEFFS),
                   "polar_express_coefficients": [list(p) for p in algorithms.ns_schedule("polar_express")],
                   "methods": {var.key: var.label for var in VARIANTS}},
        "series": series,
        "claims": claims,
        "tables": {"bands": bands, "departure_from_specgd": departures},
        "notes": notes,
    }


def plot(result: dict):
    import matplotlib.pyplot as plt

    p, series = result["params"], list(result["series"].values())
    ns = p["n"]
    markers = {v.key: v.marker for v in VARIANTS}
    shade = {v.key: a for v, a in zip(MUONS, (1.0, 0.75, 0.5))} | {"specgd": 1.0}
    styles = ["-", "--", ":"]
    fig, axes = plt.subplots(2, 2, figsize=(7.4, 5.4))
    for ax, panel in ((axes[0, 0], "specgd trajectories"), (axes[0, 1], "muon trajectories")):
        for s in series:
            if s["panel"] == "trajectories":
                ax.plot(s["x"], s["y"], styles[s["class"] - 1], color="k", lw=0.8,
                        label=s["label"] if s["class"] == 1 else None)
            # Muon's panel shows the largest n only: three variants at two n would hide the lines.
            elif s["panel"] == panel and (panel == "specgd trajectories" or s["n"] == ns[-1]):
                faint = panel == "specgd trajectories" and s["n"] == ns[0]
                ax.plot(s["x"], s["y"], styles[s["class"] - 1], color=color("Muon" if s["method"] != "specgd"
                                                                            else "SpecGD"),
                        alpha=0.45 if faint else shade[s["method"]], lw=1.0, marker=markers[s["method"]], ms=2.5,
                        markevery=4, label=s["label"] if s["class"] == 1 else None)
        ax.set_xlabel("iteration t")
        # Empty corners: upper left for SpecGD (slope lr), lower right once Muon has saturated.
        ax.legend(frameon=False, fontsize=6, loc="upper left" if panel == "specgd trajectories" else "lower right")
    axes[0, 0].set_ylabel(r"$\alpha_c(t)$")
    axes[0, 0].set_title(f"SpecGD, init scale {p['init_scale']:g}")
    axes[0, 1].set_title(f"Muon, beta={p['beta']:g}, n={ns[-1]}")
    ax = axes[1, 0]
    for s in series:
        if s["panel"] != "speeds":
            continue
        ax.plot(s["x"], s["y"], styles[s["class"] - 1], color=color("Muon"), alpha=shade[s["method"]], lw=1.0,
                marker=markers[s["method"]], ms=2.5, label=s["label"] if s["class"] == 1 else None)
    for key, band in ((k, b["band"]) for k, b in result["tables"]["bands"].items() if k != "muon_exact"):
        for edge in band:
            ax.axhline(edge, color=color("Muon"), alpha=shade[key], lw=0.6, ls="-.")
    # Before the first saturation, the regime the band speaks about (after it the steps change sign).
    ax.set_xlim(0.5, p["first_saturation_step"] + 0.5)
    ax.set_ylim(0.55, 1.3)
    ax.set_xlabel("iteration t (up to the first saturation)")
    ax.set_ylabel(r"step of $\alpha_c$ / lr")
    ax.set_title("Population Muon: per-class speed (dash-dot: band)")
    ax.legend(frameon=False, fontsize=5.5, loc="lower left")
    ax = axes[1, 1]
    dev_marker = {"specgd": "o", "muon_exact": "s", "muon_ns": "^", "muon_polar_express": "D"}
    for s in series:
        if s["panel"] != "deviation":
            continue
        ax.errorbar(s["x"], s["y"], yerr=[np.subtract(s["y"], s["y_lo"]), np.subtract(s["y_hi"], s["y"])],
                    color=color("SpecGD" if s["method"] == "specgd" else "Muon"), alpha=shade[s["method"]],
                    ls="-" if s["window"] == "whole run" else ":", marker=dev_marker[s["method"]], ms=3,
                    capsize=2, lw=1, label=s["label"])
    ax.axhline(p["lr"], color="0.5", lw=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples n")
    ax.set_ylabel("max |alpha - population|")
    ax.set_title("Deviation vs n (grey: lr)")
    ax.legend(frameon=False, fontsize=5, ncol=2)
    fig.tight_layout()
    return fig
