"""Tests of pdltlib.prediction: kernel learning at infinite width (book chapter 10)."""

import numpy as np
import pytest

from pdltlib import prediction as pr
from pdltlib.network import mlp
from pdltlib.ntk import ntk_flow

RNG = np.random.default_rng(10)
X = RNG.normal(size=(6, 3))  # 4 training inputs, then 2 test inputs
N_A = 4
Y = RNG.normal(size=(N_A, 2))
CONFIG = mlp((3, 16, 16, 2), "tanh", C_b=0.1, C_W=1.5, lambda_b=0.5, lambda_W=1.0)
FLOW = pr.frozen_ntk(CONFIG, X)
THETA, K = FLOW.Theta[-1], FLOW.K[-1]
ETA = 0.8 * pr.stability_bound(THETA[:N_A, :N_A])


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear", "erf"])
def test_closed_form_flow_equals_quadrature(activation):
    config = mlp((3, 8, 8, 8, 1), activation, C_b=0.2, C_W=(1.5, 2.0, 1.1, 0.9),
                 lambda_b=(0.3, 1.0, 0.0, 0.5), lambda_W=(1.0, 0.7, 2.0, 1.3))  # fmt: skip
    closed = pr.frozen_ntk(config, X)
    quad = ntk_flow(config.activation, config.C_b, config.C_W, config.lambda_b, config.lambda_W,
                    X, 4)  # fmt: skip
    np.testing.assert_allclose(closed.K, quad.K, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(closed.Theta, quad.Theta, rtol=1e-12, atol=1e-13)


def test_smooth_activations_go_through_ntk_flow():
    flow = ntk_flow("tanh", 0.1, 1.5, 0.5, 1.0, X, 3)
    np.testing.assert_array_equal(FLOW.Theta, flow.Theta)
    np.testing.assert_array_equal(FLOW.K, flow.K)


def test_end_of_training_is_the_kernel_formula():
    rng = np.random.default_rng(100)
    z0 = rng.normal(size=(6, 2))
    inv = np.linalg.inv(THETA[:N_A, :N_A])
    expected = z0 - THETA[:, :N_A] @ inv @ (z0[:N_A] - Y)  # (10.39), brute force
    np.testing.assert_allclose(pr.trained_outputs(THETA, z0, Y), expected, rtol=1e-12)
    np.testing.assert_allclose(pr.kernel_prediction(THETA, Y), THETA[:, :N_A] @ inv @ Y, rtol=1e-12)
    np.testing.assert_allclose(pr.kernel_prediction(THETA, Y)[:N_A], Y, atol=1e-13)  # memorized


def test_finite_steps_are_gradient_descent_with_the_frozen_ntk():
    rng = np.random.default_rng(101)
    z = z0 = rng.normal(size=(3, 6, 2))  # three networks at once
    for t in range(1, 26):
        z = pr.kernel_step(THETA, z, Y, ETA)  # (10.3), one step at a time
        if t in (1, 7, 25):
            np.testing.assert_allclose(pr.trained_outputs(THETA, z0, Y, eta=ETA, steps=t), z,
                                       rtol=1e-11, atol=1e-13)  # fmt: skip
    np.testing.assert_array_equal(pr.trained_outputs(THETA, z0, Y, eta=ETA, steps=0), z0)


def test_long_training_reaches_the_newton_solution():
    rng = np.random.default_rng(102)
    z0 = rng.normal(size=(6, 2))
    newton = pr.kernel_step(THETA, z0, Y, 1.0, kappa=np.linalg.inv(THETA[:N_A, :N_A]))  # (10.31)
    np.testing.assert_allclose(newton, pr.trained_outputs(THETA, z0, Y), rtol=1e-11, atol=1e-13)
    lam = np.linalg.eigvalsh(THETA[:N_A, :N_A])
    steps = int(np.ceil(np.log(1e-15) / np.log(1 - ETA * lam[0])))
    late = pr.trained_outputs(THETA, z0, Y, eta=ETA, steps=steps)
    np.testing.assert_allclose(late, newton, rtol=0, atol=1e-12)


def test_algorithm_independence():
    rng = np.random.default_rng(103)
    # (10.33)-(10.35): any sequence of steps (learning rates, Newton tensors, SGD minibatches)
    # followed by one Newton step ends where one Newton step from the start does
    z0 = rng.normal(size=(6, 2))
    z = z0
    for t in range(12):
        a = rng.normal(size=(N_A, N_A))
        kappa = (a @ a.T) if t % 3 == 0 else np.diag(rng.random(N_A) < 0.5).astype(float)
        z = pr.kernel_step(THETA, z, Y, rng.uniform(0.01, 0.3), kappa=kappa)
    newton = np.linalg.inv(THETA[:N_A, :N_A])
    np.testing.assert_allclose(pr.kernel_step(THETA, z, Y, 1.0, kappa=newton),
                               pr.kernel_step(THETA, z0, Y, 1.0, kappa=newton),
                               rtol=1e-10, atol=1e-12)  # fmt: skip


def test_covariance_is_the_books_10_41():
    inv = np.linalg.inv(THETA[:N_A, :N_A])
    tb, kb = THETA[N_A:, :N_A], K[N_A:, :N_A]
    book = K[N_A:, N_A:] - tb @ inv @ kb.T - kb @ inv @ tb.T + tb @ inv @ K[:N_A, :N_A] @ inv @ tb.T
    cov = pr.prediction_covariance(THETA, K, N_A)
    np.testing.assert_allclose(cov[N_A:, N_A:], book, rtol=1e-11)
    np.testing.assert_allclose(cov[:N_A], 0, atol=1e-12)  # the training outputs are y exactly
    np.testing.assert_allclose(pr.prediction_covariance(THETA, K, N_A, eta=ETA, steps=0), K)


def test_covariance_at_step_t_is_that_of_the_sampled_outputs():
    rng = np.random.default_rng(104)
    # exact Gaussian initial outputs through the exact linear map: Monte Carlo with 4.5 sigma
    z0 = rng.multivariate_normal(np.zeros(6), K, size=(20000, 1)).transpose(0, 2, 1)
    z = pr.trained_outputs(THETA, z0, Y[:, :1], eta=ETA, steps=9)[:, :, 0]
    cov = pr.prediction_covariance(THETA, K, N_A, eta=ETA, steps=9)
    centered = z - z.mean(0)
    samples = centered[:, :, None] * centered[:, None, :]
    err = samples.std(0) / np.sqrt(z.shape[0])
    assert np.all(np.abs(samples.mean(0) - cov) <= 4.5 * err + 1e-12)


def test_bias_variance_decomposition_10_52():
    rng = np.random.default_rng(105)
    y_test = rng.normal(size=(2, 2))
    parts = pr.bias_variance(THETA, K, Y, y_test)
    mean = pr.kernel_prediction(THETA, Y)[N_A:]
    cov = pr.prediction_covariance(THETA, K, N_A)[N_A:, N_A:]
    assert parts.bias == pytest.approx(0.5 * np.sum((mean - y_test) ** 2), rel=1e-12)
    assert parts.variance == pytest.approx(0.5 * 2 * np.trace(cov), rel=1e-12)
    z0 = rng.multivariate_normal(np.zeros(6), K, size=(40000, 2)).transpose(0, 2, 1)
    loss = 0.5 * np.sum((pr.trained_outputs(THETA, z0, Y)[:, N_A:] - y_test) ** 2, axis=(1, 2))
    assert abs(loss.mean() - parts.total) <= 4.5 * loss.std() / np.sqrt(loss.size)


def test_prediction_derivative_is_the_directional_derivative():
    rng = np.random.default_rng(106)
    a = rng.normal(size=(6, 6))
    tangent = a + a.T
    eps = 1e-6
    numeric = (pr.kernel_prediction(THETA + eps * tangent, Y)
               - pr.kernel_prediction(THETA - eps * tangent, Y)) / (2 * eps)  # fmt: skip
    derivative = pr.kernel_prediction_derivative(THETA, tangent, Y)
    np.testing.assert_allclose(derivative, numeric, rtol=1e-7, atol=1e-9)
    stacked = pr.kernel_prediction_derivative(THETA, np.stack([tangent, 2 * tangent]), Y)
    np.testing.assert_allclose(stacked[1], 2 * derivative, rtol=1e-13)


def test_stacked_ntks_are_one_per_network():
    rng = np.random.default_rng(107)
    a = rng.normal(size=(3, 6, 6)) * 0.2
    thetas = THETA + a @ a.transpose(0, 2, 1)  # three positive definite NTKs
    stacked = pr.transfer_matrix(thetas, N_A, eta=ETA, steps=5)
    for s in range(3):
        np.testing.assert_allclose(stacked[s], pr.transfer_matrix(thetas[s], N_A, eta=ETA, steps=5))
    z0 = rng.normal(size=(3, 6, 2))
    out = pr.trained_outputs(thetas, z0, Y)
    np.testing.assert_allclose(out[1], pr.trained_outputs(thetas[1], z0[1], Y), rtol=1e-12)


def test_gamma_basis_and_robustness():
    m = np.array([[2.0, 1.5], [1.5, 1.8]])
    m0, m1, m2 = pr.gamma_components(m)
    assert (m0 + m1 + m2, m0 - m1 + m2, m0 - m2) == pytest.approx((2.0, 1.8, 1.5))
    assert pr.robustness(m) == pytest.approx(1.5 / 2.0 - 1)
    # one training input: the bias of (10.56) is (y_+ - y_-) + robustness * y_+
    pair = THETA[np.ix_([0, 4], [0, 4])]
    mean = pr.kernel_prediction(pair, Y[:1])
    assert mean[1, 0] - 0.3 == pytest.approx((Y[0, 0] - 0.3) + pr.robustness(pair) * Y[0, 0])


def _line_prediction(delta: float, s: np.ndarray, y_pm: tuple[float, float]):
    """Exact kernel prediction on x_(2s-1) = s x_+ + (1 - s) x_- for two equal-norm training
    inputs x_+- = x_0 +- dx/2 at angular separation delta, and the curvature of (10.115)."""
    config = mlp((2, 8, 8, 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=0.3, lambda_W=1.0)
    angle = np.array([delta / 2, -delta / 2])
    pm = np.stack([np.cos(angle), np.sin(angle)], axis=1) * 1.3
    line = s[:, None] * pm[0] + (1 - s[:, None]) * pm[1]
    theta = pr.frozen_ntk(config, np.vstack([pm, line, pm.mean(0, keepdims=True)])).Theta[-1]
    exact = pr.kernel_prediction(theta[:-1, :-1], np.array(y_pm))[2:]
    return exact, pr.interpolation_curvature(theta[:2, :2], theta[-1, -1])


def test_interpolation_mean_for_symmetric_labels():
    # y_+ = y_-: the corrected (10.115) leaves O(delta^4) (the expansion is in delta^2) at every
    # s (the O(delta^6) term tilts the exponent by 0.03 at these separations); the printed
    # factor 4 leaves O(delta^2)
    s = np.array([-0.5, 0.3, 0.5, 1.7])
    errors = []
    for delta in (0.1, 0.05):
        exact, curvature = _line_prediction(delta, s, (0.4, 0.4))
        corrected = pr.interpolation_prediction(s, 0.4, 0.4, curvature)
        printed = s * 0.4 + (1 - s) * 0.4 - 4 * s * (1 - s) * curvature * 0.8
        errors.append((np.abs(exact - corrected).max(), np.abs(exact - printed).max()))
    assert np.log2(errors[0][0] / errors[1][0]) == pytest.approx(4, abs=0.1)
    assert np.log2(errors[0][1] / errors[1][1]) == pytest.approx(2, abs=0.1)


def test_interpolation_prediction_initial_outputs_enter_as_z_minus_y():
    # one network's prediction (10.39) against the corrected (10.114) at the midpoint s = 1/2
    # with z_+ = z_- (both channels then O(delta^4)); the book's sign of z_+ + z_- (kept here
    # with the corrected factor 1) fails at O(delta^2)
    config = mlp((2, 8, 8, 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=0.3, lambda_W=1.0)
    errors = []
    for delta in (0.1, 0.05):
        angle = np.array([delta / 2, -delta / 2])
        pm = np.stack([np.cos(angle), np.sin(angle)], axis=1) * 1.3
        x = np.vstack([pm, pm.mean(0, keepdims=True)])
        theta = pr.frozen_ntk(config, x).Theta[-1]
        z0 = np.array([[0.5], [0.5], [-0.8]])  # z_+, z_-, z on x_0
        exact = pr.trained_outputs(theta, z0, np.array([[0.4], [0.4]]))[2, 0]
        curvature = pr.interpolation_curvature(theta[:2, :2], theta[2, 2])
        ours = pr.interpolation_prediction(0.5, 0.4, 0.4, curvature, -0.8, 0.5, 0.5)
        sign_flipped = ours + 0.25 * curvature * (0.8 - 1.0) - 0.25 * curvature * (0.8 + 1.0)
        errors.append((abs(exact - ours), abs(exact - sign_flipped)))
    assert np.log2(errors[0][0] / errors[1][0]) == pytest.approx(4, abs=0.1)
    assert np.log2(errors[0][1] / errors[1][1]) == pytest.approx(2, abs=0.1)


def test_interpolation_mean_misses_an_antisymmetric_term():
    # y_+ != y_-: the residual of the corrected (10.115) is O(delta^2) too, proportional to
    # s (1 - s) (2 s - 1) (y_+ - y_-): the fourth-order terms of Theta that (10.110) drops,
    # divided by Theta_++ - Theta_+- = O(delta^2)
    s = np.array([-0.5, 0.2, 0.3, 0.8, 1.7])
    exact, curvature = _line_prediction(0.05, s, (0.7, -0.2))
    residual = exact - pr.interpolation_prediction(s, 0.7, -0.2, curvature)
    shape = s * (1 - s) * (2 * s - 1) * 0.9
    ratio = residual / shape
    assert np.abs(residual).max() > 10 * np.abs(curvature) * 0.5 * 0.05**2  # not O(delta^4)
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-2)  # rel. O(delta^2) = 2.5e-3
    exact_mid, _ = _line_prediction(0.05, np.array([0.5]), (0.7, -0.2))
    mid = pr.interpolation_prediction(np.array([0.5]), 0.7, -0.2, curvature)
    assert abs(exact_mid[0] - mid[0]) < 1e-3 * abs(curvature)  # vanishes at the midpoint


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="training block must be positive definite"):
        pr.kernel_prediction(np.ones((3, 3)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="y_train must have shape"):
        pr.kernel_prediction(THETA, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="theta must be symmetric"):
        pr.kernel_prediction(THETA + np.triu(np.ones((6, 6)), 1), Y)
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        pr.kernel_prediction(THETA, Y, eta=0.1, steps=-1)
    with pytest.raises(ValueError, match="eta must be finite and > 0 when steps is given"):
        pr.kernel_prediction(THETA, Y, steps=3)
    with pytest.raises(ValueError, match="training set must have 1..N_D"):
        pr.transfer_matrix(THETA, 7)
    with pytest.raises(ValueError, match="z_initial must have shape"):
        pr.trained_outputs(THETA, np.ones((5, 2)), Y)
    with pytest.raises(ValueError, match="kernel must have the shape"):
        pr.prediction_covariance(THETA, K[:5, :5], N_A)
    with pytest.raises(ValueError, match="kappa must be a symmetric"):
        pr.kernel_step(THETA, np.ones((6, 2)), Y, 0.1, kappa=np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="y_test must have shape"):
        pr.bias_variance(THETA, K, Y, np.ones((3, 2)))
    with pytest.raises(ValueError, match="pair must be a 2 x 2 matrix"):
        pr.gamma_components(np.eye(3))
    with pytest.raises(ValueError, match="midpoint"):
        pr.interpolation_curvature(np.eye(2), -1.0)
    with pytest.raises(ValueError, match="x must be finite with shape"):
        pr.frozen_ntk(CONFIG, np.ones((2, 4)))
    with pytest.raises(ValueError, match="d_theta must be finite"):
        pr.kernel_prediction_derivative(THETA, np.ones((5, 5)), Y)
