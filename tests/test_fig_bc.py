"""Figures 11-15 (TNT and SPlus papers): smoke runs through the runner, and the helpers they rest on."""
import json
import math

import pytest
import torch

from experiments.tasks.autoencoder import DeepAutoencoder
from experiments.cpu_threads import torch_threads
from experiments.lr_select import select_lr
from experiments.optim.registry import build_optimizer
from experiments.step_cost import measure_step_costs, state_bytes
from experiments.steps_to_target import first_reach, fraction_of_reference
from paperfigs.runner import run_figure, validate_result


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


def test_lr_selection_lowest_finite_score_and_edge_flag():
    assert select_lr({1e-4: 2.0, 1e-3: 1.0, 1e-2: None}) == (1e-3, False)
    assert select_lr({1e-4: 2.0, 1e-3: 3.0, 1e-2: math.inf}) == (1e-4, True)
    assert select_lr({1e-4: None, 1e-3: math.nan}) == (None, False)


def test_first_reach_and_fraction():
    steps, wall, loss = [0, 10, 20, 30], [0.0, 1.0, 2.0, 3.0], [5.0, 3.0, math.nan, 1.0]
    assert first_reach(steps, wall, loss, 3.0) == (10, 1.0)
    assert first_reach(steps, wall, loss, 2.0) == (30, 3.0)
    assert first_reach(steps, wall, loss, 0.5) == (None, None)
    assert fraction_of_reference(10, 40) == 0.25
    assert fraction_of_reference(None, 40) is None


def test_state_bytes_counts_momentum_once_per_parameter():
    m = torch.nn.Linear(10, 6)
    sgd = build_optimizer("sgd", m, 0.1)
    m(torch.randn(4, 10)).sum().backward()
    sgd.step()
    assert state_bytes(sgd) == 4 * (10 * 6 + 6)
    adam = build_optimizer("adam", m, 0.1)
    adam.step()
    # exp_avg and exp_avg_sq per parameter (+ the tiny step counters)
    assert 2 * 4 * 66 <= state_bytes(adam) <= 2 * 4 * 66 + 64


def test_step_costs_are_measured_for_each_method():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    batches = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(2)]
    costs = measure_step_costs(model, {"SGD-m": ("sgd", 0.1, {}), "TNT": ("tnt", 1e-3, {})}, batches, "ce",
                               block=3, rounds=2, seed=0, warmup=2)
    assert set(costs) == {"SGD-m", "TNT"}
    assert all(c.seconds_per_step > 0 for c in costs.values())
    # TNT keeps momentum plus factors and their inverses: strictly more state than SGD-m.
    assert costs["TNT"].state_bytes > costs["SGD-m"].state_bytes == 4 * sum(p.numel() for p in model.parameters())


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
