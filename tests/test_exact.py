import numpy as np
import pytest

from pdltlib.exact import (
    deep_linear_moment_factor,
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
