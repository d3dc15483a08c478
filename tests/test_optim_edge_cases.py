"""Edge cases of every optimizer defined in experiments/optim (the policy is in
experiments/optim/checks.py): non-finite and sparse gradients, complex and empty parameters,
non-finite hyperparameters, and state dicts from another optimizer or another model."""
import copy
import functools
import math

import pytest
import torch
from torch import nn

from experiments.optim.checks import STATE_DICT_TAG
from experiments.optim.curvature import curvature_step, mean_loss
from experiments.optim.registry import OPTIMIZERS, build_optimizer

METHODS = ("specgd", "muon", "nmd", "signum", "splus", "shampoo", "tnt", "kfac")
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


@pytest.mark.parametrize("name", METHODS)
def test_infinite_lr_is_rejected_by_the_class_and_in_added_groups(name):
    cls = type(build_optimizer(name, _Net(), 1e-2))
    with pytest.raises(ValueError, match="lr"):
        cls(_Net(), lr=INF) if name == "kfac" else cls([_Net().body[2].weight], lr=INF)
    opt = build_optimizer(name, _Net(), 1e-2)
    groups = len(opt.param_groups)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(3, 3))], "lr": INF})
    assert len(opt.param_groups) == groups


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
