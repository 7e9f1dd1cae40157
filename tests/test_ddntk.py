"""Tests of pdltlib.ddntk: the empirical ddNTKs (book section ∞.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib.ddntk import empirical_ddntk, sample_ddntk
from pdltlib.dntk import empirical_dntk, sample_dntk
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import empirical_ntk, gradient_step

X = jnp.array([[0.8, -0.3, 0.5], [0.1, 0.9, -0.4]])
CONFIG = mlp(
    (3, 5, 4, 3), "tanh", C_b=0.1, C_W=1.3, lambda_b=(0.5, 0.2, 0.7), lambda_W=(1.0, 0.6, 1.4)
)
PARAMS = init_params(jax.random.PRNGKey(11), CONFIG)
X_TRAIN, Y = X[:1], jnp.array([[0.3, -0.2, 0.5]])
EPS = np.asarray(forward(PARAMS, X_TRAIN, CONFIG.activation)[-1] - Y)  # (N_A, n_L)
DDIH, DDIIH = (np.asarray(a) for a in empirical_ddntk(PARAMS, X, CONFIG))


def _along_step(t: float) -> list[dict]:
    """theta + t v with v the direction of one gradient step (t may be negative)."""
    step = gradient_step(PARAMS, X_TRAIN, Y, CONFIG, 1.0)
    return jax.tree_util.tree_map(lambda p, q: p + t * (q - p), PARAMS, step)


def test_first_layer_vanishes_and_symmetries():
    for tensor in empirical_ddntk(PARAMS, X, CONFIG, 1):
        assert np.all(np.asarray(tensor) == 0)
    assert DDIH.shape == DDIIH.shape == (3,) * 4 + (2,) * 4
    for perm in ((0, 2, 1, 3), (0, 3, 2, 1), (0, 1, 3, 2)):  # ddIH: the last three pairs
        np.testing.assert_allclose(DDIH, DDIH.transpose(*perm, *(p + 4 for p in perm)), atol=1e-12)
    joint = (1, 0, 3, 2)  # ddIIH: (i1 d1, i3 d3) <-> (i2 d2, i4 d4)
    np.testing.assert_allclose(DDIIH, DDIIH.transpose(*joint, *(p + 4 for p in joint)), atol=1e-12)


def test_dntk_update_is_the_ddntks_contracted_with_the_error_infinity_9():
    """Central finite differences of the dNTK along a gradient step (error O(eta^2))."""
    eta = 1e-4
    plus, minus = (np.asarray(empirical_dntk(_along_step(t), X, CONFIG)) for t in (eta, -eta))
    derivative = (plus - minus) / (2 * eta)
    swap = DDIIH.transpose(0, 2, 1, 3, 4, 6, 5, 7)  # ddIIH_{i0 i2 i1 j; d0 d2 d1 a}
    theory = -np.einsum("abcjdefg,gj->abcdef", (DDIH + DDIIH + swap)[..., :1], EPS)
    np.testing.assert_allclose(derivative, theory, rtol=1e-6, atol=1e-8)


def test_ntk_second_order_update_infinity_6():
    """d^2 H / d eta^2 along a step = (ddIH + ddIH^T) eps eps + 2 ddIIH eps eps."""
    eta = 1e-3
    h = {t: np.asarray(empirical_ntk(_along_step(t), X, CONFIG)) for t in (-eta, 0.0, eta)}
    curvature = (h[eta] - 2 * h[0.0] + h[-eta]) / eta**2
    ddih = np.einsum("abjkcdef,ej,fk->abcd", DDIH[..., :1, :1], EPS, EPS)
    ddiih = np.einsum("abjkcdef,ej,fk->abcd", DDIIH[..., :1, :1], EPS, EPS)
    theory = ddih + ddih.transpose(1, 0, 3, 2) + 2 * ddiih
    np.testing.assert_allclose(curvature, theory, rtol=1e-5, atol=1e-7)


def test_third_order_output_update_infinity_4():
    """d^3 z / d eta^3 along a step = -ddIH eps eps eps (by automatic differentiation in eta)."""

    def outputs(t):
        return forward(_along_step(t), X, CONFIG.activation)[-1]

    third = np.asarray(jax.jacfwd(jax.jacfwd(jax.jacfwd(outputs)))(0.0))  # (N_D, n_L)
    theory = -np.einsum("ijklabcd,bj,ck,dl->ai", DDIH[..., :1, :1, :1], EPS, EPS, EPS)
    np.testing.assert_allclose(third, theory, rtol=1e-9, atol=1e-12)


def test_ensemble_matches_single_networks_and_chunking():
    key = jax.random.PRNGKey(5)
    sample = sample_ddntk(key, CONFIG, X, 3, layer=2, neurons=2, chunk_size=2, progress=False)
    other = sample_ddntk(key, CONFIG, X, 3, layer=2, neurons=2, chunk_size=3, progress=False)
    np.testing.assert_array_equal(sample.ddih, other.ddih)
    params = init_params(jax.random.split(key, 3)[1], CONFIG)
    ddih, ddiih = empirical_ddntk(params, X, CONFIG, 2, neurons=2)
    np.testing.assert_allclose(sample.ddih[1], ddih, atol=1e-13)
    np.testing.assert_allclose(sample.ddiih[1], ddiih, atol=1e-13)


def test_with_dntk_is_the_dntk_sample_of_the_same_networks():
    key = jax.random.PRNGKey(5)
    common = dict(layer=2, neurons=2, progress=False)
    both = sample_ddntk(key, CONFIG, X, 3, with_dntk=True, chunk_size=2, **common)
    alone = sample_dntk(key, CONFIG, X, 3, **common)
    for name in ("z", "ntk", "dntk"):
        np.testing.assert_array_equal(getattr(both, name), getattr(alone, name))
    plain = sample_ddntk(key, CONFIG, X, 3, chunk_size=2, **common)
    np.testing.assert_array_equal(both.ddih, plain.ddih)
    assert plain.z is None and plain.dntk is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer": 4}, "layer"),
        ({"neurons": 9}, "neurons"),
        ({"n_networks": 0}, "n_networks"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"with_dntk": "yes"}, "with_dntk"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"n_networks": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_ddntk(jax.random.PRNGKey(0), CONFIG, X, progress=False, **args)


def test_bad_input_single_network():
    with pytest.raises(ValueError, match="params"):
        empirical_ddntk(PARAMS[:2], X, CONFIG)
    with pytest.raises(ValueError, match="x"):
        empirical_ddntk(PARAMS, X[:, :2], CONFIG)
