"""The dNTK, the NTK's derivative along the parameters (book chapter 11): empirical, for one
network and for ensembles.

Definition (11.8), with the diagonal learning-rate tensor of (8.6) (lambda_b^(l) for the
biases, lambda_W^(l) / n_{l-1} for the weights):

    dH^(l)_{i0i1i2;d0d1d2} = sum lambda_{mu1 nu1} lambda_{mu2 nu2}
        (d^2 z^(l)_{i0;d0} / dtheta_mu1 dtheta_mu2) (dz^(l)_{i1;d1} / dtheta_nu1)
        (dz^(l)_{i2;d2} / dtheta_nu2)
        = u_{i1;d1}^T Hess(z^(l)_{i0;d0}) u_{i2;d2},   u_{i;d} = lambda grad_theta z^(l)_{i;d}.

It is what moves the NTK in one gradient step (11.10)-(11.11) and the O(eta^2) term of the
output update (11.9): dz_{i;d} = -eta sum H epsilon + (eta^2 / 2) sum dH_{i j1 j2; d a1 a2}
epsilon_{j1;a1} epsilon_{j2;a2} + ...

Computation. The tangent vectors u are the rows of the (small) Jacobian of the kept outputs,
scaled by lambda; each entry of dH is then a second directional derivative of the outputs
along (u_{i1;d1}, u_{i2;d2}), two nested forward-mode products (a Hessian-vector product
contracted once more), vmapped over the pairs. The parameter Hessian is never formed. The
dNTK vanishes in the first layer (11.26) and in the second layer it is (11.27); deeper it obeys
the forward equation (11.24) (both are checked in the tests).

Array conventions: dH[i0, i1, i2, d0, d1, d2], neural indices first, sample indices last, as
for the NTK in :mod:`pdltlib.ntk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.ensemble import map_networks
from pdltlib.network import MLPConfig, check_inputs, forward
from pdltlib.ntk import (
    _check_layer,
    _check_neurons,
    _check_params,
    _layer_ntk,
    _split_config,
    _with_hyperparameters,
)

__all__ = ["empirical_dntk", "DNTKSample", "sample_dntk"]

_CHUNK_BYTES = 64 * 2**20  # working-memory budget of one vmapped chunk of networks


def _learning_rates(config: MLPConfig, layer: int) -> list[dict]:
    """lambda of (8.6) for the parameters of layers 1..layer, shaped like the parameters."""
    return [
        {"W": config.lambda_W[l] / config.widths[l], "b": config.lambda_b[l]} for l in range(layer)
    ]


def _tangents(params, x, config: MLPConfig, layer: int, m: int):
    """The pieces every NTK differential is built from (module docstring).

    Returns the parameters of layers 1..layer (z^(layer) does not depend on later ones), the
    map ``outputs(p)`` -> z^(layer)[:, :m] of shape (N_D, m), and the tangent vectors
    u_{i;d} = lambda grad_theta z^(layer)_{i;d} as pytree leaves of shape (N_D m, *shape), row
    d m + i.
    """
    params = params[:layer]

    def outputs(p):
        return forward(p, x, config.activation)[-1][:, :m]  # (N_D, m)

    rates = _learning_rates(config, layer)
    jac = jax.jacrev(outputs)(params)  # leaves (N_D, m, *shape): m N_D small gradients
    n_out = x.shape[0] * m
    tangents = jax.tree_util.tree_map(
        lambda j, lam: (j * lam).reshape(n_out, *j.shape[2:]), jac, rates
    )
    return params, outputs, tangents


def _layer_dntk(params, x, config: MLPConfig, layer: int, m: int) -> jax.Array:
    """dH^(layer)[i0, i1, i2, d0, d1, d2] for the first m neurons (module docstring)."""
    params, outputs, tangents = _tangents(params, x, config, layer, m)

    def second(ua, ub):
        """d^2 outputs / ds dt at theta + s ua + t ub: u_a^T Hess(z) u_b for every output."""
        inner = lambda p: jax.jvp(outputs, (p,), (ub,))[1]  # noqa: E731
        return jax.jvp(inner, (params,), (ua,))[1]

    over_b = jax.vmap(second, in_axes=(None, 0))
    table = jax.vmap(over_b, in_axes=(0, None))(tangents, tangents)  # (a, b, d0, i0)
    n_inputs = x.shape[0]
    table = table.reshape(n_inputs, m, n_inputs, m, n_inputs, m)  # [d1, i1, d2, i2, d0, i0]
    return jnp.transpose(table, (5, 1, 3, 4, 0, 2))


@partial(jax.jit, static_argnames=("structure", "layer", "neurons"))
def _network_dntk(params, x, hyper, structure, layer, neurons):
    config = _with_hyperparameters(structure, hyper)
    return _layer_dntk(params, x, config, layer, neurons)


def empirical_dntk(
    params: list[dict],
    x,
    config: MLPConfig,
    layer: int | None = None,
    *,
    neurons: int | None = None,
) -> jax.Array:
    """The dNTK dH^(l)_{i0i1i2;d0d1d2} (11.8) of one network, by nested forward-mode products.

    Args:
        params: the network's parameters (:func:`pdltlib.network.init_params`).
        x: inputs of shape (N_D, n_0).
        config: the architecture and the learning rates lambda_b, lambda_W (8.6).
        layer: l in 1..L (default L).
        neurons: keep the first ``neurons`` neurons of layer l for i0, i1, i2 (default all n_l;
            the cost grows like (neurons N_D)^2 Hessian-vector products).

    Returns:
        dH of shape (m, m, m, N_D, N_D, N_D), indexed dH[i0, i1, i2, d0, d1, d2].
    """
    x, layer, m, structure, hyper = _one_network_arguments(params, x, config, layer, neurons)
    return _network_dntk(params, x, hyper, structure, layer, m)


def _kept_neurons(config: MLPConfig, x, layer, neurons) -> tuple[jax.Array, int, int]:
    """Validated inputs, layer l and number m of kept neurons of an NTK differential."""
    x = check_inputs(config, x)
    layer = _check_layer(layer, config)
    neurons = _check_neurons(neurons, config, (layer,))
    return x, layer, config.widths[layer] if neurons is None else neurons


def _one_network_arguments(params, x, config: MLPConfig, layer, neurons):
    """Validated arguments of an empirical NTK differential of one network: the inputs, the
    layer, the number m of kept neurons, and the static and traced parts of ``config``."""
    _check_params(params, config)
    x, layer, m = _kept_neurons(config, x, layer, neurons)
    return (x, layer, m, *_split_config(config))


@dataclass(frozen=True)
class DNTKSample:
    """An ensemble of networks at initialization: one layer's z, NTK (8.5) and dNTK (11.8).

    Attributes:
        z: (n_networks, N_D, n_l) preactivations z^(l) (all neurons).
        ntk: (n_networks, m, m, N_D, N_D) NTK H^(l) of the first m neurons.
        dntk: (n_networks, m, m, m, N_D, N_D, N_D) dNTK dH^(l) of the first m neurons.
    """

    z: np.ndarray
    ntk: np.ndarray
    dntk: np.ndarray


def _network_tensors(params, x, config: MLPConfig, layer: int, m: int):
    """z^(layer) (all neurons), the NTK and the dNTK of the first m neurons, of one network."""
    zs = forward(params, x, config.activation)
    return (
        zs[layer - 1],
        _layer_ntk(params, x, zs, config, layer, m),
        _layer_dntk(params, x, config, layer, m),
    )


@partial(jax.jit, static_argnames=("structure", "layer", "m"))
def _dntk_chunk(params, x, hyper, structure, layer, m):
    config = _with_hyperparameters(structure, hyper)
    return jax.vmap(lambda p: _network_tensors(p, x, config, layer, m))(params)


def sample_dntk(
    key: jax.Array,
    config: MLPConfig,
    x,
    n_networks: int,
    *,
    layer: int | None = None,
    neurons: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> DNTKSample:
    """Preactivations, NTKs (8.5) and dNTKs (11.8) of layer l for ``n_networks`` networks.

    Network s is initialized with ``jax.random.split(key, n_networks)[s]``, as in
    :func:`pdltlib.ntk.sample_ntk` and weight sampling, so the same key gives the same networks.
    Networks run vmapped in fixed-size chunks (the numbers do not depend on the chunk size);
    the ensemble axis leads every array.

    Args:
        key: a JAX PRNG key.
        config: the architecture and hyperparameters (:func:`pdltlib.network.mlp`).
        x: inputs of shape (N_D, n_0).
        n_networks: ensemble size (>= 1).
        layer: l in 1..L (default L).
        neurons: keep the NTK and dNTK of the first ``neurons`` neurons (default all n_l).
        chunk_size: networks per vmapped chunk (default from a 64 MiB working budget).
        progress: show a progress bar (it appears only after 3 seconds).
    """
    x, layer, m = _kept_neurons(config, x, layer, neurons)
    n_inputs = x.shape[0]
    if chunk_size is None:
        weights = sum(a * b for a, b in zip(config.widths[:-1], config.widths[1:], strict=True))
        pairs = (m * n_inputs) ** 2
        per_network = 8 * (3 * weights + pairs * (n_inputs * sum(config.widths) + m * n_inputs))
        chunk_size = max(1, min(1024, _CHUNK_BYTES // per_network))
    structure, hyper = _split_config(config)
    z, ntk, dntk = map_networks(
        lambda params: _dntk_chunk(params, x, hyper, structure, layer, m),
        key, n_networks, chunk_size, "sampling dNTKs", progress, config=config,
    )  # fmt: skip
    return DNTKSample(z=z, ntk=ntk, dntk=dntk)
