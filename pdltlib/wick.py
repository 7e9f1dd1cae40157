"""Wick's theorem: every moment of a zero-mean Gaussian distribution.

For z ~ N(0, K) with an N x N covariance K (book eq. 1.34), Wick's theorem (book eq. 1.45,
restated as (1.50) and, in the bracket notation of (1.68), as (1.69)) says

    E[z_{mu_1} ... z_{mu_2m}] = sum over all pairings of K_{mu_k1 mu_k2} ... K_{mu_k(2m-1) mu_k2m},

a sum over the (2m - 1)!! ways of splitting the 2m positions into m pairs, while every odd
moment vanishes. For a single variable all pairings are equal and (book eq. 1.15)

    E[z^{2m}] = (2m - 1)!! K^m,    (2m - 1)!! = (2m)! / (2^m m!)   (book eq. 1.16).

:func:`pairings` enumerates the pairings; :func:`gaussian_moment` evaluates the sum without
enumerating them, by the recursion that pairs the first position with each of the others,
E[z_a z_rest] = sum_b K_ab E[z_{rest without b}], memoized on the multiset of remaining indices
(moments are symmetric in their indices), so it costs a number of steps polynomial in 2m for a
fixed N.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np

from pdltlib.validation import covariance

__all__ = [
    "double_factorial",
    "count_pairings",
    "pairings",
    "gaussian_moment",
    "gaussian_moment_1d",
    "WickContractor",
]


def _non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def double_factorial(n: int) -> int:
    """n!! = n (n - 2) (n - 4) ... down to 1 or 2, with (-1)!! = 0!! = 1 (book eq. 1.16)."""
    if isinstance(n, bool) or not isinstance(n, Integral) or n < -1:
        raise ValueError(f"n must be an integer >= -1, got {n!r}")
    result = 1
    for factor in range(int(n), 1, -2):
        result *= factor
    return result


def count_pairings(n: int) -> int:
    """The number of perfect pairings of n positions: (n - 1)!! for even n, 0 for odd n.

    Book: the number of terms of Wick's theorem (1.45).
    """
    n = _non_negative_int(n, "n")
    return double_factorial(n - 1) if n % 2 == 0 else 0


def pairings(n: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """All perfect pairings of the positions 0, ..., n - 1: the terms of Wick's sum (1.45).

    Each pairing is a tuple of m = n / 2 pairs (i, j) with i < j, ordered by their first
    element; position 0 is paired in turn with 1, 2, ..., n - 1, then the rest recursively.
    There are (n - 1)!! of them for even n (15 for n = 6, as listed after (1.45)) and none for
    odd n, which is why odd Gaussian moments vanish.
    """
    n = _non_negative_int(n, "n")
    if n % 2 == 0:
        yield from _pairings(tuple(range(n)))


def _pairings(positions: tuple[int, ...]) -> Iterator[tuple[tuple[int, int], ...]]:
    if not positions:
        yield ()
        return
    first, rest = positions[0], positions[1:]
    for k, partner in enumerate(rest):
        for tail in _pairings(rest[:k] + rest[k + 1 :]):
            yield ((first, partner), *tail)


class WickContractor:
    """Gaussian moments E[z_{mu_1} ... z_{mu_M}] for one covariance K, with a shared memo.

    Calling it with an index sequence returns Wick's sum (1.45); results for every multiset of
    indices met along the recursion are kept, so many moments of the same K (as in the
    perturbation series of :mod:`pdltlib.action`) cost little more than one.
    """

    def __init__(self, K):
        self.K, _ = covariance(K)
        self._memo: dict[tuple[int, ...], float] = {(): 1.0}

    @property
    def dimension(self) -> int:
        return self.K.shape[0]

    def __call__(self, indices: Sequence[int]) -> float:
        key = tuple(sorted(self._check_indices(indices)))
        if len(key) % 2:
            return 0.0
        return self._moment(key)

    def _check_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
        n = self.dimension
        if not all(
            isinstance(i, Integral) and not isinstance(i, bool) and 0 <= i < n for i in indices
        ):
            raise ValueError(f"indices must be integers in [0, {n}), got {tuple(indices)}")
        return tuple(int(i) for i in indices)

    def _moment(self, key: tuple[int, ...]) -> float:
        """Wick's sum for a sorted index tuple of even length: pair its first index, recurse."""
        if key in self._memo:
            return self._memo[key]
        first, rest = key[0], key[1:]
        total = 0.0
        for partner, multiplicity in Counter(rest).items():
            remaining = list(rest)
            remaining.remove(partner)  # rest is sorted, so remaining stays sorted
            total += multiplicity * self.K[first, partner] * self._moment(tuple(remaining))
        self._memo[key] = total
        return total


def gaussian_moment(K, indices: Sequence[int]) -> float:
    """E[z_{mu_1} ... z_{mu_M}] for z ~ N(0, K), by Wick's theorem (book eq. 1.45).

    Args:
        K: an (N, N) symmetric positive-semidefinite covariance, or a variance (then N = 1 and
            every index is 0).
        indices: the M indices mu_i, each in [0, N); repeated indices give higher powers.

    Returns:
        The sum over the (M - 1)!! pairings of products of covariances; 0 for odd M, 1 for M = 0.
    """
    return WickContractor(K)(indices)


def gaussian_moment_1d(K: float, n: int) -> float:
    """E[z^n] = (n - 1)!! K^{n/2} for z ~ N(0, K) and even n, 0 for odd n (book eq. 1.15)."""
    variance, _ = covariance(K)
    if variance.shape != (1, 1):
        raise ValueError(f"K must be a variance (a scalar), got shape {np.shape(K)}")
    n = _non_negative_int(n, "n")
    if n % 2:
        return 0.0
    return float(double_factorial(n - 1)) * float(variance[0, 0]) ** (n // 2)
