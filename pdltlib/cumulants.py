"""Moments and cumulants: full and connected correlators (book section 1.2).

The book defines the connected M-point correlator inductively (book eq. 1.56): the full
correlator is the sum, over all ways of dividing the M variables into clusters, of the product
of the connected correlators of the clusters,

    E[z_1 ... z_M] = sum_{set partitions pi of {1..M}} prod_{B in pi} E[prod_{i in B} z_i]|_conn

(the one-cluster partition is the connected correlator itself). Moebius inversion on the lattice
of set partitions solves this for the connected correlator:

    E[z_1 ... z_M]|_conn = sum_pi (-1)^{|pi| - 1} (|pi| - 1)! prod_{B in pi} E[prod_{i in B} z_i],

which reproduces (1.53) for M = 2, (1.54) for M = 4 with zero mean and (1.61) for M = 6.
:func:`connected_correlator_estimate` applies it to samples, with a jackknife standard error.
For a single variable the partitions group by block sizes and both directions become the
recursion m_n = sum_{k=1}^n C(n - 1, k - 1) kappa_k m_{n-k} between moments m_n = E[z^n] and
cumulants kappa_n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral

import numpy as np

from pdltlib.stats import Estimate, jackknife

__all__ = [
    "moments_to_cumulants",
    "cumulants_to_moments",
    "set_partitions",
    "bell_number",
    "connected_correlator",
    "full_correlator",
    "connected_four_point",
    "connected_correlator_estimate",
]

_MAX_ORDER = 10  # Bell(10) = 115975 set partitions; Bell(12) would be 4.2 million


def _sequence(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (orders 1, 2, ...)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def moments_to_cumulants(moments: Sequence[float]) -> np.ndarray:
    """Cumulants kappa_1..kappa_n of one variable from its moments m_1..m_n (m_0 = 1).

    kappa_n = m_n - sum_{k=1}^{n-1} C(n-1, k-1) kappa_k m_{n-k}: the single-variable case of
    (1.56) solved for the connected correlator. kappa_1 is the mean, kappa_2 the variance.
    """
    m = np.concatenate([[1.0], _sequence(moments, "moments")])
    kappa = np.zeros_like(m)
    for n in range(1, m.size):
        kappa[n] = m[n] - sum(math.comb(n - 1, k - 1) * kappa[k] * m[n - k] for k in range(1, n))
    return kappa[1:]


def cumulants_to_moments(cumulants: Sequence[float]) -> np.ndarray:
    """Moments m_1..m_n of one variable from its cumulants kappa_1..kappa_n.

    m_n = sum_{k=1}^{n} C(n-1, k-1) kappa_k m_{n-k} with m_0 = 1: the single-variable case of
    the book's definition (1.56).
    """
    kappa = np.concatenate([[0.0], _sequence(cumulants, "cumulants")])
    m = np.zeros_like(kappa)
    m[0] = 1.0
    for n in range(1, kappa.size):
        m[n] = sum(math.comb(n - 1, k - 1) * kappa[k] * m[n - k] for k in range(1, n + 1))
    return m[1:]


def set_partitions(items: Sequence) -> Iterator[tuple[tuple, ...]]:
    """All partitions of ``items`` into non-empty blocks ("subdivisions into clusters", (1.56)).

    Blocks keep the order of ``items``; there are Bell(len(items)) partitions (1, 1, 2, 5, 15,
    52, ...). The first item either starts a new block or joins a block of a partition of the
    rest.
    """
    items = tuple(items)
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield ((first,), *partition)
        for k, block in enumerate(partition):
            yield (*partition[:k], (first, *block), *partition[k + 1 :])


def bell_number(n: int) -> int:
    """The number of set partitions of n items (the Bell number), by the Bell triangle.

    Book: the number of terms of the moment-cumulant relation (1.56)-(1.57). Not a result of the
    book itself: a combinatorial utility.
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    row = [1]
    for _ in range(n):
        new = [row[-1]]
        for value in row:
            new.append(new[-1] + value)
        row = new
    return row[0]


def _cached(function: Callable, name: str) -> Callable:
    """Memoize a correlator function on the sorted index tuple (correlators are symmetric)."""
    memo: dict = {}

    def cached(block: tuple):
        key = tuple(sorted(block))
        if key not in memo:
            memo[key] = function(key)
            if not np.all(np.isfinite(memo[key])):
                raise ValueError(f"{name}{key} returned a non-finite value {memo[key]!r}")
        return memo[key]

    return cached


def _partition_sum(function: Callable, indices: Sequence, name: str, weight: Callable[[int], int]):
    indices = tuple(indices)
    if not 1 <= len(indices) <= _MAX_ORDER:
        raise ValueError(
            f"indices must hold between 1 and {_MAX_ORDER} entries (the sum runs over "
            f"Bell(M) set partitions), got {len(indices)}"
        )
    cached = _cached(function, name)
    total = 0.0
    for partition in set_partitions(indices):
        term = weight(len(partition))
        for block in partition:
            term = term * cached(block)
        total = total + term
    return total


def connected_correlator(moment: Callable[[tuple], float], indices: Sequence):
    """The connected correlator (cumulant) E[z_{i_1} ... z_{i_M}]|_connected, book eq. (1.56).

    Args:
        moment: maps a tuple of indices (sorted; any hashable labels) to the full correlator
            E[prod z_i]. It may return floats or arrays (e.g. per-replica sample moments); they
            are combined with ``*`` and ``+``. Each distinct block is asked for once.
        indices: the M labels i_1..i_M (repeats allowed: E[z^4]|_conn has indices (0, 0, 0, 0)),
            1 <= M <= 10.

    Returns:
        sum over set partitions pi of (-1)^{|pi|-1} (|pi|-1)! prod_{B in pi} moment(B), the
        Moebius inversion of (1.56). Means are not assumed to vanish.
    """
    return _partition_sum(
        moment, indices, "moment", lambda blocks: (-1) ** (blocks - 1) * math.factorial(blocks - 1)
    )


def full_correlator(connected: Callable[[tuple], float], indices: Sequence):
    """The full correlator from connected ones: the book's definition (1.56) read forwards.

    sum over set partitions pi of ``indices`` of prod_{B in pi} connected(B); ``connected`` maps
    a sorted tuple of labels to the connected correlator of that cluster.
    """
    return _partition_sum(connected, indices, "connected", lambda blocks: 1)


def connected_four_point(two_point, four_point) -> np.ndarray:
    """E[z_a z_b z_c z_d]|_conn for zero-mean variables, book eq. (1.54).

    Args:
        two_point: E[z_a z_b], shape (N, N) (or a scalar for one variable).
        four_point: E[z_a z_b z_c z_d], shape (N, N, N, N) (or a scalar).

    Returns:
        The four-point moment minus its three pairings of two-point moments, same shape as
        ``four_point``; it vanishes for a Gaussian (1.55).
    """
    m2 = np.asarray(two_point, dtype=np.float64)
    m4 = np.asarray(four_point, dtype=np.float64)
    if m2.ndim == 0 and m4.ndim == 0:
        return m4 - 3 * m2**2
    n = m2.shape[0] if m2.ndim else 0
    if m2.shape != (n, n) or m4.shape != (n,) * 4:
        raise ValueError(
            f"two_point must be (N, N) and four_point (N, N, N, N); got {m2.shape}, {m4.shape}"
        )
    return m4 - (
        np.einsum("ab,cd->abcd", m2, m2)
        + np.einsum("ac,bd->abcd", m2, m2)
        + np.einsum("ad,bc->abcd", m2, m2)
    )


def connected_correlator_estimate(samples, indices: Sequence[int], *, n_blocks: int = 200):
    """Monte Carlo estimate of E[z_{i_1} ... z_{i_M}]|_connected from independent samples.

    The sample moments of every sub-cluster of ``indices`` enter the Moebius formula of
    :func:`connected_correlator` (means are not assumed to vanish). The standard error is a
    delete-one-block jackknife over ``n_blocks`` equal contiguous blocks of samples (the
    trailing n mod n_blocks samples are dropped), which also removes the O(1/n) bias of the
    products of sample moments.

    Args:
        samples: shape (n, N) (n independent draws of N variables), or (n,) for one variable.
        indices: the labels i_1..i_M in [0, N) (all 0 for one variable), 1 <= M <= 10.
        n_blocks: number of jackknife blocks, between 2 and n.

    Returns:
        A scalar :class:`pdltlib.stats.Estimate`.

    Book: the connected correlators of section 1.2 (eqs. (1.54), (1.56)), estimated from samples.
    """
    z = np.asarray(samples, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise ValueError(f"samples must have shape (n, N) or (n,), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("samples contain non-finite values (NaN or inf)")
    indices = tuple(indices)
    n, dim = z.shape
    if not all(isinstance(i, Integral) and 0 <= i < dim for i in indices):
        raise ValueError(f"indices must be integers in [0, {dim}), got {indices}")
    if not 1 <= len(indices) <= _MAX_ORDER:
        raise ValueError(f"indices must hold between 1 and {_MAX_ORDER} entries")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, Integral) or not 2 <= n_blocks <= n:
        raise ValueError(f"n_blocks must be an integer between 2 and n = {n}, got {n_blocks!r}")
    size = n // n_blocks
    blocks = sorted(
        {
            tuple(sorted(indices[k] for k in range(len(indices)) if mask >> k & 1))
            for mask in range(1, 1 << len(indices))
        }
    )
    block_means = [
        np.prod(z[: size * n_blocks, list(b)], axis=1).reshape(n_blocks, size).mean(axis=1)
        for b in blocks
    ]

    def statistic(*means):
        table = dict(zip(blocks, means, strict=True))
        return connected_correlator(table.__getitem__, indices)

    result = jackknife(statistic, *block_means, n_blocks=n_blocks)
    return Estimate(float(result.value), float(result.stderr), n)
