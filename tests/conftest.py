"""Shared test setup: headless plotting and a repo-root import path."""
import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests know which precision Muon's "auto" picks from the hardware (and force one where they
# need to): a PAPER_REPRO_NS_DTYPE left set in the user's shell would change it under them.
os.environ.pop("PAPER_REPRO_NS_DTYPE", None)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite, as paper_repro.py's default: the tensors here are
    tiny, and extra threads only add contention (60 SGD steps of a test MLP: 11 s with 2 threads
    under load, 2 s with 1)."""
    from experiments.runtime.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def muon_key_numerics(monkeypatch):
    """force("bfloat16" | "float32"): run keys computed as on a CPU with / without native bfloat16.
    Muon's ns_dtype="auto" precision is part of its runs' keys, so it decides which committed Muon
    selection records a machine reads; the tests check both sets on any machine."""
    def force(name: str) -> None:
        import torch

        from experiments.optim import registry

        monkeypatch.setattr(registry, "auto_ns_dtype", lambda device: (getattr(torch, name), f"{name} (test)"))

    return force


def _fashion_available() -> bool:
    from experiments.data.images import load_raw

    try:
        load_raw("fashion")
    except FileNotFoundError:
        return False
    return True


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_fashion: needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")


def pytest_collection_modifyitems(config, items):
    """Tests marked needs_fashion skip, with the install command as the reason, when the Debian
    package is missing (.ci/run installs it; the skip keeps a machine without apt usable)."""
    marked = [item for item in items if item.get_closest_marker("needs_fashion")]
    if marked and not _fashion_available():
        skip = pytest.mark.skip(reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smoke_figure(tmp_path_factory):
    """smoke_figure(N) -> (result, out_dir): figure N's smoke run through the runner (seed 0, CPU,
    the runner's own inline engine storing runs under out_dir/runs), computed once per session.
    tests/test_figures_smoke.py checks every figure's output; figure-specific tests and the
    executor checks read the same run instead of training it again. Treat both as read-only."""
    import copy

    from paperfigs.runner import run_figure

    done = {}

    def get(number):
        if number not in done:
            out = tmp_path_factory.mktemp(f"smoke_fig{number}")
            done[number] = (run_figure(number, mode="smoke", seed=0, device="cpu", out_dir=out), out)
        result, out = done[number]
        return copy.deepcopy(result), out

    return get
