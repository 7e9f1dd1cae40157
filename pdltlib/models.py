"""The linear and quadratic models of an MLP: its Taylor expansions in the parameters around
one initialization theta_0 (book sections 10.4 and 11.4).

With d theta = theta - theta_0 and the network output z(x; theta) = z^(L)(x; theta),

    linear model     z_lin(x; theta)  = z(x; theta_0) + sum_mu (dz/dtheta_mu) d theta_mu,
    quadratic model  z_quad(x; theta) = z_lin(x; theta)
                                        + (1/2) sum_{mu nu} (d^2 z / dtheta_mu dtheta_nu)
                                          d theta_mu d theta_nu,

all derivatives at theta_0. The linear model is linear in its parameters with the random
features phi_{i,mu}(x) = dz_i(x)/dtheta_mu of (10.138); its NTK is the network's initial NTK,
frozen during training (10.140), so gradient descent on it is kernel learning with that
network's own NTK. The quadratic model adds the meta-features d^2 z/dtheta dtheta (the psi of
the quadratic model (11.105)): its NTK moves during training through the network's dNTK (11.8)
at theta_0.

Computation. ``jax.linearize`` evaluates z(x; theta_0) once and returns the Jacobian-vector
product J d theta as a linear function, whose transpose (what ``jax.grad`` uses) is one
backward pass; the second-order term d theta^T Hess d theta is two nested forward-mode
products (a second directional derivative along d theta). No Jacobian and no Hessian is ever
materialized.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from pdltlib.dntk import _learning_rates
from pdltlib.network import MLPConfig, check_inputs, forward
from pdltlib.ntk import _check_params

__all__ = ["linear_model", "quadratic_model", "model_ntk"]

Model = Callable[[list[dict]], jax.Array]


def _outputs(x, activation) -> Callable[[list[dict]], jax.Array]:
    return lambda p: forward(p, x, activation)[-1]


def _displacement(params, params0):
    return jax.tree_util.tree_map(lambda p, q: p - q, params, params0)


def _linear(params0, x, activation) -> Model:
    z0, jvp = jax.linearize(_outputs(x, activation), params0)
    return lambda params: z0 + jvp(_displacement(params, params0))


def _quadratic(params0, x, activation) -> Model:
    outputs = _outputs(x, activation)
    linear = _linear(params0, x, activation)

    def model(params):
        step = _displacement(params, params0)
        slope = lambda p: jax.jvp(outputs, (p,), (step,))[1]  # noqa: E731
        curvature = jax.jvp(slope, (params0,), (step,))[1]  # d theta^T Hess(z) d theta
        return linear(params) + 0.5 * curvature

    return model


def linear_model(params0: list[dict], x, config: MLPConfig) -> Model:
    """The network's linear model around ``params0`` (first-order Taylor expansion, (10.138)).

    Args:
        params0: the expansion point theta_0, e.g. an initialization from
            :func:`pdltlib.network.init_params`.
        x: inputs of shape (N_D, n_0) where the model is evaluated.
        config: the architecture (only its activation and widths enter).

    Returns:
        A function ``params -> z_lin`` of shape (N_D, n_L): z(x; theta_0) + J (theta - theta_0).
    """
    x = check_inputs(config, x)
    _check_params(params0, config)
    return _linear(params0, x, config.activation)


def quadratic_model(params0: list[dict], x, config: MLPConfig) -> Model:
    """The network's quadratic model around ``params0`` (second-order Taylor expansion: the
    quadratic model (11.105) with meta-features d^2 z / dtheta dtheta).

    Args and returns as :func:`linear_model`; the second-order term is two nested
    ``jax.jvp`` products along theta - theta_0 (no Hessian is formed).
    """
    x = check_inputs(config, x)
    _check_params(params0, config)
    return _quadratic(params0, x, config.activation)


def model_ntk(model: Model, params: list[dict], config: MLPConfig) -> np.ndarray:
    """The NTK (7.17) of any model of the network's parameters, at ``params``:

        H_{ij;ab} = sum_mu lambda_mu (dz_{i;a}/dtheta_mu) (dz_{j;b}/dtheta_mu),

    with the learning rates (8.6) of ``config``. For the linear model it is the network's
    initial NTK at every ``params`` (frozen features, (10.140)); for the quadratic model it moves
    with the parameters through the dNTK (11.108)-(11.110). Uses the model's Jacobian, so keep it
    to small networks (chapters 10-11).

    Returns:
        H of shape (n_L, n_L, N_D, N_D), indexed H[i, j, a, b] as in :mod:`pdltlib.ntk`.
    """
    _check_params(params, config)
    jac = jax.jacrev(model)(params)
    rates = _learning_rates(config, config.depth)
    pairs = zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(rates), strict=True)
    h = 0.0
    for grad, rate in pairs:
        flat = np.asarray(grad).reshape(*grad.shape[:2], -1)
        h = h + rate * np.einsum("aip,bjp->ijab", flat, flat)
    return h
