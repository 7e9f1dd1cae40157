"""Kernels and four-point vertices of MLP preactivations (book chapter 4), and susceptibilities.

* The exact first-layer metric (4.8), one step of the kernel recursion (4.37)/(4.41) and the
  second-layer four-point vertex (4.40).
* The representation-group flow of section 4.6 to order 1/n, for one or several inputs:
  the kernel K^(l) (4.118), the four-point vertex V^(l) (4.119) and the NLO metric G^{1}(l)
  (4.115), via :func:`preactivation_flow` (all three at once), :func:`kernel_flow`,
  :func:`four_point_flow`, :func:`kernel_nlo_flow`.
* The single-input susceptibilities chi_par (5.10)/(5.50) and chi_perp (5.51).

Normalization (book (4.104), (4.117)): with widths n_l,

    E[z_{i;a1} z_{i;a2}]                  = K^(l)_{a1a2} + G^{1}(l)_{a1a2} / n_{l-1} + O(1/n^2),
    E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}]_conn = V^(l)_{(a1a2)(a3a4)} / n_{l-1} + O(1/n^2), i != j.

The flows are computed in a derivative form that needs no inverse of the full kernel. By
Gaussian integration by parts, sum_b K^{c1b1} K^{c2b2} <F (z_b1 z_b2 - K_b1b2)>_K =
<d_c1 d_c2 F>_K, so the recursions (4.119) and (4.115) become (F = sigma_a1 sigma_a2)

    V^(l+1) = C_W^2 [<s s s s> - <s s><s s>]
              + (n_l/n_{l-1}) (C_W^2/4) sum_c V_(c1c2)(c3c4) <d_c1 d_c2 F_a1a2> <d_c3 d_c4 F_a3a4>,
    G^{1}(l+1) = (n_l / n_{l-1}) C_W [ 1/2 sum_c G^{1}_c1c2 <d_c1 d_c2 F>
                                       + 1/8 sum_c V_(c1c2)(c3c4) <d_c1 d_c2 d_c3 d_c4 F> ],

the last line being the sum of the three V-terms of (4.115) (the terms with one or no
derivative cancel). F depends only on z_a1, z_a2, so each bracket is a Gaussian integral over
at most two inputs, evaluated as <F He(w)> with the Hermite tensors of w = K_A^{-1} z_A on the
pair's 2 x 2 block K_A: exact for kinked activations such as ReLU, whose second derivative is
a delta function. Gaussian integrals are done by quadrature in float64
(:mod:`pdltlib.gaussian`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from numbers import Integral

import jax
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.gaussian import _padded_call, activation_expectation, gaussian_expectation
from pdltlib.validation import covariance, per_layer

__all__ = [
    "first_layer_kernel",
    "next_layer_kernel",
    "second_layer_four_point_vertex",
    "chi_parallel",
    "chi_perp",
    "PreactivationFlow",
    "preactivation_flow",
    "kernel_flow",
    "four_point_flow",
    "kernel_nlo_flow",
]

_DEGENERATE_PAIR = 1e-10  # 1 - rho^2 below this: two inputs too close for the pair integrals


def _kernel_matrix(K, name: str = "K") -> np.ndarray:
    return covariance(K, name)[0]


def _variances(C_b: float, C_W: float) -> tuple[float, float]:
    if not np.isfinite(C_b) or C_b < 0:
        raise ValueError(f"C_b must be >= 0, got {C_b}")
    if not np.isfinite(C_W) or C_W <= 0:
        raise ValueError(f"C_W must be > 0, got {C_W}")
    return float(C_b), float(C_W)


def first_layer_kernel(x, C_b: float, C_W: float) -> np.ndarray:
    """The first-layer metric G^(1)_{ab} = C_b + C_W (1/n_0) sum_j x_{j;a} x_{j;b}, eq. (4.8).

    ``x`` has shape (N_D, n_0). The first-layer preactivations are exactly Gaussian with this
    covariance at any width (eqs. 4.7, 4.10).
    """
    C_b, C_W = _variances(C_b, C_W)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N_D, n_0), got {x.shape}")
    return C_b + C_W * (x @ x.T) / x.shape[1]


def _sigma_moment(act: Activation, k: np.ndarray, alphas: tuple[int, ...], cache: dict) -> float:
    key = tuple(sorted(alphas))
    if key not in cache:
        cache[key] = activation_expectation(act, k, key)
    return cache[key]


def next_layer_kernel(activation: str | Activation, K, C_b: float, C_W: float) -> np.ndarray:
    """One step of the kernel recursion: C_b + C_W <sigma_a sigma_b>_K, eqs. (4.37), (4.41).

    Exact for the mean second-layer metric given a first-layer metric K = G^(1); the
    leading-order recursion for K^(l+1) from K^(l) in deeper layers (4.118).
    """
    C_b, C_W = _variances(C_b, C_W)
    k = _kernel_matrix(K)
    act = get_activation(activation)
    cache: dict = {}
    n = k.shape[0]
    out = np.empty((n, n))
    for a, b in itertools.combinations_with_replacement(range(n), 2):
        out[a, b] = out[b, a] = C_b + C_W * _sigma_moment(act, k, (a, b), cache)
    return out


def second_layer_four_point_vertex(activation: str | Activation, K1, C_W: float) -> np.ndarray:
    """The second-layer four-point vertex, eq. (4.40):

        V^(2)_{(a1 a2)(a3 a4)} = C_W^2 [<s_a1 s_a2 s_a3 s_a4>_K1 - <s_a1 s_a2>_K1 <s_a3 s_a4>_K1]

    with K1 = G^(1) the first-layer metric. Returned as an array of shape (N_D,)*4. It fixes the
    connected four-point correlator of the second layer exactly at any width n_1, eq. (4.43):
    E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}]_connected = V^(2)_{(a1a2)(a3a4)} / n_1 for i != j.
    """
    _, C_W = _variances(0.0, C_W)
    k = _kernel_matrix(K1, "K1")
    act = get_activation(activation)
    cache: dict = {}
    n = k.shape[0]
    v = np.empty((n,) * 4)
    for idx in itertools.product(range(n), repeat=4):
        four = _sigma_moment(act, k, idx, cache)
        two = _sigma_moment(act, k, idx[:2], cache) * _sigma_moment(act, k, idx[2:], cache)
        v[idx] = C_W**2 * (four - two)
    return v


# --- Susceptibilities (section 5.1) ---------------------------------------------------------


@lru_cache(maxsize=128)
def _moment_integrand(act: Activation, powers: tuple[int, ...]):
    """z (m, d) -> sigma(z_0) sigma(z_{d-1}) prod_k z_k^powers[k], d = len(powers).

    Jitted once per activation and powers; batches are padded to a power of two so only a few
    shapes are compiled.
    """

    @jax.jit
    def product(z):
        result = act.fn(z[:, 0]) * act.fn(z[:, -1])
        for k, p in enumerate(powers):
            result = result * z[:, k] ** p
        return result

    return partial(_padded_call, product)


def _moment(act: Activation, k_block: np.ndarray, powers: tuple[int, ...]) -> float:
    """<sigma(z_0) sigma(z_{d-1}) prod_k z_k^powers[k]>_{k_block} for a (d, d) block, d <= 2."""
    return gaussian_expectation(_moment_integrand(act, powers), k_block, kinks=act.kinks)


def _positive_variances(K, name: str = "K") -> np.ndarray:
    k = np.asarray(K, dtype=np.float64)
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise ValueError(f"{name} must be finite variances > 0, got {K!r}")
    return k


def _map_variances(one, k: np.ndarray) -> float | np.ndarray:
    if k.ndim == 0:
        return float(one(float(k)))
    return np.array([one(float(v)) for v in k.ravel()]).reshape(k.shape)


def chi_parallel(activation: str | Activation, K, C_W: float) -> float | np.ndarray:
    """The parallel susceptibility chi_par(K) = C_W g'(K), book eqs. (5.10), (5.50):

        chi_par(K) = C_W / (2 K^2) <sigma(z)^2 (z^2 - K)>_K = (C_W / K) <z sigma'(z) sigma(z)>_K.

    The slope dK^(l+1)/dK^(l) of the single-input kernel recursion (5.4); it multiplies V in
    (5.109) and G^{1} in (5.110). Evaluated in the derivative-free first form, exact for
    kinked activations. ``K``: a variance > 0 or an array of them (the result has its shape).
    """
    _, C_W = _variances(0.0, C_W)
    act = get_activation(activation)

    def one(k: float) -> float:
        block = np.array([[k]])
        return C_W * (_moment(act, block, (2,)) - k * _moment(act, block, (0,))) / (2 * k**2)

    return _map_variances(one, _positive_variances(K))


def chi_perp(activation: str | Activation, K, C_W: float) -> float | np.ndarray:
    """The perpendicular susceptibility chi_perp(K) = C_W <sigma'(z) sigma'(z)>_K, eq. (5.51).

    It governs the flow of the distance between two nearby inputs (5.48). The derivative at a
    kink is one-sided; delta functions (the perceptron's sigma') are not represented.
    ``K``: a variance > 0 or an array of them (the result has its shape).
    """
    _, C_W = _variances(0.0, C_W)
    act = get_activation(activation)

    def one(k: float) -> float:
        return C_W * activation_expectation(act, k, (0, 0), derivatives=(1, 1))

    return _map_variances(one, _positive_variances(K))


# --- The RG flow of K, V and G^{1} (sections 4.3, 4.5, 4.6) --------------------------------------


@dataclass(frozen=True)
class PreactivationFlow:
    """K^(l), V^(l), G^{1}(l) for l = 1..depth (index l - 1), in the normalization (4.104)-(4.105).

    Shapes: (depth,) for a single input given as a scalar K1; otherwise (depth, N_D, N_D) for
    ``K`` and ``G1`` and (depth, N_D, N_D, N_D, N_D) for ``V``, indexed V[l-1, a1, a2, a3, a4] =
    V^(l)_{(a1a2)(a3a4)}. ``G1`` is None when it was not asked for.
    """

    K: np.ndarray
    V: np.ndarray
    G1: np.ndarray | None


def _hyperparameters(C_b, C_W, depth) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    c_b, c_w = per_layer(C_b, depth, "C_b"), per_layer(C_W, depth, "C_W", positive=True)
    for b, w in zip(c_b, c_w, strict=True):
        _variances(b, w)
    return c_b, c_w


def _width_ratios(widths, depth: int) -> np.ndarray:
    """r[l] = n_l / n_{l-1} for the step from layer l to l + 1 (index l - 1); r[0] is unused."""
    ratios = np.ones(max(depth - 1, 0))
    if widths is None:
        return ratios
    n = np.asarray(widths)
    if n.shape != (depth - 1,) or not all(
        isinstance(w, Integral) and not isinstance(w, bool) and w >= 1 for w in n.tolist()
    ):
        raise ValueError(
            f"widths must be None or (n_1, ..., n_{{depth-1}}): {depth - 1} positive integers, "
            f"got {widths!r}"
        )
    ratios[1:] = n[1:] / n[:-1]
    return ratios


def _pair_block(k: np.ndarray, pair: tuple[int, ...], name: str) -> np.ndarray:
    block = k[np.ix_(pair, pair)]
    if block[0, 0] <= 0 or block[-1, -1] <= 0:
        raise ValueError(f"{name} must have a positive diagonal for the 1/n flow, got {k.tolist()}")
    if len(pair) == 2:
        one_minus_rho2 = np.linalg.det(block) / (block[0, 0] * block[1, 1])
        if one_minus_rho2 < _DEGENERATE_PAIR:
            raise ValueError(
                f"inputs {pair} are (nearly) identical in {name} (1 - rho^2 = {one_minus_rho2:.1e}"
                "); merge them into one input"
            )
    return block


def _derivative_tensors(act: Activation, block: np.ndarray, fourth: bool):
    """<F>, <d d F> and (if ``fourth``) <d d d d F> on a d x d block, F = sigma(z_0) sigma(z_{d-1}).

    <d_c1..d_ck F>_K = <F He^{c1..ck}(w)>_K with w = K^{-1} z and the raised Hermite tensors
    He^{c1c2} = w w - P, He^{c1..c4} = w w w w - (6 terms P w w) + (3 terms P P), P = K^{-1}.
    """
    d = block.shape[0]

    def moments(order: int) -> np.ndarray:
        out = np.empty((d,) * order)
        cache: dict = {}
        for idx in itertools.product(range(d), repeat=order):
            powers = tuple(idx.count(c) for c in range(d))
            if powers not in cache:
                cache[powers] = _moment(act, block, powers)
            out[idx] = cache[powers]
        return out

    p = np.linalg.inv(block)
    f0 = _moment(act, block, (0,) * d)
    q = p @ moments(2) @ p  # <F w w>
    t2 = q - p * f0
    if not fourth:
        return f0, t2, None
    e4 = np.einsum("ai,bj,ck,dl,ijkl->abcd", p, p, p, p, moments(4))
    six = sum(
        np.einsum(spec, x, y)
        for spec in ("ij,kl->ijkl", "ik,jl->ijkl", "il,jk->ijkl")
        for x, y in ((p, q), (q, p))
    )
    three = sum(np.einsum(spec, p, p) for spec in ("ij,kl->ijkl", "ik,jl->ijkl", "il,jk->ijkl"))
    return f0, t2, e4 - six + three * f0


def _layer_integrals(act: Activation, k: np.ndarray, fourth: bool, name: str):
    """T2[a1,a2,c1,c2] = <d_c1 d_c2 (s_a1 s_a2)>_K and T4[a1,a2,c1..c4] (or None)."""
    n = k.shape[0]
    t2 = np.zeros((n,) * 4)
    t4 = np.zeros((n,) * 6) if fourth else None
    for a, b in itertools.combinations_with_replacement(range(n), 2):
        pair = (a,) if a == b else (a, b)
        _, d2, d4 = _derivative_tensors(act, _pair_block(k, pair, name), fourth)
        for x, y in {(a, b), (b, a)}:
            t2[np.ix_([x], [y], pair, pair)] = d2
            if fourth:
                t4[np.ix_([x], [y], pair, pair, pair, pair)] = d4
    return t2, t4


def preactivation_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    K1,
    depth: int,
    widths: Sequence[int] | None = None,
    *,
    nlo: bool = True,
) -> PreactivationFlow:
    """K^(l), V^(l) and G^{1}(l) for l = 1..depth, from the recursions of section 4.6.

    The kernel (4.118) K^(l+1) = C_b + C_W <s s>_K(l); the four-point vertex (4.119)
    V^(l+1) = C_W^2 [<s s s s> - <s s><s s>] + (n_l/n_{l-1}) (C_W^2/4) V (...)(...); the NLO
    metric (4.115) G^{1}(l+1) = (n_l/n_{l-1}) C_W [...], all with V^(1) = G^{1}(1) = 0 and
    G^{1}(2) = 0 (the first two layers' metrics are exact, (4.10), (4.41)). See the module
    docstring for the derivative form used and the normalization.

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts.
        C_b, C_W: numbers, or per-layer sequences of length ``depth`` (entry l - 1 holds layer
            l's values, as in :class:`pdltlib.network.MLPConfig`; layer 1's are unused because
            K1 is given, and layer l + 1's produce K^(l+1)).
        K1: the first-layer kernel, a variance or an N_D x N_D matrix
            (:func:`first_layer_kernel`), N_D <= 3 (quadrature).
        depth: the number of layers L >= 1.
        widths: (n_1, ..., n_{depth-1}) for unequal hidden widths, or None for equal ones.
        nlo: also compute G^{1} (costs the fourth-derivative integrals).

    Raises:
        ValueError: for bad hyperparameters, kernel, depth or widths, or two identical inputs.
    """
    act = get_activation(activation)
    c_b, c_w = _hyperparameters(C_b, C_W, depth)
    ratios = _width_ratios(widths, depth)
    k, scalar = covariance(K1, "K1")
    n = k.shape[0]
    ks, vs, gs = [k], [np.zeros((n,) * 4)], [np.zeros((n, n))]
    for step in range(depth - 1):
        k, v, g = ks[-1], vs[-1], gs[-1]
        cb, cw, r = c_b[step + 1], c_w[step + 1], ratios[step]
        s2 = next_layer_kernel(act, k, 0.0, 1.0)
        s4 = second_layer_four_point_vertex(act, k, 1.0) + np.einsum("ab,cd->abcd", s2, s2)
        v_next = cw**2 * (s4 - np.einsum("ab,cd->abcd", s2, s2))
        g_next = np.zeros((n, n))
        if step > 0:  # V^(1) = G^{1}(1) = 0: the first step is Gaussian
            t2, t4 = _layer_integrals(act, k, nlo, f"K^({step + 1})")
            v_next += r * cw**2 / 4 * np.einsum("abij,ijkl,cdkl->abcd", t2, v, t2)
            if nlo:
                g_next = (
                    r
                    * cw
                    * (
                        np.einsum("abij,ij->ab", t2, g) / 2
                        + np.einsum("abijkl,ijkl->ab", t4, v) / 8
                    )
                )
        ks.append(cb + cw * s2)
        vs.append(v_next)
        gs.append(g_next)
    K, V, G = np.stack(ks), np.stack(vs), np.stack(gs)
    if scalar:
        K, V, G = K[:, 0, 0], V[:, 0, 0, 0, 0], G[:, 0, 0]
    return PreactivationFlow(K=K, V=V, G1=G if nlo else None)


def kernel_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    K1,
    depth: int,
) -> np.ndarray:
    """The leading-order kernel K^(l), l = 1..depth, by the recursion (4.118) (= (5.1)).

    K^(l+1)_{ab} = C_b^(l+1) + C_W^(l+1) <sigma_a sigma_b>_K(l), from K^(1) = K1. Returns shape
    (depth,) for a variance K1 and (depth, N_D, N_D) for a kernel matrix (any N_D: only pairs
    of inputs are integrated). C_b, C_W as in :func:`preactivation_flow`.
    """
    act = get_activation(activation)
    c_b, c_w = _hyperparameters(C_b, C_W, depth)
    k, scalar = covariance(K1, "K1")
    ks = [k]
    for layer in range(1, depth):
        ks.append(next_layer_kernel(act, ks[-1], c_b[layer], c_w[layer]))
    out = np.stack(ks)
    return out[:, 0, 0] if scalar else out


def four_point_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    K1,
    depth: int,
    widths: Sequence[int] | None = None,
) -> np.ndarray:
    """The four-point vertex V^(l), l = 1..depth, by the recursion (4.119) with V^(1) = 0.

    At order 1/n, E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}]_conn = V^(l)_{(a1a2)(a3a4)} / n_{l-1}
    for i != j (4.117). Returns (depth,) for a variance K1 (then V^(l+1) = chi_par^2 (n_l/n_{l-1})
    V^(l) + C_W^2 [<s^4> - <s^2>^2], (5.109)) or (depth, N_D, N_D, N_D, N_D), N_D <= 3.
    Arguments as in :func:`preactivation_flow`.
    """
    return preactivation_flow(activation, C_b, C_W, K1, depth, widths, nlo=False).V


def kernel_nlo_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    K1,
    depth: int,
    widths: Sequence[int] | None = None,
) -> np.ndarray:
    """The NLO metric G^{1}(l), l = 1..depth, by the recursion (4.115); G^{1}(1) = G^{1}(2) = 0.

    E[z_{i;a1} z_{i;a2}] = K^(l)_{a1a2} + G^{1}(l)_{a1a2} / n_{l-1} + O(1/n^2) (4.104). For one
    input it reduces to (5.110): G^{1}(l+1) = chi_par G^{1}(l) + j(K) V^(l) / (8 K^2), and it
    vanishes identically for scale-invariant activations (5.117). Returns (depth,) for a variance
    K1 or (depth, N_D, N_D), N_D <= 3. Arguments as in :func:`preactivation_flow`.
    """
    return preactivation_flow(activation, C_b, C_W, K1, depth, widths, nlo=True).G1
