"""The quartic action: the simplest nearly-Gaussian distribution (book section 1.3).

For N variables z_mu with a positive-definite covariance K_{mu nu} (inverse K^{mu nu}) and a
totally symmetric quartic coupling V^{mu nu rho lambda} (upper indices in the book; here the
array ``V[mu, nu, rho, lambda]``), the quartic action (book eq. 1.71) is

    S(z) = 1/2 sum K^{mu nu} z_mu z_nu + eps/4! sum V^{mu nu rho lambda} z_mu z_nu z_rho z_lambda,

and p(z) = exp(-S(z)) / Z (book eq. 1.65). Every expectation is a ratio of Gaussian brackets,

    E[O(z)] = <O(z) exp(-q(z))>_K / <exp(-q(z))>_K,   q(z) = eps/24 sum V z z z z,

(book eqs. 1.72 and 1.74-1.75). This module computes

* first-order perturbation theory: the two-point correlator (1.74)
  E[z z] = K - eps/2 V K K K and the connected four-point correlator (1.78)
  E[z z z z]|_conn = -eps V K K K K;
* the perturbation series to any order in eps (:func:`moment_series`,
  :func:`connected_four_point_series`, :func:`partition_ratio_series`): expand exp(-q) in eps,
  evaluate every Gaussian bracket exactly with Wick's theorem (1.69), and divide the numerator
  series by the partition-function series. The O(eps^2) term is the truncation error of the
  first-order results;
* exact expectations by deterministic quadrature for N <= 3 (:func:`expectation`,
  :func:`exact_correlators`, :func:`partition_ratio`);
* exact samples (:func:`sample_quartic`): rejection from N(0, K), accepting a proposal z with
  probability exp(-q(z)) <= 1. The acceptance probability is Z / sqrt(|2 pi K|), the ratio (1.72).

The distribution is normalizable, and the sampler and quadrature are valid, only when
eps * V is a non-negative quartic form (q(z) >= 0 for all z); this is checked. For a negative
form the action is unbounded below and only the (asymptotic) perturbation series exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from itertools import combinations_with_replacement, permutations
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from pdltlib.cumulants import connected_four_point
from pdltlib.gaussian import gaussian_expectation
from pdltlib.validation import SYMMETRY_TOLERANCE, covariance
from pdltlib.wick import WickContractor

__all__ = [
    "quartic_action",
    "two_point_first_order",
    "connected_four_point_first_order",
    "moment_series",
    "connected_four_point_series",
    "partition_ratio_series",
    "expectation",
    "partition_ratio",
    "exact_correlators",
    "QuarticSample",
    "sample_quartic",
]

_POSITIVE_TOLERANCE = 1e-12  # smallest eigenvalue of K relative to the largest
_FORM_TOLERANCE = 1e-12  # a quartic-form minimum above -this * max|eps V| counts as >= 0
_MAX_QUADRATURE_DIM = 3
_MAX_SERIES_TERMS = 200_000  # (monomials of q^0..q^order) x (distinct index multisets)
_MAX_ROUNDS = 1000  # rounds of 1.25 n_samples proposals in sample_quartic


class _Couplings(NamedTuple):
    K: np.ndarray  # (N, N) covariance, positive definite
    V: np.ndarray  # (N, N, N, N) totally symmetric
    scalar: bool  # given as scalars (N = 1): results are returned as scalars


def _couplings(K, V) -> _Couplings:
    """Validate the quadratic and quartic couplings of (1.71)."""
    kernel, scalar = covariance(K)
    eigenvalues = np.linalg.eigvalsh(kernel)
    if eigenvalues[0] <= _POSITIVE_TOLERANCE * eigenvalues[-1] or eigenvalues[-1] <= 0:
        raise ValueError(
            f"K must be positive definite (the action needs its inverse); its eigenvalues are "
            f"{eigenvalues.tolist()}"
        )
    n = kernel.shape[0]
    vertex = np.asarray(V, dtype=np.float64)
    if scalar:
        if vertex.ndim != 0:
            raise ValueError(f"with a scalar K, V must be a scalar, got shape {vertex.shape}")
        vertex = vertex.reshape(1, 1, 1, 1)
    elif vertex.shape != (n,) * 4:
        raise ValueError(f"V must have shape {(n,) * 4} for a {n} x {n} K, got {vertex.shape}")
    if not np.all(np.isfinite(vertex)):
        raise ValueError("V must have finite entries")
    scale = float(np.max(np.abs(vertex)))
    for perm in permutations(range(4)):
        if np.max(np.abs(vertex - vertex.transpose(perm))) > SYMMETRY_TOLERANCE * scale:
            raise ValueError("V must be totally symmetric in its four indices (book eq. 1.71)")
    return _Couplings(kernel, vertex, scalar)


def _epsilon(eps) -> float:
    value = float(eps)
    if not np.isfinite(value):
        raise ValueError(f"eps must be finite, got {eps!r}")
    return value


def _order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    return order


def _quartic_form(z, W):
    """sum_{abcd} W_abcd z_a z_b z_c z_d for z of shape (..., N) (NumPy or JAX arrays)."""
    xp = jnp if isinstance(z, jax.Array) else np
    return xp.einsum("abcd,...a,...b,...c,...d->...", W, z, z, z, z)


def quartic_action(z, K, V, eps: float):
    """The quartic action S(z) of book eq. (1.71), without the normalization log Z.

    Args:
        z: points of shape (..., N), or (...) when K and V are scalars.
        K: the covariance K_{mu nu} (the action uses its inverse K^{mu nu}), positive definite.
        V: the totally symmetric quartic coupling, shape (N, N, N, N), or a scalar.
        eps: the small parameter multiplying V.
    """
    c = _couplings(K, V)
    eps = _epsilon(eps)
    z = jnp.asarray(z, dtype=jnp.float64)
    if c.scalar:
        z = z[..., None]
    if z.shape[-1] != c.K.shape[0]:
        raise ValueError(f"z must have a last axis of size {c.K.shape[0]}, got shape {z.shape}")
    inverse = jnp.asarray(np.linalg.inv(c.K))
    quadratic = 0.5 * jnp.einsum("...a,ab,...b->...", z, inverse, z)
    return quadratic + eps / 24 * _quartic_form(z, jnp.asarray(c.V))


def _shape_result(array: np.ndarray, scalar: bool, leading: int):
    """Drop the index axes of an N = 1 problem given by scalars."""
    if not scalar:
        return array
    return array.reshape(array.shape[:leading]) if leading else float(array.reshape(()))


def two_point_first_order(K, V, eps: float):
    """E[z_a z_b] = K_ab - eps/2 sum V^{rstu} K_ar K_bs K_tu + O(eps^2), book eq. (1.74).

    For N = 1: K - eps V K^3 / 2.
    """
    c = _couplings(K, V)
    eps = _epsilon(eps)
    shift = np.einsum("rstu,ar,bs,tu->ab", c.V, c.K, c.K, c.K)
    return _shape_result(c.K - eps / 2 * shift, c.scalar, 0)


def connected_four_point_first_order(K, V, eps: float):
    """E[z_a z_b z_c z_d]|_conn = -eps sum V^{rstu} K_ar K_bs K_ct K_du + O(eps^2), eq. (1.78).

    For N = 1: -eps V K^4.
    """
    c = _couplings(K, V)
    eps = _epsilon(eps)
    tensor = -eps * np.einsum("rstu,ar,bs,ct,du->abcd", c.V, c.K, c.K, c.K, c.K)
    return _shape_result(tensor, c.scalar, 0)


def _power_polynomials(V: np.ndarray, order: int) -> list[dict[tuple[int, ...], float]]:
    """(sum V z z z z)^j for j = 0..order as {sorted index multiset: coefficient}."""
    n = V.shape[0]
    quartic = {}
    for key in combinations_with_replacement(range(n), 4):
        arrangements = math.factorial(4) // math.prod(
            math.factorial(key.count(i)) for i in set(key)
        )
        if V[key] != 0:
            quartic[key] = arrangements * float(V[key])
    powers = [{(): 1.0}]
    for _ in range(order):
        product: dict[tuple[int, ...], float] = {}
        for key, coefficient in powers[-1].items():
            for term, value in quartic.items():
                merged = tuple(sorted(key + term))
                product[merged] = product.get(merged, 0.0) + coefficient * value
        powers.append(product)
    return powers


def _numerator_series(c: _Couplings, m: int, order: int) -> np.ndarray:
    """a_j = (-1/24)^j / j! <z_{mu_1} ... z_{mu_m} (V z z z z)^j>_K, shape (order+1, N, ..., N).

    The eps^j coefficients of <z...z exp(-q)>_K (the numerator of (1.74)-(1.75)), every
    Gaussian bracket evaluated exactly by Wick's theorem (1.69).
    """
    n = c.K.shape[0]
    multisets = list(combinations_with_replacement(range(n), m))
    work = len(multisets) * sum(math.comb(4 * j + n - 1, n - 1) for j in range(order + 1))
    if work > _MAX_SERIES_TERMS:
        raise ValueError(
            f"the series needs {work:.2e} Gaussian moments for N = {n}, m = {m}, order = {order}; "
            "lower the order"
        )
    powers = _power_polynomials(c.V, order)
    wick = WickContractor(c.K)
    series = np.zeros((order + 1,) + (n,) * m)
    for mu in multisets:
        values = [
            (-1 / 24) ** j
            / math.factorial(j)
            * math.fsum(coef * wick(mu + key) for key, coef in powers[j].items())
            for j in range(order + 1)
        ]
        for arrangement in set(permutations(mu)):
            series[(slice(None), *arrangement)] = values
    return series


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Power-series quotient c = a / b (b_0 = 1), coefficient by coefficient."""
    quotient = np.zeros_like(numerator)
    for j in range(numerator.shape[0]):
        correction = sum(denominator[i] * quotient[j - i] for i in range(1, j + 1))
        quotient[j] = (numerator[j] - correction) / denominator[0]
    return quotient


def partition_ratio_series(K, V, order: int) -> np.ndarray:
    """eps^j coefficients of Z / sqrt(|2 pi K|) = <exp(-q(z))>_K, j = 0..order (book eq. 1.72).

    b_j = (-1)^j / (24^j j!) <(V z z z z)^j>_K by Wick's theorem; b_1 = -(1/8) V K K, the
    first-order term of (1.73). For N = 1: b_j = (-V/24)^j (4j - 1)!! K^{2j} / j!.
    """
    c = _couplings(K, V)
    return _numerator_series(c, 0, _order(order))


def moment_series(K, V, m: int, order: int) -> np.ndarray:
    """eps^j coefficients of the full correlator E[z_{mu_1} ... z_{mu_m}] of the quartic action.

    E[z...z] = <z...z exp(-q)>_K / <exp(-q)>_K with both brackets expanded in eps (every
    Gaussian moment by Wick's theorem) and the quotient taken as a power series: the
    perturbation theory of (1.74)-(1.75) carried to any order. Coefficients 0 and 1 of m = 2 are
    K and -1/2 V K K K of (1.74). The series is asymptotic (its coefficients grow like (2j)!),
    so it is useful at small eps V K^2.

    Args:
        K: covariance (N, N) or a variance; V: quartic coupling (N, N, N, N) or a scalar.
        m: number of z's (>= 0); odd m gives zeros.
        order: highest power of eps.

    Returns:
        Shape (order + 1, N, ..., N) with m index axes, or (order + 1,) for scalar K and V.
    """
    c = _couplings(K, V)
    order = _order(order)
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"m must be an integer >= 0, got {m!r}")
    quotient = _divide(_numerator_series(c, m, order), _numerator_series(c, 0, order))
    return _shape_result(quotient, c.scalar, 1)


def connected_four_point_series(K, V, order: int) -> np.ndarray:
    """eps^j coefficients of E[z_a z_b z_c z_d]|_conn (1.54) of the quartic action.

    The zero-mean connected correlator M4 - (M2 M2 + 2 other pairings) with each product of
    series multiplied out; coefficient 0 vanishes (1.55) and coefficient 1 is -V K K K K (1.78).
    Shape (order + 1, N, N, N, N), or (order + 1,) for scalar K and V.
    """
    c = _couplings(K, V)
    order = _order(order)
    denominator = _numerator_series(c, 0, order)
    m2 = _divide(_numerator_series(c, 2, order), denominator)
    m4 = _divide(_numerator_series(c, 4, order), denominator)
    connected = m4.copy()
    for j in range(order + 1):
        for i in range(j + 1):
            a, b = m2[i], m2[j - i]
            connected[j] -= (
                np.einsum("ab,cd->abcd", a, b)
                + np.einsum("ac,bd->abcd", a, b)
                + np.einsum("ad,bc->abcd", a, b)
            )
    return _shape_result(connected, c.scalar, 1)


def _quartic_minimum(W: np.ndarray) -> tuple[float, np.ndarray]:
    """The minimum of sum W z z z z over unit vectors z, and where it is.

    N = 1 is exact. Otherwise: 4096 N fixed pseudo-random directions, then BFGS on z / |z| from
    the eight lowest; accurate for the small N of this module.
    """
    n = W.shape[0]
    if n == 1:
        return float(W.reshape(())), np.ones(1)
    directions = np.random.default_rng(0).normal(size=(4096 * n, n))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    values = _quartic_form(directions, W)

    def on_sphere(x):
        return float(_quartic_form(x / np.linalg.norm(x), W))

    best_value, best = np.inf, directions[0]
    for start in directions[np.argsort(values)[:8]]:
        result = minimize(on_sphere, start, method="BFGS")
        if result.fun < best_value:
            best_value, best = float(result.fun), result.x / np.linalg.norm(result.x)
    return min(best_value, float(values.min())), best


def _require_non_negative(c: _Couplings, eps: float) -> np.ndarray:
    """Return W = eps V / 24 after checking that q(z) = sum W z z z z >= 0 for all z."""
    W = eps * c.V / 24
    scale = float(np.max(np.abs(W)))
    minimum, where = _quartic_minimum(W)
    if minimum < -_FORM_TOLERANCE * scale:
        raise ValueError(
            f"eps * V must be a non-negative quartic form (q(z) >= 0 for all z): its minimum on "
            f"the unit sphere is {minimum * 24:.3e} at z = {where.tolist()}, so the quartic "
            "action is unbounded below and exp(-S) is not normalizable"
        )
    return W


def _weight(W: np.ndarray, scalar: bool) -> Callable[[np.ndarray], np.ndarray]:
    """exp(-q(z)) in the calling convention of gaussian_expectation."""
    if scalar:
        w = float(W.reshape(()))
        return lambda z: np.exp(-w * z**4)
    return lambda z: np.exp(-_quartic_form(z, W))


def _quadrature_couplings(K, V, eps) -> tuple[_Couplings, np.ndarray]:
    c = _couplings(K, V)
    if c.K.shape[0] > _MAX_QUADRATURE_DIM:
        raise ValueError(
            f"exact quadrature supports N <= {_MAX_QUADRATURE_DIM} variables, got N = "
            f"{c.K.shape[0]}: use sample_quartic or the perturbation series"
        )
    return c, _require_non_negative(c, _epsilon(eps))


def partition_ratio(K, V, eps: float, **quadrature_options) -> float:
    """Z / sqrt(|2 pi K|) = <exp(-eps/24 V z z z z)>_K exactly, by quadrature (book eq. 1.72).

    This is also the acceptance probability of :func:`sample_quartic`. ``quadrature_options``
    go to :func:`pdltlib.gaussian.gaussian_expectation`; N <= 3.
    """
    c, W = _quadrature_couplings(K, V, eps)
    kernel = c.K[0, 0] if c.scalar else c.K
    return gaussian_expectation(_weight(W, c.scalar), kernel, **quadrature_options)


def expectation(f: Callable, K, V, eps: float, **quadrature_options) -> float:
    """E[f(z)] under the quartic action (1.71), exactly, by deterministic quadrature (N <= 3).

    E[f] = <f exp(-q)>_K / <exp(-q)>_K (book eqs. 1.65 and 1.68), both brackets by
    :func:`pdltlib.gaussian.gaussian_expectation` (about 1e-12 relative accuracy for K ~ 1).

    Args:
        f: as for gaussian_expectation: a function of z of shape (...) for scalar K, or of
            shape (..., N) for an (N, N) K, returning one value per point.
        K, V, eps: the couplings of (1.71); eps V must be a non-negative quartic form.
        **quadrature_options: ``order``, ``cutoff``, ``panel_width`` of gaussian_expectation.
    """
    c, W = _quadrature_couplings(K, V, eps)
    kernel = c.K[0, 0] if c.scalar else c.K
    weight = _weight(W, c.scalar)
    numerator = gaussian_expectation(lambda z: f(z) * weight(z), kernel, **quadrature_options)
    return numerator / gaussian_expectation(weight, kernel, **quadrature_options)


def exact_correlators(K, V, eps: float, **quadrature_options) -> tuple:
    """The exact two-point correlator and connected four-point correlator (1.54), N <= 3.

    Every distinct moment E[z_a z_b] and E[z_a z_b z_c z_d] is one quadrature (:func:`expectation`);
    N = 2 takes a fraction of a second, N = 3 tens of seconds.

    Returns:
        (E[z_a z_b] of shape (N, N), E[z_a z_b z_c z_d]|_conn of shape (N, N, N, N)), or two
        floats for scalar K and V.
    """
    c, W = _quadrature_couplings(K, V, eps)
    n = c.K.shape[0]
    kernel = c.K[0, 0] if c.scalar else c.K
    weight = _weight(W, c.scalar)
    z_norm = gaussian_expectation(weight, kernel, **quadrature_options)

    def moment(indices: tuple[int, ...]) -> float:
        if c.scalar:
            integrand = lambda z: z ** len(indices) * weight(z)  # noqa: E731
        else:
            integrand = lambda z: np.prod(z[..., list(indices)], axis=-1) * weight(z)  # noqa: E731
        return gaussian_expectation(integrand, kernel, **quadrature_options) / z_norm

    moments = {}
    for m in (2, 4):
        tensor = np.zeros((n,) * m)
        for mu in combinations_with_replacement(range(n), m):
            value = moment(mu)
            for arrangement in set(permutations(mu)):
                tensor[arrangement] = value
        moments[m] = tensor
    connected = connected_four_point(moments[2], moments[4])
    if c.scalar:
        return float(moments[2].reshape(())), float(connected.reshape(()))
    return moments[2], connected


class QuarticSample(NamedTuple):
    """Exact samples of the quartic action and the Gaussian proposals each one used.

    Book: samples of the quartic action (1.71), drawn by :func:`sample_quartic`.
    """

    z: np.ndarray  # (n_samples, N), or (n_samples,) for scalar K and V
    proposals: np.ndarray  # (n_samples,) integers >= 1; their mean is sqrt(|2 pi K|) / Z


@partial(jax.jit, static_argnames=("size",))
def _propose(key, L, W, size: int):
    """``size`` Gaussian proposals z = L xi, their accept flags u < exp(-q(z)), and min q."""
    k_normal, k_uniform = jax.random.split(key)
    z = jax.random.normal(k_normal, (size, L.shape[0])) @ L.T
    q = _quartic_form(z, W)
    accept = jnp.log(jax.random.uniform(k_uniform, (size,))) < -q
    return z, accept, jnp.min(q)


def sample_quartic(key, K, V, eps: float, n_samples: int) -> QuarticSample:
    """Exact, independent samples of p(z) = exp(-S(z)) / Z for the quartic action (1.71).

    Rejection sampling: propose z ~ N(0, K) and accept it with probability exp(-q(z)),
    q(z) = eps/24 sum V z z z z. The accepted z have density proportional to
    exp(-z K^{-1} z / 2) exp(-q(z)) = exp(-S(z)), exactly, and are independent. The acceptance
    probability is <exp(-q)>_K = Z / sqrt(|2 pi K|) (book eq. 1.72), so the number of proposals
    per sample is geometric with mean sqrt(|2 pi K|) / Z. Proposals are drawn in vectorized
    rounds of 1.25 n_samples (one round when the acceptance exceeds 0.8; round r uses
    ``jax.random.fold_in(key, r)``), and the first ``n_samples`` accepted ones are kept: the
    key fixes every number.

    Args:
        key: a JAX PRNG key.
        K, V, eps: the couplings of (1.71); eps V must be a non-negative quartic form, so that
            exp(-q) <= 1.
        n_samples: number of samples (>= 1).

    Raises:
        ValueError: for invalid couplings, a negative quartic form (including any proposal
            with q(z) < 0, which the sampler also watches for), n_samples < 1, or an
            acceptance rate so small that 1000 rounds do not suffice.
    """
    c = _couplings(K, V)
    W = jnp.asarray(_require_non_negative(c, _epsilon(eps)))
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    L = jnp.asarray(np.linalg.cholesky(c.K))
    samples, proposals = [], []
    found, carried = 0, 0  # accepted so far; rejections since the last acceptance
    size = n_samples + n_samples // 4 + 64
    for round_ in range(_MAX_ROUNDS):
        z, accept, lowest = _propose(jax.random.fold_in(key, round_), L, W, size)
        if float(lowest) < 0:
            raise ValueError(
                "a proposal had q(z) < 0: eps * V is not a non-negative quartic form, so "
                "exp(-q) exceeds 1 and rejection sampling is invalid"
            )
        taken = np.flatnonzero(np.asarray(accept))[: n_samples - found]
        if taken.size:
            gaps = np.diff(taken, prepend=-1)
            gaps[0] += carried
            samples.append(np.asarray(z)[taken])
            proposals.append(gaps)
            found += taken.size
            carried = size - 1 - int(taken[-1])
        else:
            carried += size
        if found == n_samples:
            z = np.concatenate(samples)
            return QuarticSample(z[:, 0] if c.scalar else z, np.concatenate(proposals))
    raise ValueError(
        f"the acceptance rate {found / (_MAX_ROUNDS * size):.1e} is too small for "
        "rejection sampling: eps * V K^2 is far too large for a nearly-Gaussian distribution"
    )
