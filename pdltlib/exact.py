"""Exact finite-width statistics of deep linear and scale-invariant MLPs (book ch. 3, 5.2, 5.4).

For sigma(z) = a_+ z (z >= 0), a_- z (z < 0) (book eq. 2.14) and zero bias variance, scale
invariance (5.58) makes each layer's stochastic metric the previous one times an independent
factor, G^(l+1) = G^(l) (C_W / n_l) sum_j sigma(xi_j)^2 with standard normal xi_j. Moments of
one input's preactivations then follow exactly at any widths: the kernel, the connected
four-point correlator, and for deep linear networks every even moment. These are the results
that leading-order 1/n theory (chapters 4-5) must reproduce at first order.

For deep linear networks (sigma(z) = z) the same holds for several inputs and with biases:
the stochastic metric G^(l+1)_ab = C_b + (C_W / n_l) sum_j z_{j;a} z_{j;b} is quadratic in the
previous layer, whose neurons are i.i.d. N(0, G^(l)) given G^(l), so Wick's theorem closes the
hierarchy. The kernel and the four-point correlators of any inputs then obey exact linear
recursions at any widths (book 3.2-3.3, extended to biases and several inputs), implemented
in :func:`deep_linear_kernel`, :func:`deep_linear_four_point` and
:func:`deep_linear_observable_covariance`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "scale_invariant_constants",
    "scale_invariant_vertex_coefficient",
    "scale_invariant_exact_kernel",
    "scale_invariant_exact_four_point",
    "deep_linear_moment_factor",
    "deep_linear_kernel",
    "deep_linear_four_point",
    "same_neuron_four_point",
    "deep_linear_observable_covariance",
]


def _hidden_widths(hidden_widths: Sequence[int]) -> np.ndarray:
    n = np.asarray(hidden_widths, dtype=np.float64)
    if n.ndim != 1 or np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError(
            f"hidden_widths must be a sequence of positive integers, got {hidden_widths}"
        )
    return n


def scale_invariant_constants(a_plus: float = 1.0, a_minus: float = 0.0) -> tuple[float, float]:
    """A_2 = (a_+^2 + a_-^2)/2 and A_4 = (a_+^4 + a_-^4)/2, book eqs. (5.61) and (5.114).

    For sigma(z) = a_+ z (z >= 0), a_- z (z < 0) and a standard normal xi,
    E[sigma(xi)^2] = A_2 and E[sigma(xi)^4] = 3 A_4. ReLU: (1/2, 1/2); linear: (1, 1).
    """
    a_plus, a_minus = float(a_plus), float(a_minus)
    if not (np.isfinite(a_plus) and np.isfinite(a_minus)) or a_plus == a_minus == 0.0:
        raise ValueError(f"a_plus, a_minus must be finite and not both 0, got {a_plus}, {a_minus}")
    return (a_plus**2 + a_minus**2) / 2, (a_plus**4 + a_minus**4) / 2


def scale_invariant_vertex_coefficient(a_plus: float = 1.0, a_minus: float = 0.0) -> float:
    """3 A_4 / A_2^2 - 1: 2 for linear, 5 for ReLU, book eq. (5.120).

    At criticality V^(l) = (l - 1) * coefficient * K*^2 at leading order (5.120); exactly,
    each layer of width n multiplies E[G^2]/E[G]^2 by (1 + coefficient / n) (see below).
    """
    a2, a4 = scale_invariant_constants(a_plus, a_minus)
    return 3 * a4 / a2**2 - 1


def scale_invariant_exact_kernel(
    K1: float, C_W: float, depth: int, a_plus: float = 1.0, a_minus: float = 0.0
) -> np.ndarray:
    """Exact single-input kernel K^(l) = E[z^(l) z^(l)] = (A_2 C_W)^(l-1) K^(1), l = 1..depth.

    Holds at any widths when C_b = 0: each z^(l)_j is symmetric (conditionally a zero-mean
    Gaussian), so E[sigma(z)^2] = A_2 E[z^2]. The infinite-width recursion is book eq. (5.63);
    its 1/n correction vanishes (5.117) -- here to all orders. Chapter 0, eq-ch0-relu-kernel.
    """
    if K1 < 0 or not np.isfinite(K1):
        raise ValueError(f"K1 must be finite and >= 0, got {K1}")
    if C_W <= 0 or not np.isfinite(C_W):
        raise ValueError(f"C_W must be finite and > 0, got {C_W}")
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth}")
    a2, _ = scale_invariant_constants(a_plus, a_minus)
    return K1 * (a2 * C_W) ** np.arange(int(depth))


def scale_invariant_exact_four_point(
    hidden_widths: Sequence[int], a_plus: float = 1.0, a_minus: float = 0.0
) -> np.ndarray:
    """Exact normalized connected four-point correlator of every layer, for C_b = 0 and any C_W.

    Returns, for l = 1..len(hidden_widths)+1, the quantity
        E[z_i^2 z_j^2]_connected / K^(l)^2  (i != j)  =  prod_{l'=1}^{l-1} (1 + v / n_l') - 1,
    with v = 3 A_4 / A_2^2 - 1; the excess kurtosis of one neuron is three times it. Derivation:
    G^(l+1) = G^(l) (C_W / n_l) sum_j sigma(xi_j)^2 with independent standard normals xi_j
    (scale invariance), so E[G^2]/E[G]^2 is a product of (1 + v/n_l). For linear networks this
    is book eq. (3.25) with (3.29); its first order in 1/n is (5.120). Chapter 0,
    eq-ch0-scale-invariant-exact. ``hidden_widths`` = (n_1, ..., n_{L-1}).
    """
    n = _hidden_widths(hidden_widths)
    v = scale_invariant_vertex_coefficient(a_plus, a_minus)
    return np.concatenate([[1.0], np.cumprod(1 + v / n)]) - 1


def deep_linear_moment_factor(hidden_widths: Sequence[int], m: int) -> float:
    """E[z^(2m)] / ((2m-1)!! G_2^m) = prod_l c_2m(n_l), c_2m(n) = prod_{k<m} (1 + 2k/n).

    Book eqs. (3.46)-(3.47) for deep linear networks with C_b = 0 (output layer L, with
    hidden widths (n_1, ..., n_{L-1})); chi-square moments give it in two lines (chapter 0,
    exercise ch0-ex-moments).
    """
    if int(m) != m or m < 1:
        raise ValueError(f"m must be a positive integer, got {m}")
    n = _hidden_widths(hidden_widths)
    k = np.arange(1, int(m))
    return float(np.prod([np.prod(1 + 2 * k / width) for width in n]))


def _inputs(x) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"x must be an array of inputs of shape (N_D, n_0), got {x!r}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"x must have shape (N_D, n_0), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x contains non-finite values")
    return arr


def _layer_values(value: float | Sequence[float], depth: int, name: str, positive: bool):
    values = np.asarray(value, dtype=np.float64)
    values = np.full(depth, float(values)) if values.ndim == 0 else values
    if values.shape != (depth,) or not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be a finite number or a sequence of length L = {depth}")
    if np.any(values <= 0 if positive else values < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return values


def deep_linear_kernel(
    x, depth: int, C_b: float | Sequence[float] = 0.0, C_W: float | Sequence[float] = 1.0
) -> np.ndarray:
    """Exact two-point correlator G^(l)_{ab} = E[z_{i;a} z_{i;b}] of a deep linear network.

    G^(1) = C_b^(1) + C_W^(1) G^(0) with G^(0)_{ab} = x_a . x_b / n_0 (book 3.9-3.10), and
    G^(l+1) = C_b^(l+1) + C_W^(l+1) G^(l): book eq. (3.14), solved by (3.15) for C_b = 0; the
    bias term is (4.118) with sigma(z) = z. It holds at any widths: there is no 1/n correction.

    Args:
        x: inputs of shape (N_D, n_0) (or (n_0,) for one input).
        depth: L, the number of layers.
        C_b, C_W: bias and weight variances, numbers or per-layer sequences of length L.

    Returns:
        Array of shape (L, N_D, N_D); entry l-1 is G^(l).
    """
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth}")
    x = _inputs(x)
    c_b = _layer_values(C_b, int(depth), "C_b", positive=False)
    c_w = _layer_values(C_W, int(depth), "C_W", positive=True)
    kernel, out = x @ x.T / x.shape[1], []
    for layer_c_b, layer_c_w in zip(c_b, c_w, strict=True):
        kernel = layer_c_b + layer_c_w * kernel
        out.append(kernel)
    return np.stack(out)


def _pair_step(connected: np.ndarray, kernel: np.ndarray, width: float, first_order: bool):
    """E[O_ab O_cd] - K_ab K_cd for O_ab = (1/n) sum_j z_{j;a} z_{j;b}, given the connected
    pair tensor and kernel of the layer of width n (drops the 1/n^2 term if first_order)."""
    crossed = np.einsum("ac,bd->abcd", kernel, kernel) + np.einsum("ad,bc->abcd", kernel, kernel)
    if not first_order:
        crossed = crossed + np.einsum("acbd->abcd", connected) + np.einsum("adbc->abcd", connected)
    return connected + crossed / width


def deep_linear_four_point(
    x,
    hidden_widths: Sequence[int],
    C_b: float | Sequence[float] = 0.0,
    C_W: float | Sequence[float] = 1.0,
    *,
    first_order: bool = False,
) -> np.ndarray:
    """Exact connected four-point correlator of two different neurons of a deep linear network.

    Returns, for every layer l = 1..L (L = len(hidden_widths) + 1), the tensor

        C^(l)_{a1a2a3a4} = E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}] - G^(l)_{a1a2} G^(l)_{a3a4}

    for i != j, the covariance of the stochastic metric, Cov[G^(l)_{a1a2}, G^(l)_{a3a4}]. Given
    layer l the metric G^(l+1) = C_b + (C_W / n_l) sum_j z_j z_j^T is a scaled Wishart matrix, and
    Wick's theorem gives the exact recursion, with G the kernel of :func:`deep_linear_kernel`,

        C^(l+1)_abcd = C_W^2 [C^(l)_abcd + (G_ac G_bd + G_ad G_bc + C^(l)_acbd + C^(l)_adbc) / n_l],

    from C^(1) = 0. Biases enter only through G. For one input and C_b = 0 it is book eqs.
    (3.24)-(3.25) in the form (3.29)-(3.30): C^(l) = [prod_{l'<l} (1 + 2/n_l') - 1] G^2. The
    connected four-point correlator of one neuron is :func:`same_neuron_four_point` of it.

    Args:
        x: inputs of shape (N_D, n_0).
        hidden_widths: (n_1, ..., n_{L-1}).
        C_b, C_W: numbers or per-layer sequences of length L.
        first_order: drop the C/n_l terms, which are O(1/n^2): the leading-order 1/n result,
            C^(l) = V^(l) / n_{l-1} with the four-point vertex of book eqs. (4.90)/(4.119) for
            sigma(z) = z, and (3.28) for one input.

    Returns:
        Array of shape (L, N_D, N_D, N_D, N_D).
    """
    n = _hidden_widths(hidden_widths)
    kernels = deep_linear_kernel(x, len(n) + 1, C_b, C_W)
    c_w = _layer_values(C_W, len(n) + 1, "C_W", positive=True)
    connected = np.zeros((kernels.shape[1],) * 4)
    out = [connected]
    for layer, width in enumerate(n):
        connected = c_w[layer + 1] ** 2 * _pair_step(connected, kernels[layer], width, first_order)
        out.append(connected)
    return np.stack(out)


def same_neuron_four_point(connected_pairs) -> np.ndarray:
    """Connected E[z_{i;a1} z_{i;a2} z_{i;a3} z_{i;a4}] of one neuron from the pair tensor.

    For a deep linear network (indeed whenever a layer is Gaussian given a metric) the
    same-neuron connected correlator is the sum of the three index pairings of the two-neuron
    one, C_{a1a2a3a4} + C_{a1a3a2a4} + C_{a1a4a2a3}: book (3.29) for one input, (4.77) at
    leading order. Works on the last four axes of ``connected_pairs``.
    """
    c = np.asarray(connected_pairs, dtype=np.float64)
    if c.ndim < 4 or len(set(c.shape[-4:])) != 1:
        raise ValueError(f"connected_pairs must end in four equal axes (N_D,)*4, got {c.shape}")
    return c + np.einsum("...acbd->...abcd", c) + np.einsum("...adbc->...abcd", c)


def deep_linear_observable_covariance(
    x,
    widths: Sequence[int],
    C_b: float | Sequence[float] = 0.0,
    C_W: float | Sequence[float] = 1.0,
    *,
    first_order: bool = False,
) -> np.ndarray:
    """Exact Cov[O^(l)_{ab}, O^(l)_{cd}] of O^(l)_{ab} = (1/n_l) sum_j z^(l)_{j;a} z^(l)_{j;b}.

    The book's observable (3.31) with several inputs: how much one network's mean squared
    preactivations differ from the ensemble average G^(l). Exactly,

        Cov[O_ab, O_cd] = C_abcd + (G_ac G_bd + G_ad G_bc + C_acbd + C_adbc) / n_l,

    with the connected pair tensor C of :func:`deep_linear_four_point`; for one input and C_b = 0
    the relative variance is prod_{l'=1}^{l} (1 + 2/n_l') - 1, book eq. (3.33) exactly (its last
    line, 2l/n, is the first order, returned with ``first_order=True``).

    Args:
        x: inputs of shape (N_D, n_0).
        widths: (n_1, ..., n_L), including the width n_L of the layer whose O is asked for.
        C_b, C_W: numbers or per-layer sequences of length L.
        first_order: keep only the O(1/n) terms.

    Returns:
        Array of shape (L, N_D, N_D, N_D, N_D); entry l-1 is the covariance for layer l.
    """
    n = _hidden_widths(widths)
    kernels = deep_linear_kernel(x, len(n), C_b, C_W)
    connected = deep_linear_four_point(x, n[:-1].astype(int), C_b, C_W, first_order=first_order)
    return np.stack(
        [_pair_step(c, k, w, first_order) for c, k, w in zip(connected, kernels, n, strict=True)]
    )
