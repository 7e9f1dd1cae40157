"""Unit tests of pdltlib.bayes: GP posterior, evidence, 1/n posterior mean, importance sampling."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import pdltlib  # noqa: F401  (float64)
from pdltlib import bayes


def _kernel(seed: int = 0, n: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, n))
    return x @ x.T / n + 0.5 * np.eye(n)


def _symmetric(rng) -> np.ndarray:
    a = rng.normal(size=(3, 3))
    return (a + a.T) / 2


def test_gp_posterior_is_gaussian_conditioning():
    k = _kernel()
    y = np.array([[0.7, -1.1], [0.2, 0.4]])
    for noise in (0.0, 0.3):
        post = bayes.gp_posterior(k, y, [0, 2], [1], noise=noise)
        kt = k[np.ix_([0, 2], [0, 2])] + noise * np.eye(2)
        # Gaussian conditioning through the joint precision matrix (6.50)-(6.58)
        joint = k.copy()
        joint[np.ix_([0, 2], [0, 2])] = kt
        prec = np.linalg.inv(joint)
        cov = 1 / prec[1, 1]
        mean = -cov * prec[1, [0, 2]] @ y
        np.testing.assert_allclose(post.covariance, [[cov]], rtol=1e-12)
        np.testing.assert_allclose(post.mean, mean[None, :], rtol=1e-12)


def test_log_evidence_matches_scipy():
    k = _kernel(1, 2)
    y = np.array([[0.3, 1.2, -0.4], [0.9, -0.1, 0.2]])
    for noise in (0.0, 0.25):
        expected = sum(
            multivariate_normal(np.zeros(2), k + noise * np.eye(2)).logpdf(y[:, i])
            for i in range(3)
        )
        assert bayes.log_evidence(k, y, noise) == pytest.approx(expected, rel=1e-12)
    assert bayes.log_evidence(2.0, 1.0) == pytest.approx(
        multivariate_normal(0.0, 2.0).logpdf(1.0), rel=1e-12
    )


def _mixture(k, a1, a2, b, eps):
    """Equiprobable metrics K + eps^2 B + eps (s1 A1 + s2 A2).

    Then V = A1 A1 + A2 A2, G1 = B, n = 1/eps^2; the 6-point cumulant vanishes, the 8-point
    one is O(eps^4) = O(1/n^2).
    """
    return np.array(
        [k + eps**2 * b + eps * (s1 * a1 + s2 * a2) for s1 in (1, -1) for s2 in (1, -1)]
    )


@pytest.mark.parametrize(
    ("train", "y"),
    [
        ([0], np.array([1.3])),
        ([0, 2], np.array([0.8, -0.5])),
        ([0, 2], np.array([[0.8, 0.1], [-0.5, 1.2]])),
    ],
)
def test_finite_width_mean_matches_exact_mixture(train, y):
    """Exact posterior of a Gaussian mixture over metrics vs the 1/n formula: residual O(eps^4)."""
    rng = np.random.default_rng(3)
    k, a1, a2, b = _kernel(2), _symmetric(rng), _symmetric(rng), _symmetric(rng)
    v = np.einsum("ab,cd->abcd", a1, a1) + np.einsum("ab,cd->abcd", a2, a2)
    residuals = []
    for eps in (0.01, 0.005):
        exact = bayes.metric_posterior_mean(_mixture(k, a1, a2, b, eps), y, train, [1])
        theory = bayes.finite_width_posterior_mean(k, v, y, train, [1], eps**-2, G1=b)
        shift = exact.estimate.value - theory.infinite_width
        np.testing.assert_allclose(
            shift / eps**2, theory.coefficient, rtol=0.05, atol=1e-3
        )  # O(eps^2 |A|^2 / K^2) relative
        residuals.append(np.max(np.abs(exact.estimate.value - theory.mean)))
    assert residuals[0] / residuals[1] > 10  # the neglected order is eps^4 = 1/n^2


def test_penultimate_update_matches_exact_mixture():
    rng = np.random.default_rng(4)
    k, a1, a2 = _kernel(5), _symmetric(rng), _symmetric(rng)
    v = np.einsum("ab,cd->abcd", a1, a1) + np.einsum("ab,cd->abcd", a2, a2)
    y = np.array([[1.1, -0.3], [0.4, 0.9]])
    eps = 0.005
    update = bayes.metric_posterior_update(_mixture(k, a1, a2, 0 * k, eps), y, [0, 1])
    theory = bayes.penultimate_update(k[:2, :2], v[:2, :2, :2, :2], y, C_W=1.0, width=eps**-2)
    np.testing.assert_allclose(update.estimate.value[:2, :2], theory, rtol=0.02)


def test_importance_sampling_recovers_gaussian_posterior():
    """Prior samples from the GP: weighted outputs reproduce the GP posterior mean (noise > 0),
    and the metric estimator with a fixed metric reproduces it exactly."""
    k = _kernel(6)
    y = np.array([0.5, -0.4])
    post = bayes.gp_posterior(k, y, [0, 1], [2], noise=0.2)
    z = np.random.default_rng(7).multivariate_normal(np.zeros(3), k, size=40_000)[:, :, None]
    result = bayes.importance_posterior_mean(z, y, [0, 1], [2], noise=0.2)
    assert abs(result.estimate.value[0] - post.mean[0]) < 4.5 * result.estimate.stderr[0]
    assert 0 < result.ess < 40_000
    fixed = bayes.metric_posterior_mean(np.stack([k, k]), y, [0, 1], [2], noise=0.2)
    np.testing.assert_allclose(fixed.estimate.value, post.mean, rtol=1e-12)


def test_output_metric():
    z = np.random.default_rng(8).normal(size=(5, 2, 4))
    g = bayes.output_metric(z, "relu", 0.1, 2.0)
    s = np.maximum(z, 0)
    np.testing.assert_allclose(g, 0.1 + 2.0 * np.einsum("sai,sbi->sab", s, s) / 4)


def test_bad_input():
    k = _kernel()
    with pytest.raises(ValueError, match="noise"):
        bayes.gp_posterior(k, [1.0], [0], [1], noise=-1.0)
    with pytest.raises(ValueError, match="train"):
        bayes.gp_posterior(k, [1.0], [0], [0])
    with pytest.raises(ValueError, match="test"):
        bayes.gp_posterior(k, [1.0], [0], [7])
    with pytest.raises(ValueError, match="y"):
        bayes.gp_posterior(k, [1.0, 2.0], [0], [1])
    with pytest.raises(ValueError, match="K"):
        bayes.gp_posterior(-k, [1.0], [0], [1])
    with pytest.raises(ValueError, match="width"):
        bayes.finite_width_posterior_mean(k, np.zeros((3,) * 4), [1.0], [0], [1], 0)
    with pytest.raises(ValueError, match="V"):
        bayes.finite_width_posterior_mean(k, np.zeros((2,) * 4), [1.0], [0], [1], 4)
    with pytest.raises(ValueError, match="noise"):
        bayes.importance_posterior_mean(np.zeros((3, 3, 1)), [1.0], [0], [1], noise=0.0)
    with pytest.raises(ValueError, match="G"):
        bayes.metric_posterior_mean(np.stack([k]), [1.0], [0], [1])
    with pytest.raises(ValueError, match="C_W"):
        bayes.output_metric(np.zeros((2, 2, 2)), "relu", 0.0, 0.0)
    with pytest.raises(ValueError, match="C_W"):
        bayes.penultimate_update(1.0, 1.0, 1.0, C_W=-1.0, width=4)
