"""Tests of pdltlib.wick: pairings, Wick's theorem against brute force, quadrature and MC."""

import itertools

import numpy as np
import pytest

from pdltlib import stats
from pdltlib.gaussian import gaussian_expectation
from pdltlib.wick import (
    WickContractor,
    count_pairings,
    double_factorial,
    gaussian_moment,
    gaussian_moment_1d,
    pairings,
)

K3 = np.array([[1.0, 0.4, -0.3], [0.4, 0.8, 0.2], [-0.3, 0.2, 1.5]])


def brute_force_moment(K, indices):
    """Wick's sum (1.45) term by term over the enumerated pairings."""
    return sum(
        np.prod([K[indices[a], indices[b]] for a, b in pairing])
        for pairing in pairings(len(indices))
    )


def test_double_factorial():
    assert [double_factorial(n) for n in range(-1, 9)] == [1, 1, 1, 2, 3, 8, 15, 48, 105, 384]


@pytest.mark.parametrize("n", range(11))
def test_pairings_are_all_distinct_perfect_matchings(n):
    found = list(pairings(n))
    expected = double_factorial(n - 1) if n % 2 == 0 else 0
    assert len(found) == count_pairings(n) == expected
    as_sets = {frozenset(p) for p in found}
    assert len(as_sets) == len(found)
    for p in found:
        assert sorted(i for pair in p for i in pair) == list(range(n))
        assert all(a < b for a, b in p)


def test_six_point_pairings_are_the_books_fifteen_terms():
    # the 15 Wick contractions listed after book eq. (1.45), positions 1..6
    book = [
        [(1, 2), (3, 4), (5, 6)], [(1, 3), (2, 4), (5, 6)], [(1, 4), (2, 3), (5, 6)],
        [(1, 2), (3, 5), (4, 6)], [(1, 3), (2, 5), (4, 6)], [(1, 5), (2, 3), (4, 6)],
        [(1, 2), (5, 4), (3, 6)], [(1, 5), (2, 4), (3, 6)], [(1, 4), (2, 5), (3, 6)],
        [(1, 5), (3, 4), (2, 6)], [(1, 3), (5, 4), (2, 6)], [(1, 4), (5, 3), (2, 6)],
        [(5, 2), (3, 4), (1, 6)], [(5, 3), (2, 4), (1, 6)], [(5, 4), (2, 3), (1, 6)],
    ]  # fmt: skip
    as_sets = {frozenset(frozenset((a - 1, b - 1)) for a, b in term) for term in book}
    ours = {frozenset(frozenset(pair) for pair in p) for p in pairings(6)}
    assert len(as_sets) == 15 and as_sets == ours


def test_four_point_is_eq_1_44():
    for idx in itertools.product(range(3), repeat=4):
        a, b, c, d = idx
        expected = K3[a, b] * K3[c, d] + K3[a, c] * K3[b, d] + K3[a, d] * K3[b, c]
        assert gaussian_moment(K3, idx) == pytest.approx(expected, rel=1e-14, abs=1e-15)


def test_recursion_matches_brute_force_sum_over_pairings():
    rng = np.random.default_rng(1)
    for _ in range(40):
        m = int(rng.integers(0, 9))
        idx = tuple(int(i) for i in rng.integers(0, 3, size=m))
        assert gaussian_moment(K3, idx) == pytest.approx(
            brute_force_moment(K3, idx), rel=1e-12, abs=1e-14
        )


def test_odd_moments_vanish_and_empty_moment_is_one():
    assert gaussian_moment(K3, (0, 1, 2)) == 0.0
    assert gaussian_moment(K3, (2,) * 7) == 0.0
    assert gaussian_moment(K3, ()) == 1.0


@pytest.mark.parametrize("K", [0.3, 1.0, 2.7])
def test_one_dimensional_moments_eq_1_15(K):
    for n in range(0, 13):
        expected = 0.0 if n % 2 else double_factorial(n - 1) * K ** (n // 2)
        assert gaussian_moment_1d(K, n) == pytest.approx(expected, rel=1e-14)
        assert gaussian_moment(K, (0,) * n) == pytest.approx(expected, rel=1e-14)


def test_moments_agree_with_quadrature():
    K = K3[:2, :2]
    for idx in [
        (0, 0),
        (0, 1),
        (0, 0, 1, 1),
        (0, 1, 1, 1),
        (0, 0, 0, 1, 1, 1),
        (0,) * 4 + (1,) * 4,
    ]:
        quadrature = gaussian_expectation(lambda z, idx=idx: np.prod(z[..., list(idx)], axis=-1), K)
        assert gaussian_moment(K, idx) == pytest.approx(quadrature, rel=1e-10)


def test_six_point_moment_agrees_with_monte_carlo():
    idx = (0, 0, 1, 2, 2, 2)
    z = np.random.default_rng(2).normal(size=(400_000, 3)) @ np.linalg.cholesky(K3).T
    check = stats.honest_check("6-point", stats.mean_estimate(np.prod(z[:, idx], axis=1)),
                               gaussian_moment(K3, idx))  # fmt: skip
    assert check.ok, str(stats.AgreementTable([check]))


def test_contractor_reuses_its_memo():
    wick = WickContractor(K3)
    assert wick((0, 1, 1, 0)) == wick((1, 0, 0, 1)) == wick((0, 0, 1, 1))
    assert wick.dimension == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: count_pairings(-1), "n must be an integer >= 0"),
        (lambda: list(pairings(2.0)), "n must be an integer >= 0"),
        (lambda: double_factorial(-2), "n must be an integer >= -1"),
        (lambda: gaussian_moment(-1.0, (0, 0)), "variance"),
        (lambda: gaussian_moment([[1.0, 0.5], [0.4, 1.0]], (0, 1)), "symmetric"),
        (lambda: gaussian_moment([[1.0, 2.0], [2.0, 1.0]], (0, 1)), "positive semidefinite"),
        (lambda: gaussian_moment([[np.nan, 0.0], [0.0, 1.0]], (0, 1)), "finite"),
        (lambda: gaussian_moment(K3, (0, 3)), r"indices must be integers in \[0, 3\)"),
        (lambda: gaussian_moment(K3, (0, -1)), "indices"),
        (lambda: gaussian_moment(np.ones((2, 3)), (0,)), "square"),
        (lambda: gaussian_moment_1d(K3, 2), "scalar"),
        (lambda: gaussian_moment_1d(1.0, -2), "n must be an integer >= 0"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
