"""Our optimizers against independent implementations: torch.optim.Muon, pytorch-optimizer's
SPlus and Shampoo, and torch.optim.AdamW for the fallback group of the matrix optimizers."""
import pytest
import torch
from torch import nn

import pytorch_optimizer
from experiments.optim.matrix_optimizer import adamw_update
from experiments.optim.muon import Muon
from experiments.optim.nmd import NMD
from experiments.optim.shampoo import Shampoo
from experiments.optim.signum import Signum
from experiments.optim.specgd import SpecGD
from experiments.optim.splus import SPlus
from optim_helpers import F64, gen, grads_seq, run_sequence, run_steps


@pytest.mark.parametrize("shape, adjust", [((64, 32), "original"), ((32, 64), "match_rms_adamw")])
def test_muon_matches_torch_muon(shape, adjust):
    """torch.optim.Muon always runs Newton-Schulz in bfloat16. With ns_dtype=bfloat16 and the same
    hyperparameters ours agrees to 1e-6 of the total movement (in practice bit for bit); in
    float32 the difference is bf16 rounding, a few percent of the movement at most.
    Momentum convention: torch's docstring says B <- mu B + g, its code lerps B <- mu B + (1 - mu) g
    as ours does. The two differ only by the factor (1 - mu) on B and on the Nesterov mix, which the
    Frobenius normalisation inside Newton-Schulz removes, so Muon's step is the same either way."""
    g = gen(1)
    W0 = torch.randn(*shape, generator=g)
    grads = [torch.randn(*shape, generator=g) for _ in range(4)]
    hyper = dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.05)
    ref, _ = run_sequence(lambda ps: torch.optim.Muon(ps, adjust_lr_fn=adjust, **hyper), W0, grads)
    ours16, _ = run_sequence(lambda ps: Muon(ps, ns_dtype="bfloat16", adjust_lr=adjust, **hyper), W0, grads)
    ours32, _ = run_sequence(lambda ps: Muon(ps, ns_dtype="float32", adjust_lr=adjust, **hyper), W0, grads)
    moved = (ref - W0).norm()
    assert moved > 0.1
    assert (ours16 - ref).norm() / moved < 1e-6
    assert (ours32 - ref).norm() / moved < 3e-2


def test_splus_matches_pytorch_optimizer_splus():
    """Float32, 9 steps with an eigenbasis refresh every 4 (steps 1, 4, 8), a bias (sign * 1e-3),
    weight decay, and the EMA weights after eval(): equal to float32 rounding."""
    g = gen(9)
    W0, b0 = torch.randn(24, 16, generator=g), torch.randn(16, generator=g)
    grads = [(torch.randn(24, 16, generator=g), torch.randn(16, generator=g)) for _ in range(9)]
    out = {}
    for name, cls in (("ours", SPlus), ("peer", pytorch_optimizer.SPlus)):
        W, b = nn.Parameter(W0.clone()), nn.Parameter(b0.clone())
        opt = cls([W, b], lr=0.3, betas=(0.9, 0.95), weight_decay=0.1, inverse_steps=4)
        for GW, Gb in grads:
            W.grad, b.grad = GW.clone(), Gb.clone()
            opt.step()
        trained = (W.detach().clone(), b.detach().clone())
        opt.eval()
        out[name] = trained + (W.detach().clone(), b.detach().clone())
    assert (out["ours"][0] - W0).norm() > 0.05
    for ours, peer in zip(out["ours"], out["peer"]):
        torch.testing.assert_close(ours, peer, atol=1e-6, rtol=1e-6)


def test_fallback_group_is_torch_adamw():
    """matrix=False groups reproduce torch.optim.AdamW (decoupled weight decay included)."""
    g = gen(8)
    b0 = torch.randn(17, generator=g)
    grads = [torch.randn(17, generator=g) for _ in range(5)]
    hyper = dict(lr=0.01, weight_decay=0.1)
    ref, _ = run_sequence(lambda ps: torch.optim.AdamW(ps, **hyper), b0, grads)
    for cls in (Muon, SpecGD, NMD, Signum):
        ours, _ = run_sequence(lambda ps: cls([{"params": ps, "matrix": False}], **hyper), b0, grads)
        torch.testing.assert_close(ours, ref, atol=1e-7, rtol=1e-6)
    p = torch.zeros(3)
    adamw_update(p, torch.ones(3), torch.zeros(3), torch.zeros(3), 1, 0.5, (0.9, 0.999), 0.0, 0.0)
    torch.testing.assert_close(p, torch.full((3,), -0.5))  # first Adam step = -lr sign(g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fallback_group_is_adamw_update_bit_for_bit(dtype):
    """The fallback group updates its parameters as flat buffers (one kernel per operation); the
    numbers are adamw_update's per parameter to the bit, also when a parameter skips a step (its
    step count then differs from the others') and after a state dict round trip."""
    g = gen(11)
    shapes = [(17,), (5, 3), (), (130,)]
    p0 = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    hyper = dict(lr=0.01, weight_decay=0.1, adamw_betas=(0.8, 0.99), adamw_eps=1e-6)
    ref = [p.clone() for p in p0]
    moments = [[torch.zeros_like(p), torch.zeros_like(p), 0] for p in ref]
    ps = [nn.Parameter(p.clone()) for p in p0]
    opt = Muon([{"params": ps, "matrix": False}], **hyper)
    for step in range(7):
        grads = [None if step == 2 and i == 1 else (torch.randn(s, generator=g) * 10.0 ** (i - 2)).to(dtype)
                 for i, s in enumerate(shapes)]
        for p, grad in zip(ps, grads):
            p.grad = grad
        opt.step()
        if step == 4:
            state = opt.state_dict()
            opt = Muon([{"params": ps, "matrix": False}], **hyper)
            opt.load_state_dict(state)
        for p, grad, m in zip(ref, grads, moments):
            if grad is not None:
                m[2] += 1
                adamw_update(p, grad, m[0], m[1], m[2], 0.01, (0.8, 0.99), 1e-6, 0.1)
    for p, r, m in zip(ps, ref, moments):
        assert torch.equal(p.detach(), r)
        assert torch.equal(opt.state[p]["exp_avg"], m[0]) and torch.equal(opt.state[p]["exp_avg_sq"], m[1])
        assert opt.state[p]["step"] == m[2]
    assert not torch.equal(ps[0].detach(), p0[0])


@pytest.mark.parametrize("shape", [(6,), (5, 3), (3, 4, 2)])
def test_shampoo_original_matches_pytorch_optimizer(shape):
    p0 = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    p_peer, p_ours = p0.clone().requires_grad_(), p0.clone().requires_grad_()
    # The peer: H_j starts at matrix_eps I, running sums, roots every step, no momentum or grafting.
    peer = pytorch_optimizer.Shampoo([p_peer], lr=0.05, momentum=0.0, matrix_eps=1e-3, preconditioning_compute_steps=1)
    ours = Shampoo([p_ours], lr=0.05, momentum=0.0, beta=1.0, eps=1e-3, precondition_frequency=1)
    grads = grads_seq(shape, 6, seed=2)
    run_steps(peer, p_peer, grads)
    run_steps(ours, p_ours, grads)
    assert (p_ours - p0).abs().max() > 1e-2  # the steps are not negligible
    assert torch.allclose(p_ours, p_peer, rtol=0, atol=1e-12)
