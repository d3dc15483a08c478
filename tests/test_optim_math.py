"""Each optimizer's maths against explicit computations and reductions: the Kronecker kernels,
Shampoo, TNT, KFAC (per-example Fisher factors, reductions to Adam / SGD-momentum, cache
staleness), Muon, SpecGD, NMD, Signum, SPlus and the parameter split. Peers (torch.optim.Muon,
pytorch-optimizer's Shampoo and SPlus, torch AdamW): test_optim_peers.py; Newton-Schulz and Polar
Express: test_newton_schulz.py; the torch.optim contract of every optimizer:
test_optimizer_contract.py."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from experiments.optim import kronecker
from experiments.optim.curvature import curvature_step, sample_labels
from experiments.optim.foreach import FlatCache, FlatLayout
from experiments.optim import kfac
from experiments.optim.kfac import KFAC
from experiments.optim.kronecker import CurvatureError, inverse_root, kron_apply, precondition
from experiments.optim.registry import build_optimizer
from experiments.optim.shampoo import Shampoo
from experiments.optim.muon import NS_COEFFICIENTS, Muon, newton_schulz
from experiments.optim.nmd import NMD
from experiments.optim.param_groups import matrix_param_groups, split_nonstandard, split_parameters
from experiments.optim.signum import Signum
from experiments.optim.specgd import SpecGD, truncated_polar
from experiments.optim.splus import SPlus
from experiments.optim.tnt import TNT, tnt_normalize, tnt_view
from optim_helpers import F64, gen, grads_seq, run_sequence, run_steps


def spd(d, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d + 2, generator=g, dtype=dtype)
    return A @ A.T / d


# -- kernels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 4, 6])
def test_inverse_root_on_known_spectrum(p):
    g = torch.Generator().manual_seed(p)
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    w = torch.tensor([0.0, 1e-3, 0.5, 2.0, 30.0], dtype=F64)  # includes a zero eigenvalue
    eps = 1e-2
    H = Q @ torch.diag(w) @ Q.T
    expect = Q @ torch.diag((w + eps) ** (-1.0 / p)) @ Q.T
    got = inverse_root(H, p, eps)
    assert torch.allclose(got, expect, rtol=1e-10, atol=1e-10)
    # float32 path: same answer to float32 accuracy, and the p-th power of the result inverts H + eps I
    got32 = inverse_root(H.float(), p, eps)
    assert torch.allclose(got32.double(), expect, rtol=1e-3, atol=1e-3)
    eye = torch.eye(5, dtype=F64)
    assert torch.allclose(torch.linalg.matrix_power(got, p) @ (H + eps * eye), eye, atol=1e-9)


def test_damped_inverse_is_the_inverse_and_falls_back_to_eigh(monkeypatch):
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    w = torch.tensor([0.0, 1e-3, 0.5, 2.0, 30.0], dtype=F64)
    H, eps = Q @ torch.diag(w) @ Q.T, 1e-2
    expect = Q @ torch.diag(1 / (w + eps)) @ Q.T
    assert torch.allclose(kronecker.damped_inverse(H, eps), expect, atol=1e-10)
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda A: (real(A)[0], torch.tensor(1)))
    assert torch.allclose(kronecker.damped_inverse(H, eps), expect, atol=1e-10)



def test_damped_inverse_of_a_stack_is_each_members_inverse_bit_for_bit(monkeypatch):
    """A stack gives exactly the single-matrix results (TNT's numerics predate batching), also when
    one member's factorisation fails and takes the eigh fallback."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(3, 9, 4, generator=g)
    H, eps = X @ X.mT, 1e-2
    singles = torch.stack([kronecker.damped_inverse(Hi, eps) for Hi in H])
    assert torch.equal(kronecker.damped_inverse(H, eps), singles)
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda A: (real(A)[0], torch.tensor([0, 1, 0])))
    fallback = kronecker.inverse_root(H[1], 1, eps)
    assert torch.equal(kronecker.damped_inverse(H, eps), torch.stack([singles[0], fallback, singles[2]]))


def test_inverse_root_of_zero_and_rank_one_is_finite():
    H = torch.zeros(4, 4)
    assert torch.allclose(inverse_root(H, 4, 1e-8), torch.eye(4) * 1e-8 ** -0.25, rtol=1e-5)
    v = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 1e3
    R = inverse_root(torch.outer(v, v), 4, 1e-12)  # float32 rounding gives slightly negative eigenvalues
    assert torch.isfinite(R).all()


def test_inverse_root_retries_eigh_in_float64(monkeypatch):
    real = torch.linalg.eigh
    calls = []

    def flaky(A):
        calls.append(A.dtype)
        if A.dtype == torch.float32:
            raise torch.linalg.LinAlgError("simulated float32 failure")
        return real(A)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    H = spd(4, 0).float()
    got = inverse_root(H, 2, 1e-3)
    assert calls == [torch.float32, torch.float64] and got.dtype == torch.float32
    monkeypatch.setattr(torch.linalg, "eigh", real)
    assert torch.allclose(got, inverse_root(H.double(), 2, 1e-3).float(), atol=1e-5)

    def broken(A):
        raise torch.linalg.LinAlgError("simulated failure")

    monkeypatch.setattr(torch.linalg, "eigh", broken)
    with pytest.raises(CurvatureError, match="float64"):
        inverse_root(H, 2, 1e-3)


def test_inverse_root_rejects_non_finite_and_bad_eps():
    H = torch.eye(3)
    H[0, 1] = float("nan")
    with pytest.raises(CurvatureError, match="diverged"):
        inverse_root(H, 2, 1e-3)
    with pytest.raises(ValueError):
        inverse_root(torch.eye(3), 2, 0.0)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (3, 2, 4), (2, 3, 2, 3)])
def test_mode_products_equal_the_kronecker_form(shape):
    """First, middle and last modes (the first and last take a reshape-and-matmul path)."""
    g = torch.Generator().manual_seed(len(shape))
    T = torch.randn(shape, generator=g, dtype=F64)
    mats = [torch.randn(d, d, generator=g, dtype=F64) for d in shape]  # not symmetric: checks index order
    assert torch.allclose(precondition(T, mats), kron_apply(T, mats), atol=1e-12)
    rect = [torch.randn(d + 1, d, generator=g, dtype=F64) for d in shape]  # (r, d_j): the mode's size changes
    for j in range(len(shape)):
        want = torch.tensordot(T, rect[j], dims=([j], [1])).movedim(-1, j)
        assert torch.allclose(kronecker.mode_product(T, rect[j], j), want, atol=1e-12)
    for j in range(len(shape)):
        U = kronecker.unfold(T, j)
        assert U.shape == (shape[j], math.prod(shape) // shape[j])
        assert torch.allclose(kronecker.mode_contraction(T, j), U @ U.T, atol=1e-12)
        assert torch.isclose(kronecker.mode_contraction(T, j).trace(), (T ** 2).sum())
        H = torch.randn(shape[j], shape[j], generator=g, dtype=F64)
        want = 0.9 * H + 0.3 * U @ U.T
        kronecker.accumulate_contraction(H, T, j, 0.9, 0.3)
        assert torch.allclose(H, want, atol=1e-12)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (3, 2, 4), (2, 3, 2, 3)])
def test_batched_kernels_equal_the_per_member_ones(shape):
    """Every *_batch kernel (and inverse_root on a stack) gives each member what the single-tensor
    form gives it alone; the single-tensor forms are themselves checked against kron_apply above."""
    g = torch.Generator().manual_seed(10 + len(shape))
    n = 3
    T = torch.randn(n, *shape, generator=g, dtype=F64)
    mats = [torch.randn(n, d + 1, d, generator=g, dtype=F64) for d in shape]
    for j in range(len(shape)):
        got = kronecker.mode_product_batch(T, mats[j], j)
        assert got.shape == (n, *shape[:j], shape[j] + 1, *shape[j + 1:])
        for i in range(n):
            want = torch.tensordot(T[i], mats[j][i], dims=([j], [1])).movedim(-1, j)
            assert torch.allclose(got[i], want, atol=1e-12)
        C = kronecker.mode_contraction_batch(T, j)
        H = torch.randn(n, shape[j], shape[j], generator=g, dtype=F64)
        H_want = [0.9 * H[i] + 0.3 * kronecker.unfold(T[i], j) @ kronecker.unfold(T[i], j).T for i in range(n)]
        kronecker.accumulate_contraction_batch(H, T, j, 0.9, 0.3)
        for i in range(n):
            U = kronecker.unfold(T[i], j)
            assert torch.allclose(C[i], U @ U.T, atol=1e-12)
            assert torch.allclose(H[i], H_want[i], atol=1e-12)
    square = [torch.randn(n, d, d, generator=g, dtype=F64) for d in shape]
    got = kronecker.precondition_batch(T, square)
    for i in range(n):
        assert torch.allclose(got[i], kron_apply(T[i], [M[i] for M in square]), atol=1e-12)
    S = torch.stack([spd(shape[0], seed=i) for i in range(n)])
    R = inverse_root(S, 4, 1e-2)
    for i in range(n):
        assert torch.allclose(R[i], inverse_root(S[i], 4, 1e-2), atol=1e-12)


def test_stack_cache_keeps_members_as_views_and_restacks_replaced_ones():
    cache = kronecker.StackCache()
    members = [torch.full((2, 2), float(i)) for i in range(3)]
    base, views = cache.get("k", members)
    assert views is not None and all(torch.equal(v, m) for v, m in zip(views, members))
    again, none = cache.get("k", views)
    assert again is base and none is None        # the stored views: no copy
    base.add_(1.0)
    assert torch.equal(views[2], torch.full((2, 2), 3.0))  # updates through the stack reach the members
    replaced = [views[0], views[1].clone(), views[2]]      # e.g. a state dict loaded
    fresh, new_views = cache.get("k", replaced)
    assert fresh is not base and new_views is not None and torch.equal(fresh, base)
    one, no_views = cache.get("single", members[:1])
    assert no_views is None and one.data_ptr() == members[0].data_ptr()
    states = [{"roots": [None, m]} for m in members]
    cache.put("r", base, states, "roots", 1)               # a fresh stack becomes the states' entries
    assert cache.stacked("r", states, "roots", 1) is base and states[0]["roots"][0] is None
    assert all(s["roots"][1].data_ptr() == base[i].data_ptr() for i, s in enumerate(states))


def test_flat_cache_keeps_state_as_views_and_concatenates_replaced_ones():
    states = [{"m": torch.full(shape, float(i))} for i, shape in enumerate([(2, 3), (4,), ()])]
    cache = FlatCache()
    flat = cache.get("k", states, "m")
    assert flat.shape == (11,) and torch.equal(flat, torch.tensor([0.0] * 6 + [1.0] * 4 + [2.0]))
    assert [s["m"].shape for s in states] == [(2, 3), (4,), ()]
    assert cache.get("k", states, "m") is flat        # the states hold its views: no copy
    flat.add_(1.0)
    assert torch.equal(states[2]["m"], torch.tensor(3.0))  # updates through the buffer reach the state
    states[1]["m"] = states[1]["m"].clone()                # e.g. a state dict loaded
    fresh = cache.get("k", states, "m")
    assert fresh is not flat and torch.equal(fresh, flat)
    assert cache.get("k", states[::-1], "m") is not fresh  # another order: concatenated anew


def test_view_caches_keep_one_buffer_per_state_when_the_member_sets_vary():
    # A step's key names its set of parameters with gradients; a model whose set varies from step
    # to step must not keep one more buffer alive per set seen.
    states = [{"m": torch.full((3,), float(i)), "r": [torch.eye(2) * i]} for i in range(6)]
    flat, stack = FlatCache(), kronecker.StackCache()
    subsets = [[0, 1, 2, 3, 4, 5], [0, 2, 4], [1, 2, 3, 4], [0, 1, 2, 3, 4, 5], [3, 5], [0, 5]]
    for i, subset in enumerate(subsets * 3):
        chosen = [states[j] for j in subset]
        buffer = flat.get(("m", i), chosen, "m")
        assert torch.equal(buffer, torch.cat([torch.full((3,), float(j)) for j in subset]))
        assert torch.equal(stack.stacked(("r", i), chosen, "r", 0), torch.stack([torch.eye(2) * j for j in subset]))
    # live: the last set's buffer, and earlier ones only while they still hold another state's view
    assert len(flat._buffers) <= 3 and len(stack._buffers) <= 3
    views = {id(s["m"]) for s in states}
    assert all(any(id(v) in views for v in vs) for _, vs in flat._buffers.values())


def test_flat_layout_puts_each_batch_contiguously_in_first_seen_order():
    shapes = [(2, 3), (4,), (2, 3), (4,), (5,), (2, 3)]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    for i, p in enumerate(params):
        p.grad = torch.full(p.shape, float(i))
    states = [{"index": i} for i in range(len(params))]
    layout = FlatLayout(params, states, [tuple(s) for s in shapes])
    assert [s["index"] for s in layout.states] == [0, 2, 5, 1, 3, 4]
    assert [p is params[s["index"]] for p, s in zip(layout.params, layout.states)] == [True] * 6
    assert layout.numels == [6, 6, 6, 4, 4, 5] and layout.ids == tuple(id(p) for p in layout.params)
    flat = layout.gradients(F64)
    assert flat.dtype == F64 and flat.shape == (31,)
    assert [(key, members, span) for key, members, span in layout.batches] == [
        ((2, 3), range(0, 3), slice(0, 18)), ((4,), range(3, 5), slice(18, 26)), ((5,), range(5, 6), slice(26, 31))]
    for key, members, span in layout.batches:
        batch = flat[span].view(len(members), *key)
        assert torch.equal(batch, torch.stack([layout.params[i].grad.to(F64) for i in members]))


# -- Shampoo ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 0.9])
@pytest.mark.parametrize("shape", [(6,), (4, 3), (3, 2, 2)])
def test_shampoo_step_equals_explicit_kronecker_root(shape, beta):
    """Step 3 direction = (kron_j (H_j / c + eps I))^(-1/(2k)) vec(G_3) with the whole Kronecker matrix."""
    eps, lr, k = 1e-2, 0.1, len(shape)
    p = torch.zeros(shape, dtype=F64, requires_grad=True)
    opt = Shampoo([p], lr=lr, beta=beta, eps=eps)
    grads = grads_seq(shape, 3, seed=3)
    run_steps(opt, p, grads[:2])
    before = p.detach().clone()
    run_steps(opt, p, grads[2:])
    H = [sum((beta if beta < 1 else 1.0) ** (2 - i) * (1 - beta if beta < 1 else 1.0)
             * kronecker.mode_contraction(G, j) for i, G in enumerate(grads)) for j in range(k)]
    c = 1 - beta ** 3 if beta < 1 else 1.0
    K = np.array(1.0)
    for Hj in H:
        K = np.kron(K, Hj.numpy() / c + eps * np.eye(Hj.shape[0]))
    w, Q = np.linalg.eigh(K)
    direction = (Q * w ** (-1 / (2 * k))) @ Q.T @ grads[2].numpy().reshape(-1)
    assert np.allclose((before - p.detach()).numpy().reshape(-1) / lr, direction, atol=1e-10)


def test_shampoo_skips_sides_above_max_precond_dim():
    eps = 1e-2
    p = torch.zeros(3, 6, dtype=F64, requires_grad=True)
    opt = Shampoo([p], lr=1.0, eps=eps, max_precond_dim=4)
    (G,) = grads_seq((3, 6), 1, seed=4)
    run_steps(opt, p, [G])
    assert opt.state[p]["factors"][1] is None and opt.state[p]["roots"][1] is None
    L = inverse_root(G @ G.T, 4, eps)  # exponent -1/(2k) with k = 2 kept for the preconditioned side
    assert torch.allclose(-p.detach(), L @ G, atol=1e-12)


def test_shampoo_without_preconditioning_and_adam_graft_is_torch_adam():
    p0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    p_ours, p_adam = p0.clone().requires_grad_(), p0.clone().requires_grad_()
    ours = Shampoo([p_ours], lr=0.01, momentum=0.9, grafting="adam", graft_beta2=0.999, graft_eps=1e-8,
                   start_preconditioning_step=10**9)
    adam = torch.optim.Adam([p_adam], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    grads = grads_seq((4, 3), 8, seed=6)
    run_steps(ours, p_ours, grads)
    run_steps(adam, p_adam, grads)
    assert torch.allclose(p_ours, p_adam, rtol=0, atol=1e-13)


def test_shampoo_graft_sets_the_step_norm():
    p = torch.zeros(5, 4, dtype=F64, requires_grad=True)
    opt = Shampoo([p], lr=1.0, grafting="sgd", eps=1e-3)
    (G,) = grads_seq((5, 4), 1, seed=7)
    run_steps(opt, p, [G])
    assert torch.isclose(p.detach().norm(), G.norm())
    assert not torch.allclose(-p.detach() / G.norm(), G / G.norm(), atol=1e-3)  # direction was preconditioned


def test_shampoo_inverse_roots_are_cached_between_precondition_steps():
    p = torch.zeros(4, 3, requires_grad=True)
    opt = Shampoo([p], lr=0.1, precondition_frequency=5, start_preconditioning_step=2)
    recomputed = []
    prev = None
    for t, G in enumerate(grads_seq((4, 3), 12, seed=8, dtype=torch.float32), start=1):
        run_steps(opt, p, [G])
        roots = opt.state[p]["roots"]
        if roots[0] is not None and (prev is None or not torch.equal(roots[0], prev)):
            recomputed.append(t)
        prev = None if roots[0] is None else roots[0].clone()
    assert recomputed == [2, 7, 12]  # statistics change every step, the roots only on schedule


def test_shampoo_stale_roots_change_the_step():
    """Cached roots are used as they are: a later step equals the root of the old statistics."""
    eps = 1e-3
    p = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    opt = Shampoo([p], lr=1.0, eps=eps, precondition_frequency=10)
    G1, G2 = grads_seq((3, 3), 2, seed=9)
    run_steps(opt, p, [G1])
    before = p.detach().clone()
    run_steps(opt, p, [G2])
    stale = inverse_root(G1 @ G1.T, 4, eps) @ G2 @ inverse_root(G1.T @ G1, 4, eps)
    assert torch.allclose(before - p.detach(), stale, atol=1e-10)


def _together_equals_alone(make, shapes, steps, save_at, seed, dtypes=None, atol=1e-12):
    """One optimizer over parameters of `shapes` (same-shaped ones batched; `dtypes` per parameter,
    float64 by default) moves each parameter as its own optimizer does, through refreshes and a
    state dict round trip at `save_at`; sampled-curvature optimizers get the same sampled gradients
    on both sides."""
    g = torch.Generator().manual_seed(seed)
    dtypes = dtypes or [F64] * len(shapes)
    p0 = [torch.randn(s, generator=g, dtype=F64).to(dt) for s, dt in zip(shapes, dtypes)]
    together = [p.clone().requires_grad_() for p in p0]
    alone = [p.clone().requires_grad_() for p in p0]
    opt = make(together)
    singles = [make([p]) for p in alone]
    for t in range(steps):
        if getattr(opt, "wants_curvature", lambda: False)():
            sampled = [torch.randn(s, generator=g, dtype=F64).to(dt) for s, dt in zip(shapes, dtypes)]
            opt.update_curvature(dict(zip(together, sampled)))
            for o, q, G in zip(singles, alone, sampled):
                o.update_curvature({q: G})
        grads = [torch.randn(s, generator=g, dtype=F64).to(dt) for s, dt in zip(shapes, dtypes)]
        for p, q, G in zip(together, alone, grads):
            p.grad, q.grad = G.clone(), G.clone()
        opt.step()
        for o in singles:
            o.step()
        if t == save_at:
            saved = copy.deepcopy(opt.state_dict())
            opt = make(together)
            opt.load_state_dict(saved)
    for p, q in zip(together, alone):
        assert p.dtype == q.dtype and torch.allclose(p, q, rtol=0, atol=atol)
    assert all(not torch.equal(p, q) for p, q in zip(together, p0))
    for p in together:  # each parameter's state in its own compute dtype, whatever its neighbours'
        tensors = [t for v in opt.state[p].values() for t in (v if isinstance(v, list) else [v])
                   if isinstance(t, torch.Tensor)]
        assert tensors and all(t.dtype == kronecker.compute_dtype(p.dtype) for t in tensors)


@pytest.mark.parametrize("grafting", ["adam", "none"])
def test_shampoo_batched_parameters_equal_each_parameter_alone(grafting):
    """Same-shaped parameters stepped together (one batched kernel per mode) move exactly as each
    does under its own optimizer, through root refreshes, cached roots and a state dict round trip."""
    shapes = [(3, 2, 2), (3, 2, 2), (3, 2, 2), (4,), (4,), (2, 3), ()]
    kw = dict(lr=0.05, momentum=0.9, beta=0.99, eps=1e-3, precondition_frequency=2,
              start_preconditioning_step=2, grafting=grafting, weight_decay=0.1)
    _together_equals_alone(lambda ps: Shampoo(ps, **kw), shapes, steps=6, save_at=2, seed=11)


# One group of two compute dtypes, stepped as two parts on their own flat buffers; same shapes in
# both parts, so a batch across dtypes would show.
MIXED_SHAPES = [(3, 2, 2), (3, 2, 2), (3, 2, 2), (4,), (4,), (2, 3)]
MIXED_DTYPES = [F64, torch.float32, torch.float32, torch.float32, F64, torch.float32]


def test_shampoo_mixed_dtypes_in_one_group_equal_each_parameter_alone():
    kw = dict(lr=0.05, momentum=0.9, beta=0.99, eps=1e-3, precondition_frequency=2,
              start_preconditioning_step=2, grafting="adam", weight_decay=0.1)
    _together_equals_alone(lambda ps: Shampoo(ps, **kw), MIXED_SHAPES, steps=6, save_at=2, seed=13,
                           dtypes=MIXED_DTYPES, atol=1e-5)


# -- TNT -------------------------------------------------------------------------------------------

def test_tnt_batched_parameters_equal_each_parameter_alone():
    """Same-shaped parameters (factor updates and preconditioning batched per mode) move exactly as
    each does under its own TNT, through factor updates, inverse refreshes and a state dict round trip."""
    shapes = [(3, 2, 2, 2), (3, 2, 2, 2), (4,), (4,), (4,), (2, 3)]
    kw = dict(lr=0.05, momentum=0.9, beta=0.8, eps=0.1, curvature_frequency=2, inverse_frequency=4,
              weight_decay=0.1)
    _together_equals_alone(lambda ps: TNT(ps, **kw), shapes, steps=9, save_at=4, seed=12)


def test_tnt_mixed_dtypes_in_one_group_equal_each_parameter_alone():
    kw = dict(lr=0.05, momentum=0.9, beta=0.8, eps=0.1, curvature_frequency=2, inverse_frequency=4,
              weight_decay=0.1)
    _together_equals_alone(lambda ps: TNT(ps, **kw), MIXED_SHAPES, steps=9, save_at=4, seed=14,
                           dtypes=MIXED_DTYPES, atol=1e-5)


def test_tnt_view_shapes():
    assert tnt_view((7,)) == (7,)
    assert tnt_view((5, 3)) == (5, 3)
    assert tnt_view((8, 3, 3, 3)) == (8, 3, 9)
    assert tnt_view(()) == (1,)


def test_tnt_normalisation_gives_equal_average_eigenvalues():
    G = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(10), dtype=F64)
    H = [kronecker.mode_contraction(G, j) for j in range(3)]
    U = tnt_normalize(H)
    means = torch.stack([u.trace() / u.shape[0] for u in U])
    assert torch.allclose(means, means[0].expand(3))
    c = (H[0].trace() / 60) ** (1 / 3)
    assert torch.isclose(means[0], c)
    assert all(torch.equal(u, torch.zeros_like(u)) for u in tnt_normalize([torch.zeros(3, 3), torch.zeros(4, 4)]))


@pytest.mark.parametrize("shape", [(6,), (4, 3), (3, 2, 2, 2)])
def test_tnt_step_equals_explicit_kronecker_inverse(shape):
    """Direction = (kron_j (U_j + eps I))^(-1) vec(m) with U_j normalised from sampled-gradient factors."""
    eps, lr, beta, mu = 0.05, 0.1, 0.9, 0.9
    p = torch.zeros(shape, dtype=F64, requires_grad=True)
    opt = TNT([p], lr=lr, momentum=mu, beta=beta, eps=eps, curvature_frequency=1, inverse_frequency=1)
    view = tnt_view(shape)
    sampled = grads_seq(shape, 2, seed=11)
    grads = grads_seq(shape, 2, seed=12)
    for s, g in zip(sampled, grads):
        opt.update_curvature({p: s})
        before = p.detach().clone()
        run_steps(opt, p, [g])
    S = [s.reshape(view) for s in sampled]
    H = [beta * kronecker.mode_contraction(S[0], j) + (1 - beta) * kronecker.mode_contraction(S[1], j)
         for j in range(len(view))]
    n = math.prod(view)
    c = (H[0].trace() / n) ** (1 / len(view))
    K = np.array(1.0)
    for Hj, d in zip(H, view):
        U = Hj / (c ** (len(view) - 1) * (n // d))
        K = np.kron(K, U.numpy() + eps * np.eye(d))
    m = (mu * grads[0] + grads[1]).numpy().reshape(-1)
    direction = np.linalg.solve(K, m)
    assert np.allclose((before - p.detach()).numpy().reshape(-1) / lr, direction, atol=1e-10)


def test_tnt_factors_from_sampled_labels_match_direct_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 5)).double()
    opt = TNT(model.parameters(), lr=1e-3, beta=0.9, curvature_frequency=1)
    X = torch.randn(8, 4, dtype=F64)
    gen, ref_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expect = {}
    for _ in range(2):
        out = model(X)
        assert curvature_step(opt, out, "ce", gen)
        labels = sample_labels(out, "ce", ref_gen)
        gs = torch.autograd.grad(F.cross_entropy(out, labels), list(model.parameters()))
        for p, g in zip(model.parameters(), gs):
            C = [kronecker.mode_contraction(g.reshape(tnt_view(p.shape)), j) for j in range(len(tnt_view(p.shape)))]
            expect[p] = C if p not in expect else [0.9 * e + 0.1 * c for e, c in zip(expect[p], C)]
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    for p in model.parameters():
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p))  # the hook never writes p.grad
        for got, want in zip(opt.state[p]["factors"], expect[p]):
            assert torch.allclose(got, want, atol=1e-14)
    assert opt.state[model[0].bias]["factors"][0].shape == (3, 3)  # a bias gets one full d x d factor


def test_tnt_with_identity_factors_is_sgd_with_momentum():
    d, eps, lr = 4, 0.01, 0.1
    p0 = torch.randn(d, d, generator=torch.Generator().manual_seed(13), dtype=F64)
    p_tnt, p_sgd = p0.clone().requires_grad_(), p0.clone().requires_grad_()
    tnt = TNT([p_tnt], lr=lr, momentum=0.9, eps=eps, curvature_frequency=1000, inverse_frequency=1000)
    # G_hat = sqrt(d) I gives H_1 = H_2 = d I, c = 1 and U_1 = U_2 = I: each mode divides by (1 + eps).
    tnt.update_curvature({p_tnt: math.sqrt(d) * torch.eye(d, dtype=F64)})
    sgd = torch.optim.SGD([p_sgd], lr=lr / (1 + eps) ** 2, momentum=0.9)
    grads = grads_seq((d, d), 6, seed=14)
    run_steps(tnt, p_tnt, grads)
    run_steps(sgd, p_sgd, grads)
    assert torch.allclose(p_tnt, p_sgd, rtol=0, atol=1e-13)


def test_tnt_inverses_are_cached_between_refreshes():
    p = torch.zeros(3, 2, requires_grad=True)
    opt = TNT([p], lr=1e-3, curvature_frequency=2, inverse_frequency=4)
    refreshed, prev = [], None
    sampled = grads_seq((3, 2), 12, seed=15, dtype=torch.float32)
    for t, (s, g) in enumerate(zip(sampled, grads_seq((3, 2), 12, seed=16, dtype=torch.float32)), start=1):
        opt.update_curvature({p: s})  # factors change at every step
        run_steps(opt, p, [g])
        inv = opt.state[p]["inverses"][0]
        if prev is None or not torch.equal(inv, prev):
            refreshed.append(t)
        prev = inv.clone()
    assert refreshed == [1, 3, 5, 9]  # every T1 = 2 while t <= T2 = 4, then every T2


def test_tnt_wants_curvature_every_t1_steps():
    model = nn.Linear(3, 2)
    opt = TNT(model.parameters(), curvature_frequency=3)
    asked = []
    for t in range(1, 8):
        out = model(torch.randn(4, 3))
        asked.append(curvature_step(opt, out, "ce", torch.Generator().manual_seed(t)))
        out.sum().backward()
        opt.step()
    assert asked == [True, False, False, True, False, False, True]


def test_kfac_wants_curvature_follows_steps_and_loaded_state():
    # The answer is kept between steps (the hooks ask it on every forward): it must move with each
    # step, with a step whose closure runs the forward, and with a loaded state dict.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = KFAC(model, curvature_frequency=3)
    asked, saved = [], {}
    for t in range(1, 8):
        def closure(t=t):
            out = model(torch.randn(4, 3))
            asked.append(curvature_step(opt, out, "ce", torch.Generator().manual_seed(t)))
            loss = out.sum()
            loss.backward()
            return loss
        if t % 2:
            closure()
            opt.step()
        else:
            opt.step(closure)
        if t in (2, 3):
            saved[t] = copy.deepcopy(opt.state_dict())
    assert asked == [True, False, False, True, False, False, True]
    fresh = KFAC(copy.deepcopy(model), curvature_frequency=3)
    assert fresh.wants_curvature()  # step 1 is next
    fresh.load_state_dict(saved[2])
    assert not fresh.wants_curvature()  # step 3 is next
    assert not opt.wants_curvature()  # step 8 is next
    opt.load_state_dict(saved[3])
    assert opt.wants_curvature()  # step 4 is next
    opt.step()
    assert not opt.wants_curvature()  # step 5
    opt.param_groups[0]["curvature_frequency"] = 1  # a schedule changed between steps counts at once
    assert opt.wants_curvature()


def test_tnt_steps_a_parameter_whose_state_holds_only_its_step_count():
    # What a process keeps of a parameter another process owned (RankSharding) before a regrouping
    # hands it over: the step count alone.
    p = nn.Parameter(torch.randn(3, 2, generator=gen(5)))
    opt = TNT([p], lr=0.1)
    opt.state[p] = {"step": 2}
    p.grad = torch.randn(3, 2, generator=gen(6))
    with pytest.warns(RuntimeWarning, match="without curvature"):
        opt.step()
    assert opt.state[p]["step"] == 3 and opt.state[p]["momentum_buffer"].shape == (3, 2)


def test_tnt_warm_start_is_the_mean_contraction_and_step_without_factors_warns():
    p = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    opt = TNT([p], lr=1e-2)
    sampled = grads_seq((3, 2), 3, seed=17)
    opt.warm_start({p: s} for s in sampled)
    for j in range(2):
        want = sum(kronecker.mode_contraction(s, j) for s in sampled) / 3
        assert torch.allclose(opt.state[p]["factors"][j], want)
    q = torch.zeros(2, requires_grad=True)
    bare = TNT([q], lr=1.0)
    q.grad = torch.ones(2)
    with pytest.warns(RuntimeWarning, match="without curvature"):
        bare.step()
    assert torch.equal(q.detach(), -torch.ones(2))


@pytest.mark.parametrize("make", [
    lambda ps: Shampoo(ps, lr=0.01, momentum=0.9, grafting="adam", eps=1e-3),
    lambda ps: TNT(ps, lr=0.01, curvature_frequency=1, inverse_frequency=1)], ids=["shampoo", "tnt"])
def test_loaded_state_is_back_in_the_compute_dtype(make):
    """torch's load_state_dict casts state to the parameter dtype (bfloat16 here), which rounds it;
    the loaded optimizer holds the saved float32 state exactly again (None entries of the state
    lists stay None), and steps as the original does."""
    g = gen(21)
    ps = [nn.Parameter(torch.randn(s, generator=g).bfloat16()) for s in [(4, 3), (4, 3), (5,)]]
    opt = make(ps)
    for _ in range(2):
        if getattr(opt, "wants_curvature", lambda: False)():
            opt.update_curvature({p: torch.randn(p.shape, generator=g).bfloat16() for p in ps})
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).bfloat16()
        opt.step()
    fresh = make(ps)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    entries = [(t, u) for p in ps for key, value in fresh.state[p].items() if key != "step"
               for t, u in zip(value if isinstance(value, list) else [value],
                               opt.state[p][key] if isinstance(value, list) else [opt.state[p][key]])]
    assert entries and all((t is None) == (u is None) for t, u in entries)
    assert all(t.dtype == torch.float32 and torch.equal(t, u) for t, u in entries if t is not None)
    assert any(not torch.equal(u, u.bfloat16().float()) for t, u in entries if t is not None)  # rounding shows
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g).bfloat16()
    twin = [p.detach().clone() for p in ps]
    opt.step()
    after = [p.detach().clone() for p in ps]
    with torch.no_grad():
        for p, t in zip(ps, twin):
            p.copy_(t)
    fresh.step()
    assert all(torch.equal(p, a) for p, a in zip(ps, after))


# -- KFAC ------------------------------------------------------------------------------------------

class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=1)
        self.act = nn.ReLU(inplace=True)  # in-place after the layer: the output-gradient hook must survive it
        self.fc = nn.Linear(3 * 4 * 4, 4)
        self.norm = nn.LayerNorm(4)  # not a supported layer: SGD-momentum fallback

    def forward(self, x):
        return self.norm(self.fc(self.act(self.conv(x)).flatten(1)))


def test_kfac_factors_equal_per_example_computation():
    torch.manual_seed(1)
    model = SmallConvNet().double()
    opt = KFAC(model, lr=0.1, curvature_frequency=1)
    B = 5
    X = torch.randn(B, 2, 4, 4, dtype=F64)
    out = model(X)
    curvature_step(opt, out, "ce", torch.Generator().manual_seed(2))
    labels = sample_labels(out.detach(), "ce", torch.Generator().manual_seed(2))
    A_conv, G_conv, A_fc, G_fc = 0, 0, 0, 0
    for i in range(B):
        xi = X[i:i + 1]
        s_conv = model.conv(xi)
        h = torch.relu(s_conv).flatten(1)
        s_fc = model.fc(h)
        loss = F.cross_entropy(model.norm(s_fc), labels[i:i + 1])
        g_conv, g_fc = torch.autograd.grad(loss, [s_conv, s_fc])
        # conv: explicit patches of the zero-padded input, channel-major like weight.reshape(out, -1)
        xp = F.pad(xi, (1, 1, 1, 1))
        patches = torch.stack([torch.cat([xp[0, :, r:r + 3, c:c + 3].reshape(-1), torch.ones(1, dtype=F64)])
                               for r in range(4) for c in range(4)])
        gs = g_conv[0].reshape(3, -1).T  # (positions, out)
        A_conv = A_conv + patches.T @ patches / B
        G_conv = G_conv + gs.T @ gs / (16 * B)
        ht = torch.cat([h, torch.ones(1, 1, dtype=F64)], 1)
        A_fc = A_fc + ht.T @ ht / B
        G_fc = G_fc + g_fc.T @ g_fc / B
    for layer, A, G in [(model.conv, A_conv, G_conv), (model.fc, A_fc, G_fc)]:
        st = opt.state[layer.weight]
        assert torch.allclose(st["A"], A, atol=1e-13) and torch.allclose(st["G"], G, atol=1e-13)


@pytest.mark.parametrize("rows", [3, 40])  # fewer and more rows than inputs: the two ways to add the ones column
def test_kfac_input_factor_and_gram_equal_their_definitions(rows):
    g = torch.Generator().manual_seed(rows)
    a = torch.randn(rows, 6, generator=g, dtype=F64)
    ones = torch.cat([a, torch.ones(rows, 1, dtype=F64)], 1)
    assert torch.allclose(kfac.input_factor(a, 4), ones.T @ ones / 4, atol=1e-13)
    assert torch.allclose(kfac.input_factor(a, 4, bias=False), a.T @ a / 4, atol=1e-13)
    X = torch.randn(5, 3, rows, generator=g, dtype=F64)
    assert torch.allclose(kfac.gram(X), sum(Xb @ Xb.T for Xb in X), atol=1e-12)


def test_kfac_step_is_damped_kronecker_natural_gradient():
    torch.manual_seed(2)
    model = SmallConvNet().double()
    damping, lr = 1e-2, 0.5
    opt = KFAC(model, lr=lr, momentum=0.0, damping=damping, curvature_frequency=1, inverse_frequency=1)
    X, y = torch.randn(6, 2, 4, 4, dtype=F64), torch.randint(0, 4, (6,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(X)
    curvature_step(opt, out, "ce", torch.Generator().manual_seed(0))
    F.cross_entropy(out, y).backward()
    opt.step()
    for layer in (model.conv, model.fc):
        st = opt.state[layer.weight]
        gamma = math.sqrt(damping)
        A, G = st["A"], st["G"]
        grad = torch.cat([layer.weight.grad.reshape(layer.weight.shape[0], -1), layer.bias.grad[:, None]], 1)
        # vec form: (G + gamma I) kron (A + gamma I) applied to the row-major vec of the step gives the gradient
        K = torch.kron(G + gamma * torch.eye(G.shape[0], dtype=F64), A + gamma * torch.eye(A.shape[0], dtype=F64))
        prefix = "conv" if layer is model.conv else "fc"
        step = torch.cat([(before[n] - p.detach()).reshape(grad.shape[0], -1) / lr
                          for n, p in model.named_parameters() if n.startswith(prefix)], 1)
        assert torch.allclose(K @ step.reshape(-1), grad.reshape(-1), atol=1e-10)
    for n in ("norm.weight", "norm.bias"):  # fallback: plain SGD step (momentum buffer = gradient at step 1)
        p = dict(model.named_parameters())[n]
        assert torch.allclose(before[n] - p.detach(), lr * p.grad, atol=1e-14)


def test_kfac_layer_without_bias_has_no_ones_column():
    torch.manual_seed(5)
    model = nn.Linear(3, 2, bias=False).double()
    damping, lr = 1e-2, 0.3
    opt = KFAC(model, lr=lr, momentum=0.0, damping=damping, curvature_frequency=1)
    X = torch.randn(7, 3, dtype=F64)
    before = model.weight.detach().clone()
    out = model(X)
    curvature_step(opt, out, "mse", torch.Generator().manual_seed(0))
    out.pow(2).sum(1).mean().backward()
    opt.step()
    A, G = opt.state[model.weight]["A"], opt.state[model.weight]["G"]
    assert torch.allclose(A, X.T @ X / 7, atol=1e-14) and G.shape == (2, 2)
    eye = torch.eye(3, dtype=F64)
    want = torch.linalg.solve(G + 0.1 * torch.eye(2, dtype=F64), model.weight.grad) @ torch.linalg.inv(A + 0.1 * eye)
    assert torch.allclose((before - model.weight.detach()) / lr, want, atol=1e-12)


class SharedLayerNet(nn.Module):
    """A layer called three times per forward, and one whose output does not reach the loss."""

    def __init__(self):
        super().__init__()
        self.inp, self.shared, self.out, self.side = nn.Linear(3, 5), nn.Linear(5, 5), nn.Linear(5, 2), nn.Linear(3, 4)

    def forward(self, x):
        self.side(x)
        h = torch.tanh(self.inp(x))
        for _ in range(3):
            h = torch.tanh(self.shared(h))
        return self.out(h)


def test_kfac_layer_whose_output_does_not_reach_the_loss_gets_no_factors():
    torch.manual_seed(4)
    model = SharedLayerNet()
    opt = KFAC(model, lr=0.1, curvature_frequency=1)
    out = model(torch.randn(6, 3))
    assert curvature_step(opt, out, "ce", torch.Generator().manual_seed(0))
    assert all(opt.state[getattr(model, n).weight]["A"] is not None for n in ("inp", "shared", "out"))
    assert opt.state[model.side.weight].get("A") is None


class SlicesNet(nn.Module):
    """One layer applied to every slice x[:, r] of x: (N, R, ...), in R calls or in one call on the
    slices stacked (a Linear on x itself; a conv on the slices concatenated along the batch)."""

    def __init__(self, layer: nn.Module, separate: bool):
        super().__init__()
        self.layer, self.separate, self.head = layer, separate, nn.Linear(3 * layer.out_features if
                                                                          isinstance(layer, nn.Linear) else 6, 4)

    def forward(self, x):
        N, R = x.shape[:2]
        if self.separate:
            h = torch.stack([self.layer(x[:, r]) for r in range(R)], 1)
        elif isinstance(self.layer, nn.Linear):
            h = self.layer(x)
        else:
            h = self.layer(x.transpose(0, 1).flatten(0, 1)).unflatten(0, (R, N)).transpose(0, 1)
        if h.ndim > 3:
            h = h.mean((-2, -1))  # conv: (N, R, out, H, W) -> (N, R, out)
        return self.head(torch.tanh(h).flatten(1))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_kfac_layer_called_per_slice_equals_one_call_on_the_stacked_slices(kind):
    torch.manual_seed(8)
    layer = nn.Linear(4, 5) if kind == "linear" else nn.Conv2d(2, 3, 3, padding=1)
    R = 3 if kind == "linear" else 2
    X = torch.randn(6, R, 4, dtype=F64) if kind == "linear" else torch.randn(6, R, 2, 5, 5, dtype=F64)
    y = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(0))
    models = [SlicesNet(copy.deepcopy(layer), separate).double() for separate in (True, False)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [KFAC(m, lr=0.1, damping=1e-2, curvature_frequency=1, inverse_frequency=1) for m in models]
    for step in range(3):
        for m, opt in zip(models, opts):
            out = m(X + 0.1 * step)
            curvature_step(opt, out, "ce", torch.Generator().manual_seed(step))
            F.cross_entropy(out, y).backward()
            opt.step()
            opt.zero_grad()
    for name in ("layer", "head"):
        a, b = (opts[i].state[getattr(models[i], name).weight] for i in (0, 1))
        for key in ("A", "G", "A_inv", "G_inv", "momentum_buffer"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_kfac_checkpointed_block_counts_its_calls_once():
    """A non-reentrant checkpoint recomputes its block inside the sampled backward; those recorded
    calls are not more rows of the batch (they doubled B, hence G, before calls were handed over)."""
    from torch.utils.checkpoint import checkpoint

    class Net(nn.Module):
        def __init__(self, ckpt):
            super().__init__()
            self.a, self.b, self.ckpt = nn.Linear(3, 4), nn.Linear(4, 2), ckpt

        def block(self, x):
            return self.b(torch.tanh(self.a(x)))

        def forward(self, x):
            return checkpoint(self.block, x, use_reentrant=False) if self.ckpt else self.block(x)

    torch.manual_seed(2)
    X = torch.randn(5, 3, dtype=F64, requires_grad=True)
    models = [Net(ckpt).double() for ckpt in (False, True)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [KFAC(m, lr=0.1, curvature_frequency=1) for m in models]
    for m, opt in zip(models, opts):
        assert curvature_step(opt, m(X), "ce", torch.Generator().manual_seed(0))
    for name in ("a", "b"):
        for key in ("A", "G"):
            torch.testing.assert_close(opts[1].state[getattr(models[1], name).weight][key],
                                       opts[0].state[getattr(models[0], name).weight][key], rtol=1e-12, atol=0)


def test_kfac_refuses_output_gradients_of_another_forward():
    from experiments.optim.curvature import mean_loss, sampled_gradients

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    opt = KFAC(model, lr=0.1, curvature_frequency=1)
    X = torch.randn(2, 6, 3, dtype=F64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    grads = [sampled_gradients(opt, mean_loss(model(X[t]), y, "ce"), retain_graph=False) for t in range(2)]
    with pytest.raises(ValueError, match="no layer output gradient of the forward just run"):
        opt.warm_start(grads)  # both batches' gradients computed before either was used
    first = model(X[0])
    model(X[1])
    with pytest.raises(ValueError, match="reaches none of the layer outputs"):
        curvature_step(opt, first, "ce", torch.Generator().manual_seed(0))  # outputs of the earlier forward


def test_kfac_shared_conv_factors_equal_their_definition():
    """Calls on two image sizes (each call's positions averaged over its own L_c) and a call whose
    output does not reach the loss (its rows count in A and B, not in G)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(6, 4)

        def forward(self, x):
            self.calls = [self.conv(x), self.conv(x[:, :, 1:, 1:]), self.conv(x[:2])]
            return self.head(torch.cat([torch.tanh(c).mean((2, 3)) for c in self.calls[:2]], 1))

    torch.manual_seed(9)
    model = Net().double()
    opt = KFAC(model, lr=0.1, curvature_frequency=1)
    X = torch.randn(5, 2, 5, 5, dtype=F64)
    out = model(X)
    curvature_step(opt, out, "ce", torch.Generator().manual_seed(3))
    labels = sample_labels(out, "ce", torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(F.cross_entropy(out, labels), model.calls, allow_unused=True)
    B = 5 + 5 + 2
    A, G = 0, 0
    for x, g in zip((X, X[:, :, 1:, 1:], X[:2]), grads):
        a = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)  # (examples * positions, C * 3 * 3)
        a = torch.cat([a, torch.ones(len(a), 1, dtype=F64)], 1)
        A = A + a.T @ a / B
        if g is not None:
            rows = g.flatten(2).transpose(1, 2).reshape(-1, 3)
            G = G + rows.T @ rows * B / g[0, 0].numel()
    assert grads[2] is None
    st = opt.state[model.conv.weight]
    torch.testing.assert_close(st["A"], A, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(st["G"], G, rtol=1e-12, atol=1e-13)


def test_kfac_layers_tied_by_weight_and_bias_are_one_shared_layer():
    class Net(nn.Module):
        def __init__(self, tied: bool):
            super().__init__()
            self.first, self.head = nn.Linear(3, 3), nn.Linear(3, 2)
            self.second = nn.Linear(3, 3) if tied else self.first
            if tied:
                self.second.weight, self.second.bias = self.first.weight, self.first.bias

        def forward(self, x):
            return self.head(torch.tanh(self.second(torch.tanh(self.first(x)))))

    torch.manual_seed(10)
    models = [Net(tied).double() for tied in (True, False)]
    models[1].load_state_dict(models[0].state_dict(), strict=False)
    opts = [KFAC(m, lr=0.1, curvature_frequency=1) for m in models]
    X = torch.randn(7, 3, dtype=F64)
    for m, opt in zip(models, opts):
        curvature_step(opt, m(X), "ce", torch.Generator().manual_seed(0))
    a, b = (opts[i].state[models[i].first.weight] for i in (0, 1))
    torch.testing.assert_close(a["A"], b["A"], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(a["G"], b["G"], rtol=1e-13, atol=1e-14)
    untied = Net(tied=True)
    untied.second.bias = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="share their bias"):
        KFAC(untied)


def test_kfac_sampled_backward_computes_no_weight_gradient():
    from experiments.cost import DispatchedOps

    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    opt = KFAC(model, lr=0.1, curvature_frequency=1)
    touched = []
    for p in model.parameters():
        p.register_hook(lambda g: touched.append(g))
    ops, update = DispatchedOps(), opt.update_curvature

    def marked_update(grads):  # marks where the sampled backward ends and the factor updates begin
        ops.names.append("update_curvature")
        update(grads)

    opt.update_curvature = marked_update
    out = model(torch.randn(8, 4))
    with ops:
        assert curvature_step(opt, out, "ce", torch.Generator().manual_seed(0))
    backward = ops.names[:ops.names.index("update_curvature")]  # label sampling, loss and its backward
    assert not touched  # no gradient reached a weight or bias
    # The backward's only products are the input gradients of the last two layers (grad @ W); a
    # weight gradient would add one per layer, and the first layer's backward is not run at all.
    assert backward.count("mm") == 2 and "addmm" not in backward
    assert all(opt.state[m.weight]["G"] is not None for m in (model[0], model[2], model[4]))


def test_kfac_keeps_no_graph_of_a_loop_without_the_sampled_backward():
    import gc
    import weakref
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    opt = KFAC(model, lr=0.1, curvature_frequency=1)  # every forward records
    batches = []  # the graph of a forward keeps its input (the first layer saves it for its weight gradient)

    def forward():
        x = torch.randn(5, 4)
        batches.append(weakref.ref(x))
        return model(x).square().mean()

    for _ in range(4):
        forward()  # forwards without any backward (e.g. a metric in training mode)
    gc.collect()
    assert sum(r() is not None for r in batches) <= 1  # a new forward drops the previous one's outputs
    for _ in range(3):
        forward().backward(retain_graph=True)  # a graph that stays whole as long as anything holds it
        opt.step()
    gc.collect()
    assert all(r() is None for r in batches)  # nothing held across a step


@pytest.mark.parametrize("name", ["tnt", "kfac"])
def test_curvature_step_after_a_forward_without_gradients_is_a_clear_error(name):
    model = nn.Linear(3, 2)
    opt = build_optimizer(name, model, 0.1)
    with torch.no_grad():
        out = model(torch.randn(4, 3))
    with pytest.raises(ValueError, match="gradients enabled"):
        curvature_step(opt, out, "ce", torch.Generator().manual_seed(0))


def test_kfac_pi_damping_balances_factor_scales():
    from experiments.optim.kfac import damping_split
    A, G = 4.0 * torch.eye(3), 0.25 * torch.eye(2)
    gA, gG = damping_split(A, G, 1e-2, pi_damping=True)
    assert math.isclose(gA * gG, 1e-2) and math.isclose(gA / gG, 16.0)
    assert damping_split(A, G, 1e-2, pi_damping=False) == pytest.approx((0.1, 0.1))


def test_kfac_warm_start_through_the_training_harness_pass():
    from experiments.train import TrainConfig, sampled_gradient_pass
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X, Y = torch.randn(12, 3, dtype=F64), torch.randint(0, 2, (12,))
    cfg = TrainConfig(optimizer="kfac", lr=0.1, steps=1, batch_size=4, eval_every=1)
    opt = KFAC(model, lr=0.1)
    opt.warm_start(sampled_gradient_pass(model, opt, X, Y, cfg, torch.Generator().manual_seed(0),
                                         torch.Generator().manual_seed(1)))
    # same three batches by hand: A is the mean of the per-batch input factors
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    A = 0
    for i in range(3):
        a = torch.cat([X[perm[4 * i:4 * i + 4]], torch.ones(4, 1, dtype=F64)], 1)
        A = A + a.T @ a / 4 / 3
    assert torch.allclose(opt.state[model[0].weight]["A"], A, atol=1e-14)
    assert opt.state[model[2].weight]["G"].shape == (2, 2)
    model(X)  # gradients keyed by parameter (TNT's kind) are not KFAC's layer output gradients
    with pytest.raises(ValueError, match="no layer output gradient"):
        opt.warm_start([{p: torch.zeros_like(p) for p in model.parameters()}])


# -- sampled labels ------------------------------------------------------------------------------

def test_sampling_from_non_finite_outputs_is_a_clear_floating_point_error():
    outputs = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    for kind in ("ce", "bce", "mse"):
        with pytest.raises(FloatingPointError, match="non-finite model outputs"):
            sample_labels(outputs, kind)


# -- Muon ------------------------------------------------------------------------------------------


def test_muon_without_momentum_and_with_svd_is_specgd():
    g = gen(11)
    W0 = torch.randn(10, 6, generator=g)
    grads = [torch.randn(10, 6, generator=g) for _ in range(3)]
    muon, _ = run_sequence(lambda ps: Muon(ps, lr=0.1, momentum=0.0, orthogonalize="svd", adjust_lr="none"), W0, grads)
    spec, _ = run_sequence(lambda ps: SpecGD(ps, lr=0.1), W0, grads)
    torch.testing.assert_close(muon, spec, atol=0, rtol=0)


def test_muon_rank_one_gradient_is_normalised_step():
    """For G = s u v^T the Newton-Schulz output is f^5(1) u v^T with f(x) = a x + b x^3 + c x^5
    (the only singular value of G/||G||_F is 1); the SVD option gives exactly u v^T = G/||G||_F."""
    g = gen(2)
    u, v = torch.randn(40, 1, generator=g), torch.randn(1, 25, generator=g)
    G = 3.0 * u @ v
    a, b, c = NS_COEFFICIENTS
    x = 1.0
    for _ in range(5):
        x = a * x + b * x ** 3 + c * x ** 5
    lr = 0.1
    W0 = torch.zeros(40, 25)
    scale = (40 / 25) ** 0.5  # torch's default shape scaling for a tall matrix
    ns, _ = run_sequence(lambda ps: Muon(ps, lr=lr, momentum=0.0, ns_dtype="float32"), W0, [G])
    svd, _ = run_sequence(lambda ps: Muon(ps, lr=lr, momentum=0.0, orthogonalize="svd"), W0, [G])
    torch.testing.assert_close(svd, -lr * scale * G / G.norm(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ns, -lr * scale * x * G / G.norm(), atol=1e-5, rtol=1e-4)
    assert 0.6 < x < 1.1


def test_newton_schulz_acts_on_singular_values_by_the_quintic():
    """Known spectrum: NS keeps the singular vectors and maps each normalised singular value
    x = s / ||s|| through f^5, f(x) = a x + b x^3 + c x^5; for x >= 3e-3 that lands in [0.68, 1.21]
    (not exactly 1)."""
    g = gen(3)
    Q1, _ = torch.linalg.qr(torch.randn(50, 50, generator=g))
    Q2, _ = torch.linalg.qr(torch.randn(30, 30, generator=g))
    s = torch.logspace(0, -2, 30)
    G = Q1[:, :30] * s @ Q2.T
    x = (s / s.norm()).double()
    a, b, c = NS_COEFFICIENTS
    for _ in range(5):
        x = a * x + b * x ** 3 + c * x ** 5
    expect = torch.sort(x, descending=True).values.float()
    torch.testing.assert_close(torch.linalg.svdvals(newton_schulz(G)), expect, atol=2e-3, rtol=0)
    assert expect.min() > 0.68 and expect.max() < 1.21


def test_muon_conv_kernel_is_flattened_matrix():
    g = gen(4)
    K0 = torch.randn(8, 3, 3, 3, generator=g)
    grads = [torch.randn(8, 3, 3, 3, generator=g) for _ in range(3)]
    conv, _ = run_sequence(lambda ps: Muon(ps, lr=0.05), K0, grads)
    flat, _ = run_sequence(lambda ps: Muon(ps, lr=0.05), K0.reshape(8, 27), [G.reshape(8, 27) for G in grads])
    torch.testing.assert_close(conv.reshape(8, 27), flat, atol=0, rtol=0)


# -- SpecGD, NMD, Signum ----------------------------------------------------------------------------

def _polar64(G: np.ndarray, rank: int) -> np.ndarray:
    U, _, Vt = np.linalg.svd(G.astype(np.float64), full_matrices=False)
    return U[:, :rank] @ Vt[:rank]


@pytest.mark.parametrize("rank", [10, 3])
def test_specgd_matches_float64_polar_factor(rank):
    """Full rank: the polar factor; rank 3 of a 20 x 10 matrix: U_3 V_3^T (the rest dropped)."""
    rng = np.random.default_rng(5)
    G = rng.standard_normal((20, rank)) @ rng.standard_normal((rank, 10))
    lr = 0.3
    W, _ = run_sequence(lambda ps: SpecGD(ps, lr=lr), torch.zeros(20, 10), [torch.tensor(G, dtype=torch.float32)])
    np.testing.assert_allclose(W.numpy(), -lr * _polar64(G, rank), atol=2e-6)
    D = truncated_polar(torch.tensor(G))
    assert torch.linalg.matrix_rank(D).item() == rank
    torch.testing.assert_close(D.T @ D @ D.T, D.T, atol=1e-10, rtol=0)  # partial isometry


def test_nmd_is_frobenius_normalised_momentum():
    g = gen(6)
    W0 = torch.randn(12, 7, generator=g)
    grads = [torch.randn(12, 7, generator=g) for _ in range(4)]
    mu, lr = 0.8, 0.05
    W, _ = run_sequence(lambda ps: NMD(ps, lr=lr, momentum=mu), W0, grads)
    M, expect = torch.zeros(12, 7), W0.clone()
    for G in grads:
        M = mu * M + (1 - mu) * G
        expect = expect - lr * M / M.norm()
    torch.testing.assert_close(W, expect, atol=1e-6, rtol=1e-6)


def test_signum_with_zero_momentum_is_sign_descent():
    g = gen(7)
    W0 = torch.randn(9, 5, generator=g)
    grads = [torch.randn(9, 5, generator=g) for _ in range(3)]
    W, _ = run_sequence(lambda ps: Signum(ps, lr=0.01, momentum=0.0), W0, grads)
    torch.testing.assert_close(W, W0 - 0.01 * sum(torch.sign(G) for G in grads), atol=1e-6, rtol=0)



def test_signum_same_shaped_parameters_share_no_direction():
    """sign(M) goes through one reused buffer per shape: two same-shaped parameters must still each
    move by the sign of their own momentum (mu = 0.5, explicit EMA)."""
    g = gen(8)
    ps = [nn.Parameter(torch.randn(4, 3, generator=g)) for _ in range(2)]
    W0 = [p.detach().clone() for p in ps]
    grads = [[torch.randn(4, 3, generator=g) for _ in ps] for _ in range(3)]
    opt = Signum(ps, lr=0.1, momentum=0.5)
    for step in grads:
        for p, G in zip(ps, step):
            p.grad = G
        opt.step()
    for i, (p, W) in enumerate(zip(ps, W0)):
        M = torch.zeros(4, 3)
        for step in grads:
            M = 0.5 * M + 0.5 * step[i]
            W = W - 0.1 * torch.sign(M)
        torch.testing.assert_close(p.detach(), W, atol=1e-6, rtol=0)


# -- parameter split -------------------------------------------------------------------------------

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.conv = nn.Conv2d(1, 4, 3)
        self.body = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)


def test_split_rule():
    net = _Net()
    hidden, fallback = split_parameters(net)
    assert {id(p) for p in hidden} == {id(net.conv.weight), id(net.body.weight)}
    assert len(hidden) + len(fallback) == len(list(net.parameters()))
    assert id(net.emb.weight) in {id(p) for p in fallback}
    assert id(net.head.weight) in {id(p) for p in fallback}
    hidden_all, _ = split_parameters(net, head_fallback=False)
    assert id(net.head.weight) in {id(p) for p in hidden_all}


def test_head_of_a_linear_model_stays_a_matrix():
    """A softmax-regression model's only matrix is its head: the theory figures run SpecGD on it."""
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(5, 3)
    m = Linear()
    hidden, fallback = split_parameters(m)
    assert [id(p) for p in hidden] == [id(m.head.weight)]
    assert [id(p) for p in fallback] == [id(m.head.bias)]
    groups = matrix_param_groups(m, fallback_lr=1e-3)
    assert [grp["matrix"] for grp in groups] == [True, False] and groups[1]["lr"] == 1e-3
    opt = build_optimizer("muon", m, lr=0.02)
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[1]["lr"] == 1e-3


# -- SPlus -----------------------------------------------------------------------------------------

def test_splus_eval_train_swap_and_eval_before_step():
    g = gen(10)
    W = nn.Parameter(torch.randn(6, 4, generator=g))
    opt = SPlus([W])
    W_init = W.detach().clone()
    opt.eval()  # upstream raised KeyError here
    torch.testing.assert_close(W.detach(), W_init, atol=0, rtol=0)
    opt.train()
    W.grad = torch.randn(6, 4, generator=g)
    opt.step()
    trained = W.detach().clone()
    opt.eval()
    # After one step the bias-corrected EMA is the current (pre-decay) weight.
    assert not torch.equal(W.detach(), W_init)
    with pytest.raises(RuntimeError):
        opt.step()
    opt.train()
    torch.testing.assert_close(W.detach(), trained, atol=0, rtol=0)


def test_splus_large_side_gets_no_factor():
    opt = SPlus([nn.Parameter(torch.zeros(3, 12))], max_dim=10)
    p = opt.param_groups[0]["params"][0]
    p.grad = torch.ones(3, 12)
    opt.step()
    st = opt.state[p]
    assert "L" in st and "QL" in st and "R" not in st and "QR" not in st


def test_splus_nonstandard_layers_step_by_scaled_sign_and_hidden_matrices_rotate():
    """nonstandard_layers=True: the input layer, head and biases take -lr * c * sign(momentum) at
    step 1 (momentum = (1 - b1) g), the hidden matrix does not (its step is the rotated sign);
    the default keeps every matrix rotated."""
    from experiments.models.transformer import TinyTransformer
    from experiments.models.vision import MLP

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
