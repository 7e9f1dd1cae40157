"""Tests of pdltlib.ntk_criticality (book chapter 9)."""

import numpy as np
import pytest

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


def test_moments_estimator_shapes_and_errors():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(50, 4, 4, 1, 1))
    z = rng.normal(size=(50, 1, 6))
    out = nc.single_input_ntk_moments(z, h)
    assert set(out) == {"H", "A", "B", "D", "F"}
    with pytest.raises(ValueError, match="ntk"):
        nc.single_input_ntk_moments(z, h[..., 0])
