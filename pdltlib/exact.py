"""Exact finite-width statistics of scale-invariant MLPs with C_b = 0 (book 3.3, 5.2, 5.4).

For sigma(z) = a_+ z (z >= 0), a_- z (z < 0) (book eq. 2.14) and zero bias variance, scale
invariance (5.58) makes each layer's stochastic metric the previous one times an independent
factor, G^(l+1) = G^(l) (C_W / n_l) sum_j sigma(xi_j)^2 with standard normal xi_j. Moments of
one input's preactivations then follow exactly at any widths: the kernel, the connected
four-point correlator, and for deep linear networks every even moment. These are the results
that leading-order 1/n theory (chapters 4-5) must reproduce at first order.
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
