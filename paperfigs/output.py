"""Writing figure outputs: JSON-safe conversion, atomic writes, one figure's files replaced as a
set, and the CLAIMS.md summary derived from the figN.json files.

How a figure's set (figN.png, figN.pdf, figN.json) is replaced, so that a crash at any point
leaves each set from one run and CLAIMS.md agreeing with the JSON files:
  1. everything is rendered in memory first (a crash while computing or drawing writes nothing);
  2. under an exclusive lock on the output folder (flock), the new files are written to hidden
     temporary names `.figN.EXT.TOKEN.tmp` and fsynced, then an empty marker `.figN.TOKEN.commit`
     is created: from then on the set is complete on disk;
  3. the temporaries are renamed over png, pdf and the JSON last, CLAIMS.md is rebuilt from every
     figN.json in the folder, and the marker is removed.
Ctrl-C and SIGTERM are held back during 2-3 (a few milliseconds) and acted on right after.
After a SIGKILL or power loss the next run (any run holding the lock) finishes a marked set and
deletes unmarked temporaries, which by the lock can only be left by a dead process. The lock also
serialises concurrent runs sharing a folder, so the last CLAIMS.md written has seen every JSON.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from experiments.fileio import atomic_write_bytes
from experiments.fileio import write_new as _write_new
from paperfigs.result import ResultError, parse_result

EXTS = ("png", "pdf", "json")  # replacement order: the JSON, the record of the run, last
_RESULT_FILE = re.compile(r"fig([1-9][0-9]*)\.json")
_MARKER = re.compile(r"\.fig([1-9][0-9]*)\.([0-9a-f]+)\.commit")
_LEFTOVER = re.compile(r"\.(?:fig[1-9][0-9]*\.(?:png|pdf|json)|CLAIMS\.md)\.[A-Za-z0-9_]+\.tmp")


class OutputError(Exception):
    """A figure's new files could not be written (e.g. a full disk); its previous files are unchanged."""


class InterruptedAfterWrite(KeyboardInterrupt):
    """Ctrl-C arrived while a figure's files were being replaced; the replacement was finished first."""


def source_tag(number: int, json_data: bytes) -> str:
    """The line embedded in figN.png/pdf naming the exact figN.json they were drawn from."""
    return f"paper_repro fig{number}.json sha256 {hashlib.sha256(json_data).hexdigest()}"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM back for the block, then act on them (handlers only exist in the main
    thread; elsewhere the block runs as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    finished = False
    try:
        yield
        finished = True
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if signal.SIGTERM in pending:
            signal.raise_signal(signal.SIGTERM)
        if signal.SIGINT in pending:
            if finished and previous[signal.SIGINT] is signal.default_int_handler:
                raise InterruptedAfterWrite
            signal.raise_signal(signal.SIGINT)


@contextmanager
def _folder_lock(folder: Path):
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks on folders (some NFS mounts): run unlocked
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


def _finish(folder: Path, number: int, token: str) -> None:
    """Rename a complete, marked set into place, rebuild CLAIMS.md, drop the marker. Idempotent."""
    for ext in EXTS:
        tmp = folder / f".fig{number}.{ext}.{token}.tmp"
        if tmp.exists():
            os.replace(tmp, folder / f"fig{number}.{ext}")
    _fsync_dir(folder)
    write_claims_md(folder)
    (folder / f".fig{number}.{token}.commit").unlink()


def _recover_locked(folder: Path) -> tuple[int, int]:
    finished = removed = 0
    for p in sorted(folder.iterdir()):
        m = _MARKER.fullmatch(p.name)
        if m:
            _finish(folder, int(m.group(1)), m.group(2))
            finished += 1
    for p in folder.iterdir():
        if _LEFTOVER.fullmatch(p.name):
            p.unlink(missing_ok=True)
            removed += 1
    return finished, removed


def recover(folder: Path) -> tuple[int, int]:
    """Repair what a killed run left in `folder`: finish every marked set (rebuilding CLAIMS.md) and
    delete unmarked temporaries. Returns (sets finished, temporaries removed)."""
    folder = Path(folder)
    with _signals_held(), _folder_lock(folder):
        return _recover_locked(folder)


def publish(folder: Path, number: int, files: dict[str, bytes], drawn_from: bytes | None = None) -> None:
    """Replace figN.EXT for each EXT in `files` (some of png, pdf, json) as one set, then rebuild CLAIMS.md.

    A new JSON starts a new set: an old png/pdf that `files` does not replace is deleted first.
    `drawn_from`: the figN.json bytes a re-drawn png/pdf came from; if the JSON changed meanwhile
    (another run replaced it), nothing is written and ResultError says so."""
    folder = Path(folder)
    unknown = set(files) - set(EXTS)
    if unknown:
        raise ValueError(f"unknown output kinds {sorted(unknown)}; expected some of {EXTS}")
    with _signals_held(), _folder_lock(folder):
        _recover_locked(folder)
        if drawn_from is not None:
            current = folder / f"fig{number}.json"
            if not current.exists() or current.read_bytes() != drawn_from:
                raise ResultError(f"fig{number}.json changed while it was being re-drawn (another run?); "
                                  f"rerun --figure {number} --replot")
        if "json" in files:
            for ext in EXTS:
                if ext not in files:
                    (folder / f"fig{number}.{ext}").unlink(missing_ok=True)
        token = secrets.token_hex(6)
        written = []
        try:
            for ext in EXTS:
                if ext in files:
                    tmp = folder / f".fig{number}.{ext}.{token}.tmp"
                    _write_new(tmp, files[ext])
                    written.append(tmp)
            _write_new(folder / f".fig{number}.{token}.commit", b"")
        except BaseException as e:  # e.g. a full disk: the old set stays as it was
            for tmp in written:
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write figure {number}'s files in {folder} ({e.strerror or e}); "
                                  "its previous files are unchanged") from None
            raise
        try:
            _fsync_dir(folder)
            _finish(folder, number, token)
        except OSError as e:
            raise OutputError(f"figure {number}'s files are complete but could not all be put in place in "
                              f"{folder} ({e.strerror or e}); the next run there finishes them") from None


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _interval(c: dict) -> str:
    return f"[{c['ci'][0]:.4g}, {c['ci'][1]:.4g}]" if "ci" in c else ""


def _verdict(c: dict) -> str:
    """The claim's verdict; a claim without one (no interval) holds or fails on its value."""
    return c.get("verdict") or ("holds" if c["holds"] else "fails")


def claims_table(result: dict) -> str:
    """A plain-text table of a figure's claims, for the terminal."""
    rows = [f"figure {result['figure']} ({result['mode']}, {result['runtime_s']:.1f} s): {result['title']}"]
    for c in result["claims"]:
        ci = f" {_interval(c)}" if "ci" in c else ""
        rows.append(f"  {_verdict(c).upper():12s} {c['name']}: value {_fmt(c['value'])}{ci} vs threshold "
                    f"{_fmt(c['threshold'])} -- {c['statement']}")
    return "\n".join(rows)


def _read_results(folder: Path) -> tuple[list[dict], list[str]]:
    """Every valid figN.json in `folder` by figure number, and one line per file that is not valid."""
    results, invalid = [], []
    numbered = []
    for p in folder.iterdir():
        m = _RESULT_FILE.fullmatch(p.name)
        if m:
            numbered.append((int(m.group(1)), p))
    for number, p in sorted(numbered):
        try:
            results.append(parse_result(p.read_bytes(), number))
        except ResultError as e:
            invalid.append(str(e))
        except OSError as e:
            invalid.append(f"{p.name} cannot be read ({e.strerror}); rerun --figure {number}")
    return results, invalid


def write_claims_md(folder: Path) -> Path:
    """Summarise every valid figN.json in `folder` into CLAIMS.md (re-read from disk each time);
    files that are not valid results are named, not counted."""
    folder = Path(folder)
    results, invalid = _read_results(folder)
    claims = [(r, c) for r in results for c in r["claims"]]
    verdicts = [_verdict(c) for _, c in claims]
    n_open = verdicts.count("inconclusive")
    lines = [
        "# Claims measured so far",
        "",
        f"{verdicts.count('holds')} of {len(claims)} claims hold across {len(results)} figure(s)"
        + (f" ({n_open} inconclusive)" if n_open else "") + ". A claim that fails is a",
        "finding about the reproduction, reported as measured.",
        "",
        *(["Not counted:", *[f"- {line}" for line in invalid], ""] if invalid else []),
        "| fig | mode | seed | claim | value | 95% interval | threshold | verdict | statement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r, c in claims:
        verdict = _verdict(c)
        stmt = c["statement"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {r['figure']} | {r['mode']} | {r['seed']} | {c['name']} | {_fmt(c['value'])} | "
                     f"{_interval(c)} | {_fmt(c['threshold'])} | {verdict if verdict != 'fails' else '**fails**'} "
                     f"| {stmt} |")
    path = folder / "CLAIMS.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
