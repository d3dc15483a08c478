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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite, as paper_repro.py's default: the tensors here are
    tiny, and extra threads only add contention (60 SGD steps of a test MLP: 11 s with 2 threads
    under load, 2 s with 1)."""
    from experiments.runtime.threads import torch_threads

    with torch_threads(1):
        yield


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
