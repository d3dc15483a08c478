"""theory.data_model moments vs large samples; theory.metrics integrals vs Monte Carlo and check values."""
import numpy as np
import pytest

from theory import metrics, models
from theory.data_model import (DataModel, empirical_moments, exact_counts, inverse_priors,
                               step_priors)


def test_population_moments_match_large_sample_estimates():
    dm = DataModel(mu=1.5, sigma=0.8, priors=(0.5, 0.3, 0.2), d=5, basis_seed=4)
    x, y = dm.sample(200_000, np.random.default_rng(0))
    syx, sxx = empirical_moments(x, y, dm.k)
    # Monte Carlo error of a second moment is about sqrt(E x^4 / n) < 0.01 here.
    np.testing.assert_allclose(syx, dm.sigma_yx(), atol=0.01)
    np.testing.assert_allclose(sxx, dm.sigma_xx(), atol=0.02)
    v = dm.directions()
    np.testing.assert_allclose(v.T @ v, np.eye(dm.k), atol=1e-12)
    np.testing.assert_allclose(np.diag(v.T @ dm.sigma_xx() @ v), dm.s_xx(), rtol=1e-12)
    np.testing.assert_allclose(models.diagonal(dm.sigma_yx(), v), dm.s_yx(), rtol=1e-12)


def test_gaussian_means_have_norm_mu_in_expectation():
    dm = DataModel(mu=2.0, sigma=1.0, priors=tuple(inverse_priors(20)), d=4000, means="gaussian", basis_seed=1)
    norms = np.linalg.norm(dm.directions(), axis=0)
    assert np.mean(norms**2) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        DataModel(mu=1.0, sigma=1.0, priors=(0.5, 0.5), d=3, means="gaussian")


def test_priors_and_exact_counts():
    np.testing.assert_allclose(step_priors(4, 10.0), [10 / 22, 10 / 22, 1 / 22, 1 / 22])
    p = inverse_priors(20)
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) < 0)
    counts = exact_counts(1001, p)
    assert counts.sum() == 1001 and np.all(np.abs(counts - 1001 * p) < 1)
    dm = DataModel(mu=1.0, sigma=1.0, priors=tuple(p), d=20)
    _, y = dm.sample(1001, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(y, minlength=20), counts)


@pytest.mark.parametrize("snr, alpha, expected", [
    (1.0, [1, 1, 1], [0.6337] * 3),
    (1.0, [0.5, 0.3, 0.2], [0.7451, 0.6021, 0.4850]),
    (4.0, [1, 1, 1], [0.8658] * 3),
    (4.0, [0.5, 0.3, 0.2], [0.9422, 0.8213, 0.6827]),
])
def test_accuracy_integral_check_values(snr, alpha, expected):
    np.testing.assert_allclose(metrics.per_class_accuracy(alpha, snr), expected, atol=1e-4)


def test_accuracy_integral_matches_monte_carlo_and_samples():
    alpha, mu, sigma = np.array([0.4, 0.25, 0.1, 0.3]), 1.2, 0.9
    quad = metrics.per_class_accuracy(alpha, mu**2 / sigma**2)
    mc = metrics.per_class_accuracy_mc(alpha, mu, sigma, 100_000, np.random.default_rng(1))
    np.testing.assert_allclose(mc, quad, atol=0.006)  # 4 standard errors at n = 1e5
    dm = DataModel(mu=mu, sigma=sigma, priors=(0.25,) * 4, d=6, basis_seed=2)
    x, y = dm.sample(100_000, np.random.default_rng(2))
    w = alpha[:, None] * dm.directions().T
    np.testing.assert_allclose(metrics.per_class_accuracy_samples(w, x, y), quad, atol=0.012)


def test_per_class_loss_diagonal_equals_general_and_samples():
    dm = DataModel(mu=1.3, sigma=0.7, priors=(0.6, 0.3, 0.1), d=5, basis_seed=5)
    alpha = np.array([0.3, 0.2, 0.1])
    w = alpha[:, None] * dm.directions().T
    diag = metrics.per_class_loss(alpha, dm.mu, dm.sigma)
    assert metrics.worst_class_loss(diag) == diag[dm.minority]  # alpha ordered like p
    np.testing.assert_allclose(metrics.per_class_loss_matrix(w, dm.mu * dm.directions().T, dm.sigma), diag, rtol=1e-12)
    x, y = dm.sample(100_000, np.random.default_rng(3))
    sq = 0.5 * np.sum((np.eye(dm.k)[y] - x @ w.T) ** 2, axis=1)
    np.testing.assert_allclose([sq[y == c].mean() for c in range(dm.k)], diag, rtol=0.02)
