"""The six-point vertex U^(l): the connected six-point correlator of MLP preactivations at
order 1/n^2 (book epilogue ε, (ε.18)-(ε.22) and footnote 6; second layer: footnote 7 of
section 4.2, (4.59)).

Normalization (single input, any layer l >= 2, i, j, k distinct neurons):

    E[z_i z_i z_j z_j z_k z_k]_connected = U^(l) / n_{l-1}^2 + O(1/n^3),

the connected part being E[z_i^2 z_j^2 z_k^2] - 3 E[z^2] E[z_i^2 z_j^2] + 2 E[z^2]^3
(:func:`pdltlib.stats.normalized_six_point_triples` estimates it divided by E[z^2]^3).

Derivation. Given layer l - 1, the neurons of layer l are i.i.d. Gaussian with the stochastic
metric G^(l) (4.70), so the connected six-point correlator of distinct neurons is exactly the
third cumulant kappa_3(G^(l)), and Var(G^(l)) = V^(l) / n_{l-1} + O(1/n^2). Write
G^(l+1) = C_b + (C_W / n_l) sum_j s_j with s_j = sigma(z_j)^2, and expand the third cumulant of
the sum over ordered triples (j, k, m) of neurons: n triples with j = k = m give the Gaussian
single-neuron cumulant h(K); 3 n (n - 1) with exactly two equal give, by the law of total
cumulance (neurons conditionally independent given G^(l)), Cov(g(G), f(G)) = g'(K) f'(K) V / n;
the n^3 distinct ones give kappa_3(f(G)) = f'^3 kappa_3(G) + 3 f'^2 f'' Var(G)^2. Here, with
Gaussian brackets over the kernel K = K^(l),

    f(K) = <sigma^2>_K,   g(K) = <sigma^4>_K - <sigma^2>_K^2,
    h(K) = <sigma^6>_K - 3 <sigma^2>_K <sigma^4>_K + 2 <sigma^2>_K^3,

and the recursion at leading order, with r = n_l / n_{l-1}, is

    U^(l+1) = C_W^3 [ h + 3 r g' f' V^(l) + r^2 (f'^3 U^(l) + 3 f'^2 f'' (V^(l))^2) ],   (all at K)

with U^(1) = V^(1) = 0, so U^(2) = C_W^3 h(K^(1)), which is (4.59) for one input. C_W f' = chi_par
(5.10), so the U-term is chi_par^3 U. For ReLU, f = K/2, g = 5 K^2/4 and h = 11 K^3/2, and it
becomes the book's (ε.20),

    U^(l+1) = (C_W^3 / 8) [ U^(l) + 30 V^(l) K^(l) + 44 (K^(l))^3 ],

whose critical solution (C_W = 2, V^(l) = 5 (l - 1) K^2, (5.120)) is
U^(l) / K^3 = 75 (l - 1)(l - 2) + 44 (l - 1) = 75 l^2 - 181 l + 106: the leading term of (ε.21).

Derivatives in K are taken without differentiating sigma (so kinks are exact):
d^m/dK^m <F>_K = <F He_2m(z / sqrt K)>_K / (2 K)^m.

Estimators. :func:`pdltlib.stats.normalized_six_point_triples` averages z_i^2 z_j^2 z_k^2 over
the neuron triples of each network. Since E[z_i^2 z_j^2 z_k^2 | G^(l)] = (G^(l))^3 exactly (and
likewise for pairs), the same correlator is E[G^3] - 3 E[G] E[G^2] + 2 E[G]^3 of the layer-l
metric itself, which each sampled network gives exactly from its layer l - 1
(:func:`stochastic_metric`). Replacing the neuron averages by their conditional expectations
removes the sampling noise of the n neurons given G (Rao-Blackwell): the estimator
:func:`six_point_from_metric` has the same mean and a smaller variance.

Exact oracle. For sigma = a_+ z (z >= 0), a_- z (z < 0) and C_b = 0, scale invariance makes
G^(l+1) = G^(l) X_l with X_l = (C_W / n_l) sum_j sigma(xi_j)^2 independent of G^(l) (see
:mod:`pdltlib.exact`), so every moment of G is a product of moments of the X's, and the
connected six-point correlator is known exactly at any widths
(:func:`scale_invariant_exact_six_point`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.exact import scale_invariant_constants
from pdltlib.gaussian import bracket_derivative
from pdltlib.kernels import _hyperparameters, _width_ratios, preactivation_flow
from pdltlib.stats import Estimate, jackknife
from pdltlib.validation import positive_variance

__all__ = [
    "SixPointFlow",
    "six_point_flow",
    "scale_invariant_six_point_coefficients",
    "scale_invariant_critical_six_point",
    "scale_invariant_exact_six_point",
    "stochastic_metric",
    "six_point_from_metric",
]


def _six_point_step(
    act: Activation, k: float, v: float, u: float, c_w: float, r: float, curvature: bool
) -> float:
    """U^(l+1) from K^(l), V^(l), U^(l) (module docstring); r = n_l / n_{l-1}; ``curvature``
    keeps the 3 f'^2 f'' V^2 term."""
    f0, f1, f2 = (bracket_derivative(act, k, 2, m) for m in range(3))
    q0, q1 = (bracket_derivative(act, k, 4, m) for m in range(2))
    s6 = bracket_derivative(act, k, 6, 0)
    g1 = q1 - 2 * f0 * f1
    h = s6 - 3 * f0 * q0 + 2 * f0**3
    return c_w**3 * (
        h + 3 * r * g1 * f1 * v + r**2 * (f1**3 * u + 3 * curvature * f1**2 * f2 * v**2)
    )


@dataclass(frozen=True)
class SixPointFlow:
    """K^(l), V^(l) and U^(l) for one input at layers l = 1..depth (index l - 1), shape (depth,).

    E[z^2] = K + O(1/n), the connected four-point correlator of two neurons is V / n_{l-1} and
    that of three neurons (six-point) is U / n_{l-1}^2, at leading order: (4.104), (4.117),
    (ε.22).
    """

    K: np.ndarray
    V: np.ndarray
    U: np.ndarray


def six_point_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    K1: float,
    depth: int,
    widths: Sequence[int] | None = None,
    *,
    curvature: bool = True,
) -> SixPointFlow:
    """The single-input six-point vertex U^(l), l = 1..depth, with K^(l) and V^(l).

    K and V follow (4.118), (5.109) (:func:`pdltlib.kernels.preactivation_flow`); U follows the
    recursion of the module docstring, the general-activation form of the book's ReLU checkpoint
    (ε.20), with U^(1) = 0 and U^(2) = C_W^3 h(K^(1)) (4.59).

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts.
        C_b, C_W: numbers, or per-layer sequences of length ``depth`` (entry l - 1 holds layer
            l's values, as in :class:`pdltlib.network.MLPConfig`).
        K1: the first-layer kernel of the input, a variance > 0 (4.8).
        depth: the number of layers L >= 1.
        widths: (n_1, ..., n_{depth-1}) for unequal hidden widths (U^(l) is then normalized by
            n_{l-1}^2), or None for equal ones.
        curvature: keep the term 3 f'^2 f'' V^2 of the recursion, which comes from the
            curvature f'' of the kernel map (it vanishes for scale-invariant activations);
            ``False`` gives the alternative that drops it, for power checks.

    Raises:
        ValueError: for bad hyperparameters, K1, depth or widths.
    """
    act = get_activation(activation)
    _, c_w = _hyperparameters(C_b, C_W, depth)
    ratios = _width_ratios(widths, depth)
    k1 = positive_variance(K1, "K1")
    if not isinstance(curvature, bool):
        raise ValueError(f"curvature must be True or False, got {curvature!r}")
    flow = preactivation_flow(act, C_b, C_W, k1, depth, widths, nlo=False)
    u = [0.0]
    for step in range(depth - 1):
        u.append(
            _six_point_step(
                act,
                float(flow.K[step]),
                float(flow.V[step]),
                u[-1],
                c_w[step + 1],
                ratios[step],
                curvature,
            )
        )
    return SixPointFlow(K=np.asarray(flow.K), V=np.asarray(flow.V), U=np.array(u))


def _scale_invariant_moments(a_plus: float, a_minus: float) -> tuple[float, float]:
    """v = Var(s) / E[s]^2 and y = kappa_3(s) / E[s]^3 for s = sigma(xi)^2, xi ~ N(0, 1).

    E[s] = A_2, E[s^2] = 3 A_4, E[s^3] = 15 A_6 with A_p = (a_+^p + a_-^p) / 2 (5.61), (5.114).
    """
    a2, a4 = scale_invariant_constants(a_plus, a_minus)
    a6 = (a_plus**6 + a_minus**6) / 2
    return 3 * a4 / a2**2 - 1, (15 * a6 - 9 * a2 * a4 + 2 * a2**3) / a2**3


def scale_invariant_six_point_coefficients(
    a_plus: float = 1.0, a_minus: float = 0.0
) -> tuple[float, float]:
    """(v, y): the single-layer coefficients of the scale-invariant six-point recursion.

    For sigma = a_+ z (z >= 0), a_- z (z < 0) and C_b = 0, the recursion of the module docstring
    reads U^(l+1) = (A_2 C_W)^3 [U^(l) + 6 v V^(l) K^(l) + y (K^(l))^3], with v = 3 A_4 / A_2^2 - 1
    (the four-point coefficient of (5.120)) and y = kappa_3(sigma(xi)^2) / A_2^3. ReLU: (5, 44),
    which is (ε.20); linear: (2, 8), which reproduces (3.57).
    """
    return _scale_invariant_moments(float(a_plus), float(a_minus))


def _layers(depth) -> np.ndarray:
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return np.arange(1, int(depth) + 1, dtype=np.float64)


def scale_invariant_critical_six_point(
    depth: int, a_plus: float = 1.0, a_minus: float = 0.0
) -> np.ndarray:
    """U^(l) / (K*)^3 at criticality (C_b = 0, C_W = 1 / A_2), l = 1..depth, leading order.

    With V^(l) = v (l - 1) K*^2 (5.120), the recursion of
    :func:`scale_invariant_six_point_coefficients` sums to
    U^(l) / K*^3 = 3 v^2 (l - 1)(l - 2) + y (l - 1): for ReLU 75 l^2 - 181 l + 106, whose leading
    term is the book's (ε.21), and for linear networks 12 l^2 - 28 l + 16, whose leading term is
    (3.57).
    """
    ell = _layers(depth)
    v, y = _scale_invariant_moments(float(a_plus), float(a_minus))
    return 3 * v**2 * (ell - 1) * (ell - 2) + y * (ell - 1)


def scale_invariant_exact_six_point(
    hidden_widths: Sequence[int], a_plus: float = 1.0, a_minus: float = 0.0
) -> np.ndarray:
    """The exact normalized connected six-point correlator of three distinct neurons, for C_b = 0.

    Returns, for l = 1..len(hidden_widths) + 1,

        kappa_3(G^(l)) / E[G^(l)]^3 = prod_{l' < l} (1 + 3 v / n_l' + y / n_l'^2)
                                      - 3 prod_{l' < l} (1 + v / n_l') + 2,

    with (v, y) of :func:`scale_invariant_six_point_coefficients`; it holds at any widths and any
    C_W (module docstring). Its 1/n^2 term is U^(l) / (n^2 K^3) of (ε.21); for linear networks it
    is (3.57) exactly. ``hidden_widths`` = (n_1, ..., n_{L-1}), positive integers.
    """
    n = np.asarray(hidden_widths, dtype=np.float64)
    if n.ndim != 1 or np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError(
            f"hidden_widths must be a sequence of positive integers, got {hidden_widths}"
        )
    v, y = _scale_invariant_moments(float(a_plus), float(a_minus))
    third = np.concatenate([[1.0], np.cumprod(1 + 3 * v / n + y / n**2)])
    second = np.concatenate([[1.0], np.cumprod(1 + v / n)])
    return third - 3 * second + 2


def stochastic_metric(
    z_previous, activation: str | Activation, C_b: float, C_W: float
) -> np.ndarray:
    """G^(l) = C_b + (C_W / n_{l-1}) sum_j sigma(z^(l-1)_j)^2 of each network, for one input.

    ``z_previous``: layer l - 1 preactivations of shape (networks, n_{l-1}) or
    (networks, 1, n_{l-1}) (as :func:`pdltlib.sampling.sample_preactivations` returns them).
    Returns shape (networks,). Book: the stochastic metric (4.70) of one input; given it, the
    neurons of layer l are i.i.d. N(0, G^(l)) (4.33)-(4.36).
    """
    z = np.asarray(z_previous, dtype=np.float64)
    if z.ndim == 3 and z.shape[1] == 1:
        z = z[:, 0, :]
    if z.ndim != 2 or z.shape[1] < 1 or not np.all(np.isfinite(z)):
        raise ValueError(
            f"z_previous must be finite with shape (networks, n) or (networks, 1, n), got {z.shape}"
        )
    if not np.isfinite(C_b) or C_b < 0:
        raise ValueError(f"C_b must be >= 0, got {C_b}")
    if not np.isfinite(C_W) or C_W <= 0:
        raise ValueError(f"C_W must be > 0, got {C_W}")
    act = get_activation(activation)
    return C_b + C_W * np.mean(np.asarray(act.fn(jnp.asarray(z))) ** 2, axis=1)


def six_point_from_metric(metric) -> Estimate:
    """(E[G^3] - 3 E[G] E[G^2] + 2 E[G]^3) / E[G]^3 from per-network metrics G (networks,).

    The normalized connected six-point correlator of three distinct neurons of the layer whose
    metric G is, U / (n^2 K^3) at leading order (ε.21), with the neuron sampling noise given G
    integrated out exactly (module docstring). G = 0 (a ReLU network whose previous layer is
    dead) is allowed. Jackknifed over networks, like
    :func:`pdltlib.stats.normalized_six_point_triples`, which estimates the same quantity.
    """
    g = np.asarray(metric, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or not np.all(np.isfinite(g)) or np.any(g < 0) or g.mean() <= 0:
        raise ValueError(
            "metric must be >= 2 finite values >= 0 with a positive mean, shape (networks,), "
            f"got shape {g.shape}"
        )
    return jackknife(lambda a, b, c: (c - 3 * a * b + 2 * a**3) / a**3, g, g**2, g**3)
