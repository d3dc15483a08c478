"""The one cost harness (experiments.cost): periods, the timed protocol's bookkeeping, state memory."""
import pytest
import torch

from experiments import cost
from experiments.optim import registry
from experiments.optim.registry import build_optimizer


def _tiny():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    batches = [(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)) for _ in range(2)]
    return model, batches


def test_period_is_the_lcm_of_the_periodic_hyperparameters():
    model, _ = _tiny()
    assert cost.period(build_optimizer("sgd", model, 0.1)) == 1
    assert cost.period(build_optimizer("muon", model, 0.1)) == 1
    assert cost.period(build_optimizer("shampoo", model, 0.1)) == 10
    assert cost.period(build_optimizer("tnt", model, 0.1, curvature_frequency=4, inverse_frequency=6)) == 12
    assert cost.period(build_optimizer("kfac", model, 0.1)) == 100
    assert cost.period(build_optimizer("splus", model, 0.1, inverse_steps=7)) == 7


def test_state_bytes_counts_momentum_once_per_parameter():
    m = torch.nn.Linear(10, 6)
    sgd = build_optimizer("sgd", m, 0.1)
    m(torch.randn(4, 10)).sum().backward()
    sgd.step()
    assert cost.state_bytes(sgd) == 4 * (10 * 6 + 6)
    adam = build_optimizer("adam", m, 0.1)
    adam.step()
    # exp_avg and exp_avg_sq per parameter (+ the tiny step counters)
    assert 2 * 4 * 66 <= cost.state_bytes(adam) <= 2 * 4 * 66 + 64
    # a view of a state tensor's storage is not counted twice
    sgd.state[m.weight]["alias"] = sgd.state[m.weight]["momentum_buffer"][0]
    assert cost.state_bytes(sgd) == 4 * (10 * 6 + 6)


def test_step_costs_time_whole_periods_of_every_method():
    model, batches = _tiny()
    methods = {"SGD-m": ("sgd", 0.1, {}), "TNT": ("tnt", 1e-3, {"curvature_frequency": 2, "inverse_frequency": 3}),
               "Shampoo": ("shampoo", 1e-3, {"precondition_frequency": 4, "start_preconditioning_step": 6})}
    costs, extra = cost.measure_step_costs(model, methods, batches, "ce", seed=0, rounds=2, min_run_time=1e-3,
                                           threads=1)
    assert set(costs) == set(methods) and extra == {}
    assert {k: c.period for k, c in costs.items()} == {"SGD-m": 1, "TNT": 6, "Shampoo": 4}
    for c in costs.values():
        assert c.seconds_per_step > 0 and c.replicates >= 2 and len(c.round_seconds) == 2
        # an untimed start-up, then whole periods only: no timed unit cuts a period
        assert c.steps % c.period == 0 and c.steps >= (1 + c.replicates) * c.period
    assert costs["Shampoo"].steps >= 8 + 4 * costs["Shampoo"].replicates  # start-up 6 steps -> 2 periods
    # TNT keeps momentum plus factors and their inverses: strictly more state than SGD-m.
    assert costs["TNT"].state_bytes > costs["SGD-m"].state_bytes == 4 * sum(p.numel() for p in model.parameters())
    # the caller's model is left untouched (every method trains its own copy)
    assert all(p.grad is None for p in model.parameters())


def test_step_costs_reject_bad_settings_with_one_line_errors():
    model, batches = _tiny()
    methods = {"SGD-m": ("sgd", 0.1, {})}
    for kwargs in ({"rounds": 0}, {"min_run_time": 0.0}, {"threads": 0}, {"extra_min_run_time": 0.0},
                   {"extra": {"SGD-m": lambda: None}}):
        with pytest.raises(ValueError):
            cost.measure_step_costs(model, methods, batches, "ce", seed=0, **kwargs)
    with pytest.raises(ValueError, match="batch"):
        cost.measure_step_costs(model, methods, [], "ce", seed=0)


def test_clock_is_thread_time_only_for_one_cpu_thread():
    assert cost.clock(torch.device("cpu"), 1)[1] == "thread CPU time"
    assert cost.clock(torch.device("cpu"), 2)[1] == "wall time"


def test_extra_callables_are_timed_in_every_round_right_after_the_methods(monkeypatch):
    """Each round times every method's period, then every extra callable, so a caller can pair a
    method's time with other work measured in the same round; each round's figure is the median of
    that round's replicates (per step for a method). The Timer is replaced by a call counter."""
    model, batches = _tiny()
    calls = []

    def fake_time_fn(fn, device, threads, min_run_time):
        calls.append((getattr(fn, "label", fn), min_run_time))
        k = len(calls)
        return [k, k + 2, 10 * k]  # median k + 2

    monkeypatch.setattr(cost, "time_fn", fake_time_fn)
    x, y = (lambda: None), (lambda: None)
    methods = {"SGD-m": ("sgd", 0.1, {}), "TNT": ("tnt", 1e-3, {"curvature_frequency": 2, "inverse_frequency": 4})}
    costs, extra = cost.measure_step_costs(model, methods, batches, "ce", seed=0, rounds=3, min_run_time=0.5,
                                           threads=1, extra={"x": x, "y": y}, extra_min_run_time=0.25)
    assert calls == [("SGD-m", 0.5), ("TNT", 0.5), (x, 0.25), (y, 0.25)] * 3
    assert costs["SGD-m"].round_seconds == (3, 7, 11)
    assert costs["TNT"].round_seconds == (4 / 4, 8 / 4, 12 / 4)  # per step of a period of 4
    assert extra == {"x": (5, 9, 13), "y": (6, 10, 14)}
    assert costs["SGD-m"].replicates == 9 and costs["SGD-m"].seconds_per_step == 9  # median of all 9 replicates


class _Blowup(torch.optim.SGD):
    """SGD whose third step writes inf into the weights (the loss after it is not finite)."""
    steps = 0

    def step(self, closure=None):
        super().step(closure)
        self.steps += 1
        if self.steps == 3:
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.fill_(float("inf"))


class _Raises(torch.optim.SGD):
    def step(self, closure=None):
        raise FloatingPointError("non-finite gradient entries")


@pytest.mark.parametrize("cls, why", [(_Blowup, "loss nan"), (_Raises, "non-finite gradient entries")])
def test_a_diverging_method_stops_with_one_line_naming_it(monkeypatch, cls, why):
    """A non-finite loss (checked between rounds) or a FloatingPointError from the step is one
    FloatingPointError naming the method's label, its lr and the iteration."""
    monkeypatch.setitem(registry.OPTIMIZERS, "toy", registry.OptimizerEntry("toy", lambda m, lr: cls(m.parameters(), lr)))
    model, batches = _tiny()
    methods = {"SGD-m": ("sgd", 0.1, {}), "Toy": ("toy", 0.5, {})}
    with pytest.raises(FloatingPointError) as e:
        cost.measure_step_costs(model, methods, batches, "ce", seed=0, rounds=2, min_run_time=1e-3, threads=1)
    message = str(e.value)
    assert message.startswith("Toy (lr 0.5) diverged by iteration ") and message.endswith(why)
    assert "\n" not in message
