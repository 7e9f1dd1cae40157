import numpy as np
import pytest

from pdltlib.exact import (
    deep_linear_four_point,
    deep_linear_kernel,
    deep_linear_moment_factor,
    deep_linear_observable_covariance,
    same_neuron_four_point,
    scale_invariant_constants,
    scale_invariant_exact_four_point,
    scale_invariant_exact_kernel,
    scale_invariant_vertex_coefficient,
)


def test_constants_and_coefficients():
    assert scale_invariant_constants(1, 0) == (0.5, 0.5)
    assert scale_invariant_vertex_coefficient(1, 0) == 5.0  # ReLU, book (5.120)
    assert scale_invariant_vertex_coefficient(1, 1) == 2.0  # linear
    np.testing.assert_allclose(scale_invariant_exact_kernel(2.0, 2.0, 3), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(scale_invariant_exact_kernel(1.6, 1.6, 3), [1.6, 1.28, 1.024])


def test_exact_four_point_matches_book_eq_3_25_and_expands_to_5_120():
    n, L = 16, 8
    linear = scale_invariant_exact_four_point([n] * (L - 1), 1, 1)
    assert linear[0] == 0.0  # the first layer is Gaussian
    np.testing.assert_allclose(linear[-1], (1 + 2 / n) ** (L - 1) - 1)
    big = 10**7  # first order in 1/n: V/K^2 = 5 (L-1)
    relu = scale_invariant_exact_four_point([big] * (L - 1), 1, 0)
    np.testing.assert_allclose(big * relu[-1], 5 * (L - 1), rtol=1e-5)
    assert deep_linear_moment_factor([n] * (L - 1), 2) == (1 + 2 / n) ** (L - 1)
    np.testing.assert_allclose(
        deep_linear_moment_factor([n] * (L - 1), 3), ((1 + 2 / n) * (1 + 4 / n)) ** (L - 1)
    )  # book (3.43)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="hidden_widths"):
        scale_invariant_exact_four_point([0, 4])
    with pytest.raises(ValueError, match="C_W"):
        scale_invariant_exact_kernel(1.0, -1.0, 3)
    with pytest.raises(ValueError, match="K1"):
        scale_invariant_exact_kernel(-1.0, 1.0, 3)
    with pytest.raises(ValueError, match="depth"):
        scale_invariant_exact_kernel(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="a_plus"):
        scale_invariant_constants(0.0, 0.0)
    with pytest.raises(ValueError, match="m must"):
        deep_linear_moment_factor([4], 0)


X3 = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.5, 1.2]]) * np.sqrt(3)


def test_deep_linear_kernel_is_book_eq_3_15_with_biases():
    g0 = X3 @ X3.T / 3
    np.testing.assert_allclose(deep_linear_kernel(X3, 4, 0.0, 1.3)[-1], 1.3**4 * g0)  # (3.15)
    kernel = deep_linear_kernel(X3, 3, [0.1, 0.2, 0.3], [1.0, 2.0, 0.5])
    np.testing.assert_allclose(kernel[2], 0.3 + 0.5 * (0.2 + 2.0 * (0.1 + g0)))


def test_deep_linear_four_point_reduces_to_book_eq_3_25():
    widths = [3, 5, 2, 7]
    exact = deep_linear_four_point(X3[:1], widths, 0.0, 1.7)
    g2 = deep_linear_kernel(X3[:1], 5, 0.0, 1.7)[:, 0, 0]
    linear = scale_invariant_exact_four_point(widths, 1, 1)  # (3.25) with (3.29)
    np.testing.assert_allclose(exact[:, 0, 0, 0, 0], linear * g2**2)
    first = deep_linear_four_point(X3[:1], widths, 0.0, 1.7, first_order=True)
    leading = np.concatenate([[0.0], np.cumsum(2 / np.array(widths))])  # (3.28)
    np.testing.assert_allclose(first[:, 0, 0, 0, 0], leading * g2**2)


def test_deep_linear_four_point_first_order_is_the_1_over_n_term():
    args = (X3, [1, 1, 1], [0.2, 0.1, 0.3, 0.0], [1.0, 1.2, 0.8, 1.1])
    big = 10**6
    exact = deep_linear_four_point(args[0], [big] * 3, *args[2:])[-1]
    first = deep_linear_four_point(args[0], [big] * 3, *args[2:], first_order=True)[-1]
    np.testing.assert_allclose(big * exact, big * first, rtol=1e-4)  # O(L^2/n) apart
    assert np.max(np.abs(big * first)) > 0.1
    pairs = deep_linear_four_point(*args)[-1]  # symmetries of Cov[G_ab, G_cd]
    np.testing.assert_allclose(pairs, np.einsum("abcd->cdab", pairs))
    np.testing.assert_allclose(pairs, np.einsum("abcd->bacd", pairs))


def test_distance_fluctuation_does_not_depend_on_biases():
    # z(x+) - z(x-) = W^(l)...W^(1) (x+ - x-): a bias-free single input, relative variance
    # prod_{l' <= l} (1 + 2/n_l') - 1 whatever C_b, C_W and the inputs
    widths = [4, 2, 8, 3]
    u = np.array([1.0, -1.0, 0.0])
    for c_b in (0.0, 0.7):
        cov = deep_linear_observable_covariance(X3, widths, c_b, [1.3, 0.9, 1.1, 2.0])
        mean = np.einsum("lab,a,b->l", deep_linear_kernel(X3, 4, c_b, [1.3, 0.9, 1.1, 2.0]), u, u)
        var = np.einsum("labcd,a,b,c,d->l", cov, u, u, u, u)
        np.testing.assert_allclose(var / mean**2, np.cumprod(1 + 2 / np.array(widths)) - 1)


def test_deep_linear_four_point_against_sampled_networks():
    # independent check: numpy weight sampling of a narrow network with biases, two inputs
    rng = np.random.default_rng(3)
    x, widths, c_b, c_w, networks = X3[:2], [3, 2, 3], 0.4, 1.1, 200_000
    h = np.broadcast_to(x.T, (networks, 3, 2))
    for n_in, n_out in zip([3, *widths[:-1]], widths, strict=True):
        w = rng.normal(size=(networks, n_out, n_in)) * np.sqrt(c_w / n_in)
        h = w @ h + rng.normal(size=(networks, n_out, 1)) * np.sqrt(c_b)
    theory = deep_linear_four_point(x, widths[:-1], c_b, c_w)[-1]
    kernel = deep_linear_kernel(x, 3, c_b, c_w)[-1]
    pair = np.einsum("si,sj->sij", h[:, 0, :], h[:, 1, :])  # z_{0;a} z_{1;b}, neurons 0 != 1
    for a, b, c, d in [(0, 0, 1, 1), (0, 1, 0, 1), (0, 0, 0, 0), (0, 1, 1, 1)]:
        samples = h[:, 0, a] * h[:, 0, b] * h[:, 1, c] * h[:, 1, d]
        value = samples.mean() - kernel[a, b] * kernel[c, d]
        assert abs(value - theory[a, b, c, d]) < 5 * samples.std() / np.sqrt(networks)
    assert abs(pair.mean(axis=0)).max() < 0.05  # different neurons are uncorrelated
    same = same_neuron_four_point(theory)  # one neuron: E[z^4] - 3 G^2
    samples = h[:, 0, 0] ** 4
    assert abs(
        samples.mean() - 3 * kernel[0, 0] ** 2 - same[0, 0, 0, 0]
    ) < 5 * samples.std() / np.sqrt(networks)


def test_deep_linear_bad_input_raises():
    with pytest.raises(ValueError, match="C_b"):
        deep_linear_kernel(X3, 2, -0.1)
    with pytest.raises(ValueError, match="C_W"):
        deep_linear_kernel(X3, 2, 0.0, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="depth"):
        deep_linear_kernel(X3, 0)
    with pytest.raises(ValueError, match="x must"):
        deep_linear_four_point(np.ones((2, 2, 2)), [3])
    with pytest.raises(ValueError, match="x contains"):
        deep_linear_kernel([[np.nan, 1.0]], 2)
    with pytest.raises(ValueError, match="hidden_widths"):
        deep_linear_four_point(X3, [2, 0])
    with pytest.raises(ValueError, match="connected_pairs"):
        same_neuron_four_point(np.zeros((2, 2, 3)))
