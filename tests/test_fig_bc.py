"""Figures 11-15 (TNT and SPlus papers): smoke runs through the runner, and the helpers they rest on."""
import json
import math

import pytest
import torch

from experiments.models.autoencoder import DeepAutoencoder
from experiments.runtime.threads import torch_threads
from experiments.optim.registry import build_optimizer
from paperfigs.runner import run_figure, validate_result
from theory.metrics import first_crossing, first_step


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads on a CPU shared with other jobs make eigh and convs many times slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("number", [11, pytest.param(12, marks=pytest.mark.needs_fashion), 13, 14, 15])
def test_smoke_run_writes_valid_outputs_with_evaluated_claims(number, tmp_path):
    result = run_figure(number, mode="smoke", seed=0, device="cpu", out_dir=tmp_path)
    validate_result(result)
    saved = json.loads((tmp_path / f"fig{number}.json").read_text())
    assert saved["figure"] == number and saved["mode"] == "smoke"
    assert saved["claims"]
    for c in saved["claims"]:
        assert isinstance(c["holds"], bool)
        assert c["value"] is not None, c
    assert (tmp_path / f"fig{number}.png").stat().st_size > 0


def test_autoencoder_shape_mirror_and_linear_code():
    m = DeepAutoencoder((784, 1000, 500, 250, 30))
    linears = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (784, 1000), (1000, 500), (500, 250), (250, 30), (30, 250), (250, 500), (500, 1000), (1000, 784)]
    assert m.head is linears[-1]
    # The code layer is linear: no ReLU right after the 30-unit layer, so codes can be negative.
    code = m.encoder(torch.rand(64, 784))
    assert code.shape == (64, 30) and (code < 0).any()
    assert m(torch.rand(3, 784)).shape == (3, 784)
    with pytest.raises(ValueError):
        DeepAutoencoder((784,))


def test_first_crossing_one_rule_for_rising_falling_and_per_class_curves():
    steps, loss = [0, 10, 20, 30], [5.0, 3.0, math.nan, 1.0]
    assert first_step(steps, loss, 3.0) == 10
    assert first_step(steps, loss, 2.0) == 30            # a NaN evaluation never counts
    assert first_step(steps, [5.0, None, 1.0, 0.0], 2.0) == 20
    assert first_step(steps, loss, 0.5) is None
    assert first_step(steps, [0.1, 0.2, 0.9, 0.95], 0.9, ">=", start=15) == 20
    assert first_step(steps, [0.9, 0.2, 0.1, 0.0], 0.9, ">=", start=15) is None
    traj = [[0.0, 0.0], [1.0, 0.5], [2.0, 3.0]]
    assert first_crossing(traj, [1.0, 2.0]).tolist() == [1, 2]
    assert first_crossing(traj, [3.0, 4.0]).tolist() == [-1, -1]
    assert first_crossing([3.0, 2.0, 1.0], 2.0, "<=") == 1
    with pytest.raises(ValueError, match="direction"):
        first_crossing(traj, 1.0, ">")
    with pytest.raises(ValueError, match="equal lengths"):
        first_step([0, 1], [1.0], 0.5)


def test_splus_shape_scaling_switch_scales_the_matrix_step_by_half_m_plus_n():
    steps = {}
    for scaling in (True, False):
        torch.manual_seed(0)
        m = torch.nn.Linear(10, 6, bias=False)
        w0 = m.weight.detach().clone()
        opt = build_optimizer("splus", m, 0.1, shape_scaling=scaling, weight_decay=0.0)
        m(torch.randn(4, 10)).sum().backward()
        opt.step()
        steps[scaling] = m.weight.detach() - w0
    torch.testing.assert_close(steps[False], steps[True] * (6 + 10) / 2)


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    before = torch.get_num_threads()  # 1, set by the fixture
    with pytest.raises(RuntimeError):
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass
