"""Tests of pdltlib.ntk_criticality (book chapter 9)."""

import numpy as np
import pytest
from scipy.special import erf

from pdltlib import ntk_criticality as nc
from pdltlib.criticality import critical_point
from pdltlib.ntk import ntk_flow

X = np.array([1.0, 0.5, -0.3])


def test_learning_rates_scale_invariant_and_tanh():
    r = nc.critical_learning_rates("relu", 5, 2.0, 3.0)
    np.testing.assert_allclose(r.lambda_b, 0.4)
    np.testing.assert_allclose(r.lambda_W, 0.6)
    t = nc.critical_learning_rates("tanh", 4, 1.0, 1.0, depth_normalized=False)
    np.testing.assert_allclose(t.lambda_b, 1 / np.arange(1, 5))  # (9.96)
    np.testing.assert_allclose(t.lambda_W, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"depth": 0}, "depth"), ({"lambda_b_hat": -1.0}, "lambda_b_hat")],
)
def test_learning_rates_reject_bad_input(kwargs, name):
    args = {"activation": "relu", "depth": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        nc.critical_learning_rates(**args)


def test_recursions_match_scale_invariant_closed_forms():
    cp = critical_point("relu")
    flow = nc.single_input_ntk_flow("relu", 0.0, 2.0, 0.7, 1.3, X, 10)
    closed = nc.scale_invariant_ntk_closed_forms(
        np.arange(1, 11), cp.A2, cp.A4, flow.K[0], 0.7, 1.3
    )
    for name in ("Theta", "V", "D", "F", "B"):
        np.testing.assert_allclose(getattr(flow, name), closed[name], rtol=1e-10, atol=1e-14)


def test_theta_and_contributions_match_ntk_flow():
    flow = nc.single_input_ntk_flow("tanh", 0.1, 1.1, 0.3, 0.8, X, 6)
    ref = ntk_flow("tanh", 0.1, 1.1, 0.3, 0.8, X, 6)
    np.testing.assert_allclose(flow.Theta, ref.Theta, rtol=1e-12)
    np.testing.assert_allclose(flow.K, ref.K, rtol=1e-12)
    bias, weight = nc.ntk_layer_contributions("tanh", 0.1, 1.1, 0.3, 0.8, X, 6)
    assert abs(bias.sum() + weight.sum() - ref.Theta[-1]) < 1e-12 * ref.Theta[-1]


def _book_single_input_recursions(sigma, dsigma, C_b, C_W, lambda_b, lambda_W, x, depth):
    """(9.6), (9.13)-(9.16), (9.19) as printed, with an independent Gauss-Hermite rule."""
    t, w = np.polynomial.hermite_e.hermegauss(160)
    w = w / w.sum()

    def avg(f, k):  # <f(z)>_K for z ~ N(0, K)
        return float(np.sum(w * f(np.sqrt(k) * t)))

    norm = float(np.dot(x, x)) / len(x)
    K, theta = C_b + C_W * norm, lambda_b[0] + lambda_W[0] * norm
    V = D = F = B = A = 0.0
    out = [(K, V, theta, D, F, B, A)]
    for lb, lw in zip(lambda_b[1:], lambda_W[1:], strict=True):
        g = avg(lambda z: sigma(z) ** 2, K)
        s4 = avg(lambda z: sigma(z) ** 4, K)
        s2d2 = avg(lambda z: sigma(z) ** 2 * dsigma(z) ** 2, K)
        d4 = avg(lambda z: dsigma(z) ** 4, K)
        chi_par = C_W * avg(lambda z: z * dsigma(z) * sigma(z), K) / K  # (9.10)
        chi_perp = C_W * avg(lambda z: dsigma(z) ** 2, K)  # (9.11)
        h = C_W / (4 * K**2) * avg(lambda z, k=K: dsigma(z) ** 2 * (z**2 - k), K)  # (9.9)
        r = lw / C_W
        zz = C_W**2 * s4 - (C_W * g) ** 2 + chi_par**2 * V
        zh = C_W**2 * s2d2 - C_W * g * chi_perp + 2 * h * chi_par * V
        hh = C_W**2 * d4 - chi_perp**2 + (2 * h) ** 2 * V
        A = (
            chi_perp**2 * A
            + r**2 * zz
            + 2 * r * theta * zh
            + 2 * r * chi_perp * chi_par * D
            + 4 * h * chi_perp * theta * D
            + theta**2 * hh
        )  # (9.16)
        B = chi_perp**2 * B + C_W**2 * d4 * theta**2  # (9.15)
        F = chi_par**2 * F + C_W**2 * s2d2 * theta  # (9.14)
        D = chi_perp * chi_par * D + r * zz + theta * zh  # (9.13)
        V = chi_par**2 * V + C_W**2 * (s4 - g**2)  # (9.19)
        theta = lb + lw * g + chi_perp * theta  # (9.6)
        K = C_b + C_W * g
        out.append((K, V, theta, D, F, B, A))
    return np.array(out).T


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_multi_input_recursions_reduce_to_the_books_single_input_ones(name):
    """Chapter 8's recursions (pdltlib) for one input against chapter 9's, derived separately."""
    sigma = {"tanh": np.tanh, "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))}[name]
    dsigma = {
        "tanh": lambda z: 1 / np.cosh(z) ** 2,
        "gelu": lambda z: (
            0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
        ),
    }[name]
    lambda_b, lambda_W = [0.2, 0.1, 0.3, 0.05, 0.4, 0.1], [1.0, 0.7, 1.3, 0.9, 1.1, 0.6]
    flow = nc.single_input_ntk_flow(name, 0.1, 1.2, lambda_b, lambda_W, X, 6)
    book = _book_single_input_recursions(sigma, dsigma, 0.1, 1.2, lambda_b, lambda_W, X, 6)
    for field, expected in zip(("K", "V", "Theta", "D", "F", "B", "A"), book, strict=True):
        np.testing.assert_allclose(getattr(flow, field), expected, rtol=1e-10, atol=1e-13)


def test_moments_estimator_shapes_and_errors():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(50, 4, 4, 1, 1))
    z = rng.normal(size=(50, 1, 6))
    out = nc.single_input_ntk_moments(z, h)
    assert set(out) == {"H", "A", "B", "D", "F"}
    with pytest.raises(ValueError, match="ntk"):
        nc.single_input_ntk_moments(z, h[..., 0])
