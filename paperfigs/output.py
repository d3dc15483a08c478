"""Writing figure outputs: JSON-safe conversion, atomic writes, and the CLAIMS.md summary."""
from __future__ import annotations

import json
import math
import os
import tempfile
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a truncated file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n").encode())


def atomic_savefig(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip("."), bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def claims_table(result: dict) -> str:
    """A plain-text table of a figure's claims, for the terminal."""
    rows = [f"figure {result['figure']} ({result['mode']}, {result['runtime_s']:.1f} s): {result['title']}"]
    for c in result["claims"]:
        val = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        thr = "n/a" if c["threshold"] is None else f"{c['threshold']:.4g}"
        mark = "HOLDS " if c["holds"] else "FAILS "
        rows.append(f"  {mark} {c['name']}: value {val} vs threshold {thr} -- {c['statement']}")
    return "\n".join(rows)


def write_claims_md(out_dir: Path) -> Path:
    """Summarise every figN.json in out_dir into CLAIMS.md (re-read from disk each time)."""
    out_dir = Path(out_dir)
    results, unreadable = [], []
    for p in sorted(out_dir.glob("fig*.json")):
        try:
            results.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            unreadable.append(p.name)
    results.sort(key=lambda r: r.get("figure", 0))
    n_claims = sum(len(r.get("claims", [])) for r in results)
    n_hold = sum(bool(c.get("holds")) for r in results for c in r.get("claims", []))
    lines = [
        "# Claims measured so far",
        "",
        f"{n_hold} of {n_claims} claims hold across {len(results)} figure(s). A claim that fails is a",
        "finding about the reproduction, reported as measured.",
        "",
        *([f"Unreadable result files (not counted): {', '.join(unreadable)}.", ""] if unreadable else []),
        "| fig | mode | claim | value | threshold | holds | statement |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in r.get("claims", []):
            val = "n/a" if c.get("value") is None else f"{c['value']:.4g}"
            thr = "n/a" if c.get("threshold") is None else f"{c['threshold']:.4g}"
            stmt = str(c.get("statement", "")).replace("|", "/")
            lines.append(f"| {r['figure']} | {r.get('mode')} | {c['name']} | {val} | {thr} | "
                         f"{'yes' if c.get('holds') else '**no**'} | {stmt} |")
    path = out_dir / "CLAIMS.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
