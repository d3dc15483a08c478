"""Theory figures 2, 3, 4, 5, 10 (their smoke runs: test_figures_smoke.py): the sampled ones are
deterministic."""
import pytest

from paperfigs import registry
from experiments.fileio import jsonable


@pytest.mark.parametrize("number", [4, 10])
def test_sampled_theory_figures_are_deterministic(number):
    module = registry.FIGURES[number].load()
    a = jsonable(module.compute(mode="smoke", seed=3, device="cpu"))
    b = jsonable(module.compute(mode="smoke", seed=3, device="cpu"))
    assert a["series"] == b["series"] and a["claims"] == b["claims"]
