"""Learning-rate selection as engine runs: one rule for every figure, with its provenance.

    t = TuneSpec(method="muon", grid=quarter_decade_grid(0.004, 0.2), seeds=[1000, 1001, 1002],
                 make_spec=lambda lr, seed: RunSpec("imbalance", {..., "lr": lr, "seed": seed}),
                 score=lambda result: best_over_time(result, "val/balanced"), higher_is_better=True,
                 criterion="best-over-time balanced validation accuracy")
    selections = tune_all(engine, [t, ...])          # {method: Selection}
    selections["muon"].lr, selections["muon"].to_json()   # -> figN.json params

The rule: every (lr, tuning seed) is an ordinary stored run; an lr's score is the mean over the
tuning seeds of `score(result)`, and an lr at which any seed diverged (score None or non-finite)
is out. The best mean wins (ties: the smaller lr). The grid is extended by its own step past an
optimum found on its edge, and, with to_divergence, upward until a run diverges: at most `extend`
points above the initial grid for the divergence search, and at most EDGE_FACTOR x `extend` per
side while the optimum itself still sits on that edge (`extend` 0: no extension), so a choice is
not an artefact of where the grid ended. The selection records whether the search found a
diverged run above the selected lr (`divergence_found`: False means the extension ran out, or
was not asked for, with every higher lr still alive) and whether its lr is still on an edge
(`at_grid_edge`: the edge budget ran out).
Lrs whose mean lies within one standard error of the best are reported as `tied`.

Provenance: the Selection records the grid, the per-seed scores, the criterion, the run keys and
its source: "computed" (from runs), "record" (read from the committed record below) or
"override" (`--lr METHOD=VALUE`, for exploration). The tuning seeds must be disjoint from the
reporting seeds (checked by `check_disjoint`).

The committed record (`experiments/selections/<tuning key>.json`) lets a fresh clone skip the
tuning runs: the tuning key hashes the run keys of the initial grid (so the task, its version,
the optimizer's version and every setting), the criterion and the extension policy. A key that
does not match is never used; then the runs are computed. The key holds the criterion's text, not
the score function's code: where the record's tuning runs are at hand (archived, below, or in the
store), their scores are recomputed with the current score function, and a record they do not
reproduce is set aside with a note and the lr is selected again from those runs.

Beside a record, `experiments/selections/runs/<tuning key>.json.gz` may hold its tuning runs
themselves (the stored run records of every key in `run_keys`, gzipped JSON). Reading the record
then also puts them into the run store, so what a figure reads from its tuning runs besides the
selection (the claim over the whole lr grid: its sensitivity table) is there on a fresh clone
without computing them. The runs are the ones the record's keys name: a stored record whose key
or content does not match is refused (DataFormatError). Write archives with
`python -m experiments.tuning archive --store OUT/runs` after a run that tuned (or pass
--record-selections, which writes them with the records).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from experiments.data.files import DataFormatError
from experiments.engine import Engine, RunSpec
from experiments.fileio import atomic_write_json

RECORD_DIR = Path(__file__).resolve().with_name("selections")
ARCHIVE_SUBDIR = "runs"   # <record dir>/runs/<tuning key>.json.gz: the record's tuning runs
# Archives larger than this (gzipped) are not written, to keep the repository small: figure 4's full
# tuning runs keep every evaluation of 20 classes (130-260 KB a record) and cost 3 CPU-minutes to
# recompute (--fresh), while a quick torch record's runs compress to 3-48 KB.
ARCHIVE_MAX_BYTES = 100_000
SOURCES = ("computed", "record", "override")
# Past an optimum that still sits on a grid edge the search goes on for up to EDGE_FACTOR x extend
# points on that side (the divergence search stays at extend). Before 2026-12-04 it stopped after
# extend points, and 7 committed selections were left on an edge with their optimum possibly beyond
# it (full: figure 7's SPlus and Muon incl. head and figure 8's Shampoo at the low end of their
# grids; quick: figure 7's SGD, figure 12's SGD-m, figure 14's LM Muon and image Shampoo at the top
# end): a verdict could then rest on where the grid ended (figure 7's SPlus "fails" did). Such a
# record is continued (needs_more_points), not re-tuned: its tuning key and every other record stay
# valid.
EDGE_FACTOR = 3


def quarter_decade_grid(lo: float, hi: float) -> list[float]:
    """lrs 10^(k/4) from the first at or above lo to the last at or below hi (lo, hi > 0)."""
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"need 0 < lo <= hi < inf, got {lo}, {hi}")
    k0, k1 = math.ceil(round(4 * math.log10(lo), 9)), math.floor(round(4 * math.log10(hi), 9))
    return [float(10 ** (k / 4)) for k in range(k0, k1 + 1)]


@dataclass(frozen=True)
class TuneSpec:
    method: str                                   # the label the figure uses
    grid: Sequence[float]                         # initial lrs (any spacing; extension uses its step)
    seeds: Sequence[int]                          # tuning seeds, disjoint from the reporting seeds
    make_spec: Callable[[float, int], RunSpec]    # (lr, seed) -> the run
    score: Callable[[dict], float | None]         # a run's result -> its score (None: diverged)
    higher_is_better: bool
    criterion: str                                # in words, recorded with the selection
    extend: int = 3                               # extra grid points allowed on each side
    to_divergence: bool = False                   # also extend upward until the top lr diverges


@dataclass
class Selection:
    method: str
    lr: float | None
    grid: list[float]
    scores: dict[float, list[float | None]]      # lr -> score per tuning seed
    criterion: str
    seeds: list[int]
    source: str
    higher_is_better: bool = True
    run_keys: dict[float, list[str]] = field(default_factory=dict)
    tuning_key: str | None = None

    @property
    def means(self) -> dict[float, float | None]:
        return {lr: _mean(v) for lr, v in self.scores.items()}

    @property
    def at_edge(self) -> bool:
        return self.lr is not None and len(self.grid) > 1 and self.lr in (min(self.grid), max(self.grid))

    @property
    def divergence_found(self) -> bool | None:
        """Whether a tuning seed diverged (score None or non-finite) at an lr above the selected one
        (at any lr when every lr diverged): the search reached the divergence edge on the grid's
        high side. False when the grid ended (or its extension ran out) with every higher lr alive;
        None without tuning runs (an --lr override). Computed from the scores, so a record written
        before this field existed gives the same answer."""
        if not self.scores:
            return None
        above = [lr for lr in self.scores if self.lr is None or lr > self.lr]
        return any(_mean(self.scores[lr]) is None for lr in above)

    @property
    def tied(self) -> list[float]:
        """lrs whose mean score is within one standard error (of the best lr's seeds) of the best."""
        if self.lr is None or self.lr not in self.scores:
            return []
        best = self.scores[self.lr]
        se = float(np.std(best, ddof=1) / math.sqrt(len(best))) if len(best) > 1 else 0.0
        m = self.means
        return sorted(lr for lr, v in m.items() if v is not None and abs(v - m[self.lr]) <= se)

    def to_json(self) -> dict:
        return {"method": self.method, "lr": self.lr, "source": self.source, "criterion": self.criterion,
                "higher_is_better": self.higher_is_better, "tuning_seeds": list(self.seeds),
                "grid": sorted(self.grid), "at_grid_edge": self.at_edge, "divergence_found": self.divergence_found,
                "tied_within_1se": self.tied,
                "scores": {repr(lr): self.scores[lr] for lr in sorted(self.scores)},
                "mean_scores": {repr(lr): v for lr, v in sorted(self.means.items())},
                "run_keys": {repr(lr): self.run_keys.get(lr, []) for lr in sorted(self.run_keys)},
                "tuning_key": self.tuning_key}


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(np.mean(values))


def select(scores: dict[float, list[float | None]], higher_is_better: bool) -> float | None:
    """The lr with the best mean score over seeds (diverged anywhere: out); ties go to the smaller lr."""
    means = {lr: m for lr, v in scores.items() if (m := _mean(v)) is not None}
    if not means:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(means, key=lambda lr: (sign * means[lr], lr))


def check_disjoint(tuning_seeds: Sequence[int], reporting_seeds: Sequence[int]) -> None:
    common = sorted(set(tuning_seeds) & set(reporting_seeds))
    if common:
        raise ValueError(f"tuning seeds {common} are also reporting seeds: selection must not see them")


def tuning_key(engine: Engine, t: TuneSpec) -> str:
    keys = [engine.key(t.make_spec(lr, s)) for lr in sorted(t.grid) for s in t.seeds]
    ident = {"runs": keys, "criterion": t.criterion, "higher_is_better": t.higher_is_better, "extend": t.extend,
             "to_divergence": t.to_divergence}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _step(grid: Sequence[float]) -> float:
    """The grid's ratio between neighbours (geometric mean), 10^(1/4) for a one-point grid."""
    g = sorted(grid)
    return (g[-1] / g[0]) ** (1 / (len(g) - 1)) if len(g) > 1 else 10 ** 0.25


def _next_points(t: TuneSpec, scores: dict[float, list], added: dict[str, int]) -> list[float]:
    """Grid points to add: below an optimum on the lower edge; above an optimum on the upper edge
    (each up to EDGE_FACTOR x extend points past the initial grid), or (to_divergence) above while
    no tuning seed has diverged at the top lr (up to extend points)."""
    lrs = sorted(scores)
    best = select(scores, t.higher_is_better)
    ratio = _step(t.grid)
    edge_cap = EDGE_FACTOR * t.extend
    new = []
    if best is not None and best == lrs[0] and added["lo"] < edge_cap:
        new.append(lrs[0] / ratio)
        added["lo"] += 1
    top_alive = _mean(scores[lrs[-1]]) is not None
    hi_cap = edge_cap if best is not None and best == lrs[-1] else (t.extend if t.to_divergence else 0)
    if top_alive and added["hi"] < hi_cap:
        new.append(lrs[-1] * ratio)
        added["hi"] += 1
    return new


def _lookup(known: dict[float, object], lr: float):
    """known's key equal to lr within float rounding (a record's lrs are parsed from repr), or None."""
    for k in known:
        if math.isclose(k, lr, rel_tol=1e-9):
            return k
    return None


def _advance(t: TuneSpec, scores: dict[float, list], added: dict[str, int], keys: dict[float, list],
             pending: list[float], known: dict[float, list] | None = None,
             known_keys: dict[float, list] | None = None) -> list[float]:
    """Take a search forward from the round `pending`. An lr that a record's per-seed scores `known`
    hold is filled in from it (with its run keys from `known_keys`) as if it had been run; while a
    whole round is filled so, the rule is asked for the next one. Returns the lrs of the first round
    that needs runs (each entered in `scores` with an empty list), or [] when the search is over.
    Replaying a record is exact: the rule reads nothing but the scores."""
    known, known_keys = known or {}, known_keys or {}
    while pending:
        missing = []
        for lr in pending:
            k = _lookup(known, lr)
            if k is None:
                missing.append(lr)
                scores[lr] = []
            else:
                scores[lr] = list(known[k])
                keys[lr] = list(known_keys.get(k, []))
        if missing:
            return missing
        pending = [lr for lr in _next_points(t, scores, added) if lr not in scores]
    return []


def needs_more_points(t: TuneSpec, known: dict[float, list]) -> bool:
    """Whether the search rule, replayed on a record's per-seed scores `known`, asks for an lr the
    record lacks: the record was written under a rule that stopped earlier (before EDGE_FACTOR, an
    optimum on an edge stopped after `extend` points) and must be continued, not used as it is."""
    return bool(_advance(t, {}, {"lo": 0, "hi": 0}, {}, sorted(float(lr) for lr in t.grid), known))


def tune_all(engine: Engine, specs: Sequence[TuneSpec], overrides: dict[str, float] | None = None,
             use_record: bool = True, write_record: bool = False,
             record_dir: Path | None = None, record_checks: list | None = None) -> dict[str, Selection]:
    """Select an lr for every TuneSpec; all tuning runs of a round go to the engine together.
    `record_checks`, when a list, receives one dict per committed record read (see check_record,
    plus "missing_specs": the specs of its runs the store lacks), and every record is then read."""
    overrides = overrides or {}
    record_dir = RECORD_DIR if record_dir is None else Path(record_dir)
    out: dict[str, Selection] = {}
    # per method being searched: (spec, lr -> per-seed scores, edge points added, tuning key), the
    # run keys per lr, and the lrs of the next round. A record that the rule would extend starts
    # from its replayed state.
    active: dict[str, tuple[TuneSpec, dict, dict, str]] = {}
    run_keys: dict[str, dict[float, list[str]]] = {}
    pending: dict[str, list[float]] = {}
    records: dict[str, Selection] = {}   # records being continued: their lrs are filled in, not run
    for t in specs:
        if t.method in overrides:
            lr = float(overrides[t.method])
            out[t.method] = Selection(t.method, lr, [lr], {}, t.criterion, list(t.seeds), "override",
                                      t.higher_is_better)
            continue
        key = tuning_key(engine, t)
        # Existence only: the runs are read once, by engine.run below.
        stored_all = engine.store is not None and not engine.fresh and all(
            engine.store.has(engine.key(t.make_spec(lr, s))) for lr in t.grid for s in t.seeds)
        rec = None
        # an audit (record_checks given) reads every record, even one whose grid runs a store holds
        if use_record and (not stored_all or record_checks is not None) and not engine.fresh:
            rec = read_record(record_dir, key)
            if rec is not None:
                if engine.store is not None:
                    archived = restore_runs(record_dir, rec, engine.store)
                    check = check_record(rec, t, engine.store, archived)
                    if record_checks is not None:
                        check["missing_specs"] = (_missing_specs(engine, rec, t)
                                                  if check["available"] < check["runs"] else {})
                        record_checks.append(check)
                    stale = check["stale"]
                    if stale:
                        lr, seed, recorded, now = stale[0]
                        print(f"note: the selection record of {t.method} ({key}) is stale: at lr {lr:.4g}, tuning "
                              f"seed {seed} it says {recorded} but the score function now gives {now} on the same "
                              f"run ({len(stale)} such); selecting again from the stored runs", file=sys.stderr)
                        rec = None
        scores, added, keys = {}, {"lo": 0, "hi": 0}, {}
        grid = sorted(float(lr) for lr in t.grid)
        todo = _advance(t, scores, added, keys, grid, *((rec.scores, rec.run_keys) if rec else ()))
        if rec is not None and not todo:
            out[t.method] = rec
            continue
        if rec is not None:
            # the search goes on from the record's runs (their scores and keys), computing only the
            # lrs it lacks, in this round and in any later one
            records[t.method] = rec
            print(f"note: the selection record of {t.method} ({key}) ends with its optimum on a grid edge "
                  f"that the search now extends past; continuing it from the recorded scores", file=sys.stderr)
        active[t.method] = (t, scores, added, key)
        run_keys[t.method], pending[t.method] = keys, todo
    while pending:
        batch = [(m, lr, s, active[m][0].make_spec(lr, s)) for m, lrs in pending.items()
                 for lr in lrs for s in active[m][0].seeds]
        results = engine.run([b[3] for b in batch], desc="tuning runs")
        for (m, lr, s, spec), result in zip(batch, results):
            t, scores = active[m][0], active[m][1]
            value = t.score(result)
            scores[lr].append(None if value is None or not math.isfinite(value) else float(value))
            run_keys[m].setdefault(lr, []).append(engine.key(spec))
        round_done, pending = pending, {}
        for m in round_done:
            t, scores, added, _ = active[m]
            rec = records.get(m)
            new = [lr for lr in _next_points(t, scores, added) if lr not in scores]
            new = _advance(t, scores, added, run_keys[m], new, *((rec.scores, rec.run_keys) if rec else ()))
            if new:
                pending[m] = new
    for m, (t, scores, _, key) in active.items():
        sel = Selection(m, select(scores, t.higher_is_better), sorted(scores), scores, t.criterion,
                        list(t.seeds), "computed", t.higher_is_better, run_keys[m], key)
        out[m] = sel
        if write_record:
            write_record_file(record_dir, sel)
            if engine.store is not None:
                write_archive(record_dir, sel, engine.store)
    return {t.method: out[t.method] for t in specs}


def read_record(record_dir: Path, key: str) -> Selection | None:
    """The recorded selection of tuning key `key`, or None if there is none. A record that exists
    but is malformed (not JSON, an lr that is not a positive finite number, a key that does not
    match its name) is a DataFormatError naming the file, which the CLI prints as one line: it is
    never silently used or ignored."""
    path = Path(record_dir) / f"{key}.json"
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        lr = d["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr {lr!r} is not a positive finite number")
        if d.get("tuning_key") != key:
            raise ValueError(f"its tuning_key {d.get('tuning_key')!r} does not match its name")
        scores = {float(k): v for k, v in d["scores"].items()}
        keys = {float(k): v for k, v in d.get("run_keys", {}).items()}
        return Selection(d["method"], float(lr), [float(x) for x in d["grid"]], scores, d["criterion"],
                         list(d["tuning_seeds"]), "record", bool(d["higher_is_better"]), keys, key)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataFormatError(path, f"not a valid selection record ({e}); delete it to re-tune") from None


def _same_score(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def stale_scores(sel: Selection, t: TuneSpec, store, runs: dict | None = None) -> list[tuple]:
    """Where a record's per-seed scores differ from `t.score` on its own tuning runs (taken from
    `runs`, e.g. the archive restore_runs has just read, else from `store`):
    [(lr, seed, recorded, now), ...]; empty when they agree or cannot be checked (a run in
    neither, or a score function that cannot read a stored run).

    The tuning key hashes the criterion's text, not the score function's code, so an edit of the
    score that keeps its text would otherwise leave the old selection in force. With the tuning
    runs archived beside the record (every quick record), this recomputation catches it."""
    out = []
    for lr, keys in sorted(sel.run_keys.items()):
        recorded = sel.scores.get(lr, [])
        if len(keys) != len(recorded):
            return []
        for i, k in enumerate(keys):
            rec = (runs or {}).get(k) or store.get(k)
            if rec is None:
                return []
            try:
                value = t.score(rec["result"])
            except Exception:  # a score that cannot read this stored form: no check, not a verdict
                return []
            now = None if value is None or not math.isfinite(value) else float(value)
            if not _same_score(recorded[i], now):
                seed = sel.seeds[i] if i < len(sel.seeds) else i
                out.append((lr, seed, recorded[i], now))
    return out


def check_record(sel: Selection, t: TuneSpec, store, runs: dict | None = None) -> dict:
    """How far a record's tuning runs are at hand and whether they reproduce it: {"method",
    "tuning_key", "lr" (the recorded selection), "runs" (the record's run count), "available" (how
    many of them `runs` or `store` hold), "archived" (how many came from `runs`, the record's own
    archive), "stale" (stale_scores' list; only meaningful when every run is available), and where
    "stale" is not empty "lr_now" (the lr the runs at hand select) and "max_diff" (the largest
    score difference; inf where a run diverged on one side only)}."""
    keys = [k for ks in sel.run_keys.values() for k in ks]
    got = {k: (runs or {}).get(k) or store.get(k) for k in keys}  # each run read once
    available = sum(1 for v in got.values() if v is not None)
    out = {"method": t.method, "tuning_key": sel.tuning_key, "lr": sel.lr, "runs": len(keys),
           "available": available, "archived": sum(1 for k in keys if k in (runs or {})),
           "stale": stale_scores(sel, t, store, got) if available == len(keys) else []}
    if out["stale"]:
        # what the runs at hand would select, and how far their scores are from the record's
        now = {lr: list(v) for lr, v in sel.scores.items()}
        for lr, seed, _, value in out["stale"]:
            if seed in sel.seeds:
                now[lr][sel.seeds.index(seed)] = value
        out["lr_now"] = select(now, sel.higher_is_better)
        out["max_diff"] = max((abs(a - b) for _, _, a, b in out["stale"] if a is not None and b is not None),
                              default=math.inf)
    return out


def _missing_specs(engine: Engine, sel: Selection, t: TuneSpec) -> dict[str, RunSpec]:
    """{run key: RunSpec} of a record's tuning runs that its store lacks (its archive already
    restored), so that an audit can recompute them. A run whose spec no longer hashes to the
    recorded key is left out: recomputing it could not check the record (which stays unchecked)."""
    out = {}
    for lr, keys in sorted(sel.run_keys.items()):
        for i, k in enumerate(keys):
            if engine.store.has(k) or i >= len(sel.seeds):
                continue
            spec = t.make_spec(lr, sel.seeds[i])
            if engine.key(spec) == k:
                out[k] = spec
    return out


def write_record_file(record_dir: Path, sel: Selection) -> None:
    if sel.lr is None or sel.tuning_key is None:
        return
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(record_dir) / f"{sel.tuning_key}.json", sel.to_json())


def archive_path(record_dir: Path, key: str) -> Path:
    return Path(record_dir) / ARCHIVE_SUBDIR / f"{key}.json.gz"


def _record_run_keys(sel: Selection) -> list[str]:
    return sorted({k for keys in sel.run_keys.values() for k in keys})


def write_archive(record_dir: Path, sel: Selection, store, max_bytes: int = ARCHIVE_MAX_BYTES) -> bool:
    """Write the tuning runs of `sel` (every key in its run_keys, read from `store`) beside its
    record. False, writing nothing, when a run is missing from the store or the archive would be
    larger than max_bytes. Byte-reproducible: sorted keys, gzip without a timestamp."""
    keys = _record_run_keys(sel)
    if sel.tuning_key is None or not keys:
        return False
    runs = {}
    for k in keys:
        rec = store.get(k)
        if rec is None:
            return False
        runs[k] = rec
    data = json.dumps({"tuning_key": sel.tuning_key, "runs": runs}, sort_keys=True,
                      separators=(",", ":")).encode()
    packed = gzip.compress(data, mtime=0)
    if len(packed) > max_bytes:
        return False
    path = archive_path(record_dir, sel.tuning_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(packed)
    tmp.replace(path)
    return True


def restore_runs(record_dir: Path, sel: Selection, store) -> dict[str, dict]:
    """Put the archived tuning runs of a record into `store` (those it lacks); returns every
    archived run {key: stored record} (so a caller need not read them back). No archive: {}.
    An archive that is not gzipped JSON, names another tuning key, holds a run whose stored key
    differs from its name, or a key the record does not list, is a DataFormatError."""
    path = archive_path(record_dir, sel.tuning_key)
    if not path.exists():
        return {}
    try:
        d = json.loads(gzip.decompress(path.read_bytes()))
        if d.get("tuning_key") != sel.tuning_key:
            raise ValueError(f"its tuning_key {d.get('tuning_key')!r} is not {sel.tuning_key!r}")
        allowed = set(_record_run_keys(sel))
        runs = d["runs"]
        for k, rec in runs.items():
            if k not in allowed:
                raise ValueError(f"run {k} is not one of the record's tuning runs")
            if not isinstance(rec, dict) or rec.get("key") != k or "result" not in rec:
                raise ValueError(f"run {k} is not a stored run record with that key")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as e:
        raise DataFormatError(path, f"not a valid tuning-run archive ({e}); delete it") from None
    for k, rec in runs.items():
        if not store.has(k):
            store.put(k, rec)
    return runs


def archive_all(store, record_dir: Path | None = None) -> tuple[int, int]:
    """Write the archive of every record whose tuning runs are all in `store` and that has none
    yet: (written, records without an archive: runs not in the store, or over ARCHIVE_MAX_BYTES)."""
    record_dir = RECORD_DIR if record_dir is None else Path(record_dir)
    written = missing = 0
    for path in sorted(Path(record_dir).glob("*.json")):
        sel = read_record(record_dir, path.stem)
        if archive_path(record_dir, path.stem).exists():
            continue
        if write_archive(record_dir, sel, store):
            written += 1
        else:
            missing += 1
    return written, missing


def _main(argv=None) -> int:
    import argparse

    from experiments.engine import RunStore

    ap = argparse.ArgumentParser(prog="python -m experiments.tuning",
                                 description="Selection-record maintenance.")
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("archive", help="write the tuning-run archive of every record whose runs are in a run "
                                       "store (so that a fresh clone's figures have their sensitivity tables)")
    a.add_argument("--store", required=True, help="a run store, e.g. figures/runs")
    a.add_argument("--record-dir", default=None, help=f"records (default {RECORD_DIR})")
    args = ap.parse_args(argv)
    if not Path(args.store).is_dir():
        ap.error(f"--store {args.store}: no such folder")
    written, missing = archive_all(RunStore(args.store), args.record_dir)
    print(f"wrote {written} archive(s); {missing} record(s) left without one (runs missing from {args.store}, "
          f"or over {ARCHIVE_MAX_BYTES} bytes gzipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
