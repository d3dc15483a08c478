"""JSON-safe conversion and atomic file writes, shared by the run store, histories, benchmarks
and the figure outputs (paperfigs.output builds its output sets on these).

A write goes to a hidden temporary file in the destination's folder, is flushed to disk, then
renamed over the destination: a reader sees the old file or the new one, never a truncated one.
New files are created with mode 0666 through os.open, so the kernel applies the umask, as for any
file the user writes (tempfile.mkstemp would create them 0600).
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path

import numpy as np


def jsonable(obj):
    """Recursively turn numpy/torch scalars and arrays into plain JSON; NaN and inf become None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_json"):
        return jsonable(obj.to_json())
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor, without importing torch
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def dumps(obj, indent: int | None = 1) -> str:
    """Strict JSON text of `obj` after `jsonable` (NaN/inf stored as null)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def json_bytes(obj) -> bytes:
    return (dumps(obj) + "\n").encode()


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) with the umask's mode, write `data` and fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a hidden temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))
