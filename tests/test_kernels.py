import numpy as np
import pytest

from pdltlib import kernels


def relu_kernel(k11, k22, k12):
    """Arc-cosine kernel <relu(z1) relu(z2)> (Cho & Saul 2009)."""
    t = np.arccos(np.clip(k12 / np.sqrt(k11 * k22), -1, 1))
    return np.sqrt(k11 * k22) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def test_first_layer_kernel():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    g = kernels.first_layer_kernel(x, C_b=0.5, C_W=2.0)
    np.testing.assert_allclose(g, 0.5 + 2.0 * (x @ x.T) / 2)


def test_next_layer_kernel_relu_closed_form():
    k = np.array([[1.3, 0.4], [0.4, 0.8]])
    g = kernels.next_layer_kernel("relu", k, C_b=0.1, C_W=2.0)
    expected = 0.1 + 2.0 * np.array(
        [
            [relu_kernel(1.3, 1.3, 1.3), relu_kernel(1.3, 0.8, 0.4)],
            [relu_kernel(1.3, 0.8, 0.4), relu_kernel(0.8, 0.8, 0.8)],
        ]
    )
    np.testing.assert_allclose(g, expected, rtol=1e-11)


def test_second_layer_vertex_closed_forms():
    # linear: V = C_W^2 (<z^4> - <z^2>^2) = 2 C_W^2 K^2; ReLU: 5/4 C_W^2 K^2
    np.testing.assert_allclose(
        kernels.second_layer_four_point_vertex("linear", 1.7, 1.5)[0, 0, 0, 0],
        2 * 1.5**2 * 1.7**2,
        rtol=1e-11,
    )
    np.testing.assert_allclose(
        kernels.second_layer_four_point_vertex("relu", 0.9, 2.0)[0, 0, 0, 0],
        1.25 * 4.0 * 0.81,
        rtol=1e-11,
    )


def test_vertex_multi_input_structure():
    """Linear activation: V_(12)(34) = C_W^2 (K13 K24 + K14 K23) (Wick)."""
    k = np.array([[1.0, 0.3], [0.3, 0.7]])
    v = kernels.second_layer_four_point_vertex("linear", k, 1.0)
    for a, b, c, d in np.ndindex(2, 2, 2, 2):
        np.testing.assert_allclose(v[a, b, c, d], k[a, c] * k[b, d] + k[a, d] * k[b, c], atol=1e-12)
    # the symmetries of (4.40)
    np.testing.assert_allclose(v, v.transpose(1, 0, 2, 3))
    np.testing.assert_allclose(v, v.transpose(2, 3, 0, 1))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.first_layer_kernel(np.ones((2, 2)), -1.0, 1.0), "C_b"),
        (lambda: kernels.first_layer_kernel(np.ones((2, 2)), 0.0, 0.0), "C_W"),
        (lambda: kernels.first_layer_kernel(np.ones(3), 0.0, 1.0), "x must"),
        (lambda: kernels.next_layer_kernel("tanh", -1.0, 0.0, 1.0), r"K \(a variance\) must"),
        (lambda: kernels.next_layer_kernel("tanh", [[1.0, 2.0], [2.0, 1.0]], 0.0, 1.0), "K must"),
        (lambda: kernels.next_layer_kernel("tanh", [[1.0, 0.1], [0.2, 1.0]], 0.0, 1.0), "K must"),
        (lambda: kernels.second_layer_four_point_vertex("tanh", np.nan, 1.0), "K1 must"),
        (lambda: kernels.next_layer_kernel("bogus", 1.0, 0.0, 1.0), "unknown activation"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
