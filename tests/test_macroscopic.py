from types import SimpleNamespace

import jax
import numpy as np
import pytest

from pdltlib import prediction
from pdltlib.macroscopic import prediction_fluctuation, trained_effects
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import empirical_ntk
from pdltlib.training import train_ensemble


def _fake_stats(theta, a4, b4):
    """ntk_fluctuation_flow-like statistics of one layer (the function reads Theta, A, B)."""
    return SimpleNamespace(Theta=theta[None], A=a4[None], B=b4[None])


def test_prediction_fluctuation_is_the_delta_method_variance_of_the_own_ntk_prediction():
    rng = np.random.default_rng(0)
    n_d, n_a = 3, 2
    root = rng.normal(size=(n_d, n_d))
    theta = root @ root.T + n_d * np.eye(n_d)
    modes = rng.normal(size=(5, n_d, n_d))
    modes = modes + np.swapaxes(modes, 1, 2)  # Delta H = sum_k xi_k M_k, M_k symmetric
    cov = np.einsum("kab,kcd->abcd", modes, modes)
    y = np.array([0.7, -0.4])
    # the same covariance written through A alone, or through B alone (B_acbd + B_adbc = cov)
    from_a = prediction_fluctuation(_fake_stats(theta, cov, np.zeros_like(cov)), y)
    from_b = prediction_fluctuation(
        _fake_stats(theta, np.zeros_like(cov), np.einsum("abcd->acbd", cov / 2)), y
    )
    np.testing.assert_allclose(from_a, from_b, rtol=1e-12)
    assert np.allclose(from_a[:n_a], 0) and np.allclose(from_a[:, :n_a], 0)
    eps, samples = 1e-5, 200_000
    h = theta + eps * np.einsum("sk,kab->sab", rng.normal(size=(samples, 5)), modes)
    m_hat = prediction.kernel_prediction(h, y[:, None])[:, n_a:, 0]
    np.testing.assert_allclose(m_hat.var(axis=0, ddof=1)[0] / eps**2, from_a[2, 2], rtol=0.02)


def test_the_odd_part_flips_sign_with_the_last_layer():
    config = mlp((2, 6, 6, 1), "tanh", C_b=0.1, C_W=1.0, lambda_b=0.5, lambda_W=1.0)
    x = np.array([[1.0, 0.3], [0.4, -0.9], [-0.2, 0.5]])
    params = init_params(jax.random.PRNGKey(3), config)
    flipped = [*params[:-1], {k: -v for k, v in params[-1].items()}]
    outputs = []
    for p in (params, flipped):
        z0 = np.asarray(forward(p, x, config.activation)[-1])
        h = np.asarray(empirical_ntk(p, x, config))[0, 0]
        outputs.append((h, prediction.trained_outputs(h, z0, np.zeros((1, 1)))))
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], rtol=1e-12)  # NTK unchanged
    np.testing.assert_allclose(outputs[0][1], -outputs[1][1], rtol=1e-12, atol=1e-15)  # o -> -o


def test_trained_effects_of_a_small_ensemble():
    config = mlp((2, 8, 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=1.0, lambda_W=1.0)
    x = np.array([[1.0, 0.3], [0.4, -0.9]])
    theta = prediction.frozen_ntk(config, x).Theta[-1]
    y = np.array([[0.5]])
    run = train_ensemble(
        jax.random.PRNGKey(5), config, x[:1], y, 300, eta=0.5 / theta[0, 0], x_test=x[1:],
        models=("network", "linear"), tolerance=1e-10, keep_ntk=True, progress=False,
    )  # fmt: skip
    effects = trained_effects(run, theta, 8)
    np.testing.assert_allclose(
        effects.representation.value,
        8 * (run.final["network"][:, 1, 0] - run.final["linear"][:, 1, 0]).mean(),
        atol=1e-8,  # the trained linear model reaches the closed form (10.39)
    )
    h0, z0 = run.ntk_initial[:, 0, 0], run.initial
    hat = run.final["network"][:, 1, 0] - prediction.trained_outputs(h0, z0, 0 * y)[:, 1, 0]
    np.testing.assert_allclose(effects.fluctuation.value, 8 * hat.var(ddof=1), rtol=1e-2)
    odd = prediction.trained_outputs(h0, z0, 0 * y)[:, 1, 0]
    assert abs(odd.mean()) < 4.5 * odd.std() / np.sqrt(odd.size)  # E[o] = 0
    assert effects.variance.value[0] > effects.fluctuation.value[0] / 8


def test_bad_input_raises():
    with pytest.raises(ValueError, match="ntk_stats"):
        prediction_fluctuation(SimpleNamespace(Theta=np.ones(3)), [1.0])
    theta = np.eye(2)[None]
    stats = SimpleNamespace(Theta=theta, A=np.zeros((1, 2, 2, 2, 2)), B=np.zeros((1, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="y_train"):
        prediction_fluctuation(stats, [1.0, 2.0])
    with pytest.raises(ValueError, match="y_train"):
        prediction_fluctuation(stats, np.ones((1, 2)))
    with pytest.raises(ValueError, match="run"):
        trained_effects(SimpleNamespace(ntk_initial=None, final={}), np.eye(2), 4)
