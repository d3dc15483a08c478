"""Closed forms of theory.closed_forms against the full-matrix simulation and the spec's check values."""
import numpy as np
import pytest

from theory import algorithms, closed_forms, fast_path, models
from theory.data_model import DataModel
from theory.metrics import first_crossing

CHECK = DataModel(mu=1.0, sigma=1.0, priors=(0.5, 0.3, 0.2), d=3)


def _full_path(dm, method, lr, steps, depth=1, eps=0.0):
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    grads = algorithms.product_gradient(lambda w: models.population_grad(w, sxx, syx))
    init = models.aligned_init(depth, v, eps) if depth > 1 else [np.zeros((dm.k, dm.d))]
    return algorithms.run_discrete(grads, init, method, lr, steps, lambda fs: models.diagonal(models.product(fs), v))


def test_alpha_star_and_saturation_check_values():
    np.testing.assert_allclose(CHECK.alpha_star(), [1 / 3, 3 / 13, 1 / 6], rtol=1e-12)
    traj = _full_path(CHECK, "specgd", 0.01, 60)
    np.testing.assert_allclose(traj[10], [0.1, 0.1, 0.1], atol=1e-12)
    sat = first_crossing(traj, CHECK.alpha_star())
    # Saturation is the overshoot step ceil(alpha*/lr): 34, 24, 17 (24, not 23, for the middle class).
    assert np.all(np.abs(sat - np.array([34, 23, 17])) <= 1)
    np.testing.assert_array_equal(sat, np.ceil(CHECK.alpha_star() / 0.01))
    assert np.argmin(sat) == CHECK.minority  # the minority class saturates first


def test_specgd_diagonal_is_lr_t_until_minority_saturates():
    dm = DataModel(mu=1.5, sigma=0.7, priors=(0.6, 0.25, 0.1, 0.05), d=9, basis_seed=3)
    lr, steps = 0.004, 200
    traj = _full_path(dm, "specgd", lr, steps)
    t_first = int(np.ceil(dm.alpha_star().min() / lr))
    t = np.arange(t_first)
    np.testing.assert_allclose(traj[:t_first], lr * t[:, None] * np.ones(dm.k), atol=1e-12)
    exact = closed_forms.spec_discrete(dm.alpha_star(), lr, np.arange(steps + 1)[:, None])
    np.testing.assert_allclose(traj[:t_first + 1], exact[:t_first + 1], atol=1e-12)
    # Afterwards each entry bounces across its alpha*, within one step of it.
    assert np.all(np.abs(traj[-20:] - dm.alpha_star()) <= lr + 1e-9)


def test_gd_discrete_formula_matches_simulation():
    dm = DataModel(mu=2.0, sigma=1.0, priors=(0.7, 0.2, 0.1), d=5, basis_seed=0)
    lr, steps = 0.1, 100
    traj = _full_path(dm, "gd", lr, steps)
    formula = closed_forms.gd_discrete(dm.s_xx(), dm.s_yx(), lr, np.arange(steps + 1)[:, None])
    np.testing.assert_allclose(traj, formula, atol=1e-12)
    # GD learns the majority first: at every step its fraction of alpha* is largest.
    frac = traj[1:] / dm.alpha_star()
    assert np.all(np.diff(frac, axis=1) < 0)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_deep_specgd_is_eps_plus_lr_t_to_the_L(depth):
    dm = DataModel(mu=1.0, sigma=1.0, priors=(0.5, 0.3, 0.2), d=4, basis_seed=1)
    lr, eps = 0.01, 0.05
    steps = int(np.ceil(closed_forms.saturation_time(dm.alpha_star(), lr, depth, eps).max())) + 10
    traj = _full_path(dm, "specgd", lr, steps, depth, eps)
    t_first = int(np.ceil(closed_forms.saturation_time(dm.alpha_star().min(), lr, depth, eps)))
    t = np.arange(t_first)[:, None]
    np.testing.assert_allclose(traj[:t_first], np.broadcast_to((eps + lr * t) ** depth, (t_first, dm.k)), rtol=1e-10)
    sat = first_crossing(traj, dm.alpha_star())
    assert np.all(np.abs(sat - closed_forms.saturation_time(dm.alpha_star(), lr, depth, eps)) <= 1)
    # The O(k) path reproduces the exact closed form through and after saturation.
    fast = fast_path.diagonal_dynamics(dm.s_xx(), dm.s_yx(), "specgd", lr, steps, depth=depth, eps=eps)
    exact = closed_forms.spec_discrete(dm.alpha_star(), lr, np.arange(steps + 1)[:, None], depth, eps)
    np.testing.assert_allclose(fast, exact, rtol=1e-9)


def test_delta_t_check_values_and_measured_gap():
    np.testing.assert_allclose(closed_forms.delta_t(1.0, 0.2, 0.5, [1, 2, 3, 4]),
                               [1.000, 0.414, 0.260, 0.189], atol=5e-4)
    lr = 2e-4
    for depth in (1, 2, 3):
        steps = int(closed_forms.saturation_time(CHECK.alpha_star().max(), lr, depth)) + 5
        traj = fast_path.diagonal_dynamics(CHECK.s_xx(), CHECK.s_yx(), "specgd", lr, steps, depth=depth, eps=1e-6)
        sat = first_crossing(traj, CHECK.alpha_star())
        measured = sat[CHECK.majority] / sat[CHECK.minority] - 1
        assert measured == pytest.approx(closed_forms.delta_t(1.0, 0.2, 0.5, depth), abs=2e-3)


def test_flows_match_full_matrix_integration():
    dm = DataModel(mu=1.3, sigma=0.8, priors=(0.4, 0.3, 0.2, 0.1), d=6, basis_seed=2)
    v, sxx, syx = dm.directions(), dm.sigma_xx(), dm.sigma_yx()
    t = np.linspace(0, dm.alpha_star().min(), 12)[1:]
    grad = lambda w: models.population_grad(w, sxx, syx)  # noqa: E731
    gf = algorithms.run_flow(grad, np.zeros((dm.k, dm.d)), "gf", t)
    np.testing.assert_allclose([models.diagonal(w, v) for w in gf], closed_forms.gd_flow(dm.s_xx(), dm.s_yx(), t[:, None]),
                               atol=1e-8)
    spec = algorithms.run_flow(grad, np.zeros((dm.k, dm.d)), "specgf", t)
    np.testing.assert_allclose([models.diagonal(w, v) for w in spec], closed_forms.spec_flow(dm.alpha_star(), t[:, None]),
                               atol=1e-8)
