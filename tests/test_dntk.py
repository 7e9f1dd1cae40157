"""Tests of pdltlib.dntk: the empirical dNTK (book chapter 11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib.dntk import empirical_dntk, sample_dntk
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import empirical_ntk, output_change, second_order_change

X = jnp.array([[0.8, -0.3, 0.5], [0.1, 0.9, -0.4]])
CONFIG = mlp(
    (3, 5, 4, 3), "tanh", C_b=0.1, C_W=1.3, lambda_b=(0.5, 0.2, 0.7), lambda_W=(1.0, 0.6, 1.4)
)
PARAMS = init_params(jax.random.PRNGKey(11), CONFIG)


def _sigma_derivatives(z):
    s = jnp.tanh(z)
    d1 = 1 - s**2
    return s, d1, -2 * s * d1


def test_first_layer_vanishes_and_pair_symmetry():
    assert np.all(np.asarray(empirical_dntk(PARAMS, X, CONFIG, 1)) == 0)  # (11.26)
    dh = np.asarray(empirical_dntk(PARAMS, X, CONFIG, 3))
    assert dh.shape == (3, 3, 3, 2, 2, 2)
    np.testing.assert_allclose(dh, dh.transpose(0, 2, 1, 3, 5, 4), atol=1e-13)


def test_second_layer_is_the_books_11_27():
    z1 = forward(PARAMS, X, CONFIG.activation)[0]  # (N_D, n_1)
    s, d1, d2 = _sigma_derivatives(z1)
    h1 = CONFIG.lambda_b[0] + CONFIG.lambda_W[0] * (X @ X.T) / 3  # (8.23)
    w = PARAMS[1]["W"]  # (n_2, n_1)
    lam = CONFIG.lambda_W[1] / 5
    first = jnp.einsum("ab,ac,ik,jk,lk,ak,bk,ck->ijlabc", h1, h1, w, w, w, d2, d1, d1)
    eye = jnp.eye(4)
    second = lam * jnp.einsum("ij,ac,lk,ak,bk,ck->ijlabc", eye, h1, w, d1, s, d1)
    third = lam * jnp.einsum("il,ab,jk,ak,bk,ck->ijlabc", eye, h1, w, d1, d1, s)
    np.testing.assert_allclose(
        empirical_dntk(PARAMS, X, CONFIG, 2), first + second + third, rtol=1e-11, atol=1e-13
    )


def test_forward_equation_11_24_in_the_third_layer():
    zs = forward(PARAMS, X, CONFIG.activation)
    s, d1, d2 = _sigma_derivatives(zs[1])
    h = empirical_ntk(PARAMS, X, CONFIG, 2)  # H^(2)[k1, k2, a, b]
    dh = empirical_dntk(PARAMS, X, CONFIG, 2)
    w = PARAMS[2]["W"]
    lam = CONFIG.lambda_W[2] / 4
    www = jnp.einsum("ip,jq,lr->ijlpqr", w, w, w)
    expected = jnp.einsum("ijlpqr,ap,bq,cr,pqrabc->ijlabc", www, d1, d1, d1, dh)
    expected += jnp.einsum("ijlpqr,ap,bq,cr,pqab,prac->ijlabc", www, d2, d1, d1, h, h)
    eye = jnp.eye(3)
    expected += lam * jnp.einsum("ij,lr,ap,bp,cr,prac->ijlabc", eye, w, d1, s, d1, h)
    expected += lam * jnp.einsum("il,jq,ap,bq,cp,pqab->ijlabc", eye, w, d1, d1, s, h)
    np.testing.assert_allclose(
        empirical_dntk(PARAMS, X, CONFIG, 3), expected, rtol=1e-10, atol=1e-13
    )


def test_second_order_output_update_is_the_dntk_term_of_11_9():
    x_train, y = X[:1], jnp.array([[0.3, -0.2, 0.5]])
    eps = forward(PARAMS, x_train, CONFIG.activation)[-1] - y  # (N_A, n_L)
    dh = empirical_dntk(PARAMS, X, CONFIG)  # on D = {x_0, x_1}; train = x_0
    dh_train = dh[:, :, :, :, :1, :1]
    expected = 0.5 * jnp.einsum("ijkdab,aj,bk->di", dh_train, eps, eps)
    np.testing.assert_allclose(
        second_order_change(PARAMS, X, x_train, y, CONFIG), expected, rtol=1e-10, atol=1e-14
    )
    h = empirical_ntk(PARAMS, X, CONFIG)[:, :, :, :1]
    assert output_change(h, eps, 1.0).shape == expected.shape


def test_ensemble_matches_single_networks_and_chunking():
    key = jax.random.PRNGKey(5)
    sample = sample_dntk(key, CONFIG, X, 5, layer=3, neurons=2, chunk_size=2, progress=False)
    other = sample_dntk(key, CONFIG, X, 5, layer=3, neurons=2, chunk_size=5, progress=False)
    np.testing.assert_array_equal(sample.dntk, other.dntk)
    params = init_params(jax.random.split(key, 5)[3], CONFIG)
    np.testing.assert_allclose(
        sample.dntk[3], empirical_dntk(params, X, CONFIG, neurons=2), atol=1e-14
    )
    np.testing.assert_allclose(
        sample.ntk[3], empirical_ntk(params, X, CONFIG, neurons=2), atol=1e-14
    )
    assert sample.z.shape == (5, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer": 4}, "layer"),
        ({"neurons": 9}, "neurons"),
        ({"n_networks": 0}, "n_networks"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"n_networks": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_dntk(jax.random.PRNGKey(0), CONFIG, X, progress=False, **args)
