"""Tests of pdltlib.ensemble.map_networks: chunking never changes the numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib.ensemble import map_networks
from pdltlib.network import init_ensemble, init_params, mlp


def _draws(keys):
    normal = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)
    return {"x": normal, "sum": normal.sum(axis=1)}


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_results_do_not_depend_on_the_chunk_size(chunk_size):
    key = jax.random.PRNGKey(3)
    out = map_networks(_draws, key, 7, chunk_size, "test", progress=False)
    expected = np.asarray(_draws(jax.random.split(key, 7))["x"])
    np.testing.assert_array_equal(out["x"], expected)
    np.testing.assert_allclose(out["sum"], expected.sum(axis=1))
    assert isinstance(out["x"], np.ndarray) and out["x"].shape == (7, 3)


@pytest.mark.parametrize(
    ("n", "chunk", "name"),
    [(0, 2, "n_networks"), (2, 0, "chunk_size"), (2.5, 2, "n_networks"), (True, 2, "n_networks")],
)
def test_bad_input(n, chunk, name):
    with pytest.raises(ValueError, match=name):
        map_networks(_draws, jax.random.PRNGKey(0), n, chunk, "test", progress=False)


def test_last_chunk_is_padded_to_one_compiled_shape():
    shapes = []

    def record(keys):
        shapes.append(keys.shape)
        return jnp.zeros((keys.shape[0],))

    map_networks(record, jax.random.PRNGKey(0), 5, 2, "test", progress=False)
    assert shapes == [(2, 2)] * 3


def test_with_a_config_each_chunk_gets_the_networks_parameters():
    config = mlp((2, 3, 1), "tanh", C_b=0.5, C_W=2.0)
    key = jax.random.PRNGKey(5)
    keys = jax.random.split(key, 5)
    out = map_networks(lambda p: p, key, 5, 2, "test", progress=False, config=config)
    whole = init_ensemble(keys, config)  # chunking never changes the numbers
    leaves = zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(whole), strict=True)
    for got, want in leaves:
        np.testing.assert_array_equal(got, want)
    # network s is init_params of its key, to rounding (the eager sqrt(C_b) differs in the last bit)
    for s, k in enumerate(keys):
        for got, want in zip(out, init_params(k, config), strict=True):
            np.testing.assert_allclose(got["W"][s], want["W"], rtol=1e-15)
            np.testing.assert_allclose(got["b"][s], want["b"], rtol=1e-15)
