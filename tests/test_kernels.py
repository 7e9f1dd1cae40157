import itertools

import numpy as np
import pytest

from pdltlib import kernels
from pdltlib.activations import get_activation
from pdltlib.gaussian import activation_expectation, gaussian_expectation


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


def test_susceptibilities_closed_forms():
    # scale-invariant class: chi_par = chi_perp = A2 C_W, A2 = (a+^2 + a-^2)/2 (section 5.2)
    k = np.array([0.3, 1.0, 4.0])
    np.testing.assert_allclose(kernels.chi_parallel("relu", k, 2.0), 1.0, rtol=1e-11)
    np.testing.assert_allclose(kernels.chi_perp("relu", k, 2.0), 1.0, rtol=1e-11)
    np.testing.assert_allclose(kernels.chi_parallel("linear", 0.7, 1.3), 1.3, rtol=1e-11)
    # erf: <erf^2>_K = (2/pi) arcsin(2K/(1+2K)) (Williams 1997), chi_par = C_W d/dK of it;
    # chi_perp = C_W (4/pi) / sqrt(1 + 4K)
    kk = 0.8
    dg = (2 / np.pi) * (2 / (1 + 2 * kk) ** 2) / np.sqrt(1 - (2 * kk / (1 + 2 * kk)) ** 2)
    np.testing.assert_allclose(kernels.chi_parallel("erf", kk, 1.5), 1.5 * dg, rtol=1e-10)
    np.testing.assert_allclose(
        kernels.chi_perp("erf", kk, 1.5), 1.5 * 4 / np.pi / np.sqrt(1 + 4 * kk), rtol=1e-10
    )
    # chi_par = (C_W / K) <z sigma' sigma>_K, the other form of (5.50)
    act = get_activation("tanh")
    d1 = act.derivative(1)
    zss = gaussian_expectation(lambda z: z * d1(z) * act(z), 1.7)
    np.testing.assert_allclose(kernels.chi_parallel(act, 1.7, 1.0), zss / 1.7, rtol=1e-10)


def test_kernel_flow():
    # linear, C_b = 0: K^(l) = C_W^(l-1) K1; per-layer C_b, C_W: entry l-1 makes layer l
    np.testing.assert_allclose(
        kernels.kernel_flow("linear", 0.0, 1.5, 0.7, 4), 0.7 * 1.5 ** np.arange(4)
    )
    flow = kernels.kernel_flow("relu", [9.0, 0.1, 0.2], [9.0, 2.0, 3.0], 1.0, 3)
    np.testing.assert_allclose(flow, [1.0, 1.1, 0.2 + 1.5 * 1.1], rtol=1e-12)
    k1 = np.array([[1.0, 0.3, 0.1], [0.3, 0.8, -0.2], [0.1, -0.2, 1.2]])
    many = kernels.kernel_flow("tanh", 0.1, 1.2, k1, 3)
    assert many.shape == (3, 3, 3)
    np.testing.assert_allclose(
        np.diagonal(many, axis1=1, axis2=2)[:, 1], kernels.kernel_flow("tanh", 0.1, 1.2, 0.8, 3)
    )


def test_flow_closed_forms():
    # linear: V^(l) = 2 (l-1) K^(l)^2 (deep linear networks, ch. 3), G^{1} = 0
    f = kernels.preactivation_flow("linear", 0.0, 1.5, 0.7, 5)
    np.testing.assert_allclose(f.V, 2 * np.arange(5) * f.K**2, rtol=1e-10)
    np.testing.assert_allclose(f.G1, 0, atol=1e-13)
    # ReLU at criticality: V^(l) = 5 (l-1) K^2 (5.116), G^{1} = 0 for any C_b (5.117)
    f = kernels.preactivation_flow("relu", 0.0, 2.0, 0.7, 5)
    np.testing.assert_allclose(f.V, 5 * np.arange(5) * 0.49, rtol=1e-10)
    np.testing.assert_allclose(f.G1, 0, atol=1e-13)
    assert np.max(np.abs(kernels.kernel_nlo_flow("relu", 0.3, 1.7, 0.7, 4))) < 1e-13
    # unequal widths: V^(l+1) = chi^2 (n_l/n_{l-1}) V^(l) + 5 chi^2 K^2 for ReLU, chi = C_W/2
    v = kernels.four_point_flow("relu", 0.0, 2.0, 1.0, 4, widths=(10, 20, 5))
    np.testing.assert_allclose(v, [0, 5, 5 * 2 + 5, 15 * 0.25 + 5], rtol=1e-10)
    # linear, several inputs: V^(l) = (l-1) C_W^(2l-2) (K1_ac K1_bd + K1_ad K1_bc)
    k1 = np.array([[1.0, 0.3], [0.3, 0.7]])
    f = kernels.preactivation_flow("linear", 0.0, 1.2, k1, 3)
    wick = np.einsum("ac,bd->abcd", k1, k1) + np.einsum("ad,bc->abcd", k1, k1)
    np.testing.assert_allclose(f.V[2], 2 * 1.2**4 * wick, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f.G1, 0, atol=1e-13)


def test_single_input_flow_matches_chapter5_form():
    # (5.109)-(5.111) with chi_par and j(K) computed independently of the flow's derivative form
    act, cb, cw = get_activation("tanh"), 0.1, 1.3
    f = kernels.preactivation_flow(act, cb, cw, 0.9, 4)
    for l in range(1, 3):
        k, v, g = f.K[l], f.V[l], f.G1[l]
        chi = kernels.chi_parallel(act, k, cw)
        s2, s4 = activation_expectation(act, k, (0, 0)), activation_expectation(act, k, (0,) * 4)
        j = cw * gaussian_expectation(
            lambda z, k=k: act(z) ** 2 * ((z**2 / k) ** 2 - 6 * z**2 / k + 3), k
        )
        np.testing.assert_allclose(f.V[l + 1], chi**2 * v + cw**2 * (s4 - s2**2), rtol=1e-9)
        np.testing.assert_allclose(f.G1[l + 1], chi * g + j * v / (8 * k**2), rtol=1e-9)


def test_pair_integrals_match_derivatives():
    # <d_c1..d_ck (s_0 s_1)> by Hermite moments == sigma-derivative expectations (smooth sigma)
    act, k = get_activation("tanh"), np.array([[1.1, 0.4], [0.4, 0.7]])
    t2, t4 = kernels._layer_integrals(act, k, True, "K")

    def d(n0, n1):
        return activation_expectation(act, k, (0, 1), derivatives=(n0, n1))

    np.testing.assert_allclose(t2[0, 1], [[d(2, 0), d(1, 1)], [d(1, 1), d(0, 2)]], rtol=1e-9)
    for idx in itertools.product(range(2), repeat=4):
        n1 = sum(idx)
        np.testing.assert_allclose(t4[0, 1][idx], d(4 - n1, n1), rtol=1e-8, atol=1e-11)
    # one input: the fourth derivative of s^2 is 2 s(4) s + 8 s(3) s(1) + 6 s(2) s(2)
    e = [activation_expectation(act, 0.7, (0, 0), derivatives=p) for p in ((4, 0), (3, 1), (2, 2))]
    np.testing.assert_allclose(t4[1, 1][1, 1, 1, 1], 2 * e[0] + 8 * e[1] + 6 * e[2], rtol=1e-9)


def test_multi_input_flow_matches_book_form():
    # (4.119) and (4.115) exactly as printed, with the inverse kernel, for two inputs
    act, cw = get_activation("gelu"), 1.4
    k1 = np.array([[0.9, 0.35], [0.35, 1.2]])
    f = kernels.preactivation_flow(act, 0.05, cw, k1, 4)
    k, v, g = f.K[2], f.V[2], f.G1[2]
    p = np.linalg.inv(k)
    vu = np.einsum("ai,bj,ck,dl,ijkl->abcd", p, p, p, p, v)
    ginv = np.einsum("ai,bj,ij->ab", p, p, g)
    v4 = kernels.second_layer_four_point_vertex(act, k, cw)
    brackets = {}
    for a1, a2 in [(0, 0), (0, 1), (1, 1)]:
        # moments <s_a1 s_a2 z_0^i z_1^j>_K, one quadrature each
        mom = {
            (i, j): gaussian_expectation(
                lambda z, i=i, j=j, a1=a1, a2=a2: (
                    act(z[..., a1]) * act(z[..., a2]) * z[..., 0] ** i * z[..., 1] ** j
                ),
                k,
            )
            for i in range(5)
            for j in range(5 - i)
            if (i + j) % 2 == 0
        }

        def e(*idx, mom=mom):
            return mom[(idx.count(0), idx.count(1))]

        m = np.array([[e(b1, b2) - k[b1, b2] * e() for b2 in range(2)] for b1 in range(2)])
        brackets[a1, a2] = (m, e)
    for a1, a2 in [(0, 1), (1, 1)]:
        m, e = brackets[a1, a2]
        for a3, a4 in [(0, 0), (0, 1)]:
            vv = v4[a1, a2, a3, a4] + cw**2 / 4 * np.einsum(
                "ijkl,ij,kl->", vu, m, brackets[a3, a4][0]
            )
            np.testing.assert_allclose(f.V[3][a1, a2, a3, a4], vv, rtol=1e-9)
        term = 0.5 * np.einsum("ij,ij->", ginv, m)
        for b in itertools.product(range(2), repeat=4):
            kk = k[b[0], b[1]] * k[b[2], b[3]]
            hh = e(*b) - k[b[0], b[1]] * e(b[2], b[3]) - k[b[2], b[3]] * e(b[0], b[1]) + kk * e()
            term += vu[b] * hh / 8
            q = -2 * e(b[0], b[1]) + k[b[0], b[1]] * e()
            term += vu[b[0], b[2], b[1], b[3]] * k[b[2], b[3]] * q / 4
        np.testing.assert_allclose(f.G1[3][a1, a2], cw * term, rtol=1e-8)


def test_multi_input_diagonal_and_symmetries():
    k1 = np.array([[1.0, 0.4, -0.1], [0.4, 0.8, 0.2], [-0.1, 0.2, 1.1]])
    f = kernels.preactivation_flow("softplus", 0.2, 1.1, k1[:2, :2], 4)
    single = kernels.preactivation_flow("softplus", 0.2, 1.1, 0.8, 4)
    np.testing.assert_allclose(f.V[:, 1, 1, 1, 1], single.V, rtol=1e-12)
    np.testing.assert_allclose(f.G1[:, 1, 1], single.G1, rtol=1e-12)
    v = f.V[3]
    np.testing.assert_allclose(v, v.transpose(1, 0, 2, 3), atol=1e-14)
    np.testing.assert_allclose(v, v.transpose(2, 3, 0, 1), atol=1e-14)
    np.testing.assert_allclose(f.G1[3], f.G1[3].T, atol=1e-14)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.chi_parallel("tanh", 0.0, 1.0), "K must"),
        (lambda: kernels.chi_perp("tanh", 1.0, -1.0), "C_W"),
        (lambda: kernels.kernel_flow("tanh", 0.0, 1.0, 1.0, 0), "depth"),
        (lambda: kernels.kernel_flow("tanh", [0.0, 1.0], 1.0, 1.0, 3), "C_b must"),
        (lambda: kernels.kernel_flow("tanh", 0.0, [1.0, -1.0], 1.0, 2), "C_W"),
        (lambda: kernels.kernel_flow("tanh", 0.0, 1.0, -1.0, 2), "K1"),
        (lambda: kernels.four_point_flow("tanh", 0.0, 1.0, 1.0, 3, widths=(4,)), "widths"),
        (lambda: kernels.four_point_flow("tanh", 0.0, 1.0, 1.0, 3, widths=(4, 0)), "widths"),
        (lambda: kernels.kernel_nlo_flow("tanh", 0.0, 1.0, np.ones((2, 2)), 3), "identical"),
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
