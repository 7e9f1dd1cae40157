"""Gaussian expectations by deterministic quadrature: the book's bracket <f(z)>_K.

For z ~ N(0, K) with a variance K, or a d x d kernel matrix with d <= 3, this module computes

    <f(z)>_K = E[f(z)]                                                    (book eq. (1.68))

to about 1e-12, including the kernel integrals <sigma_a1 ... sigma_am>_K of the recursions
(4.27)-(4.28) and their derivative versions such as <sigma' sigma'>_K.

Method. Write z = L u with u ~ N(0, I) and L a lower-triangular Cholesky factor of K. The
factor is semidefinite-tolerant and computed from exact (rational) Schur complements of the float
entries of K: a coordinate that is a deterministic function of the previous ones, such as the
second of two identical inputs, gets the single node u_k = 0 (so no arccos or sqrt of rounding
noise is ever taken), and nearly identical inputs lose nothing to cancellation in
K11 K22 - K12^2. Each u_k is integrated in turn, innermost last, with composite Gauss-Legendre on
[-cutoff, cutoff] (``order`` nodes per panel, weights times the standard-normal density), the
inner rule being rebuilt for every outer node. The panels are

* uniform of width h_k = 1 / max(1, max_{i >= k} |L_ik|): sigma(z_i) varies on the scale
  1 / |L_ik| in u_k (tanh's poles sit pi / (2 |L_ik|) from the real u_k axis), so a panel never
  spans more than about one unit of z;
* split exactly where a coordinate z_i crosses a kink of f, and, where the kink is smeared by the
  inner coordinates into a layer of width w = std(z_i | u_1..u_k) / |L_ik| narrower than h_k
  (nearly identical inputs), graded geometrically towards it (widths w, 2w, 4w, ...).

So kinked activations (ReLU, the perceptron) and nearly degenerate kernels are as accurate as
smooth ones: ~1e-15 relative for every registered activation for K from 1e-4 to 100.

Cost: n_k = (ceil(2 cutoff / h_k) + breakpoints) * order nodes for coordinate k (~330 for
K <~ 1, growing like sqrt(K)) and n_1 n_2 ... n_d evaluations of f: d = 2 takes ~1e5
evaluations (milliseconds) at K ~ 1 and ~1e7 (~0.3 s) at K = 100; d = 3 takes ~4e7 (1-2 s) at
K ~ 1. More than 1e9 evaluations (d = 3 at K >~ 10) is refused with a ValueError.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache, partial
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.validation import covariance, positive_variance

__all__ = [
    "gaussian_expectation",
    "activation_expectation",
    "bracket_derivative",
    "normal_rule",
]

_MAX_DIM = 3
_DEGENERATE = 1e-14  # a Cholesky pivot (a conditional variance) below this times K_kk is zero
_CHUNK = 1 << 20  # function evaluations per batch
_MAX_EVALUATIONS = 1e9  # about half a minute


def normal_rule(
    breakpoints: Sequence[float] = (),
    *,
    order: int = 12,
    cutoff: float = 13.0,
    panel_width: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u_i and weights w_i with sum_i w_i g(u_i) ~ E[g(u)] for u ~ N(0, 1).

    Composite Gauss-Legendre with ``order`` nodes per panel on [-cutoff, cutoff], panels of
    width at most ``panel_width``, split at each of ``breakpoints`` (points where g is not smooth)
    that lies inside the range; the weights include the standard-normal density.

    Not in the book: the quadrature behind every Gaussian expectation <f>_K of section 1.1 (eq.
    (1.61)).
    """
    order, cutoff, panel_width = _check_options(order, cutoff, panel_width)
    breaks = np.asarray(breakpoints, dtype=float).reshape(1, -1)
    if not np.all(np.isfinite(breaks)):
        raise ValueError(f"breakpoints must be finite, got {breakpoints!r}")
    nodes, weights = _panel_rule(breaks, panel_width, order, cutoff)
    return nodes[0], weights[0]


def gaussian_expectation(
    f: Callable,
    K,
    *,
    kinks: Sequence[float] = (),
    order: int = 12,
    cutoff: float = 13.0,
    panel_width: float | None = None,
) -> float:
    """The Gaussian expectation <f(z)>_K = E[f(z)], z ~ N(0, K), of book eq. (1.68).

    Args:
        f: for a scalar ``K``, a vectorized function of z with shape (...) returning shape (...);
            for a (d, d) matrix ``K``, a function of z with shape (..., d) returning (...).
        K: a variance >= 0, or a symmetric positive-semidefinite (d, d) matrix, d in {1, 2, 3}.
            Eigenvalues down to -1e-10 times the largest are taken as rounding and clipped.
        kinks: values of z at which f may be non-smooth in each coordinate (an activation's
            kinks); the quadrature splits exactly there.
        order: Gauss-Legendre nodes per panel (>= 1).
        cutoff: each u_k = (L^-1 z)_k is integrated over [-cutoff, cutoff] (> 0); the default 13
            drops a Gaussian mass of 1e-38.
        panel_width: panel width in u for every coordinate; by default 1 / max(1, max_i |L_ik|)
            for coordinate k, which gives ~1e-12 for activations with features of size ~1 in z.

    Returns:
        The expectation as a float; f(0) when K = 0.

    Raises:
        ValueError: for a negative, non-finite, non-symmetric or non-positive-semidefinite K,
            d > 3, bad quadrature options, or when f returns non-finite values.
    """
    order, cutoff, panel_width = _check_options(order, cutoff, panel_width)
    kinks = np.asarray(kinks, dtype=float).ravel()
    if not np.all(np.isfinite(kinks)):
        raise ValueError(f"kinks must be finite, got {kinks!r}")
    matrix, scalar = _check_kernel(K)
    L = _cholesky(matrix)
    evaluate = (lambda z: f(z[..., 0])) if scalar else f
    d = L.shape[0]
    rules = []
    for k in range(d):
        width = _panel_width(L, k, panel_width)
        rule = partial(_coordinate_rule, L, k, kinks, width, order, cutoff)
        rules.append((rule, _rule_size(L, k, kinks, width, order, cutoff)))
    evaluations = math.prod(n for _, n in rules)
    if evaluations > _MAX_EVALUATIONS:
        raise ValueError(
            f"K needs {evaluations:.1e} evaluations of f ({[n for _, n in rules]} nodes per "
            "coordinate); use Monte Carlo, or a larger panel_width or smaller order or cutoff"
        )
    return _integrate(evaluate, L, rules, 0, np.zeros((1, d)), np.ones(1))


def activation_expectation(
    activation: str | Activation | Callable,
    K,
    alphas: Sequence[int],
    *,
    derivatives: Sequence[int] | None = None,
    **quadrature_options,
) -> float:
    """The kernel integral <sigma_a1 sigma_a2 ... sigma_am>_K of the recursions (4.27)-(4.28).

    sigma_a = sigma(z_a) for inputs a = ``alphas[i]`` of a zero-mean Gaussian with kernel K, e.g.
    ``alphas=(0, 0, 1, 1)`` gives <sigma(z_0)^2 sigma(z_1)^2>_K. With ``derivatives=(1, 1)`` and
    ``alphas=(0, 1)`` the factors are sigma'(z_0) sigma'(z_1) (as in chi_perp and the NTK);
    the derivative of sigma at a kink is its one-sided value and delta functions (the
    perceptron's sigma') are not represented. Only the distinct inputs are integrated, so
    diagonal entries like <sigma_0 sigma_0>_K are one-dimensional integrals.

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts; its kinks are
            passed to the quadrature.
        K: an N_D x N_D kernel matrix, or a variance for a single input.
        alphas: input indices in [0, N_D), at most three distinct ones (an empty tuple gives 1).
        derivatives: derivative order (>= 0) of each factor; zeros by default.
        **quadrature_options: ``order``, ``cutoff``, ``panel_width`` of
            :func:`gaussian_expectation`.
    """
    act = get_activation(activation)
    alphas = tuple(alphas)
    derivatives = (0,) * len(alphas) if derivatives is None else tuple(derivatives)
    kernel = np.asarray(K, dtype=float)
    if kernel.ndim != 0 and (kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]):
        raise ValueError(f"K must be a variance or a square matrix, got shape {kernel.shape}")
    n_inputs = 1 if kernel.ndim == 0 else kernel.shape[0]
    if len(derivatives) != len(alphas):
        raise ValueError(f"derivatives {derivatives} must have the length of alphas {alphas}")
    if not all(isinstance(n, Integral) and n >= 0 for n in derivatives):
        raise ValueError(f"derivatives must be non-negative integers, got {derivatives}")
    if not all(isinstance(a, Integral) and 0 <= a < n_inputs for a in alphas):
        raise ValueError(f"alphas must be input indices in [0, {n_inputs}), got {alphas}")
    if not alphas:
        return 1.0
    inputs = sorted(set(alphas))
    if len(inputs) > _MAX_DIM:
        raise ValueError(
            f"alphas has {len(inputs)} distinct inputs; quadrature supports at most {_MAX_DIM}: "
            "use Monte Carlo for more"
        )
    position = {a: i for i, a in enumerate(inputs)}
    counts = Counter((position[a], int(n)) for a, n in zip(alphas, derivatives, strict=True))
    integrand = _product_integrand(act, tuple(sorted(counts.items())))
    if kernel.ndim == 0:
        sub_kernel = kernel
    elif len(inputs) == 1:  # a variance: the one-dimensional path
        sub_kernel = kernel[inputs[0], inputs[0]]
    else:
        sub_kernel = kernel[np.ix_(inputs, inputs)]
    return gaussian_expectation(integrand, sub_kernel, kinks=act.kinks, **quadrature_options)


def bracket_derivative(activation: str | Activation, K: float, power: int, order: int) -> float:
    """d^m/dK^m <sigma(z)^p>_K for z ~ N(0, K): p = ``power`` >= 1, m = ``order`` >= 0.

    Computed as <sigma^p He_2m(z / sqrt K)>_K / (2 K)^m (He: probabilists' Hermite
    polynomial), which takes no derivative of sigma and is exact for kinked activations. For
    p = 2 it is the derivative g^(m)(K) of the kernel map (5.5) (the m = 1 case is (5.53)); p = 4
    and 6 enter the six-point recursion of :mod:`pdltlib.six_point`.
    """
    act = get_activation(activation)
    k = positive_variance(K)
    for value, name in ((power, "power"), (order, "order")):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if power < 1:
        raise ValueError(f"power must be >= 1, got {power}")
    he = np.polynomial.hermite_e.HermiteE.basis(2 * order)
    scale = math.sqrt(k)
    sigma_power = _product_integrand(act, (((0, 0), power),))  # jitted once, padded shapes

    def integrand(z: np.ndarray) -> np.ndarray:
        return sigma_power(z) * he(z / scale)

    return gaussian_expectation(integrand, k, kinks=act.kinks) / (2 * k) ** order


@lru_cache(maxsize=256)
def _product_integrand(act: Activation, factors: tuple) -> Callable[[np.ndarray], np.ndarray]:
    """The integrand z -> prod of sigma^(n)(z[:, column])^power over ((column, n), power).

    z has shape (m, d), or (m,) for one input. Jitted once per activation and factor pattern;
    batches are padded to a power of two so that only a few shapes are ever compiled.
    """
    functions = {n: act.fn if n == 0 else act.derivative(n) for (_, n), _ in factors}

    @jax.jit
    def product(z):
        result = jnp.ones(z.shape[:-1])
        for (column, n), power in factors:
            result = result * functions[n](z[..., column]) ** power
        return result

    def integrand(z: np.ndarray) -> np.ndarray:
        return _padded_call(product, z.reshape(z.shape[0], -1))  # one input: z has shape (m,)

    return integrand


def _padded_call(program: Callable, z: np.ndarray) -> np.ndarray:
    """program(z) for a jitted ``program`` that maps rows to rows: z is padded along its first
    axis to a power of two (repeating z[0]) and the result trimmed back, so the program
    compiles for only a few shapes whatever the number of quadrature nodes."""
    m = z.shape[0]
    extra = (1 << max(m - 1, 1).bit_length()) - m
    padded = np.concatenate([z, np.broadcast_to(z[:1], (extra, *z.shape[1:]))])
    return np.asarray(program(padded))[:m]


def _check_options(order, cutoff, panel_width) -> tuple[int, float, float | None]:
    """Validate the quadrature options (``panel_width`` may be None: adaptive)."""
    if not isinstance(order, Integral) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a finite number > 0, got {cutoff!r}")
    if panel_width is None:
        return int(order), float(cutoff), None
    if not (np.isfinite(panel_width) and panel_width > 0):
        raise ValueError(f"panel_width must be a finite number > 0, got {panel_width!r}")
    return int(order), float(cutoff), float(panel_width)


def _check_kernel(K) -> tuple[np.ndarray, bool]:
    """Validate K (see :func:`pdltlib.validation.covariance`) and its dimension d <= 3."""
    kernel, scalar = covariance(K)
    if kernel.shape[0] > _MAX_DIM:
        d = kernel.shape[0]
        raise ValueError(
            f"K is {d} x {d}; quadrature supports dimension d <= {_MAX_DIM}: use Monte Carlo "
            "(pdltlib.sampling) for more inputs"
        )
    return kernel, scalar


def _cholesky(K: np.ndarray) -> np.ndarray:
    """Lower-triangular L with L L^T = K for a positive-semidefinite K.

    The Schur complements (conditional covariances of z_k given z_1..z_j) are computed exactly,
    in rational arithmetic on the float entries of K, so nearly identical inputs lose nothing to
    cancellation. A pivot at most _DEGENERATE * K_kk (rounding noise in K, or a slightly negative
    value within the PSD tolerance) makes column k zero: z_k is then a deterministic function of
    the earlier coordinates.
    """
    d = K.shape[0]
    schur = [[Fraction(float(x)) for x in row] for row in K]
    L = np.zeros((d, d))
    for j in range(d):
        pivot = schur[j][j]
        if pivot <= Fraction(_DEGENERATE) * Fraction(float(K[j, j])):
            continue
        root = math.sqrt(float(pivot))
        for k in range(j, d):
            L[k, j] = float(schur[k][j]) / root
        for a in range(j + 1, d):
            for b in range(j + 1, d):
                schur[a][b] -= schur[a][j] * schur[j][b] / pivot
    return L


def _panel_width(L: np.ndarray, k: int, panel_width: float | None) -> float:
    if panel_width is not None:
        return panel_width
    return 1.0 / max(1.0, float(np.max(np.abs(L[k:, k]))))


def _break_offsets(L: np.ndarray, k: int, width: float) -> list[tuple[int, np.ndarray]]:
    """For each coordinate i >= k that depends on u_k: offsets of u_k around its kink crossing.

    The kink of z_i is smeared in u_k over w = std(z_i | u_1..u_k) / |L_ik|; offsets 0, +-w,
    +-2w, +-4w, ... below the panel width grade the panels towards it (just 0 when w = 0).
    A coupling |L_ik| below 1e-16 std(z_i) moves z_i by less than rounding: no split.
    """
    result = []
    for i in range(k, L.shape[0]):
        if abs(L[i, k]) <= 1e-16 * np.linalg.norm(L[i]):
            continue
        w = float(np.linalg.norm(L[i, k + 1 :])) / abs(L[i, k])
        levels = math.ceil(math.log2(width / w)) if 0 < w < width else 0
        graded = w * 2.0 ** np.arange(levels)
        result.append((i, np.concatenate([[0.0], graded, -graded])))
    return result


def _rule_size(L, k, kinks, width, order, cutoff) -> int:
    if L[k, k] == 0:
        return 1
    breaks = sum(offsets.size for _, offsets in _break_offsets(L, k, width)) * kinks.size
    return (math.ceil(2 * cutoff / width) + breaks) * order


def _coordinate_rule(L, k, kinks, width, order, cutoff, z) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (m, n) for u_k given the outer partial sums z (m, d) of L u."""
    breaks = [np.zeros((z.shape[0], 0))]
    for i, offsets in _break_offsets(L, k, width):
        for kink in kinks:
            crossing = (kink - z[:, i]) / L[i, k]
            breaks.append(crossing[:, None] + offsets)
    return _panel_rule(np.concatenate(breaks, axis=1), width, order, cutoff)


def _panel_rule(breaks: np.ndarray, width: float, order: int, cutoff: float):
    """Composite Gauss-Legendre x normal density on [-cutoff, cutoff], one rule per row.

    Panels: a uniform grid of width <= ``width`` refined at the row's ``breaks`` (m, p).
    """
    if breaks.shape[1] == 0 and breaks.shape[0] > 1:  # the same rule for every row
        nodes, weights = _panel_rule(breaks[:1], width, order, cutoff)
        shape = (breaks.shape[0], nodes.shape[1])
        return np.broadcast_to(nodes, shape), np.broadcast_to(weights, shape)
    n_uniform = math.ceil(2 * cutoff / width)
    grid = np.linspace(-cutoff, cutoff, n_uniform + 1)
    m = breaks.shape[0]
    edges = np.concatenate(
        [np.broadcast_to(grid, (m, grid.size)), np.clip(breaks, -cutoff, cutoff)], axis=1
    )
    edges.sort(axis=1)
    x, w = _gauss_legendre(order)
    centers = (edges[:, 1:] + edges[:, :-1]) / 2
    halves = (edges[:, 1:] - edges[:, :-1]) / 2
    nodes = (centers[..., None] + halves[..., None] * x).reshape(m, -1)
    density = np.exp(-0.5 * nodes**2) / math.sqrt(2 * math.pi)
    return nodes, (halves[..., None] * w).reshape(m, -1) * density


@lru_cache(maxsize=16)
def _gauss_legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``order``-node Gauss-Legendre rule on [-1, 1], computed once per order (read-only)."""
    x, w = np.polynomial.legendre.leggauss(order)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def _integrate(f, L, rules, k, z, weights) -> float:
    """Sum over rows of weights * E[f(z) | u_1..u_{k-1}], batch by batch.

    z (m, d) holds the partial sums sum_{i<k} L[:, i] u_i at the outer nodes; ``rules[k]`` is the
    rule for u_k given them and its number of nodes.
    """
    if k == L.shape[0]:
        return _evaluate(f, z, weights)
    if L[k, k] == 0:  # degenerate: z does not depend on u_k
        return _integrate(f, L, rules, k + 1, z, weights)
    rule, n = rules[k]
    batch = max(1, _CHUNK // n)
    total = []
    for start in range(0, z.shape[0], batch):
        outer, outer_weights = z[start : start + batch], weights[start : start + batch]
        nodes, node_weights = rule(outer)
        inner = (outer[:, None, :] + nodes[:, :, None] * L[:, k]).reshape(-1, L.shape[0])
        inner_weights = (outer_weights[:, None] * node_weights).ravel()
        total.append(_integrate(f, L, rules, k + 1, inner, inner_weights))
    return math.fsum(total)


def _evaluate(f, z: np.ndarray, weights: np.ndarray) -> float:
    values = np.asarray(f(z))
    if values.dtype.kind not in "biuf":
        raise ValueError(f"f must return real values, got dtype {values.dtype}")
    try:
        values = np.broadcast_to(values, z.shape[:-1])
    except ValueError:
        raise ValueError(
            f"f returned shape {values.shape} for inputs z of shape {z.shape}; it must return "
            "one value per point"
        ) from None
    if not np.all(np.isfinite(values)):
        bad = z[np.flatnonzero(~np.isfinite(values))[0]]
        raise ValueError(
            f"f returned non-finite values (first at z = {bad.tolist()}); lower the cutoff or fix f"
        )
    return float(weights @ values)
