"""NumPy (theory/) against torch (experiments/optim/) where tests/test_softmax_cross_check.py stops:
Newton-Schulz with the Polar Express schedule, the singular-value band figure 10 judges Muon by,
one SpecGD optimizer step, and Muon steps with the Polar Express and exact polar factors."""
import numpy as np
import pytest
import torch

from experiments.optim import polar_express as optim_pe
from experiments.optim.muon import Muon, newton_schulz, ns_schedule
from experiments.optim.specgd import SpecGD
from theory import algorithms, models
from theory import polar_express as theory_pe


def _g(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_both_sides_use_one_polar_express_derivation():
    assert optim_pe.polar_express_coefficients is theory_pe.polar_express_coefficients
    assert algorithms.ns_schedule("polar_express") == ns_schedule("polar_express", 5)
    assert algorithms.ns_schedule("ns") == ns_schedule((3.4445, -4.7750, 2.0315), 5)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5)])
def test_polar_express_newton_schulz_numpy_equals_torch(shape):
    g = _g(shape)
    ours = algorithms.polar(g, "polar_express")
    ref = newton_schulz(torch.from_numpy(g), 5, ns_schedule("polar_express", 5), torch.float64).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    stack = np.stack([g, 3.0 * g])  # a stack is orthogonalised matrix by matrix, scale-free
    np.testing.assert_allclose(algorithms.polar(stack, "polar_express"), np.stack([ref, ref]), atol=1e-10)


@pytest.mark.parametrize("how", ["ns", "polar_express"])
def test_band_is_where_torch_newton_schulz_puts_singular_values(how):
    """For G = Q1 diag(s) Q2^T torch's output singular values are the composed quintic of
    x = s / ||s|| (theory side), and those with x >= BAND_LOWER lie in the band."""
    rng = np.random.default_rng(1)
    q1, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    q2, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    s = 7.0 * np.geomspace(1e-4, 1.0, 60)  # any scale: only s / ||s|| matters
    g = (q1 * s) @ q2[:60]
    schedule = algorithms.ns_schedule(how)
    out = torch.linalg.svdvals(newton_schulz(torch.from_numpy(g), 5, schedule, torch.float64)).numpy()
    x = s / np.linalg.norm(s)
    y = algorithms.composed_quintic(schedule, x)
    np.testing.assert_allclose(out, np.sort(y)[::-1], atol=1e-10)
    lo, hi = algorithms.singular_value_band(how)
    inside = y[x >= algorithms.BAND_LOWER]
    assert inside.size > 20 and lo - 1e-12 <= inside.min() and inside.max() <= hi + 1e-12


def test_band_values_and_bad_input():
    assert algorithms.singular_value_band("svd") == (1.0, 1.0)
    lo, hi = algorithms.singular_value_band("ns")
    assert 0.67 < lo < 0.69 and 1.19 < hi < 1.21
    lo, hi = algorithms.singular_value_band("polar_express")
    assert 0.86 < lo < 0.88 and 1.12 < hi < 1.13
    with pytest.raises(ValueError, match="lower"):
        algorithms.singular_value_band("ns", lower=0.0)
    with pytest.raises(ValueError, match="coefficients"):
        algorithms.ns_schedule("quintic")
    with pytest.raises(ValueError, match="polar"):
        algorithms.polar(_g((3, 4)), "qr")
    with pytest.raises(ValueError, match="coeffs"):
        algorithms.newton_schulz(_g((3, 4)), 5, algorithms.ns_schedule("polar_express", 4))


def test_one_specgd_step_on_a_linear_model_numpy_equals_torch():
    """theory's run_discrete "specgd" step on the population gradient and the torch SpecGD
    optimizer (same relative tolerance) on the same weight and gradient: the same new weight."""
    k, d, lr = 3, 7, 0.05
    w0 = _g((k, d), 3)
    x = _g((200, d), 4)
    sxx, syx = x.T @ x / 200, _g((k, d), 5)
    grad = models.population_grad(w0, sxx, syx)
    ours = algorithms.run_discrete(algorithms.product_gradient(lambda w: models.population_grad(w, sxx, syx)),
                                   [w0], "specgd", lr, 1, lambda fs: fs[0])[-1]
    layer = torch.nn.Linear(d, k, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w0))
    opt = SpecGD(layer.parameters(), lr=lr, rtol=algorithms.SPEC_TOL)
    layer.weight.grad = torch.from_numpy(grad).clone()
    opt.step()
    np.testing.assert_allclose(ours, layer.weight.detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("how, torch_kw", [
    ("polar_express", {"ns_coefficients": "polar_express", "ns_dtype": "float64"}),
    ("svd", {"orthogonalize": "svd", "rtol": algorithms.SPEC_TOL}),
])
def test_muon_steps_on_a_linear_model_numpy_equals_torch(how, torch_kw):
    """Two steps (the momentum buffer is exercised) of theory's Muon with `how` against torch Muon
    with nesterov=False, adjust_lr='none' and the matching polar factor."""
    k, d, lr, beta = 4, 9, 0.05, 0.9
    W0, grads = _g((k, d)), [_g((k, d), 1), _g((k, d), 2)]
    w, m = W0.copy(), np.zeros_like(W0)
    for g in grads:
        delta, m = algorithms.muon_direction(g, m, beta, how)
        w = w - lr * delta
    layer = torch.nn.Linear(d, k, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
    opt = Muon(layer.parameters(), lr=lr, momentum=beta, nesterov=False, adjust_lr="none", **torch_kw)
    for g in grads:
        layer.weight.grad = torch.from_numpy(g).clone()
        opt.step()
    np.testing.assert_allclose(w, layer.weight.detach().numpy(), atol=1e-10)
