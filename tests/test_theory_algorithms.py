"""theory.algorithms properties, the O(k) fast path against the SVD path, and the theorem ratios."""
import numpy as np
import pytest

from theory import algorithms, fast_path, models, theorems
from theory.data_model import DataModel


def test_spectral_direction_has_unit_singular_values_on_support():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((5, 3)) @ rng.standard_normal((3, 8))  # rank 3
    d = algorithms.spectral_direction(g)
    s = np.linalg.svd(d, compute_uv=False)
    np.testing.assert_allclose(s[:3], 1.0, atol=1e-10)
    np.testing.assert_allclose(s[3:], 0.0, atol=1e-10)
    # Same row and column spaces as G, and <G, D> = nuclear norm of G (steepest descent in spectral norm).
    assert np.sum(g * d) == pytest.approx(np.linalg.svd(g, compute_uv=False).sum())
    assert np.allclose(d @ np.linalg.pinv(g) @ g, d, atol=1e-8)


def test_newton_schulz_approximates_polar_factor():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((6, 20))
    ns = algorithms.newton_schulz(g)
    s = np.linalg.svd(ns, compute_uv=False)
    assert np.all((s > 0.6) & (s < 1.25))  # quintic NS: a band around 1, not exactly 1
    assert np.sum(ns * algorithms.spectral_direction(g)) / np.linalg.norm(ns) / np.sqrt(6) > 0.98
    np.testing.assert_allclose(algorithms.newton_schulz(g.T), ns.T, atol=1e-12)


def test_layer_grads_match_finite_differences():
    rng = np.random.default_rng(2)
    factors = [rng.standard_normal((4, 6)), rng.standard_normal((3, 4))]
    x, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    grads = models.layer_grads(factors, models.cross_entropy_grad(models.product(factors), x, y))
    h = 1e-6
    for l, f in enumerate(factors):
        i, j = 1, 2
        up = [g.copy() for g in factors]
        up[l][i, j] += h
        dn = [g.copy() for g in factors]
        dn[l][i, j] -= h
        fd = (models.cross_entropy(models.product(up), x, y) - models.cross_entropy(models.product(dn), x, y)) / (2 * h)
        assert grads[l][i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("method", ["gd", "ngd", "signgd", "specgd", "muon"])
def test_fast_path_equals_svd_path(method):
    # Canonical basis: the SVD path stays exactly diagonal, so the agreement is to round-off.
    dm = DataModel(mu=1.3, sigma=0.8, priors=(0.4, 0.3, 0.2, 0.1), d=7)
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    grads = algorithms.product_gradient(lambda w: models.population_grad(w, sxx, syx))
    ref = algorithms.run_discrete(grads, [np.zeros((dm.k, dm.d))], method, 0.02, 80,
                                  lambda fs: models.diagonal(models.product(fs), v))
    fast = fast_path.diagonal_dynamics(dm.s_xx(), dm.s_yx(), method, 0.02, 80)
    np.testing.assert_allclose(fast, ref, atol=1e-12)


@pytest.mark.parametrize("method, depth", [("specgd", 1), ("specgd", 3), ("gd", 2), ("ngd", 1), ("muon", 1)])
def test_fast_path_equals_svd_path_in_rotated_basis(method, depth):
    dm = DataModel(mu=1.3, sigma=0.8, priors=(0.4, 0.3, 0.2, 0.1), d=7, basis_seed=1)
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    grads = algorithms.product_gradient(lambda w: models.population_grad(w, sxx, syx))
    eps = 0.2 if depth > 1 else 0.0
    init = models.aligned_init(depth, v, eps) if depth > 1 else [np.zeros((dm.k, dm.d))]
    lr = 0.005 if method != "gd" else 0.2
    ref = algorithms.run_discrete(grads, init, method, lr, 60, lambda fs: models.diagonal(models.product(fs), v))
    fast = fast_path.diagonal_dynamics(dm.s_xx(), dm.s_yx(), method, lr, 60, depth=depth, eps=eps)
    np.testing.assert_allclose(fast, ref, atol=1e-12)  # 60 steps: before the first saturation


def test_fast_path_batches_settings():
    p = np.array([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]])
    s_yx, s_xx = p, p + 1.0
    both = fast_path.diagonal_dynamics(s_xx, s_yx, "specgd", 0.01, 30)
    for i in range(2):
        np.testing.assert_array_equal(both[:, i], fast_path.diagonal_dynamics(s_xx[i], s_yx[i], "specgd", 0.01, 30))


def test_ngf_path_matches_full_matrix_flow():
    dm = DataModel(mu=1.3, sigma=0.8, priors=(0.4, 0.3, 0.2, 0.1), d=6, basis_seed=2)
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    t = np.linspace(0, dm.alpha_star().min(), 10)[1:]
    w = algorithms.run_flow(lambda w: models.population_grad(w, sxx, syx), np.zeros((dm.k, dm.d)), "ngf", t)
    np.testing.assert_allclose([models.diagonal(x, v) for x in w], theorems.ngf_path(dm.s_xx(), dm.s_yx(), t), atol=1e-7)


def test_theorem_ratios_on_an_admissible_case():
    p = [0.48, 0.48, 0.04]  # mu = sigma = 1, k = 3: p_m <= 1/(5 + 18) = 0.0435
    check = theorems.theorem_ratios(1.0, 1.0, p)
    assert check.assumptions["all"]
    assert check.ratios["thm1_minority"] >= 0.25 and check.holds("thm1_minority")
    assert check.ratios["thm1_balanced"] >= 0.5 and check.ratios["thm2_minority"] >= 0.5
    # Independent evaluation at t = t*: alpha_spec = t*, alpha_gf = alpha*(1 - exp(-s_xx t*)).
    p = np.array(p)
    s_yx, s_xx = p, p + 1.0
    t_star = s_yx[2] / s_xx[2]
    a_gf = s_yx / s_xx * (1 - np.exp(-s_xx * t_star))
    gap = 0.5 * ((1 - a_gf[2]) ** 2 + np.sum(a_gf**2)) - 0.5 * ((1 - t_star) ** 2 + 3 * t_star**2)
    assert check.ratios["thm1_minority"] <= gap / t_star + 1e-12
    # Outside the assumptions (k < 3 mu, mild imbalance) both Theorem 1 bounds fail: the check can fail.
    bad = theorems.theorem_ratios(3.0, 1.0, [0.5, 0.3, 0.2])
    assert not bad.assumptions["all"]
    assert not bad.holds("thm1_minority") and not bad.holds("thm1_balanced")


@pytest.mark.parametrize("direction", [algorithms.ngd_direction, algorithms.spectral_direction,
                                       algorithms.newton_schulz])
def test_directions_act_matrix_by_matrix_on_stacks(direction):
    rng = np.random.default_rng(3)
    stack = rng.standard_normal((4, 5, 9))
    stack[2] = 0.0  # a zero gradient stays a zero step
    out = direction(stack)
    for i in range(4):
        np.testing.assert_allclose(out[i], direction(stack[i]), atol=1e-12)
    assert np.all(out[2] == 0)


def test_package_docstring_examples_run():
    import doctest

    import theory

    failures, tried = doctest.testmod(theory, verbose=False)
    assert tried > 0 and failures == 0
