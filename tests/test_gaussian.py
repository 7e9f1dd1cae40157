"""Tests of pdltlib.gaussian against closed forms and brute-force scipy quadrature."""

import math
from fractions import Fraction

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from pdltlib.activations import available_activations, get_activation
from pdltlib.gaussian import activation_expectation, gaussian_expectation, normal_rule

CUT = 13.0  # the oracles integrate u ~ N(0, 1) over [-CUT, CUT] too (mass lost: 1e-38)


def phi(u):
    return math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def relu(z):
    return max(z, 0.0)


def step(z):
    return 1.0 if z >= 0 else 0.0


def quad_u(g, points=(), epsabs=1e-14):
    """E[g(u)], u ~ N(0, 1), by adaptive QUADPACK, split at ``points``."""
    inside = sorted({p for p in points if -CUT < p < CUT})
    value, _ = quad(
        lambda u: g(u) * phi(u), -CUT, CUT, points=inside or None, epsabs=epsabs, epsrel=1e-13,
        limit=2000,
    )  # fmt: skip
    return value


def oracle_1d(g, K, kinks=()):
    s = math.sqrt(K)
    return quad_u(lambda u: g(s * u), [k / s for k in kinks])


def oracle_2d(g1, g2, K, kinks=()):
    """E[g1(z1) g2(z2)] as a quad over z1 of g1 times a quad over z2 given z1 (to ~1e-13)."""
    s1 = math.sqrt(K[0][0])
    slope = K[0][1] / K[0][0]
    s2 = math.sqrt(K[1][1] - K[0][1] ** 2 / K[0][0])

    def outer(u1):
        mean = slope * s1 * u1
        inner = quad_u(lambda u2: g2(mean + s2 * u2), [(k - mean) / s2 for k in kinks], 1e-13)
        return g1(s1 * u1) * inner

    points = [k / s1 for k in kinks] + [k / (slope * s1) for k in kinks if slope != 0]
    return quad_u(outer, points, 1e-13)


def angle(K):
    """The angle between the two inputs, from the exact determinant of the float matrix K.

    A determinant that rounding in K made negative is zero (so is the quadrature's).
    """
    F = [[Fraction(x) for x in row] for row in K]
    return math.atan2(math.sqrt(max(float(F[0][0] * F[1][1] - F[0][1] ** 2), 0.0)), K[0, 1])


def relu_kernel(K):
    t = angle(K)
    return (
        math.sqrt(K[0, 0] * K[1, 1]) / (2 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t))
    )


def step_kernel(K):
    return (math.pi - angle(K)) / (2 * math.pi)


def erf_kernel(K):
    return 2 / math.pi * math.asin(2 * K[0, 1] / math.sqrt((1 + 2 * K[0, 0]) * (1 + 2 * K[1, 1])))


def wick4(K):
    return K[0, 0] * K[1, 1] + 2 * K[0, 1] ** 2


def wick6(K):
    return (
        K[0, 0] * K[1, 1] * K[2, 2]
        + 2 * (K[0, 0] * K[1, 2] ** 2 + K[1, 1] * K[0, 2] ** 2 + K[2, 2] * K[0, 1] ** 2)
        + 8 * K[0, 1] * K[0, 2] * K[1, 2]
    )


def kernel(K11, K22, rho):
    K12 = rho * math.sqrt(K11 * K22)
    return np.array([[K11, K12], [K12, K22]])


def square(z):
    return (z[..., 0] * z[..., 1]) ** 2


# ---------------------------------------------------------------- one dimension


@pytest.mark.parametrize("K", [1e-4, 0.3, 1.0, 7.0, 100.0])
@pytest.mark.parametrize("m", [1, 2, 4])
def test_gaussian_moments(K, m):
    double_factorial = math.prod(range(2 * m - 1, 0, -2))
    assert gaussian_expectation(lambda z: z ** (2 * m), K) == pytest.approx(
        double_factorial * K**m, rel=1e-13
    )
    assert gaussian_expectation(lambda z: z ** (2 * m - 1), K) == pytest.approx(
        0.0, abs=1e-14 * K ** (m - 0.5)
    )


def test_scalar_and_one_by_one_matrix_agree():
    value = gaussian_expectation(np.cos, 2.0)
    assert value == pytest.approx(math.exp(-1.0), rel=1e-14)
    assert gaussian_expectation(lambda z: np.cos(z[..., 0]), [[2.0]]) == value


@pytest.mark.parametrize("K", [0.0, [[0.0, 0.0], [0.0, 0.0]]])
def test_zero_kernel_gives_f_at_zero(K):
    value = gaussian_expectation(lambda z: np.cos(np.sum(np.atleast_1d(z), axis=-1)) + 2.0, K)
    assert value == 3.0


@pytest.mark.parametrize("K", [1.0, 100.0])
def test_tanh_squared_at_large_variance(K):
    value = activation_expectation("tanh", K, (0, 0))
    assert value == pytest.approx(oracle_1d(lambda z: math.tanh(z) ** 2, K, [0.0]), abs=1e-12)


@pytest.mark.parametrize("K", [0.3, 100.0])
def test_sin_squared_resolves_oscillations(K):
    exact = (1 - math.exp(-2 * K)) / 2
    assert activation_expectation("sin", K, (0, 0)) == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("name", available_activations())
@pytest.mark.parametrize("K", [0.4, 5.0])
def test_every_activation_1d_against_quad(name, K):
    act = get_activation(name)
    sigma = jax.jit(act.fn)
    reference = oracle_1d(lambda z: float(sigma(z)) ** 2, K, act.kinks)
    assert activation_expectation(act, K, (0, 0)) == pytest.approx(reference, rel=1e-11, abs=1e-13)


@pytest.mark.parametrize("a", [-0.7, 0.3, 2.5])
@pytest.mark.parametrize("K", [0.05, 1.0, 30.0])
def test_kink_away_from_zero_is_exact(a, K):
    s = math.sqrt(K)
    exact = s * 2 * phi(a / s) + a * math.erf(a / s / math.sqrt(2))  # E|z - a|
    value = gaussian_expectation(lambda z: np.abs(z - a), K, kinks=(a,))
    assert value == pytest.approx(exact, rel=1e-13, abs=1e-15)


def test_normal_rule_moments_and_breakpoints():
    nodes, weights = normal_rule()
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)
    assert weights @ nodes**10 == pytest.approx(945.0, rel=1e-13)
    exact = 2 * phi(0.3) + 0.3 * math.erf(0.3 / math.sqrt(2))
    nodes, weights = normal_rule([0.3, 40.0], order=8, cutoff=10.0, panel_width=0.5)
    assert weights @ np.abs(nodes - 0.3) == pytest.approx(exact, rel=1e-14)
    nodes, weights = normal_rule(order=8, cutoff=10.0, panel_width=0.5)  # no split: inaccurate
    assert abs(weights @ np.abs(nodes - 0.3) - exact) > 1e-6


# ---------------------------------------------------------------- two dimensions


CORRELATIONS = [0.0, 0.5, -0.5, 0.99, 0.999999, 1.0, -1.0]
CASES = [
    (K11, K22, rho) for K11, K22 in [(1e-4, 1e-4), (1.0, 1.0), (0.3, 2.0)] for rho in CORRELATIONS
]
CASES += [(100.0, 0.01, 0.5), (100.0, 100.0, 0.999999), (100.0, 100.0, -1.0)]  # cheap ones


@pytest.mark.parametrize("K11, K22, rho", CASES)
def test_closed_form_kernels(K11, K22, rho):
    K = kernel(K11, K22, rho)
    scale = math.sqrt(K11 * K22)
    assert activation_expectation("relu", K, (0, 1)) == pytest.approx(
        relu_kernel(K), abs=1e-14 * scale
    )
    assert activation_expectation("step", K, (0, 1)) == pytest.approx(step_kernel(K), abs=1e-13)
    assert activation_expectation("erf", K, (0, 1)) == pytest.approx(erf_kernel(K), abs=1e-13)
    sin_kernel = math.exp(-(K11 + K22) / 2) * math.sinh(K[0, 1])
    assert activation_expectation("sin", K, (0, 1)) == pytest.approx(sin_kernel, abs=1e-14)
    assert gaussian_expectation(square, K) == pytest.approx(wick4(K), rel=1e-13)


def test_identical_inputs_are_exactly_one_dimensional():
    for a in [1e-3, 0.7, 3.0, 100.0]:
        K = np.array([[a, a], [a, a]])
        one_d = activation_expectation("relu", a, (0, 0))
        assert activation_expectation("relu", K, (0, 1)) == pytest.approx(one_d, rel=1e-15)
        # the degenerate second coordinate adds no nodes: the 1-D rule's value, bit for bit,
        # which is 1/2 up to the rounding of its weight sum (a few ulp)
        step_1d = activation_expectation("step", a, (0, 0))
        assert activation_expectation("step", K, (0, 1)) == step_1d
        assert step_1d == pytest.approx(0.5, abs=4e-16)
        assert activation_expectation("step", np.array([[a, -a], [-a, a]]), (0, 1)) == 0.0


def test_nearly_identical_inputs_step_kernel():
    # the quadrature must not lose accuracy to the cancellation in K11 K22 - K12^2
    for delta in [1e-4, 1e-8, 1e-12]:
        for sign in [1.0, -1.0]:
            K = kernel(2.0, 3.0, sign * (1.0 - delta))
            assert activation_expectation("step", K, (0, 1)) == pytest.approx(
                step_kernel(K), abs=1e-13
            )


def test_tanh_2d_at_large_variance():
    K = kernel(100.0, 30.0, -0.4)
    reference = oracle_2d(math.tanh, math.tanh, K, [0.0])
    assert activation_expectation("tanh", K, (0, 1)) == pytest.approx(reference, abs=1e-12)


def test_shifted_kinks_2d():
    K = kernel(0.8, 2.5, 0.7)
    a = 0.4

    def f(z):
        return np.maximum(z[..., 0] - a, 0.0) * np.abs(z[..., 1] - a)

    reference = oracle_2d(lambda z: max(z - a, 0.0), lambda z: abs(z - a), K, [a])
    assert gaussian_expectation(f, K, kinks=(a,)) == pytest.approx(reference, abs=1e-12)


def test_derivative_factors():
    K = kernel(0.6, 1.7, 0.4)
    # <erf'(z1) erf'(z2)> = (4 / pi) / sqrt(det(1 + 2K))
    exact = 4 / math.pi / math.sqrt(np.linalg.det(np.eye(2) + 2 * K))
    assert activation_expectation("erf", K, (0, 1), derivatives=(1, 1)) == pytest.approx(
        exact, rel=1e-13
    )
    relu_prime = activation_expectation("relu", K, (0, 1), derivatives=(1, 1))
    assert relu_prime == pytest.approx(step_kernel(K), abs=1e-14)
    reference = oracle_2d(
        lambda z: 1 / math.cosh(z) ** 2, lambda z: math.tanh(z) * (1 / math.cosh(z) ** 2), K
    )
    mixed = activation_expectation("tanh", K, (0, 1, 1), derivatives=(1, 0, 1))
    assert mixed == pytest.approx(reference, abs=1e-13)


def test_sub_kernel_of_a_larger_kernel():
    A = np.random.default_rng(1).normal(size=(5, 5))
    K = A @ A.T / 5
    sub = K[np.ix_([1, 3], [1, 3])]
    assert activation_expectation("relu", K, (3, 1)) == activation_expectation("relu", sub, (0, 1))
    assert activation_expectation("tanh", K, (2, 2)) == activation_expectation(
        "tanh", K[2, 2], (0, 0)
    )
    assert activation_expectation("tanh", K, ()) == 1.0
    wick = wick4(K[np.ix_([4, 0], [4, 0])])
    assert activation_expectation("linear", K, (4, 0, 4, 0)) == pytest.approx(wick, rel=1e-13)


@settings(max_examples=15, deadline=None)
@given(
    st.floats(1e-4, 100.0),
    st.floats(1e-4, 100.0),
    st.one_of(st.floats(-1.0, 1.0), st.sampled_from([-1.0, 1.0])),
)
def test_random_2x2_kernels(K11, K22, rho):
    K = kernel(K11, K22, rho)
    assert gaussian_expectation(square, K) == pytest.approx(wick4(K), rel=1e-12)
    assert activation_expectation("relu", K, (0, 1)) == pytest.approx(
        relu_kernel(K), abs=1e-13 * math.sqrt(K11 * K22)
    )


# ---------------------------------------------------------------- three dimensions

K3 = np.array([[1.0, 0.4, -0.3], [0.4, 0.7, 0.2], [-0.3, 0.2, 1.3]])


def test_3d_polynomial_against_wick():
    value = gaussian_expectation(lambda z: (z[..., 0] * z[..., 1] * z[..., 2]) ** 2, K3)
    assert value == pytest.approx(wick6(K3), rel=1e-13)


def test_3d_relu_against_quad():
    L = np.linalg.cholesky(K3)

    def relu_mean(m, s):  # E[relu(m + s w)], w ~ N(0, 1)
        return m * 0.5 * (1 + math.erf(m / s / math.sqrt(2))) + s * phi(m / s)

    def given_u1(u1):
        z1 = L[0, 0] * u1
        if z1 <= 0:
            return 0.0
        kinks = [-L[1, 0] * u1 / L[1, 1], -L[2, 0] * u1 / L[2, 1]]
        inner = quad_u(
            lambda u2: (
                relu(L[1, 0] * u1 + L[1, 1] * u2) * relu_mean(L[2, 0] * u1 + L[2, 1] * u2, L[2, 2])
            ),
            kinks,
        )
        return z1 * inner

    reference = quad_u(given_u1, [0.0])
    assert activation_expectation("relu", K3, (0, 1, 2)) == pytest.approx(reference, abs=1e-12)


def test_3d_orthant_probability_nearly_degenerate():
    # P(z1 > 0, z2 > 0, z3 > 0) = 1/8 + (asin r12 + asin r13 + asin r23) / (4 pi)
    r = np.array([[1.0, 1 - 1e-6, 0.5], [1 - 1e-6, 1.0, 0.5], [0.5, 0.5, 1.0]])
    K = r * np.outer([0.7, 1.0, 1.3], [0.7, 1.0, 1.3])
    exact = 1 / 8 + (math.asin(r[0, 1]) + 2 * math.asin(0.5)) / (4 * math.pi)
    assert activation_expectation("step", K, (0, 1, 2)) == pytest.approx(exact, abs=1e-13)


def test_3d_with_a_repeated_input_is_2d():
    K = np.array([[1.0, 0.4, 1.0], [0.4, 0.7, 0.4], [1.0, 0.4, 1.0]])  # input 2 = input 0
    three = activation_expectation("relu", K, (0, 1, 2))
    two = activation_expectation("relu", K[:2, :2], (0, 0, 1))
    assert three == pytest.approx(two, rel=1e-14)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "K, match",
    [
        (-1.0, "variance"),
        (np.nan, "finite"),
        ([[1.0, np.inf], [np.inf, 1.0]], "finite"),
        ([[1.0, 0.5], [0.4, 1.0]], "symmetric"),
        ([[1.0, 2.0], [2.0, 1.0]], "positive semidefinite"),
        ([[-1.0, 0.0], [0.0, 1.0]], "positive semidefinite"),
        (np.eye(4), "Monte Carlo"),
        (np.ones((2, 3)), "square"),
        (100.0 * np.eye(3), "evaluations"),
    ],
)
def test_bad_kernels(K, match):
    with pytest.raises(ValueError, match=match):
        gaussian_expectation(lambda z: z[..., 0] if np.ndim(K) else z, K)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"order": 0}, "order"),
        ({"order": 2.5}, "order"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": -3.0}, "cutoff"),
        ({"panel_width": 0.0}, "panel_width"),
        ({"kinks": (np.nan,)}, "kinks"),
    ],
)
def test_bad_quadrature_options(options, match):
    with pytest.raises(ValueError, match=match):
        gaussian_expectation(np.cos, 1.0, **options)


def test_bad_options_of_normal_rule():
    with pytest.raises(ValueError, match="breakpoints"):
        normal_rule([np.inf])
    with pytest.raises(ValueError, match="order"):
        normal_rule(order=-1)


def test_non_finite_integrand_raises():
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_expectation(lambda z: np.where(z > 5.0, np.nan, 1.0), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_expectation(lambda z: np.where(z[..., 1] < -12.0, np.inf, 0.0), np.eye(2))


@pytest.mark.parametrize(
    "alphas, derivatives, match",
    [
        ((0, 2), None, "alphas"),
        ((-1,), None, "alphas"),
        ((0, 1), (1,), "derivatives"),
        ((0, 1), (1, -1), "derivatives"),
    ],
)
def test_bad_activation_arguments(alphas, derivatives, match):
    with pytest.raises(ValueError, match=match):
        activation_expectation("tanh", np.eye(2), alphas, derivatives=derivatives)


def test_more_than_three_inputs_raises():
    with pytest.raises(ValueError, match="Monte Carlo"):
        activation_expectation("tanh", np.eye(4), (0, 1, 2, 3))
    with pytest.raises(ValueError, match="square"):
        activation_expectation("tanh", np.ones(3), (0,))
