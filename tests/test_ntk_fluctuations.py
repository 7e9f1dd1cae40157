"""Tests for pdltlib.ntk_fluctuations: the order-1/n NTK statistics D, F, A, B (book 8.3), H^{1}."""

import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib.activations import get_activation
from pdltlib.kernels import preactivation_flow
from pdltlib.ntk_fluctuations import _quadrature, ntk_fluctuation_flow, single_neuron_nlo

X2 = np.array([[1.0, 0.5], [0.3, -0.8]])


def test_deep_linear_closed_forms():
    """sigma(z) = z, C_b = lambda_b = 0, C_W = 1: the recursions sum to polynomials in l.

    Theta = l lambda K, D = lambda K^2 l(l-1) = 2F, B = lambda^2 K^2 (l-1) l (2l-1)/6 = A/2.
    """
    x, lam, depth = np.array([1.0, 0.5]), 0.7, 6
    k = (1.0 + 0.25) / 2
    flow = ntk_fluctuation_flow("linear", 0.0, 1.0, 0.0, lam, x, depth)
    ell = np.arange(1, depth + 1)
    b = lam**2 * k**2 * (ell - 1) * ell * (2 * ell - 1) / 6
    np.testing.assert_allclose(flow.Theta, ell * lam * k, rtol=1e-12)
    np.testing.assert_allclose(flow.D, lam * k**2 * ell * (ell - 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flow.F, lam * k**2 * ell * (ell - 1) / 2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flow.B, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flow.A, 2 * b, rtol=1e-10, atol=1e-12)


def test_relu_second_layer_closed_form():
    """ReLU, one input, C_b = 0: <s's's's'> = 1/2, <s s s's'> = K1/2, Var(s^2) = 5 K1^2/4 so
    B(2) = C_W^2 Theta1^2 / 2, F(2) = C_W^2 K1 Theta1 / 2 (8.33), (8.39) with K1 = C_W1 |x|^2/n0."""
    x, cw, lw = np.array([1.0, 2.0]), 2.0, 0.5
    flow = ntk_fluctuation_flow("relu", 0.0, cw, 0.0, lw, x, 2)
    k1, theta1 = cw * 2.5, lw * 2.5
    assert flow.B[1] == pytest.approx(cw**2 * theta1**2 / 2, rel=1e-10)
    assert flow.F[1] == pytest.approx(cw**2 * k1 * theta1 / 2, rel=1e-10)
    # D(2) = C_W [lambda_W Var(s^2) + C_W Theta1 Cov(s^2, s'^2)] with Cov = K1/2 - K1/4
    assert flow.D[1] == pytest.approx(cw * (lw * 5 * k1**2 / 4 + cw * theta1 * k1 / 4), rel=1e-10)


def test_first_layer_vanishes_and_symmetries():
    flow = ntk_fluctuation_flow("tanh", 0.1, 1.2, 0.3, 0.8, X2, 4, widths=[8, 16, 12])
    for name in "DFAB":
        np.testing.assert_array_equal(getattr(flow, name)[0], 0.0)
    a, b, d = flow.A, flow.B, flow.D
    np.testing.assert_allclose(a, a.transpose(0, 2, 1, 3, 4), atol=1e-12)  # a1 <-> a2
    np.testing.assert_allclose(a, a.transpose(0, 3, 4, 1, 2), atol=1e-12)  # (a1a2) <-> (a3a4)
    np.testing.assert_allclose(d, d.transpose(0, 2, 1, 3, 4), atol=1e-12)  # a1 <-> a2
    np.testing.assert_allclose(d, d.transpose(0, 1, 2, 4, 3), atol=1e-12)  # a3 <-> a4
    # B_{a1a3a2a4}: symmetric under (a1a2) <-> (a3a4) and (a1a3) <-> (a2a4), see footnote 5
    np.testing.assert_allclose(b, b.transpose(0, 2, 1, 4, 3), atol=1e-12)
    np.testing.assert_allclose(b, b.transpose(0, 3, 4, 1, 2), atol=1e-12)


def test_multi_input_diagonal_equals_single_input():
    kw = dict(C_b=0.1, C_W=[1.0, 2.0, 1.5, 2.0], lambda_b=0.2, lambda_W=[1.0, 0.5, 1.0, 2.0])
    two = ntk_fluctuation_flow("relu", x=X2, depth=4, widths=[10, 20, 15], **kw)
    one = ntk_fluctuation_flow("relu", x=X2[1], depth=4, widths=[10, 20, 15], **kw)
    np.testing.assert_allclose(two.Theta[:, 1, 1], one.Theta, rtol=1e-10)
    for name in "VDFAB":
        np.testing.assert_allclose(getattr(two, name)[:, 1, 1, 1, 1], getattr(one, name), rtol=1e-8)


def test_widths_enter_through_ratios():
    kw = dict(C_b=0.0, C_W=1.0, lambda_b=0.0, lambda_W=1.0, x=X2[0], depth=4)
    equal = ntk_fluctuation_flow("tanh", **kw)
    scaled = ntk_fluctuation_flow("tanh", **kw, widths=[7, 7, 7])
    wide = ntk_fluctuation_flow("tanh", **kw, widths=[10, 20, 40])
    np.testing.assert_allclose(equal.A, scaled.A, rtol=1e-12)
    assert wide.B[3] > equal.B[3]  # the accumulated term grows with n_l / n_{l-1} = 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="perceptron"), "activation"),
        (dict(x=np.ones((3, 2))), "x"),
        (dict(x=np.ones((2, 2, 2))), "x"),
        (dict(x=np.array([[1.0, 0.0], [1.0, 0.0]])), "x"),
        (dict(depth=0), "depth"),
        (dict(widths=[4]), "widths"),
        (dict(C_W=-1.0), "C_W"),
        (dict(lambda_W=[1.0, 2.0]), "lambda_W"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(activation="tanh", C_b=0.0, C_W=1.0, lambda_b=0.0, lambda_W=1.0, x=X2, depth=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ntk_fluctuation_flow(**args)


def test_single_neuron_nlo_reproduces_the_nlo_metric_recursion():
    """E1[sigma sigma] from G1 and V is the NLO metric recursion (4.115): G1' = r C_W E1."""
    act = get_activation("gelu")
    flow = preactivation_flow(act, 0.1, 1.7, np.array([[0.9, 0.4], [0.4, 0.7]]), 4, nlo=True)
    for ell in range(1, 3):
        z, w = _quadrature(act, flow.K[ell])
        s = np.asarray(act.fn(jnp.asarray(z)))
        e1 = single_neuron_nlo(
            s[:, :, None] * s[:, None, :], z, w, flow.K[ell], flow.G1[ell], flow.V[ell]
        )
        np.testing.assert_allclose(1.7 * e1, flow.G1[ell + 1], rtol=1e-10, atol=1e-13)


def test_ntk_mean_correction_structure():
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    tanh = ntk_fluctuation_flow("tanh", 0.1, 1.2, 0.3, 1.0, x, 5)
    single = ntk_fluctuation_flow("tanh", 0.1, 1.2, 0.3, 1.0, x[1], 5)
    np.testing.assert_allclose(tanh.H1[:, 1, 1], single.H1, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tanh.H1, tanh.H1.transpose(0, 2, 1), atol=1e-14)
    assert np.all(tanh.H1[:2] == 0) and np.all(np.abs(tanh.H1[2:]) > 1e-3)  # exact through l=2
    relu = ntk_fluctuation_flow("relu", 0.0, 2.0, 0.4, 1.0, x[0], 6)
    np.testing.assert_allclose(relu.H1, 0.0, atol=1e-12)  # sign-flip symmetry: exact mean
