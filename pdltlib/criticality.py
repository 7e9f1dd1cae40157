"""Criticality and universality classes of MLPs at initialization (book chapter 5).

Criticality (book section 5.1) means a fixed point K* of the single-input kernel recursion
K^(l+1) = C_b + C_W g(K^(l)), g(K) = <sigma(z) sigma(z)>_K (5.4)-(5.7), at which both
susceptibilities equal one (5.55)-(5.56):

    chi_par(K*) = C_W g'(K*) = 1,      chi_perp(K*) = C_W <sigma' sigma'>_K* = 1.

:func:`critical_point` finds such points *numerically* for any activation, with the algorithm
of section 5.3.1: for a candidate K*, C_W = 1 / <sigma' sigma'>_K* (5.71) and
C_b = K* - <sigma sigma>_K* / <sigma' sigma'>_K* (5.72) satisfy the fixed-point equation and
chi_perp = 1; the remaining condition chi_par = chi_perp (5.73) does not involve C_b, C_W, so
its roots are found by scanning K* > 0 and refining with Brent's method. K* -> 0 is treated
analytically through the Taylor coefficients sigma_p = sigma^(p)(0) (5.80), which are taken
by automatic differentiation. The susceptibilities are those of :mod:`pdltlib.kernels`
(:func:`~pdltlib.kernels.chi_parallel`, :func:`~pdltlib.kernels.chi_perp`).

The universality classes (sections 5.2-5.3):

* ``"scale-invariant"``: sigma(lambda z) = lambda sigma(z) (5.58), i.e. sigma = a_+ z for
  z >= 0 and a_- z for z < 0 (5.59): chi_par = chi_perp = A_2 C_W for every K (5.62), a line of
  fixed points at (C_b, C_W) = (0, 1/A_2) (5.67), A_2 = (a_+^2 + a_-^2)/2 (5.61).
* ``"K*=0"``: sigma_0 = 0, sigma_1 != 0 (5.89), critical at (0, 1/sigma_1^2) (5.90), stable
  when the first non-zero coefficient a_k of C_W g(K) = K + a_1 K^2 + a_2 K^3 + ... (5.83) is
  negative; then K^(l) ~ (-k a_k l)^(-1/k), i.e. 1/((-a_1) l) for a_1 != 0 (5.92).
* ``"half-stable"``: a fixed point K* > 0 with C_b >= 0 at which
  Delta K^(l+1) = Delta K + a~_1 Delta K^2 + ... (5.102) attracts from one side only
  (SWISH (5.101), GELU (5.105)).
* no criticality: :class:`NoCriticalityError` says why (sigma(0) != 0 forces C_b < 0 (sigmoid),
  no root of (5.73) (softplus, monomials), a jump in sigma (the perceptron), ...).

Depth asymptotics (sections 5.3.3, 5.4, 5.5): the exponents of K^(l), of the parallel and
perpendicular perturbations, the coefficient of l/n in V^(l)/(n K^(l)^2) (5.130)-(5.131),
and the finite-angle recursion of the polar angle for scale-invariant activations (5.162).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from scipy.optimize import brentq

from pdltlib.activations import Activation, available_activations, get_activation
from pdltlib.gaussian import activation_expectation, bracket_derivative
from pdltlib.kernels import chi_parallel, chi_perp, four_point_flow, kernel_flow
from pdltlib.stats import Table

__all__ = [
    "NoCriticalityError",
    "FixedPoint",
    "CriticalPoint",
    "critical_point",
    "universality_table",
    "UniversalityTable",
    "taylor_coefficients",
    "kernel_derivative",
    "local_exponent",
    "DepthAsymptotics",
    "depth_asymptotics",
    "polar_angle_flow",
]

SCALE_INVARIANT = "scale-invariant"
K_STAR_ZERO = "K*=0"
HALF_STABLE = "half-stable"

_ZERO = 1e-10  # |sigma_0|, |sigma_1|, |a_k|, |C_b| below this (in units of the scale) are zero
_MAX_ORDER = 3  # a_1, a_2, a_3: Taylor coefficients up to sigma_7
_DEFAULT_RANGE = (1e-3, 1e3)


class NoCriticalityError(ValueError):
    """The activation admits no critical initialization; ``reason`` says why.

    Book: activations without a critical point, section 5.3.3.
    """

    def __init__(self, activation: str, reason: str):
        super().__init__(f"activation {activation!r} cannot be tuned to criticality: {reason}")
        self.activation = activation
        self.reason = reason


@dataclass(frozen=True)
class FixedPoint:
    """A candidate fixed point K* of (5.7) with chi_par = chi_perp = 1 at (C_b, C_W).

    ``a1`` is the coefficient of the first non-linear term of the kernel map around K*,
    Delta K^(l+1) = Delta K^(l) + a1 Delta K^2 + ... ((5.91) at K* = 0, where it is the book's
    a_1 (5.86); a~_1 of (5.102) at K* > 0). ``stability``: "stable", "unstable",
    "half-stable (attracts K < K*)" or "half-stable (attracts K > K*)". ``physical`` is False
    when C_b < 0.
    """

    K_star: float
    C_b: float
    C_W: float
    a1: float
    stability: str

    @property
    def physical(self) -> bool:
        return self.C_b >= 0


@dataclass(frozen=True)
class CriticalPoint:
    """The critical initialization of an activation and its universality class.

    Attributes:
        activation: the activation's name.
        universality_class: ``"scale-invariant"``, ``"K*=0"`` or ``"half-stable"``.
        C_b, C_W: the critical hyperparameters.
        K_star: the fixed point; None for the scale-invariant line of fixed points (every
            K* >= 0 is one, K* = K^(1), (5.66)).
        taylor: sigma_p = sigma^(p)(0), p = 0, 1, ... (5.80) (empty for scale-invariant).
        a: (a_1, a_2, ...) of C_W g(K) = K + a_1 K^2 + a_2 K^3 + ... (5.83), (5.86)-(5.87)
            (K*=0 class); for the half-stable class (a~_1,), the coefficient of (5.102).
        b1: chi_perp(K) = 1 + b_1 K + ... (5.85), (5.88) (K*=0 class).
        a_plus, a_minus, A2, A4, rho: the scale-invariant constants (5.59), (5.61), (5.114),
            (5.163).
        others: further fixed points found (e.g. SWISH's unstable one at K* = 0).
    """

    activation: str
    universality_class: str
    C_b: float
    C_W: float
    K_star: float | None
    taylor: tuple[float, ...] = ()
    a: tuple[float, ...] = ()
    b1: float | None = None
    a_plus: float | None = None
    a_minus: float | None = None
    A2: float | None = None
    A4: float | None = None
    rho: float | None = None
    others: tuple[FixedPoint, ...] = field(default=())

    @property
    def a1(self) -> float | None:
        """The book's a_1 (5.86) (K*=0 class) or a~_1 (5.102) (half-stable class)."""
        return self.a[0] if self.a else None

    @property
    def _order(self) -> int:
        """k of the first non-zero a_k (1 unless a_1 is fine-tuned to zero, footnote 19)."""
        return next(k for k, a in enumerate(self.a, start=1) if a != 0)

    @property
    def p0(self) -> float:
        """Delta K^(l) ~ l^-p0: 0 (scale-invariant, K^(l) = K*), 1 (K*=0 with a_1 != 0, (5.92);
        1/k when a_1 = ... = a_{k-1} = 0, footnote 19), 1 (half-stable, (5.103))."""
        if self.universality_class == SCALE_INVARIANT:
            return 0.0
        return 1.0 / self._order

    @property
    def p_parallel(self) -> float:
        """delta K_[1]^(l) ~ l^-p_par (5.47): 0 (scale-invariant, (5.64)), 2 (K*=0, (5.97)).

        For the K*=0 class with a_1 fine-tuned to zero (order k), chi_par = 1 - (k+1)/(k l)
        gives p_par = (k+1)/k; for the half-stable class 2, as for a_1 != 0."""
        if self.universality_class == SCALE_INVARIANT:
            return 0.0
        k = self._order
        return (k + 1) / k

    @property
    def p_perp(self) -> float | None:
        """Perpendicular perturbations delta delta K_[2]^(l) ~ l^-p_perp.

        K*=0 class: b_1/a_1 (5.99), = 1 for odd activations. Scale-invariant: 2 at finite angle
        (5.168) when rho > 0 (the infinitesimal analysis (5.65) gives 0, as does the linear
        activation, rho = 0). None where the book gives no exponent (half-stable; a_1 = 0).
        """
        if self.universality_class == SCALE_INVARIANT:
            return 2.0 if self.rho > _ZERO else 0.0
        if self.universality_class == K_STAR_ZERO and self.a[0] != 0:
            return self.b1 / self.a[0]
        return None

    @property
    def vertex_slope(self) -> float | None:
        """The coefficient c in V^(l) / (n K^(l)^2) = c l/n + ... at criticality.

        3 A_4 / A_2^2 - 1 for the scale-invariant class (5.130) (5 for ReLU, 2 for linear);
        2/3 for the K*=0 class (5.131) (also when a_1 = 0: the order k drops out). None for the
        half-stable class, whose asymptotic regime lies beyond l ~ 1/|a~_1| (see chapter 5).
        """
        if self.universality_class == SCALE_INVARIANT:
            return 3 * self.A4 / self.A2**2 - 1
        if self.universality_class == K_STAR_ZERO:
            return 2.0 / 3.0
        return None

    def kernel_asymptotic(self, layers, K1: float | None = None) -> np.ndarray:
        """Leading large-l kernel K^(l) at criticality.

        Scale-invariant: K1 at every layer (``K1`` required, (5.66)); K*=0: 1/((-a_1) l)
        (5.92), or (-k a_k l)^(-1/k); half-stable: K* + 1/((-a~_1) l) (5.103), valid on the
        attracted side only.
        """
        ell = np.asarray(layers, dtype=np.float64)
        if np.any(ell <= 0):
            raise ValueError(f"layers must be > 0, got {layers}")
        if self.universality_class == SCALE_INVARIANT:
            if K1 is None or not np.isfinite(K1) or K1 < 0:
                raise ValueError(
                    f"K1 must be a variance >= 0 for the scale-invariant class, got {K1}"
                )
            return np.full_like(ell, float(K1))
        k = self._order
        if self.universality_class == K_STAR_ZERO:
            return (-k * self.a[k - 1] * ell) ** (-1.0 / k)
        return self.K_star + 1.0 / (-self.a[0] * ell)


def _is_discontinuous(act: Activation) -> float | None:
    """The first kink at which sigma itself jumps (the perceptron), else None."""
    for kink in act.kinks:
        eps = 1e-9 * max(1.0, abs(kink))
        below, above = float(act(kink - eps)), float(act(kink + eps))
        if abs(above - below) > 1e-6 * max(1.0, abs(above), abs(below)):
            return kink
    return None


def _scale_invariant_slopes(act: Activation) -> tuple[float, float] | None:
    """(a_+, a_-) if sigma(lambda z) = lambda sigma(z) for lambda > 0 (5.58), else None."""
    z = np.linspace(-3.0, 3.0, 25)
    a_plus, a_minus = float(act(1.0)), -float(act(-1.0))
    for lam in (0.37, 2.9):
        lhs, rhs = np.asarray(act(lam * z)), lam * np.asarray(act(z))
        if not np.allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * (abs(a_plus) + abs(a_minus))):
            return None
    expected = np.where(z >= 0, a_plus * z, a_minus * z)
    if not np.allclose(np.asarray(act(z)), expected, rtol=1e-12, atol=1e-14):
        return None
    return a_plus, a_minus


def taylor_coefficients(activation: str | Activation | Callable, order: int) -> np.ndarray:
    """sigma_p = sigma^(p)(0) for p = 0..order, the coefficients of (5.80), by autodiff.

    Raises ValueError when sigma has a kink at 0 (no Taylor expansion there).
    """
    act = get_activation(activation)
    if isinstance(order, bool) or not isinstance(order, Integral) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    if 0.0 in act.kinks:
        raise ValueError(f"activation {act.name!r} has a kink at z = 0: no Taylor expansion")
    return np.array([float(act.derivative(p)(0.0)) for p in range(order + 1)])


def _kernel_series(sigma: np.ndarray, terms: int) -> np.ndarray:
    """c_m with g(K) = <sigma^2>_K = sum_m c_m K^m, m = 0..terms-1, from sigma_p (5.81).

    <z^{2m}>_K = (2m-1)!! K^m; odd powers vanish.
    """
    t = sigma / np.array([math.factorial(p) for p in range(sigma.size)])
    square = np.convolve(t, t)
    return np.array([square[2 * m] * _double_factorial(2 * m - 1) for m in range(terms)])


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def kernel_derivative(activation: str | Activation | Callable, K: float, order: int) -> float:
    """d^m g / dK^m at K > 0 for g(K) = <sigma sigma>_K (5.5), m = ``order`` >= 0 (the m = 1
    case is (5.53)); :func:`pdltlib.gaussian.bracket_derivative` with power 2, exact for kinks.
    """
    return bracket_derivative(activation, K, 2, order)


def _stability(a1: float) -> str:
    if a1 > 0:
        return "half-stable (attracts K < K*)"
    return "half-stable (attracts K > K*)"


def _nonzero_fixed_points(act: Activation, k_range: tuple[float, float], points: int):
    """Roots K* > 0 of chi_perp(K) = chi_par(K) (5.73), refined; with (C_b, C_W) and a~_1.

    The difference chi_perp - chi_par at C_W = 1 is scanned (not the ratio, whose denominator
    chi_par can vanish, e.g. for sin at large K); a sign change counts only where chi_par > 0,
    since chi_par = 1 needs g'(K*) > 0.
    """
    grid = np.geomspace(*k_range, points)
    par, perp = chi_parallel(act, grid, 1.0), chi_perp(act, grid, 1.0)
    diff = perp - par
    valid = par > 1e-8 * np.maximum(perp, 1e-300)
    found = []
    for i in np.flatnonzero((np.sign(diff[1:]) != np.sign(diff[:-1])) & valid[1:] & valid[:-1]):
        k_star = brentq(
            lambda k: float(chi_perp(act, k, 1.0) - chi_parallel(act, k, 1.0)),
            grid[i],
            grid[i + 1],
            xtol=1e-13 * grid[i],
            rtol=1e-14,
        )
        c_w = 1.0 / float(chi_perp(act, k_star, 1.0))  # (5.71)
        c_b = k_star - c_w * activation_expectation(act, k_star, (0, 0))  # (5.72)
        if abs(c_b) < _ZERO * k_star:
            c_b = 0.0
        a1 = c_w * kernel_derivative(act, k_star, 2) / 2  # (5.102)
        found.append(FixedPoint(k_star, c_b, c_w, a1, _stability(a1)))
    return found


def _zero_fixed_point(act: Activation) -> tuple[FixedPoint | None, dict, str | None]:
    """The K* -> 0 candidate from the Taylor coefficients (section 5.3.3).

    Returns (fixed point or None, details {taylor, a, b1}, reason when there is none).
    """
    sigma = taylor_coefficients(act, 3)
    scale = max(1.0, float(np.max(np.abs(sigma))))
    s0, s1 = sigma[0], sigma[1]
    if abs(s1) < _ZERO * scale:
        return None, {"taylor": sigma}, f"sigma'(0) = {s1:.3g}: (5.89) needs sigma'(0) != 0"
    c_w = 1.0 / s1**2
    if abs(s0) >= _ZERO * scale:
        if abs(s0 * sigma[2]) < _ZERO * scale**2:  # chi_perp/chi_par -> 1 as K -> 0 (5.73)
            reason = (
                f"sigma(0) = {s0:.4g} != 0: the K* -> 0 root of (5.73) needs "
                f"C_b = -(sigma(0)/sigma'(0))^2 = {-((s0 / s1) ** 2):.4g} < 0 (section 5.3.2)"
            )
        else:
            reason = f"sigma(0) = {s0:.4g} != 0, so K* = 0 is no fixed point (5.81)-(5.82)"
        return None, {"taylor": sigma}, reason
    a: list[float] = []
    for k in range(1, _MAX_ORDER + 1):
        sigma = taylor_coefficients(act, 2 * k + 1) if sigma.size < 2 * k + 2 else sigma
        a_k = float(_kernel_series(sigma, k + 2)[k + 1] * c_w)  # (5.83), (5.86)-(5.87)
        a.append(a_k if abs(a_k) >= _ZERO else 0.0)
        if k >= 2 and any(a):  # a_1 and a_2 always (they enter (5.94)); more if a_1 = 0
            break
    b1 = float((sigma[3] / s1) + (sigma[2] / s1) ** 2)  # (5.88)
    details = {"taylor": sigma, "a": tuple(a), "b1": b1}
    first = next((x for x in a if x != 0.0), 0.0)
    if first == 0.0:
        return None, details, f"a_1 = ... = a_{_MAX_ORDER} = 0: K* = 0 is (numerically) marginal"
    stability = "stable" if first < 0 else "unstable"
    return FixedPoint(0.0, 0.0, c_w, a[0], stability), details, None


def critical_point(
    activation: str | Activation | Callable,
    *,
    k_range: tuple[float, float] = _DEFAULT_RANGE,
    points: int = 49,
) -> CriticalPoint:
    """Find the critical initialization (C_b, C_W), the fixed point K* and the universality class.

    Numerical, for any activation (a name, an :class:`~pdltlib.activations.Activation` or a JAX
    function): scale invariance (5.58) is tested directly; the K* = 0 fixed point comes from the
    Taylor coefficients at 0 (5.80)-(5.90); fixed points K* > 0 are roots of (5.73) on a
    log-spaced grid of ``points`` values in ``k_range``, refined by Brent's method, with (C_b, C_W)
    from (5.71)-(5.72) and their stability from a~_1 = C_W g''(K*)/2 (5.102).

    Preference when several exist: the scale-invariant line, then a stable K* = 0, then the
    smallest physical (C_b >= 0) K* > 0; the rest are listed in ``others``.

    Raises:
        NoCriticalityError (a ValueError): the activation has no critical initialization, with
            the reason (e.g. sigmoid: sigma(0) != 0 forces C_b < 0; softplus: (5.73) has no root;
            the perceptron: sigma jumps, so chi_perp is infinite).
        ValueError: for a bad ``k_range`` or ``points``.
    """
    act = get_activation(activation)
    lo, hi = (float(v) for v in k_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"k_range must be (low, high) with 0 < low < high, got {k_range}")
    if isinstance(points, bool) or not isinstance(points, Integral) or points < 3:
        raise ValueError(f"points must be an integer >= 3, got {points!r}")
    name = act.name
    jump = _is_discontinuous(act)
    if jump is not None:
        raise NoCriticalityError(
            name,
            f"sigma jumps at z = {jump:g}, so sigma' contains a Dirac delta and "
            "chi_perp = C_W <sigma' sigma'>_K is infinite for every K > 0 (footnote 17)",
        )
    slopes = _scale_invariant_slopes(act)
    if slopes is not None:
        return _scale_invariant(act, *slopes)

    zero, details, zero_reason = (None, {}, None)
    if 0.0 in act.kinks:
        zero_reason = "sigma has a kink at z = 0 and is not scale-invariant: no Taylor expansion"
    else:
        zero, details, zero_reason = _zero_fixed_point(act)
    nonzero = _nonzero_fixed_points(act, (lo, hi), int(points))
    physical = [p for p in nonzero if p.physical]
    candidates = [zero] if zero is not None else []
    candidates += nonzero
    if zero is not None and zero.stability == "stable":
        primary, cls = zero, K_STAR_ZERO
    elif physical:
        primary, cls = physical[0], HALF_STABLE
    else:
        raise NoCriticalityError(name, _no_criticality_reason(zero, zero_reason, nonzero, lo, hi))
    others = tuple(p for p in candidates if p is not primary)
    common = dict(activation=name, C_b=primary.C_b, C_W=primary.C_W, K_star=primary.K_star)
    if cls == K_STAR_ZERO:
        return CriticalPoint(
            universality_class=cls,
            taylor=tuple(details["taylor"]),
            a=details["a"],
            b1=details["b1"],
            others=others,
            **common,
        )
    return CriticalPoint(
        universality_class=cls,
        taylor=tuple(details.get("taylor", ())),
        a=(primary.a1,),
        others=others,
        **common,
    )


def _no_criticality_reason(zero, zero_reason, nonzero, lo, hi) -> str:
    parts = []
    if zero is not None:  # an unstable K* = 0
        parts.append(
            f"K* = 0 is unstable (a_1 = {zero.a1:.4g}; the first non-zero a_k is > 0, so the "
            "kernel is repelled, (5.92))"
        )
    elif zero_reason:
        parts.append(zero_reason)
    if nonzero:
        parts.append(
            "the roots K* = "
            + ", ".join(f"{p.K_star:.6g}" for p in nonzero)
            + " of (5.73) need C_b < 0 (5.72)"
        )
    else:
        parts.append(f"chi_perp/chi_par = 1 (5.73) has no root K* in [{lo:g}, {hi:g}]")
    return "; ".join(parts)


def _scale_invariant(act: Activation, a_plus: float, a_minus: float) -> CriticalPoint:
    """The scale-invariant class (section 5.2): A_2 = g(K)/K measured by quadrature."""
    A2 = activation_expectation(act, 1.0, (0, 0))  # g(1) = A_2 (5.60)
    if A2 <= 0:
        raise NoCriticalityError(act.name, "sigma = 0 identically: g(K) = 0, no susceptibility")
    A4 = activation_expectation(act, 1.0, (0, 0, 0, 0)) / 3.0  # <sigma^4>_1 = 3 A_4 (5.113)
    rho = (a_plus - a_minus) ** 2 / (math.pi * (a_plus**2 + a_minus**2))  # (5.163)
    return CriticalPoint(
        activation=act.name,
        universality_class=SCALE_INVARIANT,
        C_b=0.0,
        C_W=1.0 / A2,  # (5.67)
        K_star=None,
        a_plus=a_plus,
        a_minus=a_minus,
        A2=A2,
        A4=A4,
        rho=rho,
    )


class UniversalityTable(Table):
    """The universality classes of a list of activations (a row per activation).

    Book: the universality classes of section 5.3.
    """

    columns = ("activation", "class", "C_b", "C_W", "K*", "a_1 / details or reason")

    def __init__(self, rows: Sequence[tuple[str, ...]], results: dict):
        self._rows = list(rows)
        self.results = results  # name -> CriticalPoint or NoCriticalityError

    def rows(self) -> list[tuple[str, ...]]:
        return list(self._rows)


def _row(cp: CriticalPoint) -> tuple[str, ...]:
    if cp.universality_class == SCALE_INVARIANT:
        detail = f"A_2 = {cp.A2:.6g}, rho = {cp.rho:.4g}; line of fixed points"
        k_star = "any (= K^(1))"
    elif cp.universality_class == K_STAR_ZERO:
        detail = f"a_1 = {cp.a1:.6g}, a_2 = {cp.a[1]:.6g}, b_1 = {cp.b1:.6g}"
        if cp.a1 == 0:
            detail = f"a = {cp.a} (a_1 fine-tuned to 0)"
        k_star = "0"
    else:
        detail = f"a~_1 = {cp.a1:.6g}, {_stability(cp.a1)}"
        k_star = f"{cp.K_star:.8g}"
    if cp.others:
        detail += "; also " + ", ".join(
            f"K*={p.K_star:.4g} ({p.stability}{'' if p.physical else ', C_b<0'})" for p in cp.others
        )
    return (cp.activation, cp.universality_class, f"{cp.C_b:.8g}", f"{cp.C_W:.8g}", k_star, detail)


def universality_table(
    activations: Sequence[str | Activation | Callable] | None = None, **options
) -> UniversalityTable:
    """Run :func:`critical_point` on each activation (default: the whole zoo) and tabulate.

    Activations without criticality get a row with class "none" and the reason. ``options``
    are passed to :func:`critical_point`.

    Book: the universality classes of section 5.3.
    """
    acts = [get_activation(a) for a in (activations or available_activations())]
    rows, results = [], {}
    for act in acts:
        try:
            cp = critical_point(act, **options)
        except NoCriticalityError as err:
            results[act.name] = err
            rows.append((act.name, "none", "—", "—", "—", err.reason))
            continue
        results[act.name] = cp
        rows.append(_row(cp))
    return UniversalityTable(rows, results)


# --- Depth asymptotics -----------------------------------------------------------------------


def local_exponent(layers, values) -> np.ndarray:
    """The local power -d log|y| / d log l, by centred differences (one-sided at the ends).

    For y ~ l^-p it tends to p; equal lengths of ``layers`` (> 0) and ``values`` (!= 0), >= 2.

    Book: the power laws of the K* = 0 and scale-invariant classes, sections 5.3.1-5.3.2 (e.g. eq.
    (5.92)).
    """
    ell = np.asarray(layers, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if ell.ndim != 1 or ell.shape != y.shape or ell.size < 2:
        raise ValueError(
            f"layers and values must be 1-d of equal length >= 2, got {ell.shape}, {y.shape}"
        )
    if np.any(ell <= 0) or np.any(y == 0) or not np.all(np.isfinite(y)):
        raise ValueError("layers must be > 0 and values finite and non-zero")
    return -np.gradient(np.log(np.abs(y)), np.log(ell))


@dataclass(frozen=True)
class DepthAsymptotics:
    """K^(l), V^(l) and a perpendicular perturbation at criticality, l = 1..depth.

    ``perp`` is K_[2]^(l) / K_[2]^(1). K*=0 and half-stable classes: the bootstrapped recursion
    (5.48) for an infinitesimal perpendicular perturbation (delta K_[1] = 0), the product of
    chi_perp(K^(l')) over l' < l. Scale-invariant class: the finite-angle result
    K_[2] = K_d (1 - cos psi^(l))/2 (5.168) with psi^(l) from (5.162) (the infinitesimal
    recursion (5.65) would give a constant).
    """

    critical: CriticalPoint
    layers: np.ndarray
    K: np.ndarray
    V: np.ndarray
    perp: np.ndarray

    @property
    def vertex_ratio(self) -> np.ndarray:
        """V^(l) / (K^(l))^2: n times the normalized vertex (5.128); ~ vertex_slope * l."""
        return self.V / self.K**2

    def measured(self, tail: int = 8) -> dict[str, float]:
        """Exponents and slope read off the last ``tail`` layers of the recursion.

        p0 (local exponent of K - K*, skipped for the scale-invariant class), p_perp (of
        ``perp``) and the vertex slope d(V/K^2)/dl, averaged over the tail.
        """
        cp = self.critical
        sl = slice(-tail, None)
        out = {}
        if cp.universality_class != SCALE_INVARIANT:
            delta = self.K - (cp.K_star or 0.0)
            out["p0"] = float(np.mean(local_exponent(self.layers, delta)[sl]))
        out["p_perp"] = float(np.mean(local_exponent(self.layers, self.perp)[sl]))
        out["vertex_slope"] = float(np.mean(np.gradient(self.vertex_ratio, self.layers)[sl]))
        return out


def depth_asymptotics(
    activation: str | Activation | Callable | CriticalPoint,
    K1: float,
    depth: int,
    *,
    psi1: float = math.pi / 2,
) -> DepthAsymptotics:
    """Run the single-input recursions at criticality to ``depth`` layers.

    K^(l) by :func:`pdltlib.kernels.kernel_flow` (5.46), V^(l) by
    :func:`pdltlib.kernels.four_point_flow` ((5.109), equal widths), and the perpendicular
    perturbation by (5.48) with chi_perp from :func:`pdltlib.kernels.chi_perp`, or, for the
    scale-invariant class, by the finite-angle recursion (5.162) from the first-layer angle
    ``psi1`` between two inputs of equal norm.
    """
    if isinstance(activation, CriticalPoint):
        cp, act = activation, get_activation(activation.activation)
    else:
        act = get_activation(activation)
        cp = critical_point(act)
    if not (np.isfinite(K1) and K1 > 0):
        raise ValueError(f"K1 must be a finite variance > 0, got {K1}")
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 3:
        raise ValueError(f"depth must be an integer >= 3, got {depth!r}")
    K = kernel_flow(act, cp.C_b, cp.C_W, K1, depth)
    V = four_point_flow(act, cp.C_b, cp.C_W, K1, depth)
    if cp.universality_class == SCALE_INVARIANT:
        psi = polar_angle_flow(cp.a_plus, cp.a_minus, psi1, depth)
        perp = (1 - np.cos(psi)) / (1 - math.cos(psi1))
    else:
        perp = np.concatenate([[1.0], np.cumprod(chi_perp(act, K[:-1], cp.C_W))])
    return DepthAsymptotics(cp, np.arange(1, depth + 1, dtype=np.float64), K, V, perp)


def polar_angle_flow(a_plus: float, a_minus: float, psi1: float, depth: int) -> np.ndarray:
    """psi^(l), l = 1..depth, at scale-invariant criticality, by the exact recursion (5.162):

        cos psi^(l+1) = cos psi^(l) + rho [sin psi^(l) - psi^(l) cos psi^(l)],

    rho = (a_+ - a_-)^2 / (pi (a_+^2 + a_-^2)) (5.163). For large l, psi ~ 3/(rho l) (5.166).
    """
    if not (np.isfinite(a_plus) and np.isfinite(a_minus)) or a_plus**2 + a_minus**2 == 0:
        raise ValueError(f"a_plus, a_minus must be finite and not both 0, got {a_plus}, {a_minus}")
    if not (np.isfinite(psi1) and 0 <= psi1 <= math.pi):
        raise ValueError(f"psi1 must be an angle in [0, pi], got {psi1}")
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    rho = (a_plus - a_minus) ** 2 / (math.pi * (a_plus**2 + a_minus**2))
    psi = [float(psi1)]
    for _ in range(depth - 1):
        p = psi[-1]
        c = math.cos(p) + rho * (math.sin(p) - p * math.cos(p))
        psi.append(math.acos(min(1.0, max(-1.0, c))))
    return np.array(psi)
