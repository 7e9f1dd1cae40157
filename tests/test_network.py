import jax
import numpy as np
import pytest

from pdltlib.network import forward, init_params, mlp


def test_config_broadcasts_per_layer_hyperparameters():
    cfg = mlp((3, 5, 4), "tanh", C_b=0.1, C_W=[1.0, 2.0])
    assert cfg.depth == 2
    assert cfg.C_b == (0.1, 0.1) and cfg.C_W == (1.0, 2.0)
    assert cfg.lambda_b == (1.0, 1.0)


def test_forward_shapes_and_first_layer():
    cfg = mlp((3, 5, 4), "relu", C_b=0.5, C_W=2.0)
    params = init_params(jax.random.PRNGKey(0), cfg)
    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])
    z1, z2 = forward(params, x, cfg.activation)
    assert z1.shape == (2, 5) and z2.shape == (2, 4)
    np.testing.assert_allclose(z1, x @ np.asarray(params[0]["W"]).T + params[0]["b"])
    relu = np.maximum(np.asarray(z1), 0.0)
    np.testing.assert_allclose(z2, relu @ np.asarray(params[1]["W"]).T + params[1]["b"])


def test_initialization_variances():
    n = 400
    cfg = mlp((n, n), "linear", C_b=0.7, C_W=1.5)
    params = init_params(jax.random.PRNGKey(1), cfg)
    w = np.asarray(params[0]["W"]).ravel()
    b = np.asarray(params[0]["b"])
    # variance estimates of N samples have relative standard error sqrt(2/N)
    assert abs(w.var() * n / 1.5 - 1) < 4.5 * np.sqrt(2 / w.size)
    assert abs(b.var() / 0.7 - 1) < 4.5 * np.sqrt(2 / b.size)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widths": (3,)}, "widths"),
        ({"widths": (3, 0, 2)}, "widths"),
        ({"widths": (3, 2.5)}, "widths"),
        ({"widths": (3, 4), "C_W": 0.0}, "C_W"),
        ({"widths": (3, 4), "C_b": -0.1}, "C_b"),
        ({"widths": (3, 4, 4), "C_W": [1.0, 2.0, 3.0]}, "C_W"),
        ({"widths": (3, 4), "C_W": float("nan")}, "C_W"),
        ({"widths": (3, 4), "activation": "nope"}, "unknown activation"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mlp(**kwargs)
