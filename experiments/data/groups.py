"""Spurious-correlation image datasets with group labels (figures 6 and 8), built from installed files.

Both datasets are binary: a core label y (what the task is about) and a spurious attribute a
that agrees with y on most TRAINING images (a = y) and is independent of y on test images.
Groups are g = 2 y + a, so groups 0 (y=0,a=0) and 3 (y=1,a=1) are the majority groups and
groups 1 (y=0,a=1) and 2 (y=1,a=0) the minority ("conflicting") groups.

Colored digits (from the real MNIST-5k images, experiments.data.images "mnist5k"):
    y = 1 if digit >= 5 else 0; a = colour, red (0) or green (1). An image is (2, 28, 28): the
    digit's strokes in the red channel (a = 0) or the green channel (a = 1). In training exactly
    round((1 - agreement) n_y) images of each label y carry the conflicting colour; in test
    exactly half of each label's images are red, half green (colour at chance), and likewise in
    the validation split. Per digit, test_per_digit images go to test, val_per_digit to
    validation, the rest (360 of MNIST-5k's 500 by default) to training (disjoint). The test
    digits are a pool held out with the fixed seed TEST_POOL_SEED, the same for every seed (their
    colours are drawn per seed); the seed draws validation and training from the other images.

Dominoes (MNIST-5k digits 0/1 over Fashion-MNIST, experiments.data.images "fashion"):
    an image is (1, 56, 28): an MNIST digit (0 or 1: the easy, spurious half, a = digit) on top
    of a Fashion-MNIST item of one of two classes (the core half: y = 0 for fashion_classes[0],
    1 for fashion_classes[1]; default pullover (2) vs coat (4), which a linear probe on raw pixels
    separates only to about 85%, while MNIST 0 vs 1 is near 100%: the spurious half is the far
    easier one, the dominoes premise. Dress (3) vs coat (4), about 95% linearly, was tried first:
    there random features of an untrained MLP already decode to about 0.88 worst-group accuracy). Training: exactly round((1 - agreement) n / 2) images of each
    label carry the conflicting digit. "decode" and test splits are group-balanced (n / 4 per
    group); decode is for retraining the head on frozen features. Fashion items: training and
    decode come from disjoint parts of Fashion-MNIST's train file, test from its t10k file.
    MNIST digits: 20% of each digit's MNIST-5k images are kept for test (a pool held out with the
    fixed seed TEST_POOL_SEED, the same for every seed), the rest pair with training and decode
    items (drawn with replacement: MNIST-5k has only 500 of each digit).

No seed's test split shares a source image with any seed's training or validation / decode split
(tests/test_groups.py::test_test_images_never_in_any_seeds_train_or_val). Until stop 18 each seed
drew its test digits from all of MNIST-5k, so seed 0's test digits were 91, 76 and 62 of the 400
validation images of tuning seeds 1000-1002 (coloured digits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from experiments.data.images import TEST_POOL_SEED, load_raw

N_GROUPS = 4
MINORITY_GROUPS = (1, 2)
GROUP_NAMES = ("y=0,a=0", "y=0,a=1", "y=1,a=0", "y=1,a=1")


def group_ids(y: np.ndarray, a: np.ndarray) -> np.ndarray:
    """g = 2 y + a for binary label y and attribute a; (n,) int64."""
    return (2 * np.asarray(y) + np.asarray(a)).astype(np.int64)


@dataclass(frozen=True)
class GroupSplit:
    """x: (n, c, h, w) float32 in [0, 1]; y, a, g: (n,) int64 label, attribute, group.

    data_source: {dataset: experiments.data.files.source_record} of the files the images came from
    ({} for images the caller passed in), for a figure's params.
    rows: {source: (n,) int64} the row of each image's source image(s) in that source's arrays
    ("mnist5k" for coloured digits or the caller's images, "mnist5k" and "fashion" / "fashion_test"
    for dominoes' top and bottom halves), so a test can check that splits share no source image.
    """
    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    g: torch.Tensor
    data_source: dict = field(default_factory=dict, compare=False)
    rows: dict = field(default_factory=dict, compare=False)

    @classmethod
    def make(cls, x: np.ndarray, y: np.ndarray, a: np.ndarray, data_source: dict | None = None,
             rows: dict | None = None) -> "GroupSplit":
        y, a = np.asarray(y, dtype=np.int64), np.asarray(a, dtype=np.int64)
        return cls(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y),
                   torch.from_numpy(a), torch.from_numpy(group_ids(y, a)), dict(data_source or {}),
                   {k: np.asarray(v, dtype=np.int64) for k, v in (rows or {}).items()})

    def group_counts(self) -> list[int]:
        return np.bincount(self.g.numpy(), minlength=N_GROUPS).tolist()

    def agreement(self) -> float:
        return float((self.y == self.a).double().mean())


def conflicting_attribute(y: np.ndarray, agreement: float, rng: np.random.Generator) -> np.ndarray:
    """a with a = y except for exactly round((1 - agreement) * n_y) random images of each label y."""
    if not 0.5 <= agreement <= 1.0:
        raise ValueError(f"agreement must be in [0.5, 1], got {agreement}")
    a = np.asarray(y, dtype=np.int64).copy()
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        flip = rng.choice(idx, size=int(round((1 - agreement) * len(idx))), replace=False)
        a[flip] = 1 - label
    return a


def chance_attribute(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """a independent of y: exactly half of each label's images (rounded down) get a = 1."""
    a = np.zeros(len(y), dtype=np.int64)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        a[rng.choice(idx, size=len(idx) // 2, replace=False)] = 1
    return a


def colorize(images: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(n, 1, h, w) grey images -> (n, 2, h, w): strokes in channel 0 (red) or 1 (green)."""
    out = np.zeros((len(images), 2) + images.shape[2:], dtype=np.float32)
    out[np.arange(len(images)), colour] = images[:, 0]
    return out


def avg_pool(images: np.ndarray, k: int) -> np.ndarray:
    """(n, c, h, w) -> (n, c, h // k, w // k) means over k x k blocks (k = 1: unchanged)."""
    n, c, h, w = images.shape
    return images[:, :, : h - h % k, : w - w % k].reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))


def colored_digits(seed: int, agreement: float = 0.99, test_per_digit: int = 100, val_per_digit: int = 40,
                   pool: int = 1, images: np.ndarray | None = None, digits: np.ndarray | None = None
                   ) -> tuple[GroupSplit, GroupSplit, GroupSplit]:
    """(train, val, test) colored-digit splits from MNIST-5k (or the given (n, 1, h, w) images, labels).

    val is built like test (colour at chance, group-balanced): it is what learning rates are
    tuned on, so the test split is never looked at before the figure's run. The test digits are
    the same for every seed (held out with TEST_POOL_SEED), so no seed tunes on another's test images.

    pool > 1 averages pool x pool pixel blocks first (pool = 2: 14 x 14 images, a 4x smaller input
    layer, which is what makes the CPU quick mode affordable for Muon's Newton-Schulz).
    """
    source = {}
    if images is None:
        raw = load_raw("mnist5k")
        images, digits, source = raw.x, raw.y, {"mnist5k": raw.source}
    else:
        images, digits = np.asarray(images), np.asarray(digits)
        if images.ndim != 4 or images.shape[1] != 1 or digits.shape != (len(images),):
            raise ValueError(f"need images (n, 1, h, w) and digits (n,); got {images.shape} and {digits.shape}")
    images = avg_pool(images, pool)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))
    fixed = np.random.default_rng(np.random.SeedSequence([TEST_POOL_SEED, 6]))
    parts = {"test": [], "val": [], "train": []}
    for d in np.unique(digits):
        held = fixed.permutation(np.flatnonzero(digits == d))
        parts["test"].append(held[:test_per_digit])
        idx = rng.permutation(np.sort(held[test_per_digit:]))
        parts["val"].append(idx[:val_per_digit])
        parts["train"].append(idx[val_per_digit:])
    out = {}
    for name in ("train", "val", "test"):
        idx = np.concatenate(parts[name])
        y = (digits[idx] >= 5).astype(np.int64)
        a = conflicting_attribute(y, agreement, rng) if name == "train" else chance_attribute(y, rng)
        out[name] = GroupSplit.make(colorize(images[idx], a), y, a, source, {"mnist5k": idx})
    return out["train"], out["val"], out["test"]


def _pair(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """(n, 1, 28, 28) top and bottom halves -> (n, 1, 56, 28) dominoes."""
    return np.concatenate([top, bottom], axis=2)


def dominoes(seed: int, n_train: int = 4000, n_decode: int = 800, n_test: int = 2000, agreement: float = 0.95,
             fashion_classes: tuple[int, int] = (2, 4), mnist_test_frac: float = 0.2, pool: int = 1
             ) -> tuple[GroupSplit, GroupSplit, GroupSplit]:
    """(train, decode, test) dominoes; see the module docstring. n_decode, n_test: multiples of 4.

    pool > 1 averages pool x pool pixel blocks of the finished (56, 28) image (pool = 2: 28 x 14).
    """
    if n_train % 2 or n_decode % 4 or n_test % 4:
        raise ValueError(f"need n_train even and n_decode, n_test multiples of 4; got {n_train}, {n_decode}, {n_test}")
    fashion = load_raw("fashion")  # raises naming `apt-get install dataset-fashion-mnist` when missing
    mnist = load_raw("mnist5k")
    source = {"fashion": fashion.source, "mnist5k": mnist.source}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    fixed = np.random.default_rng(np.random.SeedSequence([TEST_POOL_SEED, 8]))
    # MNIST halves: per digit, a test pool (the same for every seed) and a train/decode pool.
    mnist_pools = {}
    for d in (0, 1):
        idx = fixed.permutation(np.flatnonzero(mnist.y == d))
        k = int(round(mnist_test_frac * len(idx)))
        mnist_pools[d] = (np.sort(idx[k:]), np.sort(idx[:k]))
    # Fashion halves: per core label, disjoint train and decode items from the train file.
    fa_train, fa_decode, fa_test = [], [], []
    for label, c in enumerate(fashion_classes):
        items = rng.permutation(np.flatnonzero(fashion.y == c))
        need = n_train // 2 + n_decode // 2
        if len(items) < need:
            raise ValueError(f"Fashion-MNIST class {c} has {len(items)} training items, {need} needed")
        fa_train.append(items[: n_train // 2])
        fa_decode.append(items[n_train // 2: need])
        test_pool = rng.permutation(np.flatnonzero(fashion.y_test == c))
        if len(test_pool) < n_test // 2:
            raise ValueError(f"Fashion-MNIST class {c} has {len(test_pool)} test items, {n_test // 2} needed")
        fa_test.append(test_pool[: n_test // 2])

    def build(items: list[np.ndarray], source_x: np.ndarray, a: np.ndarray, mnist_part: int) -> GroupSplit:
        y = np.repeat([0, 1], [len(items[0]), len(items[1])])
        bottom_idx = np.concatenate(items)
        bottom = source_x[bottom_idx]
        top_idx = np.empty(len(y), dtype=np.int64)
        for d in (0, 1):
            where = np.flatnonzero(a == d)
            top_idx[where] = rng.choice(mnist_pools[d][mnist_part], size=len(where), replace=True)
        fashion_file = "fashion" if mnist_part == 0 else "fashion_test"
        return GroupSplit.make(avg_pool(_pair(mnist.x[top_idx], bottom), pool), y, a, source,
                               {"mnist5k": top_idx, fashion_file: bottom_idx})

    y_train = np.repeat([0, 1], n_train // 2)
    train = build(fa_train, fashion.x, conflicting_attribute(y_train, agreement, rng), 0)
    y_dec = np.repeat([0, 1], n_decode // 2)
    decode = build(fa_decode, fashion.x, chance_attribute(y_dec, rng), 0)
    y_test = np.repeat([0, 1], n_test // 2)
    test = build(fa_test, fashion.x_test, chance_attribute(y_test, rng), 1)
    return train, decode, test
