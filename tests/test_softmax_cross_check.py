"""NumPy (theory/) against torch (experiments/optim/): Newton-Schulz, SpecGD's polar factor, one Muon
step on a linear model, and the batched softmax trainer of figure 4 (theory.softmax)."""
import numpy as np
import pytest
import torch

from experiments.optim.muon import Muon, newton_schulz
from experiments.optim.specgd import truncated_polar
from theory import algorithms
from theory.softmax import heavy_tail_data, softmax_gradient, train_softmax


def _g(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5)])
def test_newton_schulz_numpy_equals_torch(shape):
    g = _g(shape)
    ours = algorithms.newton_schulz(g)
    ref = newton_schulz(torch.from_numpy(g), dtype=torch.float64).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_specgd_polar_numpy_equals_torch_on_a_rank_deficient_gradient():
    g = _g((6, 3)) @ _g((3, 10), 1)   # rank 3: the truncated directions must be dropped alike
    ours = algorithms.spectral_direction(g)
    ref = truncated_polar(torch.from_numpy(g), rtol=algorithms.SPEC_TOL).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.linalg.matrix_rank(ours) == 3


def test_one_muon_step_on_a_linear_model_numpy_equals_torch():
    """theory.algorithms.muon_direction (EMA momentum, Newton-Schulz, no Nesterov, no scaling) is
    the torch Muon with nesterov=False, adjust_lr='none' on the same weight and gradient: two steps,
    so the momentum buffer is exercised."""
    k, d, lr, beta = 4, 9, 0.05, 0.9
    W0, grads = _g((k, d)), [_g((k, d), 1), _g((k, d), 2)]
    w, m = W0.copy(), np.zeros_like(W0)
    for g in grads:
        delta, m = algorithms.muon_direction(g, m, beta, "ns")
        w = w - lr * delta
    layer = torch.nn.Linear(d, k, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
    opt = Muon(layer.parameters(), lr=lr, momentum=beta, nesterov=False, adjust_lr="none", ns_dtype="float64")
    for g in grads:
        layer.weight.grad = torch.from_numpy(g).clone()
        opt.step()
    np.testing.assert_allclose(w, layer.weight.detach().numpy(), atol=1e-10)


def test_softmax_gradient_equals_autograd_and_stack_equals_single_runs():
    data = heavy_tail_data(k=4, d=6, mu=2.0, sigma=1.0, n_train=40, n_val=10, n_test=40, seed=0)
    w = _g((2, 4, 6)) * 0.1
    y_hot = np.eye(4)[data.y]
    wt = torch.from_numpy(w).requires_grad_()
    for b in range(2):
        loss = torch.nn.functional.cross_entropy(torch.from_numpy(data.x) @ wt[b].T, torch.from_numpy(data.y))
        (ref,) = torch.autograd.grad(loss, wt)
        np.testing.assert_allclose(softmax_gradient(w, data.x, y_hot)[b], ref[b].numpy(), atol=1e-12)
    both = train_softmax(data, "muon", [0.01, 0.1], steps=6, eval_at=[0, 3, 6])
    for i, lr in enumerate((0.01, 0.1)):
        one = train_softmax(data, "muon", [lr], steps=6, eval_at=[0, 3, 6])
        np.testing.assert_array_equal(both["test"][:, i], one["test"][:, 0])
    assert both["val"].shape == (3, 2, 4)
    with pytest.raises(ValueError, match="unknown method"):
        train_softmax(data, "adam", [0.1], 2, [0])
    with pytest.raises(ValueError, match="eval_at"):
        train_softmax(data, "gd", [0.1], 2, [5])
