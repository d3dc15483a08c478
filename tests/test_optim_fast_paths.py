"""The fast paths of the matrix optimizers' step (Muon, NMD, Signum): normalising by a plain norm
on a CPU, NMD's step without a normalised copy, the in-place division inside Newton-Schulz, the
per-sum gradient check, how many kernels one step launches against torch.optim.Muon, and TNT's
step plan kept between steps."""
import copy

import pytest
import torch
from torch import nn
from torch.profiler import profile

from experiments.optim.muon import NS_COEFFICIENTS, Muon, newton_schulz
from experiments.optim.matrix_optimizer import frobenius_normalize, normalized, plain_norm
from experiments.optim.nmd import NMD
from experiments.optim.signum import Signum
from experiments.optim import tnt


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_plain_norm_only_where_no_rescale_is_needed(dtype):
    G = torch.randn(9, 7, generator=_gen(0)).to(dtype)
    n, value = plain_norm(G)
    assert n.dtype == dtype and value == n.item() == torch.linalg.vector_norm(G).item()
    for scale in (2.0 ** -40, 2.0 ** 40, 0.0):
        assert plain_norm(G * scale) is None
    assert plain_norm(G.half()) is None  # float16's range is too narrow for the bound


@pytest.mark.parametrize("scale", [1.0, 2.0 ** -60, 2.0 ** 60, 0.0])
@pytest.mark.parametrize("dtype", [None, torch.float32, torch.float64])
def test_normalized_is_m_over_its_norm_at_any_scale(scale, dtype):
    """c X = M / ||M||_F (0 for M = 0); with scale=True, in the plain range, X is M itself (no
    copy) and c carries the norm; M is never written."""
    M = torch.randn(6, 9, generator=_gen(11)) * scale
    before = M.clone()
    out_dtype = dtype or M.dtype
    exact = M.double() / M.double().norm() if scale else torch.zeros_like(M, dtype=torch.float64)
    for use_scale in (False, True):
        X, c = normalized(M, dtype, scale=use_scale)
        assert X.dtype == out_dtype
        torch.testing.assert_close(c * X, exact.to(out_dtype), atol=1e-7, rtol=1e-6)
        plain = scale == 1.0  # the norm is in plain_norm's range
        assert (X is M) == (use_scale and plain and out_dtype == M.dtype)
        assert (c != 1.0) == (use_scale and plain)
    assert torch.equal(M, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_never_writes_into_its_input(dtype):
    """With the input already in the iteration's dtype the normalisation must not be in place."""
    M = torch.randn(12, 20, generator=_gen(1)).to(dtype)
    before = M.clone()
    newton_schulz(M, 5, NS_COEFFICIENTS, dtype)
    assert torch.equal(M, before)


def test_muon_without_nesterov_keeps_its_momentum_buffer():
    """Without Nesterov the buffer itself goes into Newton-Schulz (in float32: no copy): the
    buffer must stay (1 - mu) G after the first step, not be normalised in place."""
    G = torch.randn(8, 5, generator=_gen(2))
    p = nn.Parameter(torch.zeros(8, 5))
    opt = Muon([p], lr=0.1, momentum=0.9, nesterov=False, ns_dtype="float32")
    p.grad = G.clone()
    opt.step()
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.zeros(8, 5).lerp(G, 0.1), atol=0, rtol=0)
    expected = -0.1 * (8 / 5) ** 0.5 * newton_schulz(0.1 * G, 5, NS_COEFFICIENTS, torch.float32)
    torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=1e-5)


def test_muon_tall_conv_kernel_in_float32():
    """A conv kernel with more outputs than inputs: Newton-Schulz returns a transposed view, which
    the step must add back in the kernel's shape."""
    W0 = torch.randn(20, 2, 2, 2, generator=_gen(3))
    G = torch.randn(20, 2, 2, 2, generator=_gen(4))
    p = nn.Parameter(W0.clone())
    opt = Muon([p], lr=0.05, momentum=0.0, ns_dtype="float32")
    p.grad = G.clone()
    opt.step()
    O = newton_schulz(G.reshape(20, 8), 5, NS_COEFFICIENTS, torch.float32)
    torch.testing.assert_close(p.detach(), W0 - 0.05 * (20 / 8) ** 0.5 * O.reshape(20, 2, 2, 2), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e-20, 1e20])
def test_nmd_step_is_lr_times_the_normalised_momentum(scale):
    """The plain-norm path (unit scale) and the rescaled one (1e+-20) give W - lr M / ||M||_F."""
    W0 = torch.randn(6, 4, 3, 3, generator=_gen(5))
    grads = [torch.randn(6, 4, 3, 3, generator=_gen(6 + t)) * scale for t in range(3)]
    p = nn.Parameter(W0.clone())
    opt = NMD([p], lr=0.01, momentum=0.8)
    M, W = torch.zeros_like(W0), W0.clone()
    for G in grads:
        p.grad = G.clone()
        opt.step()
        M = 0.8 * M + 0.2 * G
        W = W - 0.01 * frobenius_normalize(M.reshape(6, -1)).reshape(W.shape)
    torch.testing.assert_close(p.detach(), W, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda ps: NMD(ps, lr=0.01), lambda ps: Signum(ps, lr=0.01),
                                  lambda ps: Muon(ps, lr=0.01, ns_dtype="float32")])
def test_half_precision_parameter_rounds_the_step_once(make):
    """The direction (float32) is added into a bfloat16 parameter in one mixed-dtype add: the
    result is the float32 step rounded once to bfloat16."""
    W0 = torch.randn(10, 6, generator=_gen(9))
    G = torch.randn(10, 6, generator=_gen(10))
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        p = nn.Parameter(W0.to(dtype))
        opt = make([p])
        p.grad = G.to(dtype)
        opt.step()
        out.append(p.detach())
    ref = out[0] - W0 + W0.bfloat16().float()  # the float32 step from the bfloat16 start
    assert out[1].dtype == torch.bfloat16
    torch.testing.assert_close(out[1].float(), ref, atol=0.02, rtol=0.01)


def test_gradient_check_reads_every_sum_and_names_the_bad_one():
    ps = [nn.Parameter(torch.zeros(4, 3)) for _ in range(4)]
    opt = NMD(ps, lr=0.1)
    for p in ps:
        p.grad = torch.full_like(p, 3e38)  # each sum overflows to inf from finite entries
    opt._check_gradients()
    ps[2].grad[1, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"^NMD: non-finite gradient entries in parameter 2 of param group 0"):
        opt._check_gradients()


def _step_ops(opt) -> list[str]:
    """Names of the aten ops one step() dispatches directly (host reads `item` left out: no kernel)."""
    opt.step()  # the state exists before the profiled step
    with profile() as prof:
        opt.step()
    return [e.name for e in prof.events() if e.cpu_parent is not None
            and e.cpu_parent.name.startswith("Optimizer.step") and e.name != "aten::item"]


def _with_grad(shape, seed):
    g = _gen(seed)
    p = nn.Parameter(torch.randn(shape, generator=g))
    p.grad = torch.randn(shape, generator=g) * 1e-2
    return [p]


def test_step_kernel_counts():
    """Muon's step, its gradient check included, dispatches no more ops than torch.optim.Muon's
    (was 49 against 28); NMD and Signum one check sum plus their few passes (was 25 and 13)."""
    ours = _step_ops(Muon(_with_grad((64, 48), 11), lr=1e-3, ns_dtype="bfloat16"))
    peer = _step_ops(torch.optim.Muon(_with_grad((64, 48), 11), lr=1e-3, weight_decay=0.0))
    assert len(ours) <= len(peer), (ours, peer)
    assert _step_ops(NMD(_with_grad((64, 48), 12), lr=1e-3)) == [
        "aten::sum", "aten::lerp_", "aten::linalg_vector_norm", "aten::add_"]
    assert _step_ops(Signum(_with_grad((64, 48), 13), lr=1e-3)) == [
        "aten::sum", "aten::lerp_", "aten::sign", "aten::add_"]


def _tnt_run(scenario: str, steps: int = 9) -> list[torch.Tensor]:
    """Parameters and momentum buffers after `steps` TNT steps (factor updates every 2 steps,
    inverses every 2 then every 4) with `scenario` happening between steps."""
    g = _gen(5)
    shapes = [(6, 4), (6,), (6,), (3, 6), (4, 3, 3, 3)]
    params = [nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    extra = nn.Parameter(torch.randn(5, 2, generator=g))
    opt = tnt.TNT(params, lr=0.1, eps=0.1, curvature_frequency=2, inverse_frequency=4)
    saved = None
    for t in range(1, steps + 1):
        live = [p for group in opt.param_groups for p in group["params"]]
        if opt.wants_curvature():
            opt.update_curvature({p: torch.randn(p.shape, generator=g) for p in opt.curvature_params()})
        for p in live:
            p.grad = torch.randn(p.shape, generator=g)
        if scenario == "missing_grad" and t in (3, 4, 7):
            params[2].grad = params[3].grad = None
        if scenario == "load_state_dict" and t == 2:
            saved = copy.deepcopy(opt.state_dict())
        if scenario == "load_state_dict" and t == 6:
            opt.load_state_dict(saved)
        if scenario == "add_param_group" and t == 4:
            opt.add_param_group({"params": [extra], "lr": 0.05})
        if scenario == "momentum_reset" and t == 6:  # not a refresh step
            opt.state[params[1]]["momentum_buffer"] = torch.zeros(6)
        if scenario == "hyperparameters" and t == 5:
            opt.param_groups[0].update(lr=0.02, momentum=0.5, weight_decay=0.3)
        opt.step()
    live = [p for group in opt.param_groups for p in group["params"]]
    return [p.detach().clone() for p in live] + [opt.state[p]["momentum_buffer"].clone() for p in live]


@pytest.mark.parametrize("scenario", ["refreshes", "missing_grad", "load_state_dict", "momentum_reset",
                                      "add_param_group", "hyperparameters"])
def test_tnt_step_plan_gives_the_numbers_of_a_plan_built_every_step(scenario, monkeypatch):
    """A kept plan must be dropped whenever what it read changed: the inverses refreshed, a step
    over a subset of the parameters (their momentum moves to another flat buffer), a loaded state
    dict, a state tensor replaced from outside; a new group or new hyperparameters must take effect."""
    kept = _tnt_run(scenario)
    monkeypatch.setattr(tnt._StepPlan, "valid", lambda self, states: False)
    rebuilt = _tnt_run(scenario)
    assert all(torch.equal(a, b) for a, b in zip(kept, rebuilt, strict=True))


def test_tnt_keeps_its_step_plan_between_refreshes():
    params = [nn.Parameter(torch.randn(s, generator=_gen(6))) for s in [(6, 4), (6,), (6,)]]
    opt = tnt.TNT(params, curvature_frequency=100, inverse_frequency=100)
    opt.update_curvature({p: torch.randn(p.shape, generator=_gen(7)) for p in params})
    plans = []
    for _ in range(3):  # the first step computes the inverses, the next two reuse its plan
        for p in params:
            p.grad = torch.randn(p.shape, generator=_gen(8))
        opt.step()
        plans.append(next(iter(opt._plans.values())))
    assert plans[1] is plans[0] and plans[2] is plans[0]
    opt.load_state_dict(opt.state_dict())
    assert not opt._plans  # they read the replaced states: freed at the load
