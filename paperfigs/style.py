"""One colour per method, used by every figure, and the shared matplotlib look."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Method families share a hue across discrete/continuous/stochastic variants so that, e.g.,
# GD, GF and SGD read as "the Euclidean method" in every figure.
_PALETTE = {
    "euclid": "#4C72B0",   # GD / GF / SGD
    "normed": "#DD8452",   # NGD / NGF / NMD
    "sign": "#55A868",     # SignGD / Signum
    "adam": "#8C8C8C",     # Adam / AdamW
    "spectral": "#C44E52", # SpecGD / SpecGF
    "muon": "#8172B3",     # Muon
    "shampoo": "#937860",  # Shampoo
    "tnt": "#DA8BC3",      # TNT
    "kfac": "#64B5CD",     # KFAC
    "splus": "#222222",    # SPlus
}
METHOD_COLORS: dict[str, str] = {
    "GD": _PALETTE["euclid"], "GF": _PALETTE["euclid"], "SGD": _PALETTE["euclid"],
    "SGD-m": _PALETTE["euclid"], "sgd": _PALETTE["euclid"],
    "NGD": _PALETTE["normed"], "NGF": _PALETTE["normed"], "NMD": _PALETTE["normed"], "nmd": _PALETTE["normed"],
    "SignGD": _PALETTE["sign"], "Signum": _PALETTE["sign"], "signum": _PALETTE["sign"],
    "Adam": _PALETTE["adam"], "AdamW": _PALETTE["adam"], "adam": _PALETTE["adam"], "adamw": _PALETTE["adam"],
    "SpecGD": _PALETTE["spectral"], "SpecGF": _PALETTE["spectral"], "specgd": _PALETTE["spectral"],
    "Muon": _PALETTE["muon"], "muon": _PALETTE["muon"],
    # Muon with the head a Muon matrix too, where a figure draws it in its own colour (9, 14)
    "muon_head": "#4B3F8C", "Muon (incl. head)": "#4B3F8C",
    "Shampoo": _PALETTE["shampoo"], "shampoo": _PALETTE["shampoo"],
    "TNT": _PALETTE["tnt"], "tnt": _PALETTE["tnt"],
    "KFAC": _PALETTE["kfac"], "kfac": _PALETTE["kfac"],
    "SPlus": _PALETTE["splus"], "splus": _PALETTE["splus"],
}
# Display names for registry keys, so legends read the same everywhere.
DISPLAY_NAMES = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "specgd": "SpecGD", "muon": "Muon",
    "nmd": "NMD", "signum": "Signum", "shampoo": "Shampoo", "tnt": "TNT", "kfac": "KFAC",
    "splus": "SPlus",
}


def color(method: str) -> str:
    """Colour of a method (a registry key or a display name); unknown names fall back to black."""
    return METHOD_COLORS.get(method, METHOD_COLORS.get(method.split()[0], "#000000"))


def display(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def band(ax, series: dict, color: str, scale: float = 1.0, alpha: float = 0.15) -> None:
    """Shade a series' min..max band over seeds (its y_lo / y_hi; None where no seed has a value)."""
    lo = [math.nan if v is None else scale * v for v in series["y_lo"]]
    hi = [math.nan if v is None else scale * v for v in series["y_hi"]]
    ax.fill_between(series["x"], lo, hi, color=color, alpha=alpha, linewidth=0)


def apply_style() -> None:
    """Sizes readable at paper column width (figures are saved at about 7 x 3 inches)."""
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9,
        "axes.labelsize": 9, "legend.fontsize": 7.5, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.linewidth": 1.5,
    })
