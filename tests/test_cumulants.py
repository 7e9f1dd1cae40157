"""Tests of pdltlib.cumulants: moments <-> cumulants, set partitions, connected correlators."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdltlib import stats
from pdltlib.cumulants import (
    bell_number,
    connected_correlator,
    connected_correlator_estimate,
    connected_four_point,
    cumulants_to_moments,
    full_correlator,
    moments_to_cumulants,
    set_partitions,
)
from pdltlib.wick import gaussian_moment, pairings

K3 = np.array([[1.0, 0.4, -0.3], [0.4, 0.8, 0.2], [-0.3, 0.2, 1.5]])


def stirling2(n, k):
    """Stirling numbers of the second kind by their recursion (an independent oracle)."""
    if n == k:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=8))
def test_round_trip_cumulants_moments_cumulants(kappa):
    moments = cumulants_to_moments(kappa)
    back = moments_to_cumulants(moments)
    scale = max(1.0, float(np.max(np.abs(moments))))
    np.testing.assert_allclose(back, kappa, rtol=0, atol=1e-12 * scale)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=7))
def test_round_trip_moments_cumulants_moments(moments):
    back = cumulants_to_moments(moments_to_cumulants(moments))
    np.testing.assert_allclose(back, moments, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lam", [0.3, 1.7, 4.0])
def test_poisson_cumulants_all_equal_lambda(lam):
    # Touchard: E[X^n] = sum_k S(n, k) lam^k
    moments = [sum(stirling2(n, k) * lam**k for k in range(n + 1)) for n in range(1, 11)]
    np.testing.assert_allclose(moments_to_cumulants(moments), lam, rtol=1e-9)


def test_gaussian_cumulants_beyond_two_vanish():
    mu, K = 0.7, 1.3
    # E[(mu + x)^n] for x ~ N(0, K), by the binomial theorem and (1.15)
    moments = [
        sum(math.comb(n, j) * mu ** (n - j) * gaussian_moment(K, (0,) * j) for j in range(n + 1))
        for n in range(1, 11)
    ]
    kappa = moments_to_cumulants(moments)
    np.testing.assert_allclose(kappa[:2], [mu, K], rtol=1e-12)
    np.testing.assert_allclose(kappa[2:], 0.0, atol=1e-9)


def test_exponential_cumulants():
    moments = [math.factorial(n) for n in range(1, 11)]
    expected = [math.factorial(n - 1) for n in range(1, 11)]
    np.testing.assert_allclose(moments_to_cumulants(moments), expected, rtol=1e-12)


@pytest.mark.parametrize("n", range(8))
def test_set_partitions_are_all_distinct_and_cover(n):
    found = list(set_partitions(range(n)))
    assert len(found) == bell_number(n)
    assert len({frozenset(frozenset(b) for b in p) for p in found}) == len(found)
    for p in found:
        assert sorted(i for block in p for i in block) == list(range(n))


def test_bell_numbers():
    assert [bell_number(n) for n in range(11)] == [
        1, 1, 2, 5, 15, 52, 203, 877, 4140, 21147, 115975,
    ]  # fmt: skip


def gaussian(idx):
    return gaussian_moment(K3, idx)


def test_gaussian_connected_correlators_vanish_beyond_two_points():
    assert connected_correlator(gaussian, (0, 2)) == pytest.approx(K3[0, 2])
    for idx in [(0, 1, 2, 2), (0, 0, 0, 0), (0, 1, 1, 2, 2, 2), (0, 0, 1, 1, 2, 2, 0, 1)]:
        assert connected_correlator(gaussian, idx) == pytest.approx(0.0, abs=1e-12)


def test_scale_mixture_connected_correlators():
    """z = sqrt(g) x, x ~ N(0, K), g ~ Gamma(a, 1): E[z...z] = E[g^m] Wick(K) and the connected
    2m-point correlator is kappa_m(g) Wick(K), with kappa_m(g) = a (m - 1)!."""
    a = 2.5

    def mixture(idx):
        m = len(idx) // 2
        return math.gamma(a + m) / math.gamma(a) * gaussian_moment(K3, idx)

    for idx in [(0, 1), (0, 1, 1, 2), (2, 2, 2, 2), (0, 0, 1, 1, 2, 2), (0, 1, 2, 0, 1, 2, 2, 2)]:
        m = len(idx) // 2
        expected = a * math.factorial(m - 1) * gaussian_moment(K3, idx)
        assert connected_correlator(mixture, idx) == pytest.approx(expected, rel=1e-10)
    assert connected_correlator(mixture, (0, 1, 2)) == 0.0


def test_six_point_formula_eq_1_61():
    """(1.61): connected 6-point = M6 - sum_(4,2) M4 M2 + 2 sum_(2,2,2) M2 M2 M2, zero mean."""
    a = 1.5

    def mixture(idx):
        return math.gamma(a + len(idx) // 2) / math.gamma(a) * gaussian_moment(K3, idx)

    idx = (0, 0, 1, 1, 2, 2)
    four_two = sum(
        mixture(tuple(idx[i] for i in range(6) if i not in pair))
        * mixture((idx[pair[0]], idx[pair[1]]))
        for pair in [(i, j) for i in range(6) for j in range(i + 1, 6)]
    )
    two_two_two = sum(np.prod([mixture((idx[i], idx[j])) for i, j in p]) for p in pairings(6))
    expected = mixture(idx) - four_two + 2 * two_two_two
    assert connected_correlator(mixture, idx) == pytest.approx(expected, rel=1e-12)


def test_full_correlator_inverts_connected_correlator():
    def skewed(idx):  # any symmetric function of the index multiset is a valid input
        return float(np.prod([1.0 + 0.1 * i for i in idx])) * math.factorial(len(idx))

    for idx in [(0,), (0, 1), (0, 1, 1), (0, 1, 2, 2), (2, 1, 0, 0, 1)]:
        connected = lambda b: connected_correlator(skewed, b)  # noqa: E731
        assert full_correlator(connected, idx) == pytest.approx(skewed(idx), rel=1e-12)


def test_connected_four_point_eq_1_54_matches_moebius():
    a = 3.0

    def mixture(idx):
        return math.gamma(a + len(idx) // 2) / math.gamma(a) * gaussian_moment(K3, idx)

    m2 = np.array([[mixture((i, j)) for j in range(3)] for i in range(3)])
    m4 = np.zeros((3,) * 4)
    for idx in np.ndindex(*m4.shape):
        m4[idx] = mixture(idx)
    tensor = connected_four_point(m2, m4)
    for idx in [(0, 0, 0, 0), (0, 1, 2, 2), (1, 2, 1, 0)]:
        assert tensor[idx] == pytest.approx(connected_correlator(mixture, idx), rel=1e-12)
    assert connected_four_point(2.0, 12.0) == pytest.approx(0.0)


def test_connected_correlator_estimate_on_samples():
    rng = np.random.default_rng(3)
    x = rng.exponential(size=400_000)  # kappa_3 = 2, kappa_4 = 6
    for order, expected in [(2, 1.0), (3, 2.0), (4, 6.0)]:
        est = connected_correlator_estimate(x, (0,) * order)
        assert abs(est.value - expected) <= 4.5 * est.stderr
    # a Gaussian scale mixture: connected (0,0,1,1) = Var(g) (K00 K11 + 2 K01^2) != 0
    g = rng.gamma(4.0, 0.25, size=(400_000, 1))
    z = np.sqrt(g) * (rng.normal(size=(400_000, 3)) @ np.linalg.cholesky(K3).T)
    est = connected_correlator_estimate(z, (0, 0, 1, 1))
    theory = 0.25 * (K3[0, 0] * K3[1, 1] + 2 * K3[0, 1] ** 2)
    check = stats.honest_check("mixture", est, theory, infinite_width=0.0)
    assert check.ok, str(stats.AgreementTable([check]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: moments_to_cumulants([]), "non-empty"),
        (lambda: moments_to_cumulants([1.0, np.nan]), "finite"),
        (lambda: cumulants_to_moments([[1.0]]), "1-D"),
        (lambda: bell_number(-1), "n must be an integer >= 0"),
        (lambda: connected_correlator(gaussian, ()), "between 1 and 10"),
        (lambda: connected_correlator(gaussian, (0,) * 11), "between 1 and 10"),
        (lambda: connected_correlator(lambda b: np.nan, (0, 0)), "non-finite"),
        (lambda: connected_four_point(np.eye(2), np.zeros((2, 2, 2))), "four_point"),
        (lambda: connected_correlator_estimate(np.zeros((10, 2)), (0, 2)), r"\[0, 2\)"),
        (lambda: connected_correlator_estimate(np.zeros((10, 2)), (0,), n_blocks=11), "n_blocks"),
        (lambda: connected_correlator_estimate(np.full(10, np.nan), (0,)), "non-finite"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
