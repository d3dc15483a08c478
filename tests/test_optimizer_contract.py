"""The torch.optim contract, checked for every optimizer of the registry (new entries are picked up
automatically; the edge-case policy of the classes defined here is experiments/optim/checks.py):
training, step(closure), determinism, state_dict round trips, gradients left alone, zero and
missing gradients, param groups, input checks (non-finite and sparse gradients, complex and empty
parameters, hyperparameters) and load_state_dict rejections. The loops call curvature_step, so TNT
and KFAC get their sampled-label curvature. Per-optimizer maths: test_optim_math.py, peers:
test_optim_peers.py."""
import copy
import functools
import math

import pytest
import torch
from torch import nn

from experiments.optim.checks import STATE_DICT_TAG
from experiments.optim.curvature import curvature_step, mean_loss
from experiments.optim.kfac import KFAC
from experiments.optim.muon import Muon
from experiments.optim.nmd import NMD
from experiments.optim.registry import OPTIMIZERS, build_optimizer
from experiments.optim.shampoo import Shampoo
from experiments.optim.signum import Signum
from experiments.optim.specgd import SpecGD
from experiments.optim.splus import SPlus
from experiments.optim.tnt import TNT

NAMES = sorted(OPTIMIZERS)
METHODS = ("specgd", "muon", "nmd", "signum", "splus", "shampoo", "tnt", "kfac")  # the classes defined here
INF, NAN = math.inf, math.nan


class _Net(nn.Module):
    def __init__(self, width: int = 6):
        super().__init__()
        torch.manual_seed(0)  # nn.Linear's own init; the data use an explicit generator
        self.body = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh())
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _class_name(name):
    return OPTIMIZERS[name].display


def _backward(opt, model, gen):
    X, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    opt.zero_grad()
    out = model(X)
    curvature_step(opt, out, "ce", gen)
    mean_loss(out, y, "ce").backward()


def _trained(name, width=6, steps=2, **hyper):
    """A model and its optimizer after `steps` steps (state exists for every parameter)."""
    model = _Net(width)
    opt = build_optimizer(name, model, 1e-2, **hyper)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        _backward(opt, model, gen)
        opt.step()
    return model, opt


def _equal(a, b):
    """Structural equality of nested state (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _snapshot(model, opt):
    return [p.detach().clone() for p in model.parameters()], copy.deepcopy(opt.state_dict())


def _unchanged(model, opt, snapshot):
    params, state = snapshot
    return all(torch.equal(p, q) for p, q in zip(model.parameters(), params)) and _equal(opt.state_dict(), state)


# -- gradients ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [NAN, INF])
@pytest.mark.parametrize("which, shape", [("body.2.weight", (6, 6)), ("head.bias", (3,))])
@pytest.mark.parametrize("name", METHODS)
def test_non_finite_gradient_raises_before_any_change(name, which, shape, bad):
    """One bad entry: a FloatingPointError naming the optimizer and the parameter's shape, with
    weights and state untouched (was: SPlus almost stopped updating the matrix and failed later
    in eigh, Signum froze the entry, Muon/NMD/SpecGD wrote NaN weights)."""
    model, opt = _trained(name)
    _backward(opt, model, torch.Generator().manual_seed(1))
    model.get_parameter(which).grad.view(-1)[1] = bad
    snapshot = _snapshot(model, opt)
    shape_text = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(FloatingPointError, match=rf"^{_class_name(name)}: non-finite gradient .*shape {shape_text}"):
        opt.step()
    assert _unchanged(model, opt, snapshot)


@pytest.mark.parametrize("name", METHODS)
def test_finite_gradients_whose_sum_overflows_pass_the_check(name):
    """The check's fast path sums each gradient; an overflowing sum of finite entries must not be
    reported as non-finite."""
    model, opt = _trained(name, steps=0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3e38)
    opt._check_gradients()
    model.head.bias.grad[0] = -INF
    with pytest.raises(FloatingPointError, match=r"shape \(3,\)"):
        opt._check_gradients()


@pytest.mark.parametrize("name", METHODS)
def test_sparse_gradient_has_one_message(name):
    model, opt = _trained(name, steps=0)
    _backward(opt, model, torch.Generator().manual_seed(1))
    w = model.body[2].weight
    w.grad = w.grad.to_sparse()
    with pytest.raises(RuntimeError, match=rf"^{_class_name(name)} does not support sparse gradients "
                                           r"\(parameter of shape \(6, 6\)"):
        opt.step()


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_complex_parameters_are_rejected(name):
    """At construction and in add_param_group (was: accepted; Muon, Shampoo and TNT dropped the
    imaginary part of the gradient, so a purely imaginary gradient gave a zero step)."""
    model = _Net()
    model.body[2] = nn.Linear(6, 6, dtype=torch.complex64)
    with pytest.raises(TypeError, match=f"complex parameters are not supported by {_class_name(name)}"):
        build_optimizer(name, model, 1e-2)
    opt = build_optimizer(name, _Net(), 1e-2)
    groups = len(opt.param_groups)
    with pytest.raises(TypeError, match="complex"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(3, 3, dtype=torch.complex64))]})
    assert len(opt.param_groups) == groups


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
@pytest.mark.parametrize("name", METHODS)
def test_empty_parameters_are_rejected_at_construction(name, shape):
    """Was: accepted, then a reshape RuntimeError, IndexError (SpecGD) or ZeroDivisionError
    (Muon) at the first step."""
    model = _Net()
    model.empty = nn.Parameter(torch.zeros(shape))
    with pytest.raises(ValueError, match=rf"{_class_name(name)} got a parameter with no entries \(shape"):
        build_optimizer(name, model, 1e-2)


# -- hyperparameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_registry_rejects_infinite_lr(name):
    with pytest.raises(ValueError, match="lr must be positive and finite"):
        build_optimizer(name, _Net(), INF)


@pytest.mark.parametrize("name", METHODS)
def test_every_numeric_hyperparameter_must_be_finite(name):
    """Each float (or tuple of floats) default set to inf or NaN is a ValueError naming it."""
    defaults = build_optimizer(name, _Net(), 1e-2).defaults
    checked = []
    for key, value in defaults.items():
        if key == "lr":
            continue  # build_optimizer's own argument: test_registry_rejects_infinite_lr
        for bad in (INF, NAN):
            if isinstance(value, float):
                wrong = bad
            elif isinstance(value, tuple) and value and all(isinstance(v, float) for v in value):
                wrong = (*value[:-1], bad)
            else:
                continue
            with pytest.raises(ValueError, match=key):
                build_optimizer(name, _Net(), 1e-2, **{key: wrong})
            checked.append(key)
    assert "weight_decay" in checked


@pytest.mark.parametrize("bad_lr", [INF, -1.0])
@pytest.mark.parametrize("name", METHODS)
def test_bad_lr_is_rejected_by_the_class_and_in_added_groups(name, bad_lr):
    cls = type(build_optimizer(name, _Net(), 1e-2))
    with pytest.raises(ValueError, match="lr"):
        cls(_Net(), lr=bad_lr) if name == "kfac" else cls([_Net().body[2].weight], lr=bad_lr)
    opt = build_optimizer(name, _Net(), 1e-2)
    groups = len(opt.param_groups)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(3, 3))], "lr": bad_lr})
    assert len(opt.param_groups) == groups


# One out-of-range hyperparameter per entry.
BAD_HYPERPARAMETERS = [
    (Muon, dict(momentum=1.0)), (Muon, dict(ns_steps=0)), (Muon, dict(ns_dtype="int8")),
    (Muon, dict(adjust_lr="sqrt")), (Muon, dict(orthogonalize="qr")), (Muon, dict(lr=-1.0)),
    (Muon, dict(adamw_betas=(0.9, 1.0))), (SpecGD, dict(rtol=2.0)), (NMD, dict(momentum=-0.1)),
    (Signum, dict(weight_decay=-1)),
    (SPlus, dict(betas=(1.0, 0.9))), (SPlus, dict(inverse_steps=0)), (SPlus, dict(ema_rate=1.0)),
    (SPlus, dict(lr=-0.1)),
    (Shampoo, dict(lr=-1)), (Shampoo, dict(beta=0.0)), (Shampoo, dict(eps=0.0)),
    (Shampoo, dict(precondition_frequency=0)), (Shampoo, dict(grafting="rmsprop")), (Shampoo, dict(momentum=1.0)),
    (Shampoo, dict(max_precond_dim=0)),
    (TNT, dict(lr=0)), (TNT, dict(eps=-1)), (TNT, dict(beta=1.0)), (TNT, dict(curvature_frequency=0)),
    (TNT, dict(inverse_frequency=2.5)), (TNT, dict(weight_decay=-1)),
    (KFAC, dict(lr=0)), (KFAC, dict(damping=0)), (KFAC, dict(beta=1.0)), (KFAC, dict(momentum=-0.1)),
    (KFAC, dict(inverse_frequency=0)),
]


@pytest.mark.parametrize("cls, kw", BAD_HYPERPARAMETERS,
                         ids=[f"{cls.__name__}-{k}={v}" for cls, kw in BAD_HYPERPARAMETERS for k, v in kw.items()])
def test_out_of_range_hyperparameters_raise(cls, kw):
    """A ValueError naming the hyperparameter; the same construction with the defaults succeeds, so
    the error is about the value."""
    def build(**kw):
        return cls(nn.Linear(2, 2), **kw) if cls is KFAC else cls([nn.Parameter(torch.zeros(3, 3))], **kw)

    build()
    with pytest.raises(ValueError, match=next(iter(kw))):
        build(**kw)


def test_vector_in_a_matrix_group_raises():
    with pytest.raises(ValueError, match="matrix=False"):
        Muon([nn.Parameter(torch.zeros(3))])


# -- state dicts --------------------------------------------------------------------------------

@functools.cache
def _saved_state(name):
    """A trained optimizer's state dict (loading never modifies it, so tests may share it)."""
    return _trained(name)[1].state_dict()


@pytest.mark.parametrize("source, target", [(s, t) for s in METHODS for t in METHODS if s != t])
def test_state_dict_of_another_optimizer_is_rejected_at_load(source, target):
    """Every ordered pair of different classes (was: accepted, failing only at the first step, or
    silently for Muon -> SpecGD/NMD/Signum and NMD <-> Signum)."""
    model, opt = _trained(target)
    snapshot = _snapshot(model, opt)
    with pytest.raises(ValueError, match=f"saved by {_class_name(source)}, not {_class_name(target)}"):
        opt.load_state_dict(_saved_state(source))
    assert _unchanged(model, opt, snapshot)
    assert _saved_state(source)[STATE_DICT_TAG] == _class_name(source)


def _set_lr_inf(saved):
    saved["param_groups"][0]["lr"] = INF


def _add_foreign_state(saved):
    saved["state"][0]["exp_avg_sq_of_another_library"] = torch.zeros(3)


@pytest.mark.parametrize("damage, width, match", [
    (lambda saved: None, 7, "has shape .* for the parameter of shape"),  # saved for width 6
    (_set_lr_inf, 6, "lr must be finite"),
    (_add_foreign_state, 6, "{cls} keeps no state 'exp_avg_sq_of_another_library'"),
], ids=["another model shape", "non-finite lr", "state this class does not keep"])
@pytest.mark.parametrize("name", METHODS)
def test_bad_state_dict_is_rejected_at_load_and_changes_nothing(name, damage, width, match):
    saved = copy.deepcopy(_saved_state(name))
    damage(saved)
    model, opt = _trained(name, width=width)
    snapshot = _snapshot(model, opt)
    with pytest.raises(ValueError, match=match.format(cls=_class_name(name))):
        opt.load_state_dict(saved)
    assert _unchanged(model, opt, snapshot)


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_without_tag_loads_into_its_class_and_is_checked_by_hyperparameter_names(name):
    """A dict saved before the tag existed still loads into its own class, and gives the same next
    step as the tagged one; loading it into a class with other hyperparameter names is an error."""
    model, opt = _trained(name)
    legacy = {k: v for k, v in opt.state_dict().items() if k != STATE_DICT_TAG}
    after = []
    for state_dict in (opt.state_dict(), legacy):
        twin = _Net()
        twin.load_state_dict(model.state_dict())
        twin_opt = build_optimizer(name, twin, 1e-2)
        twin_opt.load_state_dict(copy.deepcopy(state_dict))
        _backward(twin_opt, twin, torch.Generator().manual_seed(1))
        twin_opt.step()
        after.append([p.detach().clone() for p in twin.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*after))
    checked = 0
    for other in METHODS:
        other_opt = build_optimizer(other, _Net(), 1e-2)
        ours = [set(g) - {"params"} for g in opt.param_groups]
        theirs = [set(g) - {"params"} for g in other_opt.param_groups]
        if other != name and len(ours) == len(theirs) and ours != theirs:
            with pytest.raises(ValueError, match="does not come from"):
                other_opt.load_state_dict(legacy)
            checked += 1
    assert checked  # the rejection half must not pass by finding no class to try


# -- training, closures, determinism, state round trips (every registered optimizer) -------------

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


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def _conv_steps(model, opt, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 1, 3, 3, generator=gen)
        y = torch.randint(0, 3, (4,), generator=gen)
        out = model(x)
        opt.zero_grad()
        curvature_step(opt, out, "ce", gen)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()


# Refresh curvature, roots and inverses every few steps, so that short runs cross refresh points.
REFRESH = {"shampoo": dict(precondition_frequency=3, start_preconditioning_step=1),
           "tnt": dict(curvature_frequency=2, inverse_frequency=3),
           "kfac": dict(curvature_frequency=2, inverse_frequency=3)}
# The cached curvature a round trip must carry (it is in the state dict, not recomputed).
CURVATURE_STATE = {"shampoo": ("factors", "roots"), "tnt": ("factors", "inverses"), "kfac": ("A", "G", "A_inv", "G_inv")}


@pytest.mark.parametrize("name", NAMES)
def test_step_with_closure_trains_and_returns_the_closures_loss(name):
    """step(closure) runs the closure with gradients enabled (the curvature hook inside it) and
    returns its loss; 30 closure steps on a conv net bring the loss below 0.7 x the initial at some
    lr of the grid."""
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(16, 1, 3, 3, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    first = nn.functional.cross_entropy(_conv_net()(x), y).item()
    finals = {}
    for lr in LR_GRID:
        model = _conv_net()
        opt = build_optimizer(name, model, lr, **({"curvature_frequency": 1} if name in ("tnt", "kfac") else {}))
        losses = []

        def closure():
            assert torch.is_grad_enabled()
            opt.zero_grad()
            out = model(x)
            curvature_step(opt, out, "ce", gen)
            loss = nn.functional.cross_entropy(out, y)
            loss.backward()
            losses.append(loss)
            return loss

        try:
            for _ in range(30):
                returned = opt.step(closure)
                assert returned is losses[-1]
        except FloatingPointError:  # diverged: try the next lr
            finals[lr] = float("nan")
            continue
        with torch.no_grad():
            finals[lr] = nn.functional.cross_entropy(model(x), y).item()
        if finals[lr] < 0.7 * first:
            return
    pytest.fail(f"{name}: no lr brought the loss below {0.7 * first:.4f} through closures; finals {finals}")


@pytest.mark.parametrize("name", NAMES)
def test_a_run_is_determined_by_its_seeds_not_the_global_rng(name):
    """Same initial model, data and sampling generator: bit-identical parameters after 7 steps,
    whatever the global RNG holds (an optimizer drawing from it would differ)."""
    finals = []
    for global_seed in (1, 2):
        model, X, y, loss_kind = _problem("classification")
        opt = build_optimizer(name, model, 1e-2, **REFRESH.get(name, {}))
        torch.manual_seed(global_seed)
        _train_steps(opt, model, X, y, loss_kind, 7, torch.Generator().manual_seed(7))
        finals.append(_params(model))
    assert all(torch.equal(a, b) for a, b in zip(*finals)), f"{name} depends on the global RNG"


@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_gives_identical_next_steps(name, net):
    """Train, copy model + optimizer state into a fresh optimizer, then both take the same further
    steps (crossing curvature/root/inverse/eigenbasis refresh points): bit-identical. The MLP runs
    11 + 12 steps at the default schedules, the conv net 4 + 3 steps at REFRESH's."""
    kw = REFRESH.get(name, {}) if net == "conv" else {}
    if net == "mlp":
        model, X, y, loss_kind = _problem("classification")
        first, then = (lambda m, o: _train_steps(o, m, X, y, loss_kind, 11, torch.Generator().manual_seed(2)),
                       lambda m, o: _train_steps(o, m, X, y, loss_kind, 12, torch.Generator().manual_seed(3)))
        fresh = lambda: _problem("classification")[0]
    else:
        model, fresh = _conv_net(), _conv_net
        first, then = (lambda m, o: _conv_steps(m, o, 4, seed=0)), (lambda m, o: _conv_steps(m, o, 3, seed=1))
    opt = build_optimizer(name, model, 1e-2, **kw)
    first(model, opt)
    saved = copy.deepcopy(opt.state_dict())
    if name in CURVATURE_STATE:
        assert any(all(k in st for k in CURVATURE_STATE[name]) for st in saved["state"].values())
    # A fresh model, not deepcopy: deepcopy would also copy hooks an optimizer (KFAC) registered.
    twin = fresh()
    twin.load_state_dict(model.state_dict())
    twin_opt = build_optimizer(name, twin, 1e-2, **kw)
    twin_opt.load_state_dict(saved)
    then(model, opt)
    then(twin, twin_opt)
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
def test_zero_gradients_leave_parameters_unchanged(name):
    """Without weight decay, 12 steps on zero gradients (the curvature hook still sees real
    outputs) leave every parameter exactly where it was, so finite."""
    model, X, y, loss_kind = _problem("classification")
    before = _params(model)
    opt = build_optimizer(name, model, 1e-1, weight_decay=0.0)
    _train_steps(opt, model, X, y, loss_kind, 12, torch.Generator().manual_seed(5), zero_grad_loss=True)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b), f"{name} moved a parameter on zero gradients"


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
    for p in unused.parameters():
        assert opt.state[p].get("step", 0) == 0, f"{name} stepped a parameter that had no gradient"


@pytest.mark.parametrize("name", ["shampoo", "tnt", "kfac"])
def test_weight_decay_is_decoupled(name):
    """With zero gradients the step is the decay alone: p <- p (1 - lr weight_decay), on every parameter."""
    model = _conv_net()
    lr, wd = 0.01, 0.5
    opt = build_optimizer(name, model, lr, weight_decay=wd)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(torch.randn(4, 1, 3, 3))
    curvature_step(opt, out, "ce", torch.Generator().manual_seed(0))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p.detach(), b * (1 - lr * wd), rtol=1e-6, atol=0)


# -- devices ------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
@pytest.mark.parametrize("cls", [SpecGD, Muon, NMD, Signum, SPlus])
def test_cuda_bfloat16_matrix_params(cls):
    """On cuda with bfloat16 parameters the matrix work runs in float32 and the step is finite."""
    W = nn.Parameter(torch.randn(32, 16, device="cuda", dtype=torch.bfloat16))
    opt = cls([W], lr=0.01)
    for _ in range(3):
        W.grad = torch.randn_like(W)
        opt.step()
    assert W.dtype == torch.bfloat16 and W.device.type == "cuda" and torch.isfinite(W).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["shampoo", "tnt", "kfac"])
def test_cuda_bfloat16_params_of_a_conv_net(name):
    model = _conv_net().cuda().to(torch.bfloat16)
    opt = build_optimizer(name, model, 0.01)
    out = model(torch.randn(4, 1, 3, 3, device="cuda", dtype=torch.bfloat16))
    curvature_step(opt, out, "ce", torch.Generator(device="cuda").manual_seed(0))
    nn.functional.cross_entropy(out.float(), torch.zeros(4, dtype=torch.long, device="cuda")).backward()
    opt.step()
    for p in model.parameters():
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
    states = [t for s in opt.state.values() for v in s.values() for t in (v if isinstance(v, list) else [v])
              if isinstance(t, torch.Tensor) and t.dim() == 2]
    assert states and all(t.dtype == torch.float32 and t.is_cuda for t in states)
