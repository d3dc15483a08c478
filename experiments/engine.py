"""The experiment engine: a training run is a value, stored once and shared by every figure.

    spec = RunSpec("imbalance", {"optimizer": "muon", "lr": 0.02, "seed": 3, ...})
    with Engine(store="figures/runs", jobs=2) as engine:
        results = engine.run([spec, ...])          # task outputs, in the order of the specs

A *task* is a module registered in `TASKS` with an integer `VERSION` and a pure function
`run(config: dict) -> dict` that builds its data, model and optimizer from `config` alone (every
seed inside the config) and returns a JSON-able result. A `RunSpec` is a task name plus its full
configuration; its `key` is a SHA-256 of the canonical JSON of the task name, the task's VERSION,
the version of the optimizer the config names (experiments.optim.registry.optimizer_version), the
precision the hardware picks for it where that is chosen at run time (registry.hardware_numerics:
Muon's ns_dtype="auto" is bfloat16 on a CPU with native bfloat16 and float32 on one without), the
torch intra-op thread count and the config, and, where the task defines `data_version(config)`
and it returns a version (not None), that version of the data the config draws: a change to one
dataset's split re-keys that dataset's runs and keeps the others' keys. Bump a task's VERSION (or an
optimizer's) whenever its numbers change, and every stored result of it stops matching: a stale
result is never reused.

Results live in a content-addressed store, one JSON file per key under `<store>/<key[:2]>/<key>.json`,
written by atomic rename: concurrent writers of the same key write the same bytes' meaning and the
last rename wins; a reader never sees a partial file. A run already in the store is not recomputed
(unless `fresh=True`), so a stopped figure resumes where it stopped and two figures that need the
same run share it.

Execution: `jobs=1` runs in this process; `jobs>1` in a pool of worker processes ("spawn", one
torch thread each); `executor="ray"` as Ray tasks on a local Ray instance or an existing cluster
(`ray_address`), a CUDA run asking Ray for a fraction of a GPU. Each run carries its own seeds, so
the results do not depend on the executor or the number of jobs. Each finished run is stored as
soon as it arrives.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from experiments.envvars import AVX2_KERNEL_ENV, DATA_ROOT_ENV, NS_DTYPE_ENV, cpu_kernels_label
from experiments.fileio import atomic_write_bytes, dumps, json_bytes, jsonable

# task name -> module path; the module defines VERSION: int and run(config: dict) -> dict
TASKS: dict[str, str] = {
    "imbalance": "experiments.tasks.imbalance",
    "groups": "experiments.tasks.groups",
    "lm": "experiments.tasks.lm",
    "autoencoder": "experiments.tasks.autoencoder",
    "cnn_cost": "experiments.tasks.cnn_cost",
    "width_mlp": "experiments.tasks.width_mlp",
    "softmax_numpy": "experiments.tasks.softmax_numpy",
    "toy_regression": "experiments.tasks.toy_regression",
}
EXECUTORS = ("local", "ray")


class RunError(RuntimeError):
    """A task raised: the message names the task, the key and the error."""


def task_module(task: str):
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[task])


def _canonical(obj):
    """The config as plain JSON values (tuples -> lists, numpy -> python); key order irrelevant."""
    return json.loads(dumps(obj, indent=None))


@dataclass(frozen=True)
class RunSpec:
    """One training run: a registered task and its full configuration (JSON-able)."""

    task: str
    config: Mapping = field(default_factory=dict)

    def identity(self, threads: int = 1) -> dict:
        """Everything the key depends on (see the module docstring)."""
        from experiments.optim.registry import optimizer_version

        module = task_module(self.task)
        config = _canonical(self.config)
        ident = {"task": self.task, "task_version": int(module.VERSION), "threads": int(threads), "config": config}
        data_version = getattr(module, "data_version", None)
        if data_version is not None and data_version(config) is not None:
            ident["data_version"] = int(data_version(config))
        opt = config.get("optimizer")
        if isinstance(opt, str):
            ident["optimizer_version"] = optimizer_version(opt)
            numerics = run_numerics(config)
            if numerics is not None:  # e.g. Muon's ns_dtype="auto": bfloat16 here, float32 on another CPU
                ident["numerics"] = numerics
        return ident

    def key(self, threads: int = 1) -> str:
        return key_of(self.identity(threads))


def key_of(identity: Mapping) -> str:
    """The store key of a run identity (RunSpec.identity)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RunStore:
    """Content-addressed store of run records: `<root>/<key[:2]>/<key>.json`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether an entry exists (not whether it is readable: `get` decides that, and a damaged
        entry is recomputed by the engine)."""
        return self.path(key).is_file()

    def get(self, key: str) -> dict | None:
        """The stored record, or None when absent or unreadable (an unreadable one is recomputed)."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # absent (FileNotFoundError is an OSError) or unreadable
            return None
        if not isinstance(record, dict) or record.get("key") != key or "result" not in record:
            return None
        return record

    def put(self, key: str, record: dict) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json_bytes(record))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("??/*.json"))

    def size_bytes(self, keys: Iterable[str] | None = None) -> int:
        paths = self.root.glob("??/*.json") if keys is None else (self.path(k) for k in keys)
        return sum(p.stat().st_size for p in paths if p.exists())


def versions(load: Sequence[str] = ()) -> dict:
    """Provenance for run records and figN.json: Python's version, the versions of the modules in
    `load` (imported if need be) and of numpy and torch where this process has loaded them, and the
    CPU kernels torch computes with (another kind of CPU rounds differently)."""
    out = {"python": platform.python_version()}
    for name in dict.fromkeys((*load, "numpy", "torch")):
        mod = sys.modules.get(name) or (importlib.import_module(name) if name in load else None)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    kernels = cpu_kernels_label()
    if kernels is not None:
        out["cpu_kernels"] = kernels
    return out


_UNCHECKED = object()


def run_numerics(config: Mapping) -> str | None:
    """The hardware-chosen precision a run's optimizer resolves in this process (part of its key)."""
    from experiments.optim.registry import hardware_numerics

    opt = config.get("optimizer")
    if not isinstance(opt, str):
        return None
    return hardware_numerics(opt, config.get("optimizer_kwargs") or {}, str(config.get("device", "cpu")))


def execute(task: str, config: dict, threads: int = 1, numerics=_UNCHECKED) -> dict:
    """Run one task in this process with `threads` torch threads; return its record (without key).
    This is what every executor calls (a worker process, a Ray task, or the parent itself).

    `numerics`: the precision the run's key was computed with (RunSpec.identity's "numerics"). A
    worker that would resolve another one (a Ray node with another kind of CPU, or without the
    parent's PAPER_REPRO_NS_DTYPE) raises instead of storing its numbers under that key."""
    module = task_module(task)
    if numerics is not _UNCHECKED and (here := run_numerics(config)) != numerics:
        raise RuntimeError(f"this process resolves the optimizer's precision to {here}, the run's key was "
                           f"computed with {numerics}: its numbers would be stored under the wrong key. Give "
                           f"every worker the same precision: set {NS_DTYPE_ENV} the same everywhere "
                           f"(paper_repro.py --ns-dtype), or pass an explicit ns_dtype")
    from threadpoolctl import threadpool_limits

    from experiments.runtime.threads import torch_threads

    t0, c0 = time.perf_counter(), time.process_time()
    # NumPy/SciPy/sklearn BLAS and OpenMP get the same thread count as torch: a run's numbers must
    # not depend on how many cores the host has, and --jobs N workers must not each start one BLAS
    # thread per core (figure 8's decoding then used both cores under --jobs 1 and oversubscribed
    # them under --jobs 2).
    with torch_threads(threads), threadpool_limits(limits=threads):
        result = module.run(dict(config))
    # cpu_s (this process's CPU time) is what a run costs on a quiet machine: unlike wall_s it does
    # not grow when other jobs share the cores, so budgets can be checked on a busy one.
    return {"task": task, "config": config, "result": jsonable(result), "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "versions": versions(), "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def _worker_init() -> None:
    # One torch thread per worker: the runs are small, and a fixed count keeps round-off identical.
    import torch

    torch.set_num_threads(1)


class Engine:
    """Runs RunSpecs through the store and an executor. Use as a context manager (closes pools)."""

    def __init__(self, store: str | Path | None = None, jobs: int = 1, executor: str = "local",
                 ray_address: str | None = None, fresh: bool = False, threads: int = 1,
                 progress: bool | None = None, gpu_fraction: float = 0.125, log: Callable[[str], None] | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not 0 < gpu_fraction <= 1:
            raise ValueError(f"gpu_fraction must be in (0, 1], got {gpu_fraction}")
        self.store = RunStore(store) if store is not None else None
        self.jobs, self.executor, self.ray_address = jobs, executor, ray_address
        self.fresh, self.threads, self.gpu_fraction = fresh, threads, gpu_fraction
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._pool: ProcessPoolExecutor | None = None
        self._ray = None
        self._done_this_session: set[str] = set()  # keys computed (not read) by this engine
        self.counts = {"computed": 0, "stored": 0, "cpu_s": 0.0}

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -------------------------------------------------------------- public
    def key(self, spec: RunSpec) -> str:
        return spec.key(self.threads)

    def run(self, specs: Sequence[RunSpec], desc: str = "runs") -> list[dict]:
        """The result of every spec (computing only the missing ones), in the order given."""
        keyed = self._keyed(specs)
        records = self._records(dict(keyed), desc)
        return [records[k]["result"] for k, _ in keyed]

    def run_records(self, specs: Sequence[RunSpec], desc: str = "runs") -> dict[str, dict]:
        """{key: record} for every spec; records carry result, wall_s, versions, config."""
        return self._records(dict(self._keyed(specs)), desc)

    def _keyed(self, specs: Sequence[RunSpec]) -> list[tuple[str, dict]]:
        """(key, identity) of every spec, in order: each identity is computed and keyed once."""
        return [(key_of(i), i) for i in (s.identity(self.threads) for s in specs)]

    def _records(self, unique: dict[str, dict], desc: str) -> dict[str, dict]:
        """{key: record} for {key: the identity it was made from}. A missing run is executed from
        its identity (its canonical config and the precision in its key), never from a spec keyed
        again, so that what runs is what the key names."""
        records: dict[str, dict] = {}
        todo: dict[str, dict] = {}
        for key, ident in unique.items():
            record = None
            if self.store is not None and (not self.fresh or key in self._done_this_session):
                record = self.store.get(key)
            if record is None:
                todo[key] = ident
            else:
                records[key] = record
        self.counts["stored"] += len(records)
        if todo:
            for key, record in self._execute_all(todo, len(unique), desc):
                record["key"] = key
                if self.store is not None:
                    self.store.put(key, record)
                self._done_this_session.add(key)
                self.counts["computed"] += 1
                self.counts["cpu_s"] += record.get("cpu_s", 0.0)
                records[key] = record
        return records

    # -------------------------------------------------------------- execution
    def _execute_all(self, todo: dict[str, dict], total: int, desc: str):
        bar = _Progress(len(todo), total - len(todo), desc, self.progress, self.log)
        try:
            if self.executor == "ray":
                yield from bar.track(self._ray_iter(todo))
            elif self.jobs == 1:
                yield from bar.track(self._inline_iter(todo))
            else:
                yield from bar.track(self._pool_iter(todo))
        finally:
            bar.close()

    def _call(self, ident: Mapping) -> tuple:
        """execute's arguments from a run's identity: task, config, threads, and the precision its
        key was made with (not resolved again: a worker that resolves another one raises)."""
        return ident["task"], ident["config"], self.threads, ident.get("numerics")

    def _inline_iter(self, todo: dict[str, dict]):
        for key, ident in todo.items():
            yield key, self._guard(key, ident, lambda: execute(*self._call(ident)))

    def _guard(self, key: str, ident: Mapping, fn):
        try:
            return fn()
        except (KeyboardInterrupt, RunError):
            raise
        except Exception as e:
            raise RunError(f"task {ident['task']!r} run {key} failed: {type(e).__name__}: {e}") from e

    def _pool_iter(self, todo: dict[str, dict]):
        import multiprocessing

        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init)
        futures: dict[Future, str] = {
            self._pool.submit(execute, *self._call(ident)): key for key, ident in todo.items()}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    key = futures[f]
                    yield key, self._guard(key, todo[key], f.result)
        except BaseException:
            for f in pending:
                f.cancel()
            raise

    def _ray_iter(self, todo: dict[str, dict]):
        ray = self._ray_module()
        remote = ray.remote(execute)
        refs = {}
        for key, ident in todo.items():
            opts = {"num_cpus": self.threads}
            if str(ident["config"].get("device", "cpu")).startswith("cuda"):
                opts["num_gpus"] = self.gpu_fraction
            refs[remote.options(**opts).remote(*self._call(ident))] = key
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    key = refs[ref]
                    yield key, self._guard(key, todo[key], lambda: ray.get(ref))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def _ray_module(self):
        if self._ray is None:
            try:
                import ray
            except ImportError:
                raise RuntimeError("--executor ray needs the ray package: pip install 'ray[default]'") from None
            if not ray.is_initialized():
                kwargs = {"address": self.ray_address, "runtime_env": ray_runtime_env(), "log_to_driver": False}
                if self.ray_address is None:
                    kwargs["num_cpus"] = self.jobs
                    kwargs["include_dashboard"] = False
                ray.init(**kwargs)
            self._ray = ray
        return self._ray


def ray_runtime_env() -> dict:
    """What Ray workers need from this process's environment: the project on PYTHONPATH, the
    user's dataset folder (--data-root), which the tasks read from PAPER_REPRO_DATA_ROOT, a forced
    Newton-Schulz precision (PAPER_REPRO_NS_DTYPE, --ns-dtype) and forced CPU kernels
    (--cpu-kernels avx2). On a cluster the folder must exist at the same path on every node."""
    root = str(Path(__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    for name in (DATA_ROOT_ENV, NS_DTYPE_ENV, *AVX2_KERNEL_ENV):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return {"env_vars": env}


class _Progress:
    """One bar of runs done / total with an ETA on a terminal; plain lines (about every 10%) otherwise."""

    def __init__(self, n: int, already: int, desc: str, tty: bool, log):
        self.n, self.already, self.desc, self.log = n, already, desc, log
        self.done, self.t0, self.next_line = 0, time.perf_counter(), 0.1
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=n + already, initial=already, desc=desc, unit="run", leave=False)
        elif n:
            self.log(f"   {desc}: {n} to compute ({already} already stored)")

    def track(self, items):
        for item in items:
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            elif self.done / self.n >= self.next_line or self.done == self.n:
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / self.done * (self.n - self.done)
                self.log(f"   {self.desc}: {self.done}/{self.n} done, {elapsed:.0f} s, eta {eta:.0f} s")
                self.next_line = self.done / self.n + 0.1
            yield item

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
