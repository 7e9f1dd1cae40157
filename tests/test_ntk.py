"""Tests of pdltlib.ntk: the empirical NTK against J Lambda J^T, the frozen-NTK flow against
closed forms and ensembles, and one gradient step against the NTK prediction (7.20)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdltlib  # noqa: F401  (float64)
from pdltlib import ntk
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import (
    empirical_ntk,
    gradient_step,
    mse_loss,
    ntk_flow,
    output_change,
    sample_ntk,
)
from pdltlib.sampling import sample_preactivations


@partial(jax.jit, static_argnames=("config", "layer"))
def jacobian_ntk(params, x, config, layer):
    """Brute force: H = J Lambda J^T with the parameter Jacobian of z^(layer), (7.17)/(8.6)."""

    def z(p):
        return forward(p, x, config.activation)[layer - 1]  # (N_D, n_l)

    jac = jax.jacobian(z)(params)
    h = 0.0
    for lp in range(layer):
        j_b = jac[lp]["b"]  # (N_D, n_l, n_lp)
        j_w = jac[lp]["W"].reshape(*j_b.shape[:2], -1)
        h = h + config.lambda_b[lp] * jnp.einsum("aim,bjm->ijab", j_b, j_b)
        h = h + config.lambda_W[lp] / config.widths[lp] * jnp.einsum("aim,bjm->ijab", j_w, j_w)
    return h


CONFIGS = [
    mlp((3, 5, 4, 2), "tanh", C_b=0.3, C_W=1.5, lambda_b=0.7, lambda_W=1.3),
    mlp(
        (2, 6, 3), "relu", C_b=(0.0, 0.1), C_W=(1.0, 2.0), lambda_b=(1.0, 0.2), lambda_W=(0.5, 2.0)
    ),
    mlp((4, 3, 3, 1), "gelu", C_b=0.1, C_W=1.2, lambda_b=(0.1, 0.2, 0.3), lambda_W=1.0),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_empirical_ntk_matches_jacobian_every_layer(config):
    params = init_params(jax.random.PRNGKey(1), config)
    x = jax.random.normal(jax.random.PRNGKey(2), (3, config.widths[0]))
    for layer in range(1, config.depth + 1):
        got = empirical_ntk(params, x, config, layer)
        want = jacobian_ntk(params, x, config, layer)
        assert got.shape == (config.widths[layer],) * 2 + (3, 3)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))


def test_neurons_subset_and_first_layer_is_deterministic():
    config = CONFIGS[0]
    params = init_params(jax.random.PRNGKey(3), config)
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 3))
    full = empirical_ntk(params, x, config, 2)
    np.testing.assert_allclose(empirical_ntk(params, x, config, 2, neurons=2), full[:2, :2])
    h1 = empirical_ntk(params, x, config, 1)  # (8.23): delta_{i1i2} (lambda_b + lambda_W x.x/n0)
    theta1 = 0.7 + 1.3 * x @ x.T / 3
    np.testing.assert_allclose(h1, np.einsum("ij,ab->ijab", np.eye(5), theta1), atol=1e-14)


def test_sample_ntk_matches_single_networks_and_is_chunk_independent():
    config = CONFIGS[0]
    x = np.array([[0.3, -1.0, 0.5], [1.0, 0.2, -0.4]])
    key = jax.random.PRNGKey(5)
    # chunks of 2 (last one padded): every network must equal the one computed alone
    a = sample_ntk(key, config, x, 5, layers=(2, 3), chunk_size=2, progress=False)
    keys = jax.random.split(key, 5)
    for s in (0, 4):
        params = init_params(keys[s], config)
        np.testing.assert_allclose(a.ntk[2][s], empirical_ntk(params, x, config, 2), atol=1e-13)
    z = sample_preactivations(key, config, x, 5, method="weights", progress=False)
    np.testing.assert_allclose(a.z[3], z[3], atol=1e-13)


def test_ntk_flow_closed_forms():
    x = np.array([[1.0, 0.5], [-0.3, 1.2]])
    gram = x @ x.T / 2
    # deep linear: K^(l) = C_W^(l-1) ... ; Theta^(l+1) = lb + lw K + C_W Theta
    flow = ntk_flow("linear", 0.0, 1.5, 0.4, 0.8, x, 4)
    k, theta = 1.5 * gram, 0.4 + 0.8 * gram
    for layer in range(1, 4):
        theta = 0.4 + 0.8 * k + 1.5 * theta
        k = 1.5 * k
        np.testing.assert_allclose(flow.Theta[layer], theta, rtol=1e-13)
    # ReLU: <s s> arc-cosine kernel, <s' s'> = (pi - psi) / (2 pi)
    flow = ntk_flow("relu", 0.1, 2.0, 1.0, 1.0, x, 3)
    k, theta = 0.1 + 2.0 * gram, 1.0 + gram
    for layer in range(1, 3):
        norm = np.sqrt(np.outer(np.diag(k), np.diag(k)))
        psi = np.arccos(np.clip(k / norm, -1, 1))
        np.fill_diagonal(psi, 0.0)
        ss = norm * (np.sin(psi) + (np.pi - psi) * np.cos(psi)) / (2 * np.pi)
        theta = 1.0 + ss + 2.0 * (np.pi - psi) / (2 * np.pi) * theta
        k = 0.1 + 2.0 * ss
        np.testing.assert_allclose(flow.K[layer], k, rtol=1e-10)
        np.testing.assert_allclose(flow.Theta[layer], theta, rtol=1e-10)
    single = ntk_flow("relu", 0.1, 2.0, 1.0, 1.0, x[0], 3)
    np.testing.assert_allclose(single.Theta, flow.Theta[:, 0, 0], rtol=1e-12)


def test_ntk_flow_matches_wide_ensemble():
    """Mean of the diagonal NTK H_{ii} over networks and neurons vs Theta at width 256."""
    config = mlp((2, 256, 256, 4), "tanh", C_b=0.1, C_W=1.5, lambda_b=0.5, lambda_W=1.0)
    x = np.array([[1.0, -0.5], [0.2, 0.8]])
    sample = sample_ntk(jax.random.PRNGKey(6), config, x, 24, progress=False)
    h = np.einsum("siiab->sab", sample.ntk[3]) / 4  # per-network mean over i
    theory = ntk_flow("tanh", 0.1, 1.5, 0.5, 1.0, x, 3).Theta[-1]
    mean, err = h.mean(0), h.std(0, ddof=1) / np.sqrt(len(h))
    # tolerance: 4.5 standard errors + a 1/n truncation of 5% (NTK mean at O(1/n), n = 256)
    assert np.all(np.abs(mean - theory) <= 4.5 * err + 0.05 * np.abs(theory))


def test_gradient_step_matches_ntk_to_first_order():
    config = mlp((3, 16, 16, 2), "tanh", C_b=0.1, C_W=1.2, lambda_b=0.3, lambda_W=1.1)
    params = init_params(jax.random.PRNGKey(7), config)
    x = jax.random.normal(jax.random.PRNGKey(8), (4, 3))
    y = jax.random.normal(jax.random.PRNGKey(9), (4, 2))
    z0 = forward(params, x, config.activation)[-1]
    h = empirical_ntk(params, x, config)
    residuals = []
    for eta in (1e-2, 1e-3):
        z1 = forward(gradient_step(params, x, y, config, eta), x, config.activation)[-1]
        residuals.append(np.abs(z1 - z0 - output_change(h, z0 - y, eta)).max())
    assert 80 < residuals[0] / residuals[1] < 120  # O(eta^2)
    eta = 1e-4  # the O(eta^2) coefficient is the dNTK term: residual / eta^2 -> c, up to O(eta)
    z1 = forward(gradient_step(params, x, y, config, eta), x, config.activation)[-1]
    c = ntk.second_order_change(params, x, x, y, config)
    r = (z1 - z0 - output_change(h, z0 - y, eta)) / eta**2
    np.testing.assert_allclose(r, c, atol=1e-2 * np.abs(c).max())
    assert float(mse_loss(gradient_step(params, x, y, config, 1e-2), x, y, config)) < float(
        mse_loss(params, x, y, config)
    )


def test_bad_input_names_the_parameter():
    config = CONFIGS[0]
    params = init_params(jax.random.PRNGKey(0), config)
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="layer"):
        empirical_ntk(params, x, config, 4)
    with pytest.raises(ValueError, match="neurons"):
        empirical_ntk(params, x, config, 3, neurons=3)
    with pytest.raises(ValueError, match="x must"):
        empirical_ntk(params, np.ones((2, 4)), config)
    with pytest.raises(ValueError, match="params"):
        empirical_ntk(params[:2], x, config)
    with pytest.raises(ValueError, match="n_networks"):
        sample_ntk(jax.random.PRNGKey(0), config, x, 0)
    with pytest.raises(ValueError, match="lambda_W"):
        ntk_flow("tanh", 0.0, 1.0, 1.0, -1.0, x, 2)
    with pytest.raises(ValueError, match="activation"):
        ntk_flow("perceptron", 0.0, 1.0, 1.0, 1.0, x, 2)
    with pytest.raises(ValueError, match="eta"):
        gradient_step(params, x, np.ones((2, 2)), config, -1.0)
    with pytest.raises(ValueError, match="y must"):
        gradient_step(params, x, np.ones((2, 3)), config, 0.1)
