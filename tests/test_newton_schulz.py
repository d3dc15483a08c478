"""Newton-Schulz in Muon: the Polar Express derivation, per-step schedules, the automatic precision,
and normalisation of gradients of any scale (Muon, NMD, SpecGD)."""
import numpy as np
import pytest
import torch
from torch import nn

from experiments.optim import muon as muon_mod
from theory import polar_express as pe
from experiments.envvars import NS_DTYPE_ENV
from experiments.optim.muon import (NS_COEFFICIENTS, Muon, auto_ns_dtype, hardware_ns_dtype, newton_schulz,
                                   ns_schedule)
from experiments.optim.matrix_optimizer import frobenius_normalize, unit_rescale
from experiments.optim.nmd import NMD
from experiments.optim.specgd import SpecGD

GRID = np.unique(np.concatenate([np.logspace(-3, 0, 4001), np.linspace(1e-3, 1, 4001)]))


def _compose(schedule, x):
    for p in schedule:
        x = pe.quintic(p, x)
    return x


# ---- Polar Express: the derivation --------------------------------------------------------

@pytest.mark.parametrize("l, u", [(1e-3, 1.0), (0.1, 1.0), (0.5, 1.5), (0.99, 1.01)])
def test_minimax_quintic_equioscillates_and_cannot_be_improved(l, u):
    """Equioscillation at four points (l, x1, x2, u) with alternating sign is the optimality
    certificate; perturbing the coefficients must not lower the maximum error."""
    p, err = pe.minimax_quintic(l, u)
    x1, x2 = pe._critical_points(*p)
    at = 1 - pe.quintic(p, np.array([l, x1, x2, u]))
    np.testing.assert_allclose(at, [err, -err, err, -err], rtol=1e-8, atol=1e-15)
    x = np.linspace(l, u, 20001)
    assert np.abs(1 - pe.quintic(p, x)).max() <= err * (1 + 1e-9)
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = np.array(p) * (1 + 1e-3 * rng.standard_normal(3))
        assert np.abs(1 - pe.quintic(q, x)).max() > err


def test_each_step_maps_its_interval_onto_the_next():
    sched = pe.greedy_schedule(8)
    for (p, (l, u)), (_, (l_next, u_next)) in zip(sched, sched[1:]):
        y = pe.quintic(p, np.linspace(l, u, 20001))
        assert y.min() >= l_next - 1e-12 and y.max() <= u_next + 1e-12
        assert y.min() == pytest.approx(l_next, abs=1e-9) and y.max() == pytest.approx(u_next, abs=1e-9)
        assert l_next > l  # every step tightens the band
    assert sched[-1][0] == pe.FIXED_POINT and 1 - sched[-1][1][0] < 1e-8


def test_reproduces_the_published_polynomials():
    """The paper lists its (pre-safety) polynomials for l = 1e-3; the first and fifth:"""
    sched = pe.greedy_schedule(5)
    np.testing.assert_allclose(sched[0][0], (8.287212018145, -23.595886519098, 17.300387312530), rtol=1e-11)
    np.testing.assert_allclose(sched[4][0], (2.300652019954, -1.668903984574, 0.418807311952), rtol=1e-11)


def test_composed_error_bound_beats_the_classic_quintic():
    """On [1e-3, 1] five Polar Express steps leave |1 - P(x)| <= 0.16; the classic quintic 0.53."""
    classic = _compose([NS_COEFFICIENTS] * 5, GRID)
    polar = _compose(pe.polar_express_coefficients(5), GRID)
    err_classic, err_polar = np.abs(1 - classic).max(), np.abs(1 - polar).max()
    assert err_polar < 0.16 < 0.5 < err_classic
    assert polar.min() > 0.84 and polar.max() < 1.124 and classic.max() > 1.2


def test_safety_factor_keeps_an_overshoot_bounded():
    """Each safe polynomial is p(x / 1.01). A singular value 1% above the design interval (bf16
    rounding of the norm) stays in the band with it and explodes without it."""
    for safe, (p, _) in zip(pe.polar_express_coefficients(5), pe.greedy_schedule(5)):
        np.testing.assert_allclose(pe.quintic(safe, 1.01 * GRID), pe.quintic(p, GRID), rtol=1e-12)
    assert _compose(pe.polar_express_coefficients(5), 1.01 * GRID).max() < 1.124
    assert _compose([p for p, _ in pe.greedy_schedule(5)], 1.01 * GRID).max() > 1e10


@pytest.mark.parametrize("bad", [lambda: pe.minimax_quintic(0.5, 0.5), lambda: pe.minimax_quintic(0.0, 1.0),
                                 lambda: pe.polar_express_coefficients(0),
                                 lambda: pe.polar_express_coefficients(5, safety=0.9),
                                 lambda: pe.greedy_schedule(5, lower=1.0)])
def test_polar_express_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        bad()


# ---- Newton-Schulz with a per-step schedule -----------------------------------------------

def test_polar_express_newton_schulz_acts_on_singular_values_by_the_composed_quintics():
    g = torch.Generator().manual_seed(3)
    Q1, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(25, 25, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -2.5, 25, dtype=torch.float64)
    G = Q1[:, :25] * s @ Q2.T
    sched = ns_schedule("polar_express", 5)
    expect = np.sort(_compose(sched, (s / s.norm()).numpy()))[::-1].copy()
    got = torch.linalg.svdvals(newton_schulz(G, 5, sched, torch.float64))
    np.testing.assert_allclose(got.numpy(), expect, atol=1e-12)
    got_t = torch.linalg.svdvals(newton_schulz(G.T, 5, sched, torch.float64))  # tall input
    np.testing.assert_allclose(got_t.numpy(), expect, atol=1e-12)


def test_newton_schulz_rejects_a_schedule_of_the_wrong_length():
    with pytest.raises(ValueError, match="per-step coefficients"):
        newton_schulz(torch.ones(3, 2), 4, ns_schedule("polar_express", 5))


def test_muon_polar_express_step_and_state_dict():
    g = torch.Generator().manual_seed(5)
    G = torch.randn(12, 20, generator=g)
    p = nn.Parameter(torch.zeros(12, 20))
    opt = Muon([p], lr=0.1, momentum=0.0, ns_coefficients="polar_express", ns_dtype="float32")
    p.grad = G.clone()
    opt.step()
    expect = -0.1 * newton_schulz(G, 5, pe.polar_express_coefficients(5), torch.float32)
    torch.testing.assert_close(p.detach(), expect, atol=0, rtol=0)
    clone = Muon([nn.Parameter(torch.zeros(12, 20))], lr=0.1)
    clone.load_state_dict(opt.state_dict())
    assert clone.param_groups[0]["ns_coefficients"] == "polar_express"
    with pytest.raises(ValueError, match="ns_coefficients"):
        Muon([nn.Parameter(torch.zeros(3, 3))], ns_coefficients="polar")
    with pytest.raises(ValueError, match="ns_coefficients"):
        Muon([nn.Parameter(torch.zeros(3, 3))], ns_coefficients=(1.0, float("nan"), 0.0))


# ---- automatic precision ------------------------------------------------------------------

def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(NS_DTYPE_ENV, raising=False)
    assert auto_ns_dtype("cuda")[0] == torch.bfloat16
    assert auto_ns_dtype("mps")[0] == torch.float32
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    dtype, why = auto_ns_dtype("cpu")
    assert dtype == (torch.bfloat16 if native else torch.float32) and why
    hardware_ns_dtype.cache_clear()
    try:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert auto_ns_dtype("cpu")[0] == torch.float32
    finally:
        hardware_ns_dtype.cache_clear()


def test_the_environment_overrides_the_hardware_for_auto_only(monkeypatch):
    """PAPER_REPRO_NS_DTYPE forces what "auto" resolves to on every device (so two kinds of CPU can
    run the same numerics); an explicit ns_dtype is untouched, and a bad value is a clear error."""
    G = torch.randn(8, 12, generator=torch.Generator().manual_seed(0))
    steps = {}
    for forced in ("float32", "bfloat16"):
        monkeypatch.setenv(NS_DTYPE_ENV, forced)
        for device in ("cpu", "cuda"):
            dtype, why = auto_ns_dtype(device)
            assert dtype == getattr(torch, forced) and NS_DTYPE_ENV in why
        for ns_dtype in ("auto", forced):
            p = nn.Parameter(torch.zeros(8, 12))
            p.grad = G.clone()
            Muon([p], lr=1.0, ns_dtype=ns_dtype).step()
            steps[forced, ns_dtype] = p.detach().clone()
        assert torch.equal(steps[forced, "auto"], steps[forced, forced])
        monkeypatch.setenv(NS_DTYPE_ENV, "bfloat16" if forced == "float32" else "float32")
        p = nn.Parameter(torch.zeros(8, 12))
        p.grad = G.clone()
        Muon([p], lr=1.0, ns_dtype=forced).step()   # explicit: the environment does not apply
        assert torch.equal(p.detach(), steps[forced, forced])
    assert not torch.equal(steps["float32", "auto"], steps["bfloat16", "auto"])
    # one optimizer keeps the precision "auto" resolved to at its first step
    runs = {}
    for ns_dtype, later in (("auto", "bfloat16"), ("float32", "float32")):
        monkeypatch.setenv(NS_DTYPE_ENV, "float32")
        p = nn.Parameter(torch.zeros(8, 12))
        opt = Muon([p], lr=1.0, momentum=0.0, ns_dtype=ns_dtype)
        for k in range(2):
            p.grad = G.clone() * (k + 1)
            opt.step()
            monkeypatch.setenv(NS_DTYPE_ENV, later)
        runs[ns_dtype] = p.detach().clone()
    assert torch.equal(runs["auto"], runs["float32"])
    for unset in ("", "auto", "AUTO"):
        monkeypatch.setenv(NS_DTYPE_ENV, unset)
        assert auto_ns_dtype("cpu") == hardware_ns_dtype("cpu")
    monkeypatch.setenv(NS_DTYPE_ENV, "fp32")
    with pytest.raises(ValueError, match=f"{NS_DTYPE_ENV}='fp32'"):
        auto_ns_dtype("cpu")


def test_muon_auto_is_the_chosen_precision_bit_for_bit():
    g = torch.Generator().manual_seed(6)
    W0 = torch.randn(16, 24, generator=g)
    grads = [torch.randn(16, 24, generator=g) for _ in range(3)]
    chosen = {torch.bfloat16: "bfloat16", torch.float32: "float32"}[auto_ns_dtype("cpu")[0]]
    out = []
    for dt in ("auto", chosen):
        p = nn.Parameter(W0.clone())
        opt = Muon([p], lr=0.05, ns_dtype=dt)
        for G in grads:
            p.grad = G.clone()
            opt.step()
        out.append(p.detach())
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)
    assert muon_mod.resolve_ns_dtype("float64", torch.device("cpu")) == torch.float64


# ---- gradients of any scale -----------------------------------------------------------------

OPTIMIZERS = {
    "muon_fp32": lambda ps: Muon(ps, lr=0.1, momentum=0.0, ns_dtype="float32"),
    "muon_bf16": lambda ps: Muon(ps, lr=0.1, momentum=0.0, ns_dtype="bfloat16"),
    "muon_fp16": lambda ps: Muon(ps, lr=0.1, momentum=0.0, ns_dtype="float16"),
    "muon_polar_express": lambda ps: Muon(ps, lr=0.1, momentum=0.0, ns_coefficients="polar_express",
                                                ns_dtype="float32"),
    "nmd": lambda ps: NMD(ps, lr=0.1, momentum=0.0),
    "specgd": lambda ps: SpecGD(ps, lr=0.1),
}


def _one_step(make, G):
    p = nn.Parameter(torch.zeros_like(G))
    opt = make([p])
    p.grad = G
    opt.step()
    return p.detach()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-9, 1e20, 1e30])
def test_update_does_not_depend_on_the_gradient_scale(name, scale):
    """A gradient of norm 1e-30 .. 1e30 moves the weights as the unit-scale gradient does (before,
    Muon and NMD gave 0 at 1e20 and lr * 1e-10 at 1e-20, and NMD 4x the step at 1e-30)."""
    g = torch.Generator().manual_seed(7)
    G = torch.randn(24, 16, generator=g)
    G /= G.norm()
    ref = _one_step(OPTIMIZERS[name], G)
    got = _one_step(OPTIMIZERS[name], G * scale)
    assert torch.isfinite(got).all()
    tol = {"muon_bf16": 2e-2, "muon_fp16": 3e-3}.get(name, 1e-5)
    assert (got - ref).norm() <= tol * ref.norm()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_zero_gradient_is_a_zero_update(name):
    assert torch.equal(_one_step(OPTIMIZERS[name], torch.zeros(6, 4)), torch.zeros(6, 4))


def test_nmd_steps_exactly_lr_at_any_scale():
    G = torch.randn(9, 5, generator=torch.Generator().manual_seed(8))
    for scale in (1e-38, 1e-30, 1.0, 1e30, 1e37):
        assert _one_step(OPTIMIZERS["nmd"], G * scale).norm().item() == pytest.approx(0.1, rel=1e-6)


def test_unit_rescale_is_exact_and_keeps_normalised_bits():
    """Scaling by a power of two loses nothing, so the normalised matrix is bit-identical."""
    G = torch.randn(7, 11, generator=torch.Generator().manual_seed(9))
    X = unit_rescale(G)
    assert 0.5 <= X.abs().max().item() < 1.0
    torch.testing.assert_close(X / X.norm(), G / G.norm(), atol=0, rtol=0)
    torch.testing.assert_close(frobenius_normalize(G * 2.0 ** 90), G / G.norm(), atol=0, rtol=0)


# ---- the report -------------------------------------------------------------------------------

def test_ns_report_smoke(tmp_path, capsys):
    """A seconds-long configuration: structure, the exact polar factor's band is [1, 1], the classic
    band for kappa 10 is about [0.68, 1.13] and Polar Express's is inside it."""
    from dataclasses import replace

    from experiments import ns_report
    cfg = replace(ns_report.QUICK, shape=(48, 24), kappas=(1e1, 1e4), dataset="digits", mlp=(16, 2), cnn=(4, (1,)),
                  batch=32, sizes=((16, 24),), min_run_time=0.001, rounds=1)
    result = ns_report.run(cfg, torch.device("cpu"), threads=1, verbose=False)
    assert result["auto_ns_dtype"] == str(auto_ns_dtype("cpu")[0]).removeprefix("torch.")
    assert len(result["bands"]) == 4 * 2  # (2 kappas + 2 models) x (float32, bfloat16)
    for row in result["bands"]:
        assert row["exact"] == pytest.approx([1.0, 1.0], abs=1e-5)
    k10 = result["bands"][0]
    assert k10["input"].endswith("kappa 1e1") and k10["dtype"] == "float32"
    assert k10["classic"][0] == pytest.approx(0.68, abs=0.01) and 1.1 < k10["classic"][1] < 1.21
    assert k10["classic"][0] < k10["polar_express"][0] and k10["polar_express"][1] < k10["classic"][1]
    (row,) = result["speed"]
    assert row["shape"] == [16, 24] and row["muon_auto_s"] > 0 and row["ns_over_products"] > 0
    with pytest.raises(SystemExit):
        ns_report.main(["--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err
