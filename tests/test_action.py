"""Tests of pdltlib.action: the quartic action, its perturbation series, quadrature and sampler."""

import math
from fractions import Fraction

import jax
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import gamma, pbdv

from pdltlib import stats
from pdltlib.action import (
    connected_four_point_first_order,
    connected_four_point_series,
    exact_correlators,
    expectation,
    moment_series,
    partition_ratio,
    partition_ratio_series,
    quartic_action,
    sample_quartic,
    two_point_first_order,
)
from pdltlib.cumulants import connected_correlator_estimate
from pdltlib.wick import double_factorial

K1, V1 = 1.3, 0.7  # one variable
K2 = np.array([[1.0, 0.4], [0.4, 0.7]])


def symmetric_vertex(n, rng):
    """A totally symmetric V with a non-negative quartic form: a (z.z)^2 + sum_k w_k (v_k.z)^4."""
    d = np.eye(n)
    V = 0.5 * (
        np.einsum("ab,cd->abcd", d, d)
        + np.einsum("ac,bd->abcd", d, d)
        + np.einsum("ad,bc->abcd", d, d)
    )
    for _ in range(2):
        v = rng.normal(size=n)
        V = V + rng.uniform(0.5, 1.0) * np.einsum("a,b,c,d->abcd", v, v, v, v)
    return V


V2 = symmetric_vertex(2, np.random.default_rng(0))


def exact_1d_series(k, K, V, order):
    """eps^j coefficients of E[z^2k] for N = 1 in exact rational arithmetic (an oracle):
    numerator and denominator of (1.74) expanded with (1.15), then divided."""
    K, V = Fraction(K), Fraction(V)

    def bracket(power):  # <z^(2 power)>_K
        return double_factorial(2 * power - 1) * K**power

    num = [(-V / 24) ** j / math.factorial(j) * bracket(k + 2 * j) for j in range(order + 1)]
    den = [(-V / 24) ** j / math.factorial(j) * bracket(2 * j) for j in range(order + 1)]
    out = []
    for j in range(order + 1):
        out.append(num[j] - sum(den[i] * out[j - i] for i in range(1, j + 1)))
    return [float(c) for c in out]


def closed_form_1d(k, K, lam):
    """E[z^2k] for p(z) ~ exp(-z^2/2K - lam z^4), via parabolic cylinder functions
    (Gradshteyn-Ryzhik 3.462.1 after t = z^2)."""
    x = 1 / (2 * K * math.sqrt(2 * lam))
    ratio = pbdv(-(k + 0.5), x)[0] / pbdv(-0.5, x)[0]
    return (2 * lam) ** (-k / 2) * gamma(k + 0.5) / gamma(0.5) * ratio


def test_quartic_action_value_and_normalization():
    z = np.array([0.3, -1.2])
    S = quartic_action(z, K2, V2, 0.2)
    expected = 0.5 * z @ np.linalg.solve(K2, z) + 0.2 / 24 * np.einsum(
        "abcd,a,b,c,d->", V2, z, z, z, z
    )
    assert float(S) == pytest.approx(expected, rel=1e-14)
    eps = 0.4
    Z, _ = quad(lambda x: math.exp(-float(quartic_action(x, K1, V1, eps))), -np.inf, np.inf)
    assert Z / math.sqrt(2 * math.pi * K1) == pytest.approx(partition_ratio(K1, V1, eps), rel=1e-9)


def test_first_order_one_variable():
    eps = 0.1
    assert two_point_first_order(K1, V1, eps) == pytest.approx(K1 - eps * V1 * K1**3 / 2)
    assert connected_four_point_first_order(K1, V1, eps) == pytest.approx(-eps * V1 * K1**4)


def test_series_one_variable_matches_exact_rational_oracle():
    for k in (1, 2, 3):
        ours = moment_series(K1, V1, 2 * k, 8)
        np.testing.assert_allclose(ours, exact_1d_series(k, K1, V1, 8), rtol=1e-11)
    # the integer coefficients of E[z^2] / K in lambda K^2 with lambda = eps V / 24
    coefficients = moment_series(1.0, 24.0, 2, 4)
    np.testing.assert_allclose(coefficients, [1, -12, 384, -19008, 1253376], rtol=1e-13)


def test_partition_series_one_variable():
    b = partition_ratio_series(K1, V1, 5)
    expected = [(-V1 / 24) ** j * double_factorial(4 * j - 1) * K1 ** (2 * j) / math.factorial(j)
                for j in range(6)]  # fmt: skip
    np.testing.assert_allclose(b, expected, rtol=1e-13)
    assert b[1] == pytest.approx(-V1 * K1**2 / 8)  # (1.73)


@pytest.mark.parametrize(("K", "lam"), [(1.0, 0.01), (1.3, 0.05), (0.6, 0.4)])
def test_quadrature_matches_closed_form(K, lam):
    eps = 24 * lam  # V = 1
    for k in (1, 2, 3):
        value = expectation(lambda z, k=k: z ** (2 * k), K, 1.0, eps)
        assert value == pytest.approx(closed_form_1d(k, K, lam), rel=1e-10)


@pytest.mark.parametrize("which", ["two_point", "connected"])
def test_first_order_residual_scales_like_eps_squared(which):
    """|exact - first order| ~ eps^2 (log-log slope 2), and its curvature is the series' c_2."""
    series = (
        moment_series(K1, V1, 2, 4)
        if which == "two_point"
        else connected_four_point_series(K1, V1, 4)
    )
    index = 0 if which == "two_point" else 1
    eps = np.geomspace(2e-3, 2e-2, 6)
    exact = np.array([exact_correlators(K1, V1, e)[index] for e in eps])
    residual = exact - (series[0] + series[1] * eps)
    slope = np.polyfit(np.log(eps), np.log(np.abs(residual)), 1)[0]
    # the local slope is 2 + (c3 / c2) eps + O(eps^2)
    assert abs(slope - 2) <= 2 * abs(series[3] / series[2]) * eps.max()
    # (exact - c0 - c1 eps) / eps^2 = c2 + c3 eps + O(eps^2): the exact curvature is c2
    curvature = residual / eps**2
    remainder = np.abs(curvature - series[2] - series[3] * eps)
    assert np.all(remainder <= 3 * np.abs(series[4]) * eps**2 + 1e-11 / eps**2)
    assert np.all(np.abs(curvature - series[2]) > 0.5 * np.abs(series[3]) * eps)  # c3 is seen


def test_series_first_order_terms_are_eqs_1_74_and_1_78():
    eps = 1.0
    two = moment_series(K2, V2, 2, 1)
    np.testing.assert_allclose(two[0], K2, rtol=1e-14)
    np.testing.assert_allclose(
        two[0] + eps * two[1], two_point_first_order(K2, V2, eps), rtol=1e-12
    )
    conn = connected_four_point_series(K2, V2, 1)
    np.testing.assert_allclose(conn[0], 0.0, atol=1e-14)
    np.testing.assert_allclose(conn[1], connected_four_point_first_order(K2, V2, eps), rtol=1e-12)
    # (1.73): Z / sqrt|2 pi K| = 1 - eps/8 V K K
    b = partition_ratio_series(K2, V2, 1)
    assert b[1] == pytest.approx(-np.einsum("abcd,ab,cd->", V2, K2, K2) / 8, rel=1e-13)


def test_series_two_variables_matches_quadrature():
    eps = 0.01
    two_s, conn_s = moment_series(K2, V2, 2, 4), connected_four_point_series(K2, V2, 4)
    two, conn = exact_correlators(K2, V2, eps)
    powers = eps ** np.arange(4)
    for exact, series in [(two, two_s), (conn, conn_s)]:
        truncated = np.tensordot(powers, series[:4], axes=1)
        assert np.all(np.abs(exact - truncated) <= 3 * np.abs(series[4]) * eps**4 + 1e-11)
    assert np.all(np.abs(conn) > 0.5 * np.abs(eps * conn_s[1]))  # a genuine tensor structure


def test_sampler_one_variable_matches_quadrature():
    eps = 0.5
    sample = sample_quartic(jax.random.PRNGKey(0), K1, V1, eps, 200_000)
    z = sample.z
    assert z.shape == (200_000,)
    two, conn = exact_correlators(K1, V1, eps)
    checks = [
        stats.honest_check("E[z^2]", stats.mean_estimate(z**2), two, infinite_width=K1),
        stats.honest_check(
            "conn 4", connected_correlator_estimate(z, (0, 0, 0, 0)), conn, infinite_width=0.0
        ),
        stats.honest_check(
            "acceptance",
            stats.jackknife(lambda t: 1 / t, sample.proposals),
            partition_ratio(K1, V1, eps),
            infinite_width=1.0,
        ),
    ]
    stats.assert_checks(checks)


def test_sampler_two_variables_matches_quadrature():
    eps = 0.3
    z = sample_quartic(jax.random.PRNGKey(1), K2, V2, eps, 200_000).z
    two, conn = exact_correlators(K2, V2, eps)
    checks = []
    for idx in [(0, 0), (0, 1), (1, 1)]:
        est = connected_correlator_estimate(z, idx)
        checks.append(stats.honest_check(f"{idx}", est, two[idx], infinite_width=K2[idx]))
    for idx in [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 1, 1, 1), (1, 1, 1, 1)]:
        est = connected_correlator_estimate(z, idx)
        checks.append(stats.honest_check(f"{idx}", est, conn[idx], infinite_width=0.0))
    stats.assert_checks(checks)


def test_sampler_four_variables_matches_series():
    """N = 4 (beyond quadrature): the two-point function against the series to second order,
    with the third-order term as truncation error."""
    K4 = np.eye(4) + 0.3 * np.ones((4, 4))
    V4 = symmetric_vertex(4, np.random.default_rng(1))
    eps = 0.02
    z = sample_quartic(jax.random.PRNGKey(2), K4, V4, eps, 200_000).z
    series = moment_series(K4, V4, 2, 3)
    second = series[0] + eps * series[1] + eps**2 * series[2]
    est = stats.mean_estimate(z[:, 0] * z[:, 1])
    check = stats.honest_check(
        "E[z0 z1]", est, second[0, 1], truncation=abs(series[3, 0, 1]) * eps**3,
        infinite_width=K4[0, 1],
    )  # fmt: skip
    stats.assert_checks([check])


def test_sampler_is_reproducible():
    a = sample_quartic(jax.random.PRNGKey(3), K2, V2, 0.3, 1000)
    b = sample_quartic(jax.random.PRNGKey(3), K2, V2, 0.3, 1000)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.proposals, b.proposals)
    assert a.proposals.min() >= 1


NEGATIVE_V = np.zeros((2, 2, 2, 2))
NEGATIVE_V[0, 0, 0, 0] = 1.0
NEGATIVE_V[1, 1, 1, 1] = -0.1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: two_point_first_order(np.eye(2) * [1, 0], V2, 0.1), "positive definite"),
        (lambda: two_point_first_order(K2, np.ones((2, 2, 2)), 0.1), "V must have shape"),
        (lambda: two_point_first_order(K2, np.arange(16.0).reshape(2, 2, 2, 2), 0.1), "symmetric"),
        (lambda: two_point_first_order(K1, V2, 0.1), "V must be a scalar"),
        (lambda: two_point_first_order(K1, V1, np.nan), "eps must be finite"),
        (lambda: moment_series(K1, V1, 2, -1), "order must be an integer >= 0"),
        (lambda: moment_series(K1, V1, -2, 1), "m must be an integer >= 0"),
        (lambda: moment_series(np.eye(6), np.zeros((6,) * 4) + 1, 4, 6), "lower the order"),
        (lambda: partition_ratio(K1, V1, -0.1), "non-negative quartic form"),
        (lambda: exact_correlators(K2, NEGATIVE_V, 0.1), "non-negative quartic form"),
        (lambda: sample_quartic(jax.random.PRNGKey(0), K2, NEGATIVE_V, 0.1, 10), "non-negative"),
        (lambda: sample_quartic(jax.random.PRNGKey(0), K1, V1, 0.1, 0), "n_samples"),
        (lambda: exact_correlators(np.eye(4), np.zeros((4,) * 4), 0.1), "N <= 3"),
        (lambda: quartic_action(np.zeros(3), K2, V2, 0.1), "last axis of size 2"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
