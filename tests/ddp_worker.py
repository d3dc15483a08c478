"""Data-parallel run of every sharded optimizer, launched by tests/test_distributed.py as

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR

Each rank trains a tiny float64 MLP with DDP on its half of every global batch, checks that all
ranks hold identical weights after every step and that a state_dict saved and loaded on the same
ranks continues identically, and rank 0 writes the weights and the gathered state to OUT_DIR
for the test to compare with a single-process run on the global batch (`run`, same module).
It also runs the README's multi-process example for a few steps and experiments.ddp_bench's
measurement at its smoke size.
"""
from __future__ import annotations

import copy
import gc
from datetime import timedelta
import importlib.util
import sys
from pathlib import Path
from unittest import mock

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.optim import build_optimizer  # noqa: E402
from experiments.optim.curvature import curvature_step, mean_loss, sampled_gradients  # noqa: E402
from experiments.optim.tnt import TNT  # noqa: E402

# Small learning rates and short refresh intervals: every schedule branch runs within a few steps.
# Shampoo eps 1e-4 (not 1e-8): its bias factors are rank 2 of 8 here, and a root of an eps-sized
# eigenvalue would turn rounding differences of the gradient averaging into 1e-8 relative ones.
CONFIGS = {
    "muon": {"lr": 0.02, "ns_dtype": "float64"},
    "specgd": {"lr": 0.01},
    "shampoo": {"lr": 0.01, "eps": 1e-4, "precondition_frequency": 2, "start_preconditioning_step": 2},
    "splus": {"lr": 0.05, "inverse_steps": 2},
    "tnt": {"lr": 1e-3, "curvature_frequency": 2, "inverse_frequency": 3},
    "kfac": {"lr": 0.01, "curvature_frequency": 2, "inverse_frequency": 3},
}
WIDTH, BATCH, STEPS, MORE_STEPS, WORLD = 8, 32, 4, 3, 2
# TNT with a one-parameter second group on its own schedule: one rank owns nothing in that group
# and must still agree on when curvature is due (it keeps the step count of what it does not own).
CONFIGS["tnt_groups"] = {**CONFIGS["tnt"], "curvature_frequency": 3}


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "tnt_groups":
        params = list(model.parameters())
        return TNT([{"params": params[:-1], "curvature_frequency": 2}, {"params": params[-1:]}],
                   **CONFIGS[name])
    return build_optimizer(name, model, **CONFIGS[name])


class Net(nn.Module):
    """Square layers: every SPlus statistic is full rank, so its cached eigenbases are unique."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(WIDTH, WIDTH), nn.Tanh())])
        self.head = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        return self.head(self.body(x))


def data(steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, label noise), each (steps, BATCH, WIDTH): the global batches."""
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(steps, BATCH, WIDTH, generator=g, dtype=torch.float64) for _ in range(3))


def fresh_model() -> Net:
    torch.manual_seed(0)
    return Net().double()


def _sampled(outputs, noise):
    # The sampled "labels" of the mse loss are outputs + N(0, 1); fixing the noise per example
    # makes the ranks' labels the single-process labels of their rows.
    return mock.patch("experiments.optim.curvature.sample_labels", return_value=(outputs + noise).detach())


def warm_start(model, opt, batches, rows: slice) -> None:
    """TNT/KFAC warm start from the first two global batches (each rank on its rows)."""
    X, _, noise = batches

    def grads():
        for t in range(2):
            out = model(X[t, rows])
            labels = (out + noise[t, rows]).detach()
            yield sampled_gradients(opt, mean_loss(out, labels, "mse"), retain_graph=False)
    opt.warm_start(grads())


def run(model, opt, batches, steps: range, rows: slice, after_step=None) -> None:
    """The plain training loop on rows `rows` of the global batches numbered `steps`."""
    X, Y, noise = batches
    for t in steps:
        out = model(X[t, rows])
        loss = mean_loss(out, Y[t, rows], "mse")
        opt.zero_grad()
        with _sampled(out, noise[t, rows]):
            curvature_step(opt, out, "mse")
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(out_dir: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # a mismatched collective fails
    rank, size = dist.get_rank(), dist.get_world_size()
    assert size == WORLD, size
    rows = slice(rank * BATCH // size, (rank + 1) * BATCH // size)
    batches = data(STEPS + MORE_STEPS)
    results = {}

    for name in CONFIGS:
        def build(model):
            ddp = DistributedDataParallel(model)
            return ddp, make_optimizer(name, ddp)

        def same_on_all_ranks():
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            seen = [torch.empty_like(flat) for _ in range(size)]
            dist.all_gather(seen, flat)
            assert all(torch.equal(s, flat) for s in seen), f"{name}: ranks hold different weights"

        model = fresh_model()
        ddp, opt = build(model)
        if hasattr(opt, "warm_start"):
            warm_start(ddp, opt, batches, rows)
        run(ddp, opt, batches, range(STEPS), rows, same_on_all_ranks)
        state = opt.state_dict()  # collective: the full state on every rank
        at_save = weights(model)
        run(ddp, opt, batches, range(STEPS, STEPS + MORE_STEPS), rows, same_on_all_ranks)
        result = {"saved": at_save, "state": state, "final": weights(model)}
        # The memory split: a rank holds state tensors only for what it updates, and owns something.
        held = [p for p, st in opt.state.items() if any(isinstance(v, (torch.Tensor, list)) for v in st.values())]
        assert held and all(opt._shard.is_mine(p) for p in held), f"{name}: rank {rank} holds others' state"
        items = opt._shard.owners()
        assert 0 < sum(map(opt._shard.is_mine, items)) < len(items), f"{name}: rank {rank} owns none or all"
        if hasattr(opt, "eval"):
            opt.eval()
            result["eval"] = weights(model)
            opt.train()
            assert all(torch.equal(v, result["final"][k]) for k, v in weights(model).items())

        # Save on these ranks, load on these ranks (from a copy, as after torch.save/torch.load).
        model2 = fresh_model()
        model2.load_state_dict(at_save)
        ddp2, opt2 = build(model2)
        opt2.load_state_dict(copy.deepcopy(state))
        run(ddp2, opt2, batches, range(STEPS, STEPS + MORE_STEPS), rows)
        for k, v in weights(model2).items():
            assert torch.allclose(v, result["final"][k], rtol=1e-12, atol=1e-14), f"{name}: reload differs at {k}"
        results[name] = result
        for o in (opt, opt2):
            if hasattr(o, "remove_hooks"):
                o.remove_hooks()

    spec = importlib.util.spec_from_file_location("ddp_train", ROOT / "examples" / "ddp_train.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results["example"] = {name: example.train(name, steps=3)[0] for name in ("muon", "kfac")}
    from experiments import ddp_bench
    results["bench"] = ddp_bench.measure(ddp_bench.SMOKE, ("muon", "kfac"))

    # the DDP wrappers and optimizers hold the process group: free them while both ranks are alive,
    # so that gloo is torn down by destroy_process_group below and not at interpreter exit
    del ddp, opt, ddp2, opt2, model, model2
    gc.collect()
    if rank == 0:
        torch.save(results, out_dir / "ddp.pt")
    # every rank past its last collective before any tears gloo down: a rank that destroyed its
    # group while the other was still in a collective aborted ("terminate called without an active
    # exception"), about one launch in five on a loaded 2-core machine
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
