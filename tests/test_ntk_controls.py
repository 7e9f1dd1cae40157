"""Tests of pdltlib.ntk_controls (zero-mean control variates of the output NTK) and
pdltlib.stats.controlled_mean: the conditional-expectation identity against brute-force
sampling of one layer's weights, the exact zero mean of every control on sampled ensembles
(Hotelling's T^2), the quadrature's convergence, and the unbiased, variance-reduced mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

import pdltlib  # noqa: F401  (float64)
from pdltlib import ntk_controls, stats
from pdltlib.activations import get_activation
from pdltlib.network import mlp
from pdltlib.ntk import sample_ntk
from pdltlib.ntk_controls import sample_ntk_controls

X2 = np.array([[1.5, 0.6, -0.9], [-0.6, 0.9, 1.2]])


def test_weighted_quadratic_matches_sampled_rows():
    """E[f(z) W M W^T] for a Gaussian row W with z = b + W s (the module's conditioning formula),
    against 400k sampled rows; dropping the conditioning terms is rejected."""
    rng = np.random.default_rng(3)
    n_prev, C_b, C_W = 5, 0.3, 1.7
    s = rng.normal(size=(2, n_prev))  # s_{k;a}: (N_D, n_prev)
    A = rng.normal(size=(n_prev, n_prev))
    M = A @ A.T  # one pair's M_kl (the formula is linear in M)
    c = C_W / n_prev
    G = C_b + c * s @ s.T
    act = get_activation("gelu")
    nodes, basis = ntk_controls._unit_rule(40, 2)
    e_k, e_d, e_dzz = ntk_controls._moments(act, jnp.asarray(G), nodes, basis, ((0, 1),), False)
    Q = (s @ M @ s.T)[None]
    formula = float(ntk_controls._weighted_quadratic(c, G, jnp.trace(M)[None], Q, e_d, e_dzz)[0])

    W = rng.normal(size=(400_000, n_prev)) * np.sqrt(c)
    z = W @ s.T + rng.normal(size=(400_000, 1)) * np.sqrt(C_b)
    f = np.asarray(jax.vmap(jax.grad(act.fn))(jnp.asarray(z.ravel()))).reshape(z.shape).prod(1)
    sample = stats.mean_estimate(f * np.einsum("sk,kl,sl->s", W, M, W))
    assert abs(float(sample.value) - formula) < 4.5 * float(sample.stderr)
    naive = c * np.trace(M) * float(e_d[0])  # W independent of z: wrong
    assert abs(float(sample.value) - naive) > 10 * float(sample.stderr)


@pytest.mark.parametrize(
    ("activation", "widths", "C_b", "x"),
    [
        ("tanh", (3, 8, 8, 1), 0.0, X2),
        ("gelu", (3, 6, 7, 6, 2), 0.4, X2),  # L = 4, two outputs, biases
        ("tanh", (3, 8, 1), 0.2, X2[:1]),  # L = 2, one input
    ],
)
def test_controls_have_zero_mean(activation, widths, C_b, x):
    """Hotelling's T^2 of the control means over 6000 networks is chi^2_p-distributed when every
    mean is zero; a wrong conditional expectation at these sizes gives T^2 in the thousands."""
    config = mlp(widths, activation, C_b=C_b, C_W=1.3, lambda_b=0.7, lambda_W=1.1)
    sample = sample_ntk_controls(jax.random.PRNGKey(11), config, x, 6000, progress=False)
    F = sample.features
    assert F.shape[1] == len(sample.names)
    mean = F.mean(0)
    t2 = len(F) * mean @ np.linalg.solve(np.cov(F, rowvar=False), mean)
    assert t2 < sps.chi2.ppf(1 - 1e-4, F.shape[1]), (t2, F.shape[1])
    # the same networks as every sampler
    ref = sample_ntk(jax.random.PRNGKey(11), config, x, 20, progress=False)
    np.testing.assert_allclose(sample.ntk[:20], ref.ntk[config.depth], atol=1e-12)
    np.testing.assert_allclose(sample.z[:20], ref.z[config.depth], atol=1e-12)


def test_quadrature_has_converged():
    """The hidden layers' Gauss-Hermite integrals at the default order agree with a much
    finer rule far below any Monte Carlo resolution (tanh, kernels of order one, four layers)."""
    config = mlp((3, 10, 10, 10, 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=1.0, lambda_W=1.0)
    coarse = sample_ntk_controls(jax.random.PRNGKey(2), config, X2, 8, progress=False)
    fine = sample_ntk_controls(jax.random.PRNGKey(2), config, X2, 8, order=128, progress=False)
    np.testing.assert_allclose(coarse.features, fine.features, rtol=0, atol=1e-7)


def test_controlled_mean_is_unbiased_and_sharper():
    """E[H_{-+}/H_{++}] (the trained linear model's prediction): the controlled and plain means
    of 8000 networks agree, the controls cut the variance at least fivefold, and the pilot's
    coefficients carry no bias (a permuted, useless pilot leaves the plain mean's error)."""
    config = mlp((3, 16, 16, 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=3.0 / np.arange(1, 4),
                 lambda_W=1.0)  # fmt: skip
    main = sample_ntk_controls(jax.random.PRNGKey(5), config, X2, 8000, chunk_size=1000,
                               progress=False)  # fmt: skip
    pilot = sample_ntk_controls(jax.random.PRNGKey(6), config, X2, 2000, chunk_size=1000,
                                progress=False)  # fmt: skip

    def ratio(s):
        return s.ntk[:, 0, 0, 1, 0] / s.ntk[:, 0, 0, 0, 0]

    plain = stats.mean_estimate(ratio(main))
    controlled = stats.controlled_mean(ratio(main), main.features, ratio(pilot), pilot.features)
    assert (plain.stderr / controlled.stderr) ** 2 > 5
    assert abs(plain.value - controlled.value) < 4.5 * plain.stderr
    shuffled = stats.controlled_mean(
        ratio(main), main.features, np.random.default_rng(0).permutation(ratio(pilot)),
        pilot.features,
    )  # fmt: skip
    assert shuffled.stderr > 0.9 * plain.stderr


def test_controlled_mean_with_several_values():
    rng = np.random.default_rng(1)
    c, c_p = rng.normal(size=(500, 2)), rng.normal(size=(300, 2))
    y = np.stack([c[:, 0] + 0.1 * rng.normal(size=500), rng.normal(size=500)], 1)
    y_p = np.stack([c_p[:, 0] + 0.1 * rng.normal(size=300), rng.normal(size=300)], 1)
    est = stats.controlled_mean(y, c, y_p, c_p)
    assert est.value.shape == (2,)
    assert est.stderr[0] < 0.2 * est.stderr[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(widths=(3, 1)), "depth L >= 2"),
        (dict(x=np.ones((4, 3))), "N_D <= 3"),
        (dict(x=np.stack([X2[0], 2 * X2[0]])), "singular first-layer metric"),
        (dict(order=4), "order must be an integer >= 8"),
    ],
)
def test_sampler_validates(kwargs, message):
    config = mlp(kwargs.pop("widths", (3, 4, 4, 1)), "tanh", C_b=0.0, C_W=1.0)
    x = kwargs.pop("x", X2)
    with pytest.raises(ValueError, match=message):
        sample_ntk_controls(jax.random.PRNGKey(0), config, x, 3, progress=False, **kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(10), np.ones((10, 2)), np.ones(3), np.ones((3, 2))), "more than p \\+ 1"),
        ((np.ones(10), np.ones((10, 2)), np.ones(5), np.ones((5, 3))), "same p"),
        ((np.ones(9), np.ones((10, 2)), np.ones(5), np.ones((5, 2))), "do not match"),
        ((np.full(10, np.nan), np.ones((10, 2)), np.ones(5), np.ones((5, 2))), "non-finite"),
    ],
)
def test_controlled_mean_validates(args, message):
    with pytest.raises(ValueError, match=message):
        stats.controlled_mean(*args)
