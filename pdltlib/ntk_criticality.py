"""Criticality of the NTK and the learning-rate equivalence principle (book chapter 9).

Single-input, leading-order statistics of the NTK at criticality:

* :func:`critical_learning_rates` -- the equivalence principle (9.94)-(9.96): how lambda_b^(l)
  and lambda_W^(l) scale with the layer l and the depth L for the scale-invariant and K* = 0
  universality classes, so that every layer and both parameter groups contribute parametrically
  equally to the frozen NTK.
* :func:`ntk_layer_contributions` -- the formal solution (9.28): the bias and weight contribution
  of each layer l' to Theta^(L), [lambda_b^(l') + lambda_W^(l') g^(l'-1)] prod chi_perp.
* :func:`single_input_ntk_flow` -- the leading-order single-input recursions for K (5.1), V
  (9.19), Theta (9.6), D (9.13), F (9.14), B (9.15), A (9.16), from (9.7) and (9.17).
* :func:`scale_invariant_ntk_closed_forms` -- (9.44), (9.49)-(9.52); and
  :func:`k_star_zero_ntk_asymptotics` -- (9.71), (9.81), (9.82), (9.84), (9.86).

Conventions: the single-input NTK variance and cross-correlations are defined by (8.82) and
(8.67): Cov(H_ii, H_jj) = A/n, E[H_ij^2] = B/n (i != j); Cov(z_i^2, H_jj) = D/n and
E[z_i z_j H_ij] = F/n (i != j), with n the width of the previous layer. The weight learning rate
lambda_W^(l) is the book's, i.e. the per-weight learning rate is lambda_W^(l) / n_{l-1} (8.6),
as in :class:`pdltlib.network.MLPConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.criticality import K_STAR_ZERO, SCALE_INVARIANT, critical_point
from pdltlib.kernels import chi_perp, kernel_flow
from pdltlib.ntk_fluctuations import ntk_fluctuation_flow
from pdltlib.stats import Estimate, jackknife, mean_estimate
from pdltlib.validation import per_layer

__all__ = [
    "LearningRates",
    "critical_learning_rates",
    "ntk_layer_contributions",
    "SingleInputNTKFlow",
    "single_input_ntk_flow",
    "scale_invariant_ntk_closed_forms",
    "k_star_zero_ntk_asymptotics",
    "single_input_ntk_moments",
]


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return int(depth)


def _check_real(value, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _input_norm(x) -> float:
    inputs = np.asarray(x, dtype=np.float64)
    if inputs.ndim != 1 or inputs.size < 1 or not np.all(np.isfinite(inputs)):
        raise ValueError(f"x must be one finite input of shape (n_0,), got shape {inputs.shape}")
    return float(inputs @ inputs / inputs.size)


@dataclass(frozen=True)
class LearningRates:
    """Per-layer learning rates lambda_b^(l), lambda_W^(l), l = 1..L (index l - 1).

    Book: the equivalence-principle learning rates (9.94)-(9.96).
    """

    lambda_b: np.ndarray
    lambda_W: np.ndarray
    universality_class: str
    p_perp: float


def critical_learning_rates(
    activation: str | Activation,
    depth: int,
    lambda_b_hat: float = 1.0,
    lambda_W_hat: float = 1.0,
    *,
    depth_normalized: bool = True,
) -> LearningRates:
    """Learning rates obeying the equivalence principle (book section 9.4).

    Scale-invariant class (9.94): lambda_b^(l) = lambda_b_hat / L, lambda_W^(l) = lambda_W_hat / L.
    K* = 0 class (9.95): lambda_b^(l) = lambda_b_hat (1/l)^p_perp L^(p_perp - 1) and
    lambda_W^(l) = lambda_W_hat (L/l)^(p_perp - 1), with p_perp = b_1/a_1 (5.99); for tanh and
    sin (p_perp = 1) this is (9.96), lambda_b^(l) = lambda_b_hat / l, lambda_W^(l) = lambda_W_hat.
    With ``depth_normalized=False`` the overall L-rescaling is dropped, which gives the
    l-dependence (9.70) alone (and layer-independent rates for the scale-invariant class).

    Args:
        activation: an activation in the scale-invariant or K* = 0 class.
        depth: the network depth L >= 1.
        lambda_b_hat, lambda_W_hat: the order-one constants (>= 0).
        depth_normalized: include the overall L-scaling of (9.94)-(9.95).

    Raises:
        ValueError: for bad arguments, or an activation outside both classes (or a K* = 0
            activation with a_1 = 0, for which the book gives no p_perp).
    """
    depth = _check_depth(depth)
    lb = _check_real(lambda_b_hat, "lambda_b_hat")
    lw = _check_real(lambda_W_hat, "lambda_W_hat")
    cp = critical_point(activation)
    layers = np.arange(1, depth + 1, dtype=np.float64)
    scale = float(depth) if depth_normalized else 1.0
    if cp.universality_class == SCALE_INVARIANT:
        ones = np.ones(depth)
        return LearningRates(lb * ones / scale, lw * ones / scale, cp.universality_class, 0.0)
    if cp.universality_class == K_STAR_ZERO and cp.p_perp is not None:
        p = float(cp.p_perp)
        return LearningRates(
            lb * layers**-p * scale ** (p - 1),
            lw * (scale / layers) ** (p - 1),
            cp.universality_class,
            p,
        )
    raise ValueError(
        f"activation: {cp.activation!r} is in the {cp.universality_class!r} class; the "
        "equivalence principle (9.94)-(9.95) covers the scale-invariant and K*=0 classes"
    )


@dataclass(frozen=True)
class SingleInputNTKFlow:
    """Leading-order single-input statistics at layers l = 1..L (index l - 1).

    K: kernel; V: four-point vertex; Theta: frozen NTK; D, F: NTK-preactivation cross
    correlations (8.67); A, B: NTK variance (8.82); chi_perp: chi_perp(K^(l)); H1: the NTK
    mean's 1/n correction, E[H] = Theta + H1/n + O(1/n^2) (9.3; not computed in the book,
    derived in :mod:`pdltlib.ntk_fluctuations`).
    """

    K: np.ndarray
    V: np.ndarray
    Theta: np.ndarray
    D: np.ndarray
    F: np.ndarray
    B: np.ndarray
    A: np.ndarray
    chi_perp: np.ndarray
    H1: np.ndarray


def single_input_ntk_flow(
    activation: str | Activation,
    C_b: float,
    C_W: float,
    lambda_b,
    lambda_W,
    x,
    depth: int,
) -> SingleInputNTKFlow:
    """The leading-order single-input statistics of section 9.1, with chi_perp(K^(l)).

    K^(l+1) = C_b + C_W g (5.1); V (9.19); Theta (9.6); D (9.13); F (9.14); B (9.15); A (9.16),
    with uniform C_b, C_W (9.1) and uniform widths (9.2), from the first layer
    K^(1) = C_b + C_W |x|^2/n_0, Theta^(1) = lambda_b^(1) + lambda_W^(1) |x|^2/n_0 (9.7),
    V^(1) = A^(1) = B^(1) = D^(1) = F^(1) = 0 (9.17). Computed by
    :func:`pdltlib.ntk_fluctuations.ntk_fluctuation_flow`, chapter 8's recursions, which reduce
    to these for one input (checked against an independent iteration of (9.13)-(9.16) to 1e-13).

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts, except the
            perceptron (its sigma' is a delta function).
        C_b, C_W: initialization hyperparameters (C_b >= 0, C_W > 0).
        lambda_b, lambda_W: numbers or per-layer sequences of length ``depth`` (>= 0).
        x: one input of shape (n_0,).
        depth: L >= 1.
    """
    act = get_activation(activation)
    if act.name == "perceptron":
        raise ValueError("activation: the perceptron's sigma' is a delta function; no NTK flow")
    depth = _check_depth(depth)
    c_b = _check_real(C_b, "C_b")
    c_w = _check_real(C_W, "C_W", positive=True)
    l_b = per_layer(lambda_b, depth, "lambda_b")
    l_w = per_layer(lambda_W, depth, "lambda_W")
    norm = _input_norm(x)
    if c_b + c_w * norm <= 0:
        raise ValueError("x: the first-layer kernel C_b + C_W |x|^2/n_0 must be > 0")
    flow = ntk_fluctuation_flow(act, c_b, c_w, l_b, l_w, np.asarray(x, dtype=np.float64), depth)
    return SingleInputNTKFlow(
        flow.K,
        flow.V,
        flow.Theta,
        flow.D,
        flow.F,
        flow.B,
        flow.A,
        chi_perp(act, flow.K, c_w),
        flow.H1,
    )


def ntk_layer_contributions(
    activation: str | Activation,
    C_b: float,
    C_W: float,
    lambda_b,
    lambda_W,
    x,
    depth: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The contribution of each layer l' = 1..L to the output frozen NTK Theta^(L), (9.28).

    Returns (bias, weight), each of shape (L,): bias[l'-1] = lambda_b^(l') P(l') and
    weight[l'-1] = lambda_W^(l') g^(l'-1) P(l'), with g^(0) = |x|^2/n_0 (9.7) and the
    multiplicative chain-rule factor P(l') = prod_{l''=l'}^{L-1} chi_perp^(l'') (9.30), (9.93).
    Their sum is Theta^(L) of :func:`pdltlib.ntk.ntk_flow`. Arguments as for
    :func:`single_input_ntk_flow`.
    """
    act = get_activation(activation)
    depth = _check_depth(depth)
    c_b = _check_real(C_b, "C_b")
    c_w = _check_real(C_W, "C_W", positive=True)
    l_b = per_layer(lambda_b, depth, "lambda_b")
    l_w = per_layer(lambda_W, depth, "lambda_W")
    norm = _input_norm(x)
    k = kernel_flow(act, c_b, c_w, c_b + c_w * norm, depth)
    gs = np.concatenate([[norm], (k[1:] - c_b) / c_w])  # g^(l) = <sigma^2>_K(l), (9.8)
    chis = chi_perp(act, k[:-1], c_w)
    chain = np.append(np.cumprod(np.array(chis)[::-1])[::-1], 1.0)
    return l_b * chain, l_w * np.array(gs) * chain


def scale_invariant_ntk_closed_forms(
    layers, A2: float, A4: float, K_star: float, lambda_b: float, lambda_W: float
) -> dict[str, np.ndarray]:
    """Closed forms at criticality for the scale-invariant class with uniform learning rates.

    Theta (9.44), D (9.49), F (9.50), B (9.51) exact at leading order in 1/n; A (9.52) only its
    leading l^3 term. V (9.42) is included. ``layers``: l >= 1 (array).
    """
    ell = np.asarray(layers, dtype=np.float64)
    if np.any(ell < 1):
        raise ValueError("layers must be >= 1")
    for name, value in (("A2", A2), ("A4", A4), ("K_star", K_star)):
        _check_real(value, name, positive=True)
    r = A4 / A2**2
    x = lambda_W * A2 * K_star
    return {
        "Theta": (lambda_b + x) * ell,
        "V": (ell - 1) * (3 * r - 1) * K_star**2,
        "D": ell * (ell - 1) / 2 * (lambda_b * (r - 1) * K_star + x * (4 * r - 2) * K_star),
        "F": ell * (ell - 1) / 2 * r * (lambda_b + x) * K_star,
        "B": ell * (ell - 1) * (2 * ell - 1) / 6 * r * (lambda_b + x) ** 2,
        "A": ell**3 / 3 * ((r - 1) * lambda_b**2 + 3 * (r - 1) * lambda_b * x + (5 * r - 3) * x**2),
    }


def k_star_zero_ntk_asymptotics(
    activation: str | Activation, layers, lambda_b_hat: float, lambda_W_hat: float
) -> dict[str, np.ndarray]:
    """Leading large-l asymptotics for the K* = 0 class with the learning rates (9.70).

    K (9.65), Theta (9.71), F (9.81), B (9.82), D (9.84), A (9.86), in terms of
    sigma_1, a_1 (9.60) and p_perp = b_1/a_1; errors are O(log l / l) relative.
    """
    cp = critical_point(activation)
    if cp.universality_class != K_STAR_ZERO or cp.p_perp is None:
        raise ValueError(f"activation: {cp.activation!r} is not in the K*=0 class with a_1 != 0")
    ell = np.asarray(layers, dtype=np.float64)
    if np.any(ell < 1):
        raise ValueError("layers must be >= 1")
    p, a1, s1 = float(cp.p_perp), float(cp.a1), float(cp.taylor[1])
    w = lambda_W_hat * s1**2 / (-a1)
    theta_hat = lambda_b_hat + w
    mixed = p * lambda_b_hat + (p - 1) * w
    return {
        "K": 1 / ((-a1) * ell),
        "Theta": theta_hat * ell ** (1 - p),
        "F": theta_hat / ((5 - p) * (-a1)) * ell ** (1 - p),
        "B": theta_hat**2 / 3 * ell ** (3 - 2 * p),
        "D": -2 / (9 * (-a1)) * mixed * ell ** (1 - p),
        "A": 4 / 27 * mixed**2 * ell ** (3 - 2 * p),
    }


def single_input_ntk_moments(z, ntk) -> dict[str, Estimate]:
    """Monte Carlo estimates of the single-input NTK statistics of one layer, from an ensemble.

    With H = ``ntk`` of shape (networks, m, m, 1, 1) (as from :func:`pdltlib.ntk.sample_ntk`)
    and z of shape (networks, 1, n) (its first m neurons are used), each network supplies the
    averages over its neurons and ordered neuron pairs i != j; the connected combinations are
    jackknifed over networks (the independent replicas):

    * ``"H"``: E[H_ii], = Theta + O(1/n) (9.3)-(9.4);
    * ``"A"``: Cov(H_ii, H_jj) = A/n and ``"B"``: E[H_ij^2] = B/n (8.82);
    * ``"D"``: Cov(z_i^2, H_jj) = D/n and ``"F"``: E[z_i z_j H_ij] = F/n (8.67).
    """
    h = np.asarray(ntk, dtype=np.float64)
    zz = np.asarray(z, dtype=np.float64)
    if h.ndim != 5 or h.shape[1] != h.shape[2] or h.shape[3:] != (1, 1) or h.shape[1] < 2:
        raise ValueError(f"ntk must have shape (networks, m, m, 1, 1) with m >= 2, got {h.shape}")
    m = h.shape[1]
    if zz.ndim != 3 or zz.shape[1] != 1 or zz.shape[2] < m or zz.shape[0] != h.shape[0]:
        raise ValueError(f"z must have shape (networks, 1, n >= {m}), got {zz.shape}")
    h = h[..., 0, 0]
    zi = zz[:, 0, :m]
    diag = np.einsum("sii->si", h)
    pairs = m * (m - 1)
    mean_h = diag.mean(axis=1)
    mean_zz = (zi**2).mean(axis=1)
    pair_hh = (diag.sum(1) ** 2 - (diag**2).sum(1)) / pairs
    off2 = ((h**2).sum((1, 2)) - (diag**2).sum(1)) / pairs
    pair_zh = ((zi**2).sum(1) * diag.sum(1) - (zi**2 * diag).sum(1)) / pairs
    zhz = np.einsum("si,sij,sj->s", zi, h, zi)
    off_zhz = (zhz - (zi**2 * diag).sum(1)) / pairs
    return {
        "H": mean_estimate(mean_h),
        "A": jackknife(lambda p, a: p - a * a, pair_hh, mean_h),
        "B": mean_estimate(off2),
        "D": jackknife(lambda p, a, b: p - a * b, pair_zh, mean_zz, mean_h),
        "F": mean_estimate(off_zhz),
    }
