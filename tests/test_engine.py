"""The experiment engine: stable keys, the store, resumption, executors, and lr selection."""
import json
import math
import os
from pathlib import Path

import pytest

from experiments import engine as engine_module
from experiments.engine import Engine, RunError, RunSpec, RunStore
from experiments.tuning import (Selection, TuneSpec, check_disjoint, quarter_decade_grid, read_record,
                                select, tune_all)


def spec(lr=0.1, seed=0, **kw):
    return RunSpec("toy_regression", {"optimizer": "sgd", "lr": lr, "steps": 5, "seed": seed, **kw})


def test_key_is_stable_and_sensitive():
    a = spec()
    assert a.key() == RunSpec("toy_regression", {"seed": 0, "steps": 5, "lr": 0.1, "optimizer": "sgd"}).key()
    assert a.key() == RunSpec("toy_regression", {"optimizer": "sgd", "lr": 0.1, "steps": 5, "seed": 0}).key()
    others = {spec(lr=0.2).key(), spec(seed=1).key(), a.key(threads=2), spec(d=9).key()}
    assert a.key() not in others and len(others) == 4


def test_key_changes_with_task_and_optimizer_version(monkeypatch):
    from experiments.optim import registry
    from experiments.tasks import toy_regression

    k0 = spec().key()
    monkeypatch.setattr(toy_regression, "VERSION", toy_regression.VERSION + 1)
    k1 = spec().key()
    monkeypatch.setitem(registry.VERSIONS, "sgd", 7)
    k2 = spec().key()
    assert len({k0, k1, k2}) == 3


def test_store_resumes_and_fresh_recomputes(tmp_path):
    specs = [spec(lr=lr) for lr in (0.01, 0.1)]
    with Engine(store=tmp_path) as e:
        first = e.run(specs)
        records = e.run_records(specs)
        assert {k: e.counts[k] for k in ("computed", "stored")} == {"computed": 2, "stored": 2}
        # The CPU a run cost is recorded with it and summed over what this engine computed.
        assert all(r["cpu_s"] > 0 for r in records.values())
        assert e.counts["cpu_s"] == sum(r["cpu_s"] for r in records.values())
    with Engine(store=tmp_path) as e:
        again = e.run(specs + [spec(lr=0.05)])
        assert {k: e.counts[k] for k in ("computed", "stored")} == {"computed": 1, "stored": 2}
    assert again[:2] == first
    with Engine(store=tmp_path, fresh=True) as e:
        e.run(specs)
        e.run(specs)  # computed once by this engine, then read back
        assert {k: e.counts[k] for k in ("computed", "stored")} == {"computed": 2, "stored": 2}


def test_corrupt_store_entry_is_recomputed(tmp_path):
    s = spec()
    with Engine(store=tmp_path) as e:
        e.run([s])
        path = e.store.path(e.key(s))
    path.write_text("{trunc")
    with Engine(store=tmp_path) as e:
        e.run([s])
        assert e.counts["computed"] == 1
    assert json.loads(path.read_text())["key"] == e.key(s)


def test_concurrent_writers_of_one_key(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), i)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    store = RunStore(tmp_path)
    assert len(store.keys()) == 20
    assert not list(tmp_path.rglob("*.tmp"))
    for k in store.keys():
        assert store.get(k)["key"] == k


def _write_many(root, i):
    st = RunStore(root)
    for j in range(20):
        st.put(f"{j:032x}", {"key": f"{j:032x}", "result": {"writer": i}})


def test_select_rule():
    assert select({0.1: [1.0, 2.0], 0.2: [2.0, 2.0], 0.4: [None, 5.0]}, higher_is_better=True) == 0.2
    assert select({0.1: [1.0, 1.0], 0.2: [1.0, 1.0]}, higher_is_better=False) == 0.1
    assert select({0.1: [math.nan], 0.2: [None]}, True) is None


def test_quarter_decade_grid():
    g = quarter_decade_grid(1e-3, 1e-2)
    assert len(g) == 5 and g[0] == pytest.approx(1e-3) and g[-1] == pytest.approx(1e-2)
    with pytest.raises(ValueError):
        quarter_decade_grid(0, 1)


def test_tuning_extends_past_edge_and_records(tmp_path):
    def make(lr, seed):
        return spec(lr=lr, seed=seed, steps=15)

    def final_loss(result):
        return result["loss"][-1] if result["status"] == "ok" and result["loss"] else None

    t = TuneSpec("sgd", [0.001, 0.003], [100, 101], make, final_loss, False, "final training loss")
    with Engine(store=tmp_path / "runs") as e:
        sel = tune_all(e, [t], write_record=True, record_dir=tmp_path / "rec")["sgd"]
    assert sel.source == "computed" and sel.lr > 0.003  # the optimum lay above the initial grid
    assert len(sel.grid) > 2 and all(len(v) == 2 for v in sel.scores.values())
    # a fresh store: the committed record is used, marked as such
    with Engine(store=tmp_path / "runs2") as e:
        rec = tune_all(e, [t], record_dir=tmp_path / "rec")["sgd"]
        assert e.counts["computed"] == 0
    assert rec.source == "record" and rec.lr == sel.lr
    # another configuration does not match the record: it is tuned
    t2 = TuneSpec("sgd", [0.001, 0.003], [100, 101], lambda lr, s: spec(lr=lr, seed=s, steps=16), final_loss,
                  False, "final training loss")
    with Engine(store=tmp_path / "runs2") as e:
        assert tune_all(e, [t2], record_dir=tmp_path / "rec")["sgd"].source == "computed"


def test_selection_records_whether_the_search_found_a_diverged_run_above_its_lr(tmp_path):
    """divergence_found: a diverged tuning seed above the selected lr. toy SGD at 15 steps stays
    finite up to lr 10 and diverges from about 30: with to_divergence the grid 1..10 is extended
    until it does; without, it stops at 10 and says so. The field is in the record and the figure
    JSON, and an old record without it gives the same answer (computed from the scores)."""
    def make(lr, seed):
        return spec(lr=lr, seed=seed, steps=15)

    def final_loss(result):
        return result["loss"][-1] if result["status"] == "ok" else None

    grid = quarter_decade_grid(1.0, 10.0)
    to_edge = TuneSpec("edge", grid, [0], make, final_loss, False, "final loss", to_divergence=True)
    plain = TuneSpec("plain", grid, [0], make, final_loss, False, "final loss")
    with Engine() as e:
        sel = tune_all(e, [to_edge, plain], write_record=True, record_dir=tmp_path)
    edge, stop = sel["edge"], sel["plain"]
    assert max(edge.grid) > 10.0 and edge.scores[max(edge.grid)] == [None] and edge.divergence_found is True
    assert max(stop.grid) == pytest.approx(10.0) and stop.divergence_found is False
    assert edge.to_json()["divergence_found"] is True and stop.to_json()["divergence_found"] is False
    rec = json.loads((tmp_path / f"{edge.tuning_key}.json").read_text())
    assert rec["divergence_found"] is True
    del rec["divergence_found"]  # a record written before the field existed
    (tmp_path / f"{edge.tuning_key}.json").write_text(json.dumps(rec))
    assert read_record(tmp_path, edge.tuning_key).divergence_found is True
    # every lr diverged: found; an override (no tuning runs): unknown
    assert Selection("m", None, [20.0, 30.0], {20.0: [None], 30.0: [None]}, "c", [0], "computed").divergence_found
    assert Selection("m", 0.1, [0.1], {}, "c", [0], "override").divergence_found is None


def test_record_archive_restores_the_tuning_runs_into_a_fresh_store(tmp_path):
    """--record-selections also archives the tuning runs; reading the record on a fresh store puts
    them there (so a figure's sensitivity table reads them) without computing anything, and the
    archive is byte-reproducible. A tampered archive is refused with its file named."""
    import gzip

    from experiments.data.files import DataFormatError
    from experiments.tuning import archive_all, archive_path, restore_runs, write_archive

    def make(lr, seed):
        return spec(lr=lr, seed=seed, steps=15)

    t = TuneSpec("sgd", [0.001, 0.003], [100, 101], make, lambda r: r["loss"][-1], False, "final loss")
    with Engine(store=tmp_path / "runs") as e:
        sel = tune_all(e, [t], write_record=True, record_dir=tmp_path / "rec")["sgd"]
        tuned = {k: e.store.get(k) for keys in sel.run_keys.values() for k in keys}
    path = archive_path(tmp_path / "rec", sel.tuning_key)
    first = path.read_bytes()
    with Engine(store=tmp_path / "fresh") as e:
        rec = tune_all(e, [t], record_dir=tmp_path / "rec")["sgd"]
        assert rec.source == "record" and e.counts["computed"] == 0
        assert {k: e.store.get(k) for k in tuned} == tuned          # every tuning run, unchanged
    # archive_all writes the same bytes from a store that holds the runs, and skips existing ones
    path.unlink()
    assert archive_all(RunStore(tmp_path / "runs"), tmp_path / "rec") == (1, 0)
    assert path.read_bytes() == first
    assert archive_all(RunStore(tmp_path / "empty"), tmp_path / "rec") == (0, 0)
    path.unlink()                                   # over the size cap: not written
    assert not write_archive(tmp_path / "rec", sel, RunStore(tmp_path / "runs"), max_bytes=len(first) - 1)
    assert not path.exists() and write_archive(tmp_path / "rec", sel, RunStore(tmp_path / "runs"))
    # a run whose content names another key, or a key the record does not list, is refused
    d = json.loads(gzip.decompress(first))
    k = next(iter(d["runs"]))
    bad = dict(d, runs={**d["runs"], "f" * 32: d["runs"][k]})
    path.write_bytes(gzip.compress(json.dumps(bad).encode()))
    with pytest.raises(DataFormatError, match=path.name):
        restore_runs(tmp_path / "rec", rec, RunStore(tmp_path / "fresh2"))
    path.write_bytes(b"not gzip")
    with pytest.raises(DataFormatError, match=path.name):
        restore_runs(tmp_path / "rec", rec, RunStore(tmp_path / "fresh2"))


def test_a_record_whose_scores_the_current_score_function_does_not_reproduce_is_not_used(tmp_path, capsys):
    """The tuning key hashes the criterion's text, not the score's code: a record made with another
    score under the same text is caught by rescoring its archived runs, and the lr is selected
    again from those runs (nothing computed). A record that agrees is used as before."""
    from experiments.tuning import stale_scores

    def make(lr, seed):
        return spec(lr=lr, seed=seed, steps=15)

    def final(r):
        return r["loss"][-1]

    def doubled(r):  # another score under the same criterion text (same ranking, so the same runs)
        return 2 * r["loss"][-1]

    t = TuneSpec("sgd", [0.001, 0.003], [100, 101], make, final, False, "final loss")
    with Engine(store=tmp_path / "runs") as e:
        sel = tune_all(e, [t], write_record=True, record_dir=tmp_path / "rec")["sgd"]
        assert stale_scores(sel, t, e.store) == []
    t_edit = TuneSpec("sgd", [0.001, 0.003], [100, 101], make, doubled, False, "final loss")
    with Engine(store=tmp_path / "fresh") as e:
        checks = []
        again = tune_all(e, [t_edit], record_dir=tmp_path / "rec", record_checks=checks)["sgd"]
        assert e.counts["computed"] == 0                     # the archived runs were restored and reused
        assert again.source == "computed" and again.lr == sel.lr and "is stale" in capsys.readouterr().err
        assert stale_scores(sel, t_edit, e.store)[0][:2] == (0.001, 100)
        n = sum(len(keys) for keys in sel.run_keys.values())       # every tuning run, extensions included
        assert [(c["method"], c["runs"], c["available"], len(c["stale"])) for c in checks] == [("sgd", n, n, n)]
    with Engine(store=tmp_path / "fresh2") as e:                 # the unedited score agrees: the record is used
        checks = []
        assert tune_all(e, [t], record_dir=tmp_path / "rec", record_checks=checks)["sgd"].source == "record"
        assert [(c["runs"], c["available"], c["stale"]) for c in checks] == [(n, n, [])]
    # without the runs (no archive, empty store) there is nothing to check against
    assert stale_scores(sel, t_edit, RunStore(tmp_path / "empty")) == []


def test_override_and_bad_record(tmp_path):
    t = TuneSpec("sgd", [0.01], [5], lambda lr, s: spec(lr=lr, seed=s), lambda r: 0.0, True, "c")
    with Engine() as e:
        sel = tune_all(e, [t], overrides={"sgd": 0.5})["sgd"]
    assert sel.source == "override" and sel.lr == 0.5
    (tmp_path / "abc.json").write_text(json.dumps({"lr": True}))
    with pytest.raises(ValueError, match="abc.json"):
        read_record(tmp_path, "abc")


@pytest.mark.parametrize("text", ["{trunc", '{"lr": true}', '{"lr": Infinity}', '{"lr": -1.0}', "[1]"])
def test_corrupted_record_names_the_file(tmp_path, text):
    """A damaged committed record is one error naming the file, never used and never skipped."""
    from experiments.data.files import DataFormatError
    from experiments.tuning import tuning_key

    t = TuneSpec("sgd", [0.01, 0.1], [5], lambda lr, s: spec(lr=lr, seed=s), lambda r: 0.0, True, "c")
    with Engine() as e:
        key = tuning_key(e, t)
        (tmp_path / f"{key}.json").write_text(text)
        with pytest.raises(DataFormatError, match=f"{key}.json"):
            tune_all(e, [t], record_dir=tmp_path)
        assert e.counts["computed"] == 0


def test_disjoint_seeds():
    check_disjoint([1000, 1001], [0, 1])
    with pytest.raises(ValueError, match=r"tuning seeds \[1\] are also reporting seeds"):
        check_disjoint([1, 1000], [0, 1])


def test_key_records_hardware_chosen_precision(monkeypatch):
    """Muon's ns_dtype="auto" differs between CPUs with and without native bfloat16: a result from
    one must not be reused on the other."""
    import torch

    from experiments.optim import registry

    s = RunSpec("toy_regression", {"optimizer": "muon", "lr": 0.01, "steps": 3, "seed": 0, "device": "cpu"})
    pinned = RunSpec("toy_regression", {"optimizer": "muon", "lr": 0.01, "steps": 3, "seed": 0, "device": "cpu",
                                        "optimizer_kwargs": {"ns_dtype": "float32"}})
    monkeypatch.setattr(registry, "auto_ns_dtype", lambda device: (torch.bfloat16, "native"))
    k_bf16, p_bf16 = s.key(), pinned.key()
    monkeypatch.setattr(registry, "auto_ns_dtype", lambda device: (torch.float32, "emulated"))
    assert s.key() != k_bf16
    assert pinned.key() == p_bf16  # an explicit precision does not depend on the machine


def test_forced_precision_keys_and_runs_the_same_numerics_in_every_process(monkeypatch, tmp_path):
    """PAPER_REPRO_NS_DTYPE makes "auto" Muon runs key and compute as on the other kind of CPU,
    in this process and in the pool's workers (which inherit it); a worker that would resolve
    another precision than its run's key raises instead of storing its numbers under that key."""
    import torch

    from experiments.engine import execute
    from experiments.optim import registry

    s = RunSpec("toy_regression", {"optimizer": "muon", "lr": 0.01, "steps": 3, "seed": 0, "device": "cpu"})
    results = {}
    for forced in ("float32", "bfloat16"):
        monkeypatch.setenv("PAPER_REPRO_NS_DTYPE", forced)
        assert s.identity()["numerics"] == f"newton_schulz:{forced}"
        with Engine(store=tmp_path / forced, jobs=1 if forced == "float32" else 2) as e:
            results[forced] = e.run([s])[0]
    assert results["float32"] != results["bfloat16"]
    monkeypatch.setenv("PAPER_REPRO_NS_DTYPE", "float32")
    assert execute(s.task, dict(s.config), 1, "newton_schulz:float32")["result"] == results["float32"]
    with pytest.raises(RuntimeError, match="newton_schulz:float32.*newton_schulz:bfloat16.*PAPER_REPRO_NS_DTYPE"):
        execute(s.task, dict(s.config), 1, "newton_schulz:bfloat16")
    # a parent whose precision its spawned workers do not share (here: patched in the parent only)
    monkeypatch.delenv("PAPER_REPRO_NS_DTYPE")
    here = registry.auto_ns_dtype("cpu")[0]
    other = torch.float32 if here == torch.bfloat16 else torch.bfloat16
    monkeypatch.setattr(registry, "auto_ns_dtype", lambda device: (other, "patched in the parent"))
    with Engine(store=tmp_path / "mixed", jobs=2) as e, pytest.raises(RunError, match="wrong key"):
        e.run([s])
    assert not RunStore(tmp_path / "mixed").keys()


def test_a_worker_checks_the_precision_the_key_was_made_with_not_one_resolved_later(monkeypatch, tmp_path):
    """The precision handed to the worker is the one in the run's key: if the environment changes
    after the keys are computed (here: between keying and executing), the run raises instead of
    storing numbers computed in one precision under the other's key."""
    s = RunSpec("toy_regression", {"optimizer": "muon", "lr": 0.01, "steps": 3, "seed": 0, "device": "cpu"})
    monkeypatch.setenv("PAPER_REPRO_NS_DTYPE", "float32")
    original = Engine._execute_all

    def switch_then_execute(self, todo, total, desc):
        monkeypatch.setenv("PAPER_REPRO_NS_DTYPE", "bfloat16")
        yield from original(self, todo, total, desc)

    monkeypatch.setattr(Engine, "_execute_all", switch_then_execute)
    with Engine(store=tmp_path, jobs=1) as e, pytest.raises(RunError, match="wrong key"):
        e.run([s])
    assert not RunStore(tmp_path).keys()


def test_ray_workers_get_the_project_the_data_root_and_a_forced_precision(monkeypatch, tmp_path):
    from experiments.engine import ray_runtime_env

    monkeypatch.delenv("PAPER_REPRO_DATA_ROOT", raising=False)
    monkeypatch.delenv("PAPER_REPRO_NS_DTYPE", raising=False)
    env = ray_runtime_env()["env_vars"]
    assert "PAPER_REPRO_DATA_ROOT" not in env and "PAPER_REPRO_NS_DTYPE" not in env
    assert str(Path(engine_module.__file__).resolve().parents[1]) in env["PYTHONPATH"].split(os.pathsep)
    monkeypatch.setenv("PAPER_REPRO_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("PAPER_REPRO_NS_DTYPE", "float32")
    env = ray_runtime_env()["env_vars"]
    assert env["PAPER_REPRO_DATA_ROOT"] == str(tmp_path) and env["PAPER_REPRO_NS_DTYPE"] == "float32"
    # --cpu-kernels avx2's variables travel too: a worker without them would compute natively
    from experiments.envvars import AVX2_KERNEL_ENV
    assert not set(AVX2_KERNEL_ENV) & set(env)
    for name, value in AVX2_KERNEL_ENV.items():
        monkeypatch.setenv(name, value)
    assert AVX2_KERNEL_ENV.items() <= ray_runtime_env()["env_vars"].items()


def test_a_run_gets_as_many_blas_threads_as_torch_threads(monkeypatch):
    from threadpoolctl import threadpool_info

    import numpy as np  # noqa: F401  (loads the BLAS whose threads are limited)

    seen = {}

    def run(config):
        seen["blas"] = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
        return {"ok": True}

    monkeypatch.setattr(engine_module, "task_module", lambda task: type("T", (), {"run": staticmethod(run)}))
    engine_module.execute("toy_regression", {}, threads=1)
    assert seen["blas"] and set(seen["blas"].values()) == {1}


def test_an_optimum_on_an_edge_is_followed_further_than_the_divergence_search():
    """The rule, on synthetic scores: past an optimum on the lower edge up to EDGE_FACTOR x extend
    points; the divergence search above an interior optimum stops after extend points; extend 0
    extends nothing."""
    from experiments.tuning import EDGE_FACTOR, _next_points

    def run(score_of, extend, to_divergence=False):
        t = TuneSpec("m", [1.0, 10 ** 0.25, 10 ** 0.5], [0], None, None, True, "c", extend=extend,
                     to_divergence=to_divergence)
        scores, added = {lr: [score_of(lr)] for lr in t.grid}, {"lo": 0, "hi": 0}
        while new := [lr for lr in _next_points(t, scores, added) if lr not in scores]:
            scores.update({lr: [score_of(lr)] for lr in new})
        return sorted(scores)

    falling = run(lambda lr: -lr, extend=2)                  # best at ever smaller lr: the budget runs out
    assert len(falling) == 3 + EDGE_FACTOR * 2 and min(falling) == pytest.approx(10 ** (-EDGE_FACTOR * 2 / 4))
    peak = 10 ** -1.25                                       # an optimum 5 points below the grid: found
    found = run(lambda lr: -abs(math.log10(lr / peak)), extend=2)
    assert min(found) == pytest.approx(10 ** -1.5) and max(found) == pytest.approx(10 ** 0.5)
    # interior optimum: the divergence search adds extend points above and stops with the top alive
    assert len(run(lambda lr: -abs(math.log10(lr / 10 ** 0.25)), extend=2, to_divergence=True)) == 5
    assert run(lambda lr: -lr, extend=0) == pytest.approx([1.0, 10 ** 0.25, 10 ** 0.5])


def test_a_record_left_on_an_edge_by_the_older_rule_is_continued_not_retuned(tmp_path, monkeypatch, capsys):
    """A record written when the search stopped after `extend` points (EDGE_FACTOR 1) with its
    optimum still on an edge: read under the current rule, the search goes on from its recorded
    scores and computes only the lrs it lacks, and ends where a search from scratch ends."""
    from experiments import tuning

    def make(lr, seed):
        return spec(lr=lr, seed=seed, steps=15)

    t = TuneSpec("sgd", [0.001, 0.003], [100], make, lambda r: r["loss"][-1], False, "final loss", extend=1)
    monkeypatch.setattr(tuning, "EDGE_FACTOR", 1)
    with Engine(store=tmp_path / "old") as e:
        old = tune_all(e, [t], write_record=True, record_dir=tmp_path / "rec")["sgd"]
    assert old.at_edge and len(old.grid) == 3 and not tuning.needs_more_points(t, old.scores)
    monkeypatch.setattr(tuning, "EDGE_FACTOR", 3)
    assert tuning.needs_more_points(t, old.scores)
    with Engine(store=tmp_path / "fresh") as e:
        cont = tune_all(e, [t], record_dir=tmp_path / "rec")["sgd"]
        assert e.counts["computed"] == len(cont.grid) - 3          # only the lrs the record lacked
    assert "continuing it from the recorded scores" in capsys.readouterr().err
    with Engine(store=tmp_path / "scratch") as e:
        scratch = tune_all(e, [t], use_record=False)["sgd"]
    assert cont.source == "computed" and len(cont.grid) > 3
    assert (cont.lr, cont.grid, cont.scores) == (scratch.lr, scratch.grid, scratch.scores)
    assert cont.run_keys == scratch.run_keys


def test_a_continued_record_is_read_in_every_round_not_only_the_first(tmp_path):
    """A record that lacks an lr of one round but holds lrs of later rounds (here: the divergence
    point above the grid is missing, the lower-edge points past it are there): the search runs only
    the missing lr and takes the later rounds' lrs from the record, ending where a search from
    scratch ends."""
    from experiments import tuning

    class Fake:                                   # an engine whose run's score is -lr, counting runs
        store, fresh = None, False

        def __init__(self):
            self.ran = []

        def key(self, spec):
            return f"{spec[0]!r}/{spec[1]}"

        def run(self, specs, desc=None):
            self.ran += specs
            return [{"score": -lr} for lr, _ in specs]

    r = 10 ** 0.25
    t = TuneSpec("m", [1.0, r, r * r], [7, 8], lambda lr, s: (lr, s), lambda res: res["score"], True, "c",
                 extend=1, to_divergence=True)
    scratch = tune_all(Fake(), [t], use_record=False)["m"]
    top = max(scratch.grid)
    assert top == pytest.approx(r ** 3) and min(scratch.grid) == pytest.approx(r ** -tuning.EDGE_FACTOR)
    partial = Selection("m", scratch.lr, [lr for lr in scratch.grid if lr != top],
                        {lr: v for lr, v in scratch.scores.items() if lr != top}, "c", [7, 8], "computed",
                        True, {lr: v for lr, v in scratch.run_keys.items() if lr != top},
                        tuning.tuning_key(Fake(), t))
    tuning.write_record_file(tmp_path, partial)
    assert tuning.needs_more_points(t, partial.scores)
    e = Fake()
    cont = tune_all(e, [t], record_dir=tmp_path)["m"]
    assert sorted(lr for lr, _ in e.ran) == pytest.approx([top, top])     # the missing lr, both seeds
    assert (cont.lr, cont.grid, cont.scores, cont.run_keys) == (scratch.lr, scratch.grid, scratch.scores,
                                                                scratch.run_keys)
