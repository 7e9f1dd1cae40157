import math
from functools import cache

import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib import criticality as cr
from pdltlib.activations import get_activation, scale_invariant
from pdltlib.kernels import chi_parallel, chi_perp, kernel_flow


@cache
def crit(name: str) -> cr.CriticalPoint:
    return cr.critical_point(name)


@pytest.mark.parametrize(
    ("activation", "a_plus", "a_minus"),
    [("relu", 1.0, 0.0), ("linear", 1.0, 1.0), ("leaky_relu", 1.0, 0.1), ("custom", 2.0, -0.5)],
)
def test_scale_invariant_line_of_fixed_points(activation, a_plus, a_minus):
    act = scale_invariant(a_plus, a_minus) if activation == "custom" else activation
    cp = cr.critical_point(act)
    A2 = (a_plus**2 + a_minus**2) / 2  # (5.61)
    assert cp.universality_class == "scale-invariant"
    assert cp.K_star is None and cp.C_b == 0.0
    assert cp.C_W == pytest.approx(1 / A2, rel=1e-12)  # (5.67): Kaiming C_W = 2 for ReLU
    assert cp.rho == pytest.approx((a_plus - a_minus) ** 2 / (math.pi * 2 * A2), abs=1e-15)
    # every K is a fixed point with chi_par = chi_perp = 1 (5.62)
    for K in (0.3, 4.0):
        assert chi_parallel(act, K, cp.C_W) == pytest.approx(1.0, rel=1e-11)
        assert chi_perp(act, K, cp.C_W) == pytest.approx(1.0, rel=1e-11)
        assert kernel_flow(act, 0.0, cp.C_W, K, 4) == pytest.approx(K, rel=1e-11)
    slope = 3 * (a_plus**4 + a_minus**4) / 2 / A2**2 - 1  # (5.116)/(5.130)
    assert cp.vertex_slope == pytest.approx(slope, rel=1e-11)
    assert cp.p0 == 0.0 and cp.p_perp == (2.0 if a_plus != a_minus else 0.0)


def test_relu_and_linear_vertex_slopes():
    assert crit("relu").vertex_slope == pytest.approx(5.0, rel=1e-12)
    assert crit("linear").vertex_slope == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "C_W", "a1", "b1"),
    [
        ("tanh", 1.0, -2.0, -2.0),  # book: a_1 = -2, b_1 = -2 below (5.88)
        ("sin", 1.0, -1.0, -1.0),
        ("erf", math.pi / 4, -2.0, -2.0),  # sigma_1 = 2/sqrt(pi), sigma_3 = -4/sqrt(pi)
    ],
)
def test_k_star_zero_class(name, C_W, a1, b1):
    cp = crit(name)
    assert cp.universality_class == "K*=0"
    assert cp.K_star == 0.0 and cp.C_b == 0.0
    assert cp.C_W == pytest.approx(C_W, rel=1e-12)
    assert cp.a1 == pytest.approx(a1, rel=1e-10)
    assert cp.b1 == pytest.approx(b1, rel=1e-10)
    assert cp.p0 == 1.0 and cp.p_parallel == 2.0
    assert cp.p_perp == pytest.approx(1.0)  # odd activations: a_1 = b_1 (5.99)
    assert cp.vertex_slope == pytest.approx(2 / 3)
    assert not cp.others  # no other fixed point in the scanned range
    # the Taylor coefficients agree with the quadrature: chi_par(K) = 1 + 2 a_1 K + O(K^2) (5.84)
    K = 1e-3
    assert chi_parallel(name, K, cp.C_W) == pytest.approx(1 + 2 * cp.a1 * K, abs=30 * K**2)
    assert chi_perp(name, K, cp.C_W) == pytest.approx(1 + cp.b1 * K, abs=30 * K**2)


def test_tanh_taylor_coefficients():
    """tanh: a_1 = -2, a_2 = 17/3, b_1 = -2 (book, below (5.88))."""
    np.testing.assert_allclose(cr.taylor_coefficients("tanh", 5), [0, 1, 0, -2, 0, 16], atol=1e-12)
    cp = crit("tanh")
    assert cp.a == pytest.approx((-2.0, 17 / 3), rel=1e-12)
    assert cp.taylor[5] == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("name", "K_star", "C_b", "C_W", "minus_a1"),
    [  # book (5.101)-(5.105)
        ("swish", 14.32017362, 0.55514317, 1.98800468, -2.84979219e-6),
        ("gelu", (3 + math.sqrt(17)) / 2, 0.17292239, 1.98305826, 1.43626419e-4),
    ],
)
def test_half_stable_classes(name, K_star, C_b, C_W, minus_a1):
    cp = crit(name)
    assert cp.universality_class == "half-stable"
    assert cp.K_star == pytest.approx(K_star, rel=1e-8)
    assert cp.C_b == pytest.approx(C_b, rel=1e-7)
    assert cp.C_W == pytest.approx(C_W, rel=1e-8)
    assert -cp.a1 == pytest.approx(minus_a1, rel=1e-6)
    # at the critical point the susceptibilities are one and K* is a fixed point
    assert chi_parallel(name, cp.K_star, cp.C_W) == pytest.approx(1.0, rel=1e-10)
    assert chi_perp(name, cp.K_star, cp.C_W) == pytest.approx(1.0, rel=1e-10)
    assert kernel_flow(name, cp.C_b, cp.C_W, cp.K_star, 3)[-1] == pytest.approx(cp.K_star, 1e-10)
    # the K* = 0 point exists at (0, 4) but is unstable: (-a_1) < 0 ((-a_1) = -6/pi for GELU)
    (zero,) = cp.others
    assert zero.K_star == 0.0 and zero.C_W == pytest.approx(4.0) and zero.stability == "unstable"
    assert zero.a1 == pytest.approx(0.75 if name == "swish" else 6 / math.pi, rel=1e-10)


def test_half_stable_side():
    """GELU's fixed point attracts from above, SWISH's from below (section 5.3.4)."""
    for name, sign in [("gelu", +1), ("swish", -1)]:
        cp = crit(name)
        K = kernel_flow(name, cp.C_b, cp.C_W, cp.K_star + sign * 0.5, 30)
        assert abs(K[-1] - cp.K_star) < abs(K[0] - cp.K_star)
        assert ("K > K*" if sign > 0 else "K < K*") in cr._stability(cp.a1)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("sigmoid", "C_b = -(sigma(0)/sigma'(0))^2 = -4"),
        ("softplus", "has no root"),
        ("perceptron", "Dirac delta"),
    ],
)
def test_no_criticality(name, words):
    with pytest.raises(cr.NoCriticalityError, match=name) as info:
        cr.critical_point(name)
    assert words in info.value.reason
    assert isinstance(info.value, ValueError)


def test_monomial_no_criticality():
    """sigma = z^2: (5.73) reads p/(2p-1) = 1 (5.78), never satisfied; sigma'(0) = 0."""
    with pytest.raises(cr.NoCriticalityError, match="sigma'\\(0\\)"):
        cr.critical_point(get_activation(lambda z: z**2))


def test_user_supplied_activation():
    def cubic_tanh(z):
        return jnp.tanh(z) + 0.5 * z**2

    cp = cr.critical_point(cubic_tanh, k_range=(0.01, 10.0), points=13)
    assert cp.activation == "cubic_tanh" and cp.universality_class == "K*=0"
    # sigma_2 = 1, sigma_3 = -2: a_1 = -2 + 3/4 (5.86), b_1 = -2 + 1 (5.88), p_perp = b1/a1
    assert cp.a1 == pytest.approx(-1.25, rel=1e-12)
    assert cp.b1 == pytest.approx(-1.0, rel=1e-12)
    assert cp.p_perp == pytest.approx(0.8)


def test_fine_tuned_a1_zero():
    """a_1 = 0 (footnote 19): sigma = z - z^5/10 has sigma_2 = sigma_3 = 0, a_2 = sigma_5/4 < 0."""

    def tuned(z):
        return z - z**5 / 10

    cp = cr.critical_point(tuned, k_range=(1e-3, 1.0), points=7)
    a2 = -12 / 4  # (5.87)
    assert cp.a == pytest.approx((0.0, a2), rel=1e-12)
    assert cp.p0 == 0.5  # K ~ 1/sqrt(-2 a_2 l)
    K = kernel_flow(tuned, 0.0, cp.C_W, 0.05, 300)
    # Delta K' = Delta K + a_2 K^3 (a_3 = 0 here) gives 1/K'^2 = 1/K^2 - 2 a_2 + 3 a_2^2 K^2 + ...
    slope = -2 * a2 + 3 * a2**2 * np.mean(K[-101:] ** 2)
    assert (K[-1] ** -2 - K[-101] ** -2) / 100 == pytest.approx(slope, rel=2e-3)
    assert cp.kernel_asymptotic(300) == pytest.approx((-2 * a2 * 300) ** -0.5, rel=1e-12)


def test_depth_asymptotics_tanh():
    d = cr.depth_asymptotics("tanh", 1.0, 120)
    m = d.measured()
    # asymptotic-expansion errors: relative corrections O(log l / l) (5.94), (5.99), (5.131)
    assert m["p0"] == pytest.approx(1.0, abs=0.03)
    assert m["p_perp"] == pytest.approx(1.0, abs=0.03)
    assert m["vertex_slope"] == pytest.approx(2 / 3, abs=0.01)
    assert d.K[-1] == pytest.approx(d.critical.kernel_asymptotic(120), rel=0.05)


def test_depth_asymptotics_relu():
    d = cr.depth_asymptotics("relu", 1.3, 12)
    np.testing.assert_allclose(d.K, 1.3, rtol=1e-12)  # K^(l) = K* (5.119)
    # V^(l) = (l - 1) (3 A_4 / A_2^2 - 1) K*^2 exactly (5.120)
    np.testing.assert_allclose(d.V, (d.layers - 1) * 5.0 * 1.3**2, rtol=1e-10)


def test_polar_angle():
    psi = cr.polar_angle_flow(1.0, 0.0, math.pi / 2, 3000)
    # the recursion (5.162) agrees with the quadrature kernel flow of two inputs
    c = 0.0
    K = kernel_flow("relu", 0.0, 2.0, np.array([[1.0, c], [c, 1.0]]), 6)
    np.testing.assert_allclose(np.arccos(K[:, 0, 1] / K[:, 0, 0]), psi[:6], atol=1e-12)
    # psi ~ 3/(rho l) (5.166), rho = 1/pi; expanding (5.162) to third order,
    # psi' = psi - rho psi^2/3 - rho^2 psi^3/18, so 1/psi = (rho/3) l + (rho/2) log l + C + ...
    ell = np.arange(1000, 3001)
    design = np.stack([ell, np.log(ell), np.ones_like(ell), np.log(ell) / ell, 1 / ell], axis=1)
    coef = np.linalg.lstsq(design, 1 / psi[ell - 1], rcond=None)[0]
    assert coef[0] == pytest.approx(1 / (3 * math.pi), rel=1e-4)
    assert coef[1] == pytest.approx(1 / (2 * math.pi), rel=1e-3)
    # linear: the angle is preserved (rho = 0)
    np.testing.assert_allclose(cr.polar_angle_flow(1.0, 1.0, 0.7, 10), 0.7, atol=1e-15)


def test_kernel_derivative_and_local_exponent():
    # g(K) = K/2 for ReLU: g' = 1/2, g'' = 0; for sin g = (1 - e^{-2K})/2
    assert cr.kernel_derivative("relu", 2.0, 1) == pytest.approx(0.5, rel=1e-12)
    assert cr.kernel_derivative("relu", 2.0, 2) == pytest.approx(0.0, abs=1e-12)
    assert cr.kernel_derivative("sin", 0.7, 2) == pytest.approx(-2 * math.exp(-1.4), rel=1e-10)
    ell = np.arange(1.0, 10.0)
    np.testing.assert_allclose(cr.local_exponent(ell, 3 * ell**-1.5), 1.5, rtol=1e-12)


def test_universality_table_rows():
    table = cr.universality_table(["relu", "perceptron"])
    rows = table.rows()
    assert rows[0][1] == "scale-invariant" and rows[1][1] == "none"
    assert "perceptron" in str(table) and "<table>" in table._repr_html_()


def test_bad_input():
    with pytest.raises(ValueError, match="k_range"):
        cr.critical_point("tanh", k_range=(1.0, 0.1))
    with pytest.raises(ValueError, match="points"):
        cr.critical_point("tanh", points=2)
    with pytest.raises(ValueError, match="unknown activation"):
        cr.critical_point("not-an-activation")
    with pytest.raises(ValueError, match="K1"):
        cr.depth_asymptotics(crit("relu"), -1.0, 10)
    with pytest.raises(ValueError, match="depth"):
        cr.depth_asymptotics(crit("relu"), 1.0, 2)
    with pytest.raises(ValueError, match="psi1"):
        cr.polar_angle_flow(1.0, 0.0, 4.0, 10)
    with pytest.raises(ValueError, match="order"):
        cr.taylor_coefficients("tanh", -1)
    with pytest.raises(ValueError, match="kink"):
        cr.taylor_coefficients("relu", 2)
    with pytest.raises(ValueError, match="K"):
        cr.kernel_derivative("tanh", 0.0, 1)
    with pytest.raises(ValueError, match="K1"):
        crit("relu").kernel_asymptotic([1, 2])
    with pytest.raises(ValueError, match="layers"):
        cr.local_exponent([1.0], [1.0])
