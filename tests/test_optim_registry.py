"""One test suite run over EVERY registered optimizer (new registry entries are picked up
automatically): it trains, round-trips its state exactly, leaves p.grad alone and survives zero
gradients. The loop calls curvature_step, so TNT and KFAC get their sampled-label curvature."""
import copy

import pytest
import torch
from torch import nn

from experiments.optim.curvature import curvature_step, mean_loss
from experiments.optim.registry import OPTIMIZERS, build_optimizer

NAMES = sorted(OPTIMIZERS)
# Each method's lr lives in its own units (SPlus scales by 2/(m+n), TNT by its eps, ...): the
# loss-reduction test tries this grid in order and passes at the first lr that works, so a working
# method passes (usually at the first lr, keeping the test fast) and a broken one (wrong sign, no
# movement, blow-up) fails at every lr.
LR_GRID = (1e-2, 1e-1, 1e-3, 1.0)
STEPS = 60


class _MLP(nn.Module):
    def __init__(self, seed: int, d: int = 10, width: int = 16, k: int = 3):
        super().__init__()
        torch.manual_seed(seed)  # nn.Linear's own init; the data below use explicit generators
        self.body = nn.Sequential(nn.Linear(d, width), nn.Tanh())
        self.head = nn.Linear(width, k)

    def forward(self, x):
        return self.head(self.body(x))


def _imbalanced_classification(seed: int = 0):
    """3 Gaussian classes in 10-d with 48 / 12 / 4 examples (step imbalance, rho = 12)."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(3, 10, generator=g)
    y = torch.repeat_interleave(torch.arange(3), torch.tensor([48, 12, 4]))
    X = means[y] + torch.randn(len(y), 10, generator=g)
    return X, y


def _matrix_quadratic(seed: int = 0):
    """Least squares 1/2 ||X W^T - X W*^T||^2 / n: a quadratic in the matrix W: (4, 8)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 8, generator=g)
    W_star = torch.randn(4, 8, generator=g)
    return X, X @ W_star.T


def _problem(kind: str):
    if kind == "classification":
        X, y = _imbalanced_classification()
        return _MLP(seed=0), X, y, "ce"
    X, Y = _matrix_quadratic()
    torch.manual_seed(0)
    return nn.Linear(8, 4, bias=False), X, Y, "mse"


def _train_steps(opt, model, X, y, loss_kind, steps, generator, zero_grad_loss=False):
    for _ in range(steps):
        opt.zero_grad()
        out = model(X)
        loss = mean_loss(out, y, loss_kind)
        curvature_step(opt, out, loss_kind, generator)
        (0.0 * loss if zero_grad_loss else loss).backward()
        opt.step()


def _loss(model, X, y, loss_kind):
    with torch.no_grad():
        return mean_loss(model(X), y, loss_kind).item()


@pytest.mark.parametrize("kind", ["classification", "quadratic"])
@pytest.mark.parametrize("name", NAMES)
def test_reduces_loss(name, kind):
    """Final loss at most half the initial loss at some lr of the grid (classification: also at
    most half the loss of predicting the class priors, so the minority classes are being fitted)."""
    model0, X, y, loss_kind = _problem(kind)
    target = 0.5 * _loss(model0, X, y, loss_kind)
    if kind == "classification":
        priors = torch.bincount(y).float() / len(y)
        target = min(target, -0.5 * (priors * priors.log()).sum().item())
    finals = {}
    for lr in LR_GRID:
        model = copy.deepcopy(model0)
        opt = build_optimizer(name, model, lr)
        try:
            _train_steps(opt, model, X, y, loss_kind, STEPS, torch.Generator().manual_seed(1))
        except FloatingPointError:  # diverged (e.g. sampled labels from NaN outputs): try the next lr
            finals[lr] = float("nan")
            continue
        finals[lr] = _loss(model, X, y, loss_kind)
        if finals[lr] < target:  # NaN compares False
            return
    pytest.fail(f"{name} on {kind}: no lr reached loss {target:.4f}; finals {finals}")


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_gives_identical_next_steps(name):
    """Train 11 steps, copy model + optimizer state into a fresh optimizer, then both take the
    same 12 further steps (crossing curvature/eigenbasis refresh points): bit-identical."""
    model, X, y, loss_kind = _problem("classification")
    opt = build_optimizer(name, model, 1e-2)
    _train_steps(opt, model, X, y, loss_kind, 11, torch.Generator().manual_seed(2))
    # A fresh model, not deepcopy: deepcopy would also copy hooks an optimizer (KFAC) registered.
    twin = _problem("classification")[0]
    twin.load_state_dict(model.state_dict())
    twin_opt = build_optimizer(name, twin, 1e-2)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train_steps(opt, model, X, y, loss_kind, 12, torch.Generator().manual_seed(3))
    _train_steps(twin_opt, twin, X, y, loss_kind, 12, torch.Generator().manual_seed(3))
    for a, b in zip(_params(model), _params(twin)):
        assert torch.equal(a, b), f"{name}: state_dict round trip changed the trajectory"


@pytest.mark.parametrize("name", NAMES)
def test_step_leaves_gradients_untouched(name):
    model, X, y, loss_kind = _problem("classification")
    opt = build_optimizer(name, model, 1e-2)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        opt.zero_grad()
        out = model(X)
        loss = mean_loss(out, y, loss_kind)
        curvature_step(opt, out, loss_kind, g)
        loss.backward()
        before = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p, b in zip(model.parameters(), before):
            assert torch.equal(p.grad, b), f"{name} modified p.grad in place"


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradients_keep_parameters_finite(name):
    model, X, y, loss_kind = _problem("classification")
    opt = build_optimizer(name, model, 1e-1)
    _train_steps(opt, model, X, y, loss_kind, 12, torch.Generator().manual_seed(5), zero_grad_loss=True)
    for p in model.parameters():
        assert torch.isfinite(p).all(), f"{name} produced non-finite parameters from zero gradients"


@pytest.mark.parametrize("name", NAMES)
def test_none_gradients_are_skipped(name):
    """A parameter without a gradient (here a frozen second head) is neither moved nor given state."""
    model, X, y, loss_kind = _problem("classification")
    unused = nn.Linear(16, 3)
    model.extra = unused
    before = _params(unused)
    opt = build_optimizer(name, model, 1e-2)
    _train_steps(opt, model, X, y, loss_kind, 3, torch.Generator().manual_seed(6))
    for a, b in zip(_params(unused), before):
        assert torch.equal(a, b), f"{name} moved a parameter that had no gradient"


def test_splus_nonstandard_layers_step_by_scaled_sign_and_hidden_matrices_rotate():
    """nonstandard_layers=True: the input layer, head and biases take -lr * c * sign(momentum) at
    step 1 (momentum = (1 - b1) g), the hidden matrix does not (its step is the rotated sign);
    the default keeps every matrix rotated."""
    from experiments.models.transformer import TinyTransformer
    from experiments.models.vision import MLP
    from experiments.optim.param_groups import split_nonstandard

    g = torch.Generator().manual_seed(0)
    model = MLP(6, 3, width=5, depth=3, generator=g)
    hidden, odd = split_nonstandard(model)
    assert [id(p) for p in hidden] == [id(model.body[3].weight)]
    assert {id(p) for p in odd} == {id(p) for p in model.parameters()} - {id(model.body[3].weight)}
    lm = TinyTransformer(20, 8, 1, 2, 4, generator=g)
    hidden_lm, _ = split_nonstandard(lm)
    assert {id(p) for p in hidden_lm} == {id(p) for b in lm.blocks for p in b.parameters() if p.ndim == 2}

    X, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    lr, c = 0.5, 0.01
    moved = {}
    for flag in (True, False):
        m = copy.deepcopy(model)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        opt = build_optimizer("splus", m, lr, nonstandard_layers=flag, nonstandard_constant=c, weight_decay=0.0)
        nn.functional.cross_entropy(m(X), y).backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters()}
        opt.step()
        moved[flag] = {n: p.detach() - before[n] for n, p in m.named_parameters()}
        sign_step = {n: -lr * c * torch.sign(grads[n]) for n in grads}
    for n in ("body.1.weight", "head.weight", "body.1.bias", "body.3.bias"):
        torch.testing.assert_close(moved[True][n], sign_step[n])
    assert not torch.allclose(moved[True]["body.3.weight"], sign_step["body.3.weight"])
    torch.testing.assert_close(moved[True]["body.3.weight"], moved[False]["body.3.weight"])
    assert not torch.allclose(moved[False]["head.weight"], sign_step["head.weight"])
