"""Data-parallel optimizer steps (experiments.optim.distributed): ownership, the one-process path,
and a real two-process run under torchrun compared with one process on the global batch."""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import ddp_worker as w
from experiments.optim import build_optimizer
from experiments.optim.distributed import assign_owners, kronecker_cost, matrix_cost, world

ROOT = Path(__file__).resolve().parents[1]


def test_assign_owners_greedy_and_near_optimal():
    assert assign_owners([1.0, 5.0, 3.0, 3.0, 4.0], 2) == [1, 0, 1, 0, 1]  # loads 8 and 8
    assert assign_owners([2.0, 2.0, 2.0], 1) == [0, 0, 0]
    assert assign_owners([], 3) == []
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        costs = (torch.rand(8, generator=rng) * 100).tolist()
        owners = assign_owners(costs, 2)
        loads = [sum(c for c, o in zip(costs, owners) if o == r) for r in (0, 1)]
        best = min(max(sum(c for c, s in zip(costs, side) if s), sum(c for c, s in zip(costs, side) if not s))
                   for side in itertools.product((0, 1), repeat=len(costs)))
        assert max(loads) <= (4 / 3 - 1 / 6) * best + 1e-9  # the greedy (LPT) guarantee


def test_costs_explicit():
    assert matrix_cost(3, 5) == 3 * 5 * 3
    assert kronecker_cost([2, None, 4], 40) == 2 ** 3 + 4 ** 3 + 40 * (1 + 2 + 4)
    model = w.fresh_model()
    opt = build_optimizer("muon", model, lr=0.02)
    # three equal 8 x 8 hidden matrices (the head falls back to AdamW): two on one rank of two
    assert opt._shard.cost_shares(2) == [2 / 3, 1 / 3]
    assert opt._shard.cost_shares(1) == [1.0]


def test_kronecker_costs_amortise_periodic_work_over_the_methods_own_period():
    """A factor's d^3 (root, inverse or eigendecomposition) counts once per period; the mode
    products every step. Each Kronecker method reads its own period from the group."""
    assert kronecker_cost([2, None, 4], 40, period=8) == (2 ** 3 + 4 ** 3) / 8 + 40 * (1 + 2 + 4)
    with pytest.raises(ValueError, match="period"):
        kronecker_cost([2], 2, period=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 3))   # weight (3, 6) and bias (3,)
    cases = {  # method: (hyperparameters, the weight's cost written out)
        "shampoo": ({"precondition_frequency": 5}, (3 ** 3 + 6 ** 3) / 5 + 18 * (1 + 3 + 6)),
        "splus": ({"inverse_steps": 5}, (3 ** 3 + 6 ** 3) / 5 + 18 * (1 + 3 + 6)),
        "tnt": ({"inverse_frequency": 4}, (3 ** 3 + 6 ** 3) / 4 + 18 * (1 + 3 + 6)),
        "kfac": ({"inverse_frequency": 4}, (3 ** 3 + 7 ** 3) / 4 + 21 * (1 + 3 + 7)),   # bias as a column
    }
    for name, (hyper, expected) in cases.items():
        opt = build_optimizer(name, model, lr=0.01, **hyper)
        costs = {tuple(p.shape): c for p, c in opt._shard._items()}
        assert costs[(3, 6)] == pytest.approx(expected), name
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()


def test_assign_owners_rejects_empty_world():
    with pytest.raises(ValueError, match="world_size"):
        assign_owners([1.0], 0)


def test_one_process_group_takes_the_single_process_path(tmp_path):
    """An initialised group of size 1 changes nothing: bit-identical weights and state."""
    batches = w.data(4)
    finals = []
    for use_group in (False, True):
        if use_group:
            dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
        try:
            assert world() == (0, 1)
            model = w.fresh_model()
            opt = build_optimizer("muon", model, **w.CONFIGS["muon"])
            w.run(model, opt, batches, range(4), slice(None))
            finals.append((w.weights(model), opt.state_dict()))
        finally:
            if use_group:
                dist.destroy_process_group()
    (wa, sa), (wb, sb) = finals
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(torch.equal(sa["state"][i]["momentum_buffer"], sb["state"][i]["momentum_buffer"])
               for i in sa["state"] if "momentum_buffer" in sa["state"][i])


def _close(a, b, what):
    """Recursive allclose of nested state (tensors, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.cpu(), b.cpu(), rtol=1e-9, atol=1e-12), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _close(a[k], b[k], f"{what}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(w.WORLD),
           str(ROOT / "tests" / "ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "ddp.pt", weights_only=False)


@pytest.mark.parametrize("name", list(w.CONFIGS))
def test_two_processes_equal_one_process_on_the_global_batch(ddp_results, name):
    """Weights after 4 and 7 steps, the gathered state_dict (= the single-process one), SPlus's EMA
    weights, and a 2-process state_dict loaded into one process continuing identically."""
    got = ddp_results[name]
    batches = w.data(w.STEPS + w.MORE_STEPS)
    model = w.fresh_model()
    opt = w.make_optimizer(name, model)
    if hasattr(opt, "warm_start"):
        w.warm_start(model, opt, batches, slice(None))
    w.run(model, opt, batches, range(w.STEPS), slice(None))
    _close(w.weights(model), got["saved"], f"{name} weights")
    _close(opt.state_dict(), got["state"], f"{name} state_dict")
    w.run(model, opt, batches, range(w.STEPS, w.STEPS + w.MORE_STEPS), slice(None))
    _close(w.weights(model), got["final"], f"{name} final weights")
    if "eval" in got:
        opt.eval()
        _close(w.weights(model), got["eval"], f"{name} eval weights")

    model1 = w.fresh_model()
    model1.load_state_dict(got["saved"])
    opt1 = w.make_optimizer(name, model1)
    opt1.load_state_dict(got["state"])
    w.run(model1, opt1, batches, range(w.STEPS, w.STEPS + w.MORE_STEPS), slice(None))
    _close(w.weights(model1), got["final"], f"{name} loaded on one process")


def test_example_runs_data_parallel(ddp_results):
    """examples/ddp_train.py under torchrun: Muon equals its one-process run (KFAC only runs: its
    sampled labels are drawn per rank)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ddp_train", ROOT / "examples" / "ddp_train.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert ddp_results["example"]["muon"] == pytest.approx(example.train("muon", steps=3)[0], abs=1e-6)
    assert 0 <= ddp_results["example"]["kfac"] <= 1


def test_ddp_bench_measures_one_and_two_processes(ddp_results):
    """experiments.ddp_bench.measure in this process and in the two torchrun processes."""
    from experiments import ddp_bench

    one = ddp_bench.measure(ddp_bench.SMOKE, ("muon", "kfac"))
    for row in (one["muon"], one["kfac"], *ddp_results["bench"].values()):
        assert row["step_s"] > 0 and row["iteration_s"] >= row["step_s"] and row["step_cpu_s"] >= 0
    assert one["muon"]["share"] == 1.0 and one["muon"]["step_cpu_total_s"] == one["muon"]["step_cpu_s"]
    for row in ddp_results["bench"].values():  # the busiest rank's CPU is one of the two ranks' parts
        assert row["step_cpu_s"] < row["step_cpu_total_s"] <= 2 * row["step_cpu_s"]
        assert 0 < row["update_cpu_total_s"] < row["step_cpu_total_s"]   # the all-gather is inside the step
    assert one["muon"]["update_cpu_total_s"] == one["muon"]["step_cpu_total_s"]   # one process gathers nothing
    assert 0.5 <= ddp_results["bench"]["muon"]["share"] < 1  # two matrices of unequal cost
    for name in ("muon", "kfac"):  # counted: the two ranks' matrix products add up to one process's
        two = ddp_results["bench"][name]
        assert one[name]["step_flops_total"] > 0 and two["step_flops_total"] == one[name]["step_flops_total"], name
        assert two["step_calls_total"] > one[name]["step_calls_total"] > 0, name  # per-parameter work on both
    with pytest.raises(ValueError, match="ranks"):
        ddp_bench.run(ddp_bench.SMOKE, 1)
