import math
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib import stats
from pdltlib.activations import scale_invariant
from pdltlib.criticality import kernel_derivative
from pdltlib.gaussian import bracket_derivative
from pdltlib.six_point import (
    scale_invariant_critical_six_point,
    scale_invariant_exact_six_point,
    scale_invariant_six_point_coefficients,
    six_point_flow,
    six_point_from_metric,
    stochastic_metric,
)


def test_relu_recursion_is_book_eq_epsilon_20_with_one_eighth():
    k1, c_w, depth = 0.7, 1.6, 6  # off criticality: K changes from layer to layer
    flow = six_point_flow("relu", 0.0, c_w, k1, depth)
    for layer in range(depth - 1):
        k, v, u = flow.K[layer], flow.V[layer], flow.U[layer]
        book = c_w**3 / 8 * (u + 30 * v * k + 44 * k**3)  # (ε.20), "18" read as 1/8
        np.testing.assert_allclose(flow.U[layer + 1], book, rtol=1e-10)


def test_critical_solutions_relu_epsilon_21_and_linear_3_57():
    ell = np.arange(1, 9)
    relu = scale_invariant_critical_six_point(8)
    np.testing.assert_allclose(relu, 75 * ell**2 - 181 * ell + 106, atol=1e-9)  # (ε.21): 75 l^2
    flow = six_point_flow("relu", 0.0, 2.0, 1.3, 8)
    np.testing.assert_allclose(flow.U / flow.K**3, relu, rtol=1e-10)
    linear = scale_invariant_critical_six_point(8, 1.0, 1.0)
    np.testing.assert_allclose(linear, 12 * ell**2 - 28 * ell + 16, atol=1e-9)  # (3.57): 12 l^2
    assert scale_invariant_six_point_coefficients(1, 0) == (5.0, 44.0)
    assert scale_invariant_six_point_coefficients(1, 1) == (2.0, 8.0)


@pytest.mark.parametrize("a_minus", [0.0, 0.3, 1.0])
def test_exact_oracle_expands_to_the_recursion(a_minus):
    depth, big = 6, 10**6
    exact = scale_invariant_exact_six_point([big] * (depth - 1), 1.0, a_minus)
    flow = six_point_flow(scale_invariant(1.0, a_minus), 0.0, 1.7, 0.9, depth)  # any C_W
    np.testing.assert_allclose(big**2 * exact, flow.U / flow.K**3, rtol=1e-4, atol=1e-8)


def test_exact_oracle_for_linear_networks_is_book_eq_3_57():
    n, depth = 24, 5
    exact = scale_invariant_exact_six_point([n] * (depth - 1), 1.0, 1.0)
    g2 = np.concatenate([[1.0], np.cumprod(np.full(depth - 1, 1 + 2 / n))])  # (3.42)-(3.43)
    g4 = g2
    g6 = np.concatenate([[1.0], np.cumprod(np.full(depth - 1, 1 + 6 / n + 8 / n**2))])
    np.testing.assert_allclose(exact, g6 - 3 * g4 + 2, rtol=1e-12)
    assert exact[1] == pytest.approx(8 / n**2)  # second layer: exactly y / n^2


def _sum_moments(x_moments: list[Fraction], n: int, order: int) -> list[Fraction]:
    """E[(X_1 + ... + X_n)^m], m = 0..order, for i.i.d. X with the given moments (exact)."""
    kappa = [Fraction(0)] * (order + 1)
    for m in range(1, order + 1):  # cumulants of X from its moments
        kappa[m] = x_moments[m] - sum(
            math.comb(m - 1, k - 1) * kappa[k] * x_moments[m - k] for k in range(1, m)
        )
    kappa = [n * k for k in kappa]  # cumulants add
    mom = [Fraction(1)] + [Fraction(0)] * order
    for m in range(1, order + 1):
        mom[m] = sum(math.comb(m - 1, k - 1) * kappa[k] * mom[m - k] for k in range(1, m + 1))
    return mom


def test_general_recursion_with_its_v_squared_term_against_an_exact_quadratic_network():
    """sigma(z) = z^2, C_b = 0: G^(2) = C_W K^2 Y_1, G^(3) = C_W (G^(2))^2 Y_2 with independent
    Y = (1/n) sum xi^4, so kappa_3(G^(3)) is exact in rational arithmetic. f(G) = 3 G^2 has
    f'' = 6: the V^2 term of the recursion contributes."""
    n = 10**6
    double_factorial = [math.prod(range(4 * m - 1, 0, -2)) for m in range(7)]
    y = [
        s / Fraction(n) ** m
        for m, s in enumerate(_sum_moments([Fraction(d) for d in double_factorial], n, 6))
    ]

    def ratio(k):  # E[G3^k] / E[G3]^k
        return y[2 * k] * y[k] / (y[2] * y[1]) ** k

    exact = float(n**2 * (ratio(3) - 3 * ratio(2) + 2))
    flow = six_point_flow(lambda z: z**2, 0.0, 0.8, 0.6, 3)
    theory = flow.U[2] / flow.K[2] ** 3
    np.testing.assert_allclose(exact, theory, rtol=1e-4)
    dropped = six_point_flow(lambda z: z**2, 0.0, 0.8, 0.6, 3, curvature=False)
    without = dropped.U[2] / dropped.K[2] ** 3
    assert abs(without - exact) > 0.1 * abs(exact)  # the V^2 term matters here


def test_bracket_derivative_matches_kernel_derivative_and_finite_differences():
    for act in ("tanh", "relu", "gelu"):
        for m in range(3):
            np.testing.assert_allclose(
                bracket_derivative(act, 0.8, 2, m), kernel_derivative(act, 0.8, m), rtol=1e-10
            )
    h = 1e-4
    fd = (bracket_derivative("tanh", 0.8 + h, 4, 0) - bracket_derivative("tanh", 0.8 - h, 4, 0)) / (
        2 * h
    )
    np.testing.assert_allclose(bracket_derivative("tanh", 0.8, 4, 1), fd, rtol=1e-7)
    # linear: <z^6> = 15 K^3, so its first derivative is 45 K^2
    np.testing.assert_allclose(bracket_derivative("linear", 0.8, 6, 1), 45 * 0.8**2, rtol=1e-10)


def test_metric_estimator_of_a_gamma_distribution():
    shape = 50.0  # kappa_3 / mean^3 = 2 / shape^2
    g = np.random.default_rng(3).gamma(shape, 0.1, size=400_000)
    est = six_point_from_metric(g)
    assert abs(float(est.value) - 2 / shape**2) < 4.5 * float(est.stderr)
    z = np.random.default_rng(4).normal(size=(5, 1, 7))
    np.testing.assert_allclose(
        stochastic_metric(z, "tanh", 0.1, 1.5),
        0.1 + 1.5 * np.mean(np.tanh(z[:, 0, :]) ** 2, axis=1),
    )
    # same mean as the neuron-triple estimator when neurons are Gaussian given G
    rng = np.random.default_rng(5)
    metric = rng.gamma(20.0, 0.05, size=60_000)
    neurons = rng.normal(size=(60_000, 1, 12)) * np.sqrt(metric)[:, None, None]
    triples = stats.normalized_six_point_triples(neurons)
    assert abs(float(triples.value) - 2 / 20.0**2) < 4.5 * float(triples.stderr)
    assert float(six_point_from_metric(metric).stderr) < float(triples.stderr)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="K must"):
        bracket_derivative("tanh", -1.0, 2, 1)
    with pytest.raises(ValueError, match="order"):
        bracket_derivative("tanh", 1.0, 2, -1)
    with pytest.raises(ValueError, match="power"):
        bracket_derivative("tanh", 1.0, 0, 1)
    with pytest.raises(ValueError, match="K1 must"):  # the parameter's own name
        six_point_flow("tanh", 0.0, 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="depth"):
        six_point_flow("tanh", 0.0, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="C_W"):
        six_point_flow("tanh", 0.0, -1.0, 1.0, 3)
    with pytest.raises(ValueError, match="widths"):
        six_point_flow("tanh", 0.0, 1.0, 1.0, 3, widths=(4,))
    with pytest.raises(ValueError, match="curvature"):
        six_point_flow("tanh", 0.0, 1.0, 1.0, 3, curvature=1)
    with pytest.raises(ValueError, match="hidden_widths"):
        scale_invariant_exact_six_point([4, 0])
    with pytest.raises(ValueError, match="depth"):
        scale_invariant_critical_six_point(0)
    with pytest.raises(ValueError, match="z_previous"):
        stochastic_metric(np.ones(3), "relu", 0.0, 2.0)
    with pytest.raises(ValueError, match="C_W"):
        stochastic_metric(np.ones((3, 4)), "relu", 0.0, 0.0)
    with pytest.raises(ValueError, match="metric"):
        six_point_from_metric(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="metric"):
        six_point_from_metric(np.zeros(3))


def test_unequal_widths_enter_through_the_ratios():
    flow = six_point_flow("relu", 0.0, 2.0, 1.0, 4, widths=(10, 20, 40))
    exact = scale_invariant_exact_six_point([10 * 10**5, 20 * 10**5, 40 * 10**5])
    # U^(l) is normalized by n_{l-1}^2: layer 4 uses n_3 = 40 (times the scale)
    np.testing.assert_allclose((40 * 10**5) ** 2 * exact[3], flow.U[3] / flow.K[3] ** 3, rtol=1e-4)
    assert jnp.isfinite(flow.U).all()
