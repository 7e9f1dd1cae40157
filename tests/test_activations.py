import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib import Activation, available_activations, get_activation, scale_invariant

Z = np.linspace(-3.0, 3.0, 13) + 0.05  # avoids the kink at 0


def test_registry_lists_the_book_zoo():
    for name in [
        "linear", "relu", "leaky_relu", "tanh", "sin", "sigmoid", "softplus", "swish",
        "gelu", "erf", "perceptron",
    ]:  # fmt: skip
        assert name in available_activations()


@pytest.mark.parametrize("name", available_activations())
def test_every_activation_is_finite_with_matching_derivative(name):
    act = get_activation(name)
    values = np.asarray(act(Z))
    assert values.shape == Z.shape and np.all(np.isfinite(values))
    h = 1e-6
    finite_difference = (np.asarray(act(Z + h)) - np.asarray(act(Z - h))) / (2 * h)
    np.testing.assert_allclose(np.asarray(act.derivative()(Z)), finite_difference, atol=1e-7)


def test_known_values():
    np.testing.assert_allclose(get_activation("relu")([-1.0, 2.0]), [0.0, 2.0])
    np.testing.assert_allclose(get_activation("perceptron")([-1e-9, 0.0, 3.0]), [0.0, 1.0, 1.0])
    np.testing.assert_allclose(get_activation("leaky_relu", a_minus=0.2)([-1.0, 1.0]), [-0.2, 1.0])
    np.testing.assert_allclose(get_activation("sigmoid")(0.0), 0.5)
    np.testing.assert_allclose(get_activation("softplus")(0.0), np.log(2.0))
    np.testing.assert_allclose(get_activation("swish")(1.0), 1.0 / (1.0 + np.exp(-1.0)))
    np.testing.assert_allclose(get_activation("gelu")(1.0), 0.8413447460685429)
    np.testing.assert_allclose(get_activation("tanh").derivative(2)(0.0), 0.0, atol=1e-15)
    assert get_activation("step") is get_activation("perceptron")


def test_kinks_and_smoothness():
    assert get_activation("relu").kinks == (0.0,)
    assert get_activation("tanh").is_smooth
    assert scale_invariant(1.0, 1.0).is_smooth  # linear has no kink


def test_user_supplied_function():
    act = get_activation(lambda z: jnp.tanh(2.0 * z), kinks=())
    assert isinstance(act, Activation)
    np.testing.assert_allclose(act.derivative()(0.0), 2.0)
    assert get_activation(act) is act


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'rectifier'.*relu.*tanh"):
        get_activation("rectifier")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_activation("leaky_relu", a_minus=1.5), "a_minus"),
        (lambda: get_activation("tanh", slope=2.0), "bad parameters"),
        (lambda: get_activation(3.0), "activation must be"),
        (lambda: get_activation("relu").derivative(-1), "order"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
