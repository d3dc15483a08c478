"""SpecGD, Muon, NMD, Signum, SPlus and the parameter split: agreement with peers and explicit
computations, reductions, and the optimizer contract details specific to these classes."""
import numpy as np
import pytest
import torch
from torch import nn

import pytorch_optimizer
from experiments.optim.matrix_optimizer import adamw_update
from experiments.optim.muon import NS_COEFFICIENTS, Muon, newton_schulz
from experiments.optim.nmd import NMD
from experiments.optim.param_groups import matrix_param_groups, split_parameters
from experiments.optim.registry import build_optimizer
from experiments.optim.signum import Signum
from experiments.optim.specgd import SpecGD, truncated_polar
from experiments.optim.splus import SPlus


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _run(opt_factory, W0, grads):
    """Apply the gradient sequence `grads` to a copy of W0 with a fresh optimizer; return W."""
    p = nn.Parameter(W0.clone())
    opt = opt_factory([p])
    for G in grads:
        p.grad = G.clone()
        opt.step()
    return p.detach(), opt


# ---- Muon ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, adjust", [((64, 32), "original"), ((32, 64), "match_rms_adamw")])
def test_muon_matches_torch_muon(shape, adjust):
    """torch.optim.Muon always runs Newton-Schulz in bfloat16. With ns_dtype=bfloat16 and the same
    hyperparameters ours agrees to 1e-6 of the total movement (in practice bit for bit); in
    float32 the difference is bf16 rounding, a few percent of the movement at most.
    Momentum convention: torch's docstring says B <- mu B + g, its code lerps B <- mu B + (1 - mu) g
    as ours does. The two differ only by the factor (1 - mu) on B and on the Nesterov mix, which the
    Frobenius normalisation inside Newton-Schulz removes, so Muon's step is the same either way."""
    g = _gen(1)
    W0 = torch.randn(*shape, generator=g)
    grads = [torch.randn(*shape, generator=g) for _ in range(4)]
    hyper = dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.05)
    ref, _ = _run(lambda ps: torch.optim.Muon(ps, adjust_lr_fn=adjust, **hyper), W0, grads)
    ours16, _ = _run(lambda ps: Muon(ps, ns_dtype="bfloat16", adjust_lr=adjust, **hyper), W0, grads)
    ours32, _ = _run(lambda ps: Muon(ps, ns_dtype="float32", adjust_lr=adjust, **hyper), W0, grads)
    moved = (ref - W0).norm()
    assert moved > 0.1
    assert (ours16 - ref).norm() / moved < 1e-6
    assert (ours32 - ref).norm() / moved < 3e-2


def test_muon_without_momentum_and_with_svd_is_specgd():
    g = _gen(11)
    W0 = torch.randn(10, 6, generator=g)
    grads = [torch.randn(10, 6, generator=g) for _ in range(3)]
    muon, _ = _run(lambda ps: Muon(ps, lr=0.1, momentum=0.0, orthogonalize="svd", adjust_lr="none"), W0, grads)
    spec, _ = _run(lambda ps: SpecGD(ps, lr=0.1), W0, grads)
    torch.testing.assert_close(muon, spec, atol=0, rtol=0)


def test_muon_rank_one_gradient_is_normalised_step():
    """For G = s u v^T the Newton-Schulz output is f^5(1) u v^T with f(x) = a x + b x^3 + c x^5
    (the only singular value of G/||G||_F is 1); the SVD option gives exactly u v^T = G/||G||_F."""
    g = _gen(2)
    u, v = torch.randn(40, 1, generator=g), torch.randn(1, 25, generator=g)
    G = 3.0 * u @ v
    a, b, c = NS_COEFFICIENTS
    x = 1.0
    for _ in range(5):
        x = a * x + b * x ** 3 + c * x ** 5
    lr = 0.1
    W0 = torch.zeros(40, 25)
    scale = (40 / 25) ** 0.5  # torch's default shape scaling for a tall matrix
    ns, _ = _run(lambda ps: Muon(ps, lr=lr, momentum=0.0, ns_dtype="float32"), W0, [G])
    svd, _ = _run(lambda ps: Muon(ps, lr=lr, momentum=0.0, orthogonalize="svd"), W0, [G])
    torch.testing.assert_close(svd, -lr * scale * G / G.norm(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ns, -lr * scale * x * G / G.norm(), atol=1e-5, rtol=1e-4)
    assert 0.6 < x < 1.1


def test_newton_schulz_acts_on_singular_values_by_the_quintic():
    """Known spectrum: NS keeps the singular vectors and maps each normalised singular value
    x = s / ||s|| through f^5, f(x) = a x + b x^3 + c x^5; for x >= 3e-3 that lands in [0.68, 1.21]
    (not exactly 1)."""
    g = _gen(3)
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
    g = _gen(4)
    K0 = torch.randn(8, 3, 3, 3, generator=g)
    grads = [torch.randn(8, 3, 3, 3, generator=g) for _ in range(3)]
    conv, _ = _run(lambda ps: Muon(ps, lr=0.05), K0, grads)
    flat, _ = _run(lambda ps: Muon(ps, lr=0.05), K0.reshape(8, 27), [G.reshape(8, 27) for G in grads])
    torch.testing.assert_close(conv.reshape(8, 27), flat, atol=0, rtol=0)


# ---- SpecGD, NMD, Signum ------------------------------------------------------------------

def _polar64(G: np.ndarray, rank: int) -> np.ndarray:
    U, _, Vt = np.linalg.svd(G.astype(np.float64), full_matrices=False)
    return U[:, :rank] @ Vt[:rank]


@pytest.mark.parametrize("rank", [10, 3])
def test_specgd_matches_float64_polar_factor(rank):
    """Full rank: the polar factor; rank 3 of a 20 x 10 matrix: U_3 V_3^T (the rest dropped)."""
    rng = np.random.default_rng(5)
    G = rng.standard_normal((20, rank)) @ rng.standard_normal((rank, 10))
    lr = 0.3
    W, _ = _run(lambda ps: SpecGD(ps, lr=lr), torch.zeros(20, 10), [torch.tensor(G, dtype=torch.float32)])
    np.testing.assert_allclose(W.numpy(), -lr * _polar64(G, rank), atol=2e-6)
    D = truncated_polar(torch.tensor(G))
    assert torch.linalg.matrix_rank(D).item() == rank
    torch.testing.assert_close(D.T @ D @ D.T, D.T, atol=1e-10, rtol=0)  # partial isometry


def test_nmd_is_frobenius_normalised_momentum():
    g = _gen(6)
    W0 = torch.randn(12, 7, generator=g)
    grads = [torch.randn(12, 7, generator=g) for _ in range(4)]
    mu, lr = 0.8, 0.05
    W, _ = _run(lambda ps: NMD(ps, lr=lr, momentum=mu), W0, grads)
    M, expect = torch.zeros(12, 7), W0.clone()
    for G in grads:
        M = mu * M + (1 - mu) * G
        expect = expect - lr * M / M.norm()
    torch.testing.assert_close(W, expect, atol=1e-6, rtol=1e-6)


def test_signum_with_zero_momentum_is_sign_descent():
    g = _gen(7)
    W0 = torch.randn(9, 5, generator=g)
    grads = [torch.randn(9, 5, generator=g) for _ in range(3)]
    W, _ = _run(lambda ps: Signum(ps, lr=0.01, momentum=0.0), W0, grads)
    torch.testing.assert_close(W, W0 - 0.01 * sum(torch.sign(G) for G in grads), atol=1e-6, rtol=0)


def test_fallback_group_is_torch_adamw():
    """matrix=False groups reproduce torch.optim.AdamW (decoupled weight decay included)."""
    g = _gen(8)
    b0 = torch.randn(17, generator=g)
    grads = [torch.randn(17, generator=g) for _ in range(5)]
    hyper = dict(lr=0.01, weight_decay=0.1)
    ref, _ = _run(lambda ps: torch.optim.AdamW(ps, **hyper), b0, grads)
    for cls in (Muon, SpecGD, NMD, Signum):
        ours, _ = _run(lambda ps: cls([{"params": ps, "matrix": False}], **hyper), b0, grads)
        torch.testing.assert_close(ours, ref, atol=1e-7, rtol=1e-6)
    p = torch.zeros(3)
    adamw_update(p, torch.ones(3), torch.zeros(3), torch.zeros(3), 1, 0.5, (0.9, 0.999), 0.0, 0.0)
    torch.testing.assert_close(p, torch.full((3,), -0.5))  # first Adam step = -lr sign(g)


# ---- parameter split ----------------------------------------------------------------------

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


# ---- SPlus --------------------------------------------------------------------------------

def test_splus_matches_pytorch_optimizer_splus():
    """Float32, 9 steps with an eigenbasis refresh every 4 (steps 1, 4, 8), a bias (sign * 1e-3),
    weight decay, and the EMA weights after eval(): equal to float32 rounding."""
    g = _gen(9)
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


def test_splus_eval_train_swap_and_eval_before_step():
    g = _gen(10)
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


# ---- contract details ---------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda ps: Muon(ps, momentum=1.0), lambda ps: Muon(ps, ns_steps=0), lambda ps: Muon(ps, ns_dtype="int8"),
    lambda ps: Muon(ps, adjust_lr="sqrt"), lambda ps: Muon(ps, orthogonalize="qr"), lambda ps: Muon(ps, lr=-1.0),
    lambda ps: SpecGD(ps, rtol=2.0), lambda ps: NMD(ps, momentum=-0.1), lambda ps: Signum(ps, weight_decay=-1),
    lambda ps: Muon(ps, adamw_betas=(0.9, 1.0)),
    lambda ps: SPlus(ps, betas=(1.0, 0.9)), lambda ps: SPlus(ps, inverse_steps=0), lambda ps: SPlus(ps, ema_rate=1.0),
    lambda ps: SPlus(ps, lr=-0.1),
])
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make([nn.Parameter(torch.zeros(3, 3))])


def test_vector_in_a_matrix_group_raises():
    with pytest.raises(ValueError, match="matrix=False"):
        Muon([nn.Parameter(torch.zeros(3))])


@pytest.mark.parametrize("cls", [SpecGD, Muon, NMD, Signum, SPlus])
def test_closure_runs_with_grad_enabled(cls):
    W = nn.Parameter(torch.ones(4, 3))
    opt = cls([W], lr=0.01)

    def closure():
        opt.zero_grad()
        loss = (W ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(12.0)
    assert not torch.equal(W.detach(), torch.ones(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
@pytest.mark.parametrize("cls", [SpecGD, Muon, NMD, Signum, SPlus])
def test_cuda_bfloat16_params(cls):
    """On cuda with bfloat16 parameters the matrix work runs in float32 and the step is finite."""
    W = nn.Parameter(torch.randn(32, 16, device="cuda", dtype=torch.bfloat16))
    opt = cls([W], lr=0.01)
    for _ in range(3):
        W.grad = torch.randn_like(W)
        opt.step()
    assert W.dtype == torch.bfloat16 and W.device.type == "cuda" and torch.isfinite(W).all()


# ---- benchmark ----------------------------------------------------------------------------

def test_bench_smoke_memory_matches_formulas():
    """The benchmark runs end to end, and the optimizer state it measures equals each method's
    formula for the methods defined here and torch's (a stray buffer or a missing state would show)."""
    from experiments import bench
    res = bench.run(bench.SMOKE, torch.device("cpu"), verbose=False)
    assert [(e["model"], e["width"]) for e in res["models"]] == [("mlp", 16), ("cnn", 4)]
    for entry in res["models"]:
        for name in ("sgd", "adam", "adamw", "specgd", "muon", "nmd", "signum", "splus"):
            m = entry["methods"][name]
            assert m["iter_s"] > 0 and m["floor_s"] is not None
            # torch keeps Adam's step count as a 0-d float tensor per parameter: a few bytes over.
            assert m["memory_vs_params"] == pytest.approx(m["formula_memory_vs_params"], rel=2e-3), name
    mlp = res["models"][0]
    assert {row["peer"] for row in mlp["peers"]} >= {"torch.optim.Muon (NS bfloat16)", "pytorch_optimizer.SPlus"}
    assert mlp["newton_schulz"]["ns_s"] > 0


@pytest.mark.parametrize("cls", [Muon, SPlus])
def test_rejected_param_group_is_not_kept(cls):
    opt = cls([nn.Parameter(torch.zeros(3, 3))])
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2, 2))], "lr": -1.0})
    assert len(opt.param_groups) == 1


def test_bench_cli_bad_flags_exit_2_before_running(tmp_path, capsys):
    """Bad --device / --threads / --json folder are argparse errors (exit 2, one message line),
    checked before the minutes-long run (was a RuntimeError traceback, or a crash at the end)."""
    from experiments import bench
    bad = [["--device", "nonsense"], ["--threads", "0"], ["--json", str(tmp_path / "no" / "such" / "b.json")]]
    if not torch.cuda.is_available():
        bad.append(["--device", "cuda"])
    for flags in bad:
        with pytest.raises(SystemExit) as e:
            bench.main(["--quick", *flags])
        assert e.value.code == 2, flags
        assert "error:" in capsys.readouterr().err
