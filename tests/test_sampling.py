"""The exact Markov sampler against weight sampling, and the sampler's contract."""

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

from pdltlib import stats
from pdltlib.network import mlp
from pdltlib.sampling import psd_sqrt, sample_preactivations

X = np.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.4]])
K = 4.5  # standard errors allowed


def _difference_z(a: stats.Estimate, b: stats.Estimate) -> np.ndarray:
    return (np.asarray(a.value) - b.value) / np.sqrt(np.asarray(a.stderr) ** 2 + b.stderr**2)


def _compare(z_a, z_b) -> dict[str, float]:
    """Largest |z| of the differences of two-point, pair and same-neuron four-point
    correlators, and the KS p-value of one output coordinate."""
    return {
        "two_point": np.abs(_difference_z(stats.two_point(z_a), stats.two_point(z_b))).max(),
        "pairs": np.abs(
            _difference_z(
                stats.connected_four_point_pairs(z_a), stats.connected_four_point_pairs(z_b)
            )
        ).max(),
        "same": np.abs(
            _difference_z(
                stats.connected_four_point_same_neuron(z_a),
                stats.connected_four_point_same_neuron(z_b),
            )
        ).max(),
        "ks_p": scipy_stats.ks_2samp(z_a[:, 0, 0], z_b[:, 0, 0]).pvalue,
    }


@pytest.fixture(scope="module")
def ensembles():
    cfg = mlp((3, 6, 6, 6), "tanh", C_b=0.1, C_W=1.6)
    kw = dict(layers=[2, 3], n_networks=30_000)
    markov = sample_preactivations(jax.random.PRNGKey(10), cfg, X, method="markov", **kw)
    weights = sample_preactivations(jax.random.PRNGKey(11), cfg, X, method="weights", **kw)
    wrong = mlp((3, 6, 6, 6), "tanh", C_b=0.1, C_W=[1.6, 1.6 * 1.1, 1.6])
    markov_wrong = sample_preactivations(jax.random.PRNGKey(12), wrong, X, **kw)
    return markov, weights, markov_wrong


def test_markov_and_weight_sampling_agree_in_distribution(ensembles):
    markov, weights, _ = ensembles
    for layer in (2, 3):
        result = _compare(markov[layer], weights[layer])
        assert result["two_point"] < K and result["pairs"] < K and result["same"] < K, result
        assert result["ks_p"] > 1e-4, result


def test_the_comparison_has_power_to_reject_a_wrong_sampler(ensembles):
    """A 10% error in one layer's C_W is detected: the test above can fail."""
    _, weights, markov_wrong = ensembles
    assert _compare(markov_wrong[3], weights[3])["two_point"] > K


def test_results_do_not_depend_on_chunk_size():
    cfg = mlp((3, 5, 5), "relu", C_W=2.0)
    key = jax.random.PRNGKey(3)
    for method in ("markov", "weights"):
        a = sample_preactivations(key, cfg, X, 37, method=method, chunk_size=5)[2]
        b = sample_preactivations(key, cfg, X, 37, method=method, chunk_size=64)[2]
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_identical_inputs_give_identical_preactivations():
    cfg = mlp((3, 4, 4), "tanh", C_W=1.0)
    z = sample_preactivations(jax.random.PRNGKey(4), cfg, np.stack([X[0], X[0]]), 50, layers=[1, 2])
    for layer in (1, 2):
        assert np.all(np.isfinite(z[layer]))
        np.testing.assert_allclose(z[layer][:, 0], z[layer][:, 1], atol=1e-12)


def test_psd_sqrt_of_singular_matrix():
    g = np.array([[2.0, 2.0], [2.0, 2.0]])
    root = np.asarray(psd_sqrt(g))
    np.testing.assert_allclose(root @ root, g, atol=1e-12)


def test_shapes_and_float32():
    cfg = mlp((3, 7, 5), "gelu")
    z = sample_preactivations(jax.random.PRNGKey(5), cfg, X, 9, layers=[1, 2], dtype="float32")
    assert z[1].shape == (9, 2, 7) and z[2].shape == (9, 2, 5)
    assert z[2].dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": np.ones((2, 4))}, "x must have shape"),
        ({"n_networks": 0}, "n_networks"),
        ({"n_networks": 2.5}, "n_networks"),
        ({"method": "gibbs"}, "method"),
        ({"layers": [0]}, "layers"),
        ({"layers": [3]}, "layers"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"dtype": "int32"}, "dtype"),
        ({"x": np.full((2, 3), np.nan)}, "non-finite"),
    ],
)
def test_bad_input(kwargs, match):
    cfg = mlp((3, 4, 4), "relu")
    args = {"x": X, "n_networks": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        sample_preactivations(jax.random.PRNGKey(0), cfg, **args)


def test_scanned_layers_reproduce_a_plain_loop():
    """Equal-width layers run under lax.scan; the samples equal a layer-by-layer loop."""
    from pdltlib.sampling import _markov_layer, _markov_network, _segments

    assert _segments((3, 8, 8, 8, 8, 5)) == [(0, 1), (1, 4), (4, 5)]
    assert _segments((3, 6, 8, 8)) == [(0, 1), (1, 2), (2, 3)]
    cfg = mlp((3, 8, 8, 8, 8, 5), "tanh", C_b=0.1, C_W=[1.1, 1.3, 0.9, 1.7, 1.2])
    key = jax.random.PRNGKey(3)
    scanned = jax.jit(lambda k: _markov_network(k, X, cfg, (1, 2, 3, 4, 5), np.float64))(key)
    keys = jax.random.split(key, cfg.depth)
    h = X
    for layer in range(cfg.depth):
        z = _markov_layer(keys[layer], h, cfg.C_b[layer], cfg.C_W[layer], cfg.widths[layer + 1])
        np.testing.assert_allclose(scanned[layer], z, rtol=1e-12, atol=1e-14)
        h = cfg.activation.fn(z)
