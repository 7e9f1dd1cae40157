"""The neural tangent kernel: empirical (one network, ensembles), its frozen mean, and one
step of tensorial gradient descent (book chapters 7-9).

Definitions. The l-th-layer NTK (book eqs. 7.17, 8.5) with the learning-rate tensor of (8.6),
lambda for the biases b^(l)_j = lambda_b^(l) and for the weights W^(l)_jk = lambda_W^(l) / n_{l-1},
decomposes into a sum over layers (8.7):

    H^(l)_{i1i2;a1a2} = sum_{l'<=l} sum_j B^(l,l')_{i1j;a1} B^(l,l')_{i2j;a2}
                        * [lambda_b^(l') + (lambda_W^(l') / n_{l'-1}) S^(l'-1)_{a1a2}],
    S^(l'-1)_{a1a2}   = sum_k s^(l'-1)_{k;a1} s^(l'-1)_{k;a2},

with the forward activations s^(l')_{k;a} = sigma(z^(l')_{k;a}) (s^(0) = x) and the backward
signals B^(l,l')_{ij;a} = dz^(l)_{i;a} / dz^(l')_{j;a}, which obey the backward equation
(8.17)-(8.18): B^(l,l) = delta and
B^(l,l'-1)_{ij;a} = sum_k B^(l,l')_{ik;a} W^(l')_{kj} sigma'(z^(l'-1)_{j;a}).
This is how :func:`empirical_ntk` computes it: no Jacobian with respect to the parameters is
ever formed. The forward equation (8.12) is the same sum organized layer by layer.

Array conventions. The NTK is returned in the book's index order H[i1, i2, a1, a2]: shape
(n_l, n_l, N_D, N_D), neural indices first, sample indices last. Preactivations keep the library's
(N_D, n_l) order (sample index first), as in :mod:`pdltlib.network`.

The frozen NTK Theta^(l) (9.4), the infinite-width NTK mean, obeys (8.63)/(9.5):

    Theta^(l+1)_{a1a2} = lambda_b^(l+1) + lambda_W^(l+1) <s_a1 s_a2>_K(l)
                         + C_W^(l+1) <s'_a1 s'_a2>_K(l) Theta^(l)_{a1a2},
    Theta^(1)_{a1a2}   = lambda_b^(1) + lambda_W^(1) (1/n_0) sum_j x_{j;a1} x_{j;a2}  (8.23), (9.7),

computed by :func:`ntk_flow`. :func:`gradient_step` takes one step of (7.11) on the MSE loss
(7.2), (7.4), so that z(after) - z(before) = -eta sum H epsilon + O(eta^2) (7.20) can be checked;
:func:`output_change` evaluates that right-hand side and :func:`second_order_change` the
O(eta^2) term, the dNTK term (1/2) sum dH epsilon epsilon of (11.8)-(11.9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.ensemble import map_networks
from pdltlib.gaussian import activation_expectation
from pdltlib.kernels import first_layer_kernel, kernel_flow
from pdltlib.network import MLPConfig, check_inputs, forward
from pdltlib.validation import per_layer

__all__ = [
    "empirical_ntk",
    "sample_ntk",
    "NTKSample",
    "ntk_flow",
    "NTKFlow",
    "mse_loss",
    "gradient_step",
    "output_change",
    "second_order_change",
]

_CHUNK_BYTES = 128 * 2**20  # working-memory budget per chunk of networks


def _check_params(params: list[dict], config: MLPConfig) -> None:
    if len(params) != config.depth:
        raise ValueError(f"params must hold L = {config.depth} layers, got {len(params)}")
    for layer, p in enumerate(params):
        shape = (config.widths[layer + 1], config.widths[layer])
        if tuple(p["W"].shape) != shape or tuple(p["b"].shape) != shape[:1]:
            raise ValueError(
                f"params[{layer}] must have W of shape {shape} and b of shape {shape[:1]}, got "
                f"{tuple(p['W'].shape)} and {tuple(p['b'].shape)}"
            )


def _check_layer(layer, config: MLPConfig) -> int:
    if layer is None:
        return config.depth
    if isinstance(layer, bool) or not isinstance(layer, Integral) or not 1 <= layer <= config.depth:
        raise ValueError(f"layer must be an integer in 1..L = 1..{config.depth}, got {layer!r}")
    return int(layer)


def _check_neurons(neurons, config: MLPConfig, layers: Iterable[int]) -> int | None:
    if neurons is None:
        return None
    smallest = min(config.widths[layer] for layer in layers)
    if isinstance(neurons, bool) or not isinstance(neurons, Integral) or not 1 <= neurons:
        raise ValueError(f"neurons must be a positive integer or None, got {neurons!r}")
    if neurons > smallest:
        raise ValueError(f"neurons must be <= the width {smallest} of the requested layers")
    return int(neurons)


def _derivative(act: Activation, z: jax.Array) -> jax.Array:
    """sigma'(z) elementwise, by one forward-mode pass."""
    return jax.jvp(act.fn, (z,), (jnp.ones_like(z),))[1]


def _layer_ntk(params, x, zs, config: MLPConfig, layer: int, neurons: int | None):
    """H^(layer) restricted to its first ``neurons`` neurons, by the layer sum (8.7) with
    backward signals (8.17); ``zs`` are the forward preactivations z^(1..L)."""
    act = config.activation
    m = config.widths[layer] if neurons is None else neurons
    n_inputs = x.shape[0]
    # B[a, i, j] = dz^(layer)_{i;a} / dz^(l')_{j;a}, starting from (8.18) at l' = layer
    backward = jnp.broadcast_to(
        jnp.eye(m, config.widths[layer], dtype=x.dtype), (n_inputs, m, config.widths[layer])
    )
    ntk = jnp.zeros((m, m, n_inputs, n_inputs), x.dtype)
    for lp in range(layer, 0, -1):  # l' = layer, ..., 1 (1-indexed)
        s_prev = x if lp == 1 else act.fn(zs[lp - 2])
        gram = s_prev @ s_prev.T / config.widths[lp - 1]
        weight = config.lambda_b[lp - 1] + config.lambda_W[lp - 1] * gram  # (a1, a2)
        ntk = ntk + jnp.einsum("aij,bkj->ikab", backward, backward) * weight
        if lp > 1:
            backward = (backward @ params[lp - 1]["W"]) * _derivative(act, zs[lp - 2])[:, None, :]
    return ntk


def empirical_ntk(
    params: list[dict],
    x,
    config: MLPConfig,
    layer: int | None = None,
    *,
    neurons: int | None = None,
) -> jax.Array:
    """The NTK H^(l)_{i1i2;a1a2} (8.5) of one network, from activations and backward signals.

    Uses the layer decomposition (8.7) with the learning rates (8.6) lambda_b^(l') and
    lambda_W^(l') / n_{l'-1} taken from ``config``, and the backward equation (8.17)-(8.18) for
    dz^(l)/dz^(l'): no parameter Jacobian is materialized (see the module docstring).

    Args:
        params: the network's parameters, as from :func:`pdltlib.network.init_params`.
        x: inputs of shape (N_D, n_0).
        config: the architecture and the hyperparameters lambda_b, lambda_W.
        layer: l in 1..L (default L: the output NTK (7.17)).
        neurons: keep only the first ``neurons`` neurons i1, i2 of layer l (default: all n_l).

    Returns:
        H of shape (m, m, N_D, N_D), indexed H[i1, i2, a1, a2] (m = n_l or ``neurons``).
    """
    x = check_inputs(config, x)
    _check_params(params, config)
    layer = _check_layer(layer, config)
    neurons = _check_neurons(neurons, config, (layer,))
    structure, hyper = _split_config(config)
    return _network_ntk(params, x, hyper, structure, layer, neurons)


@dataclass(frozen=True)
class NTKSample:
    """An ensemble of networks at initialization: preactivations and NTKs, layer by layer.

    Attributes:
        z: ``{l: array (n_networks, N_D, n_l)}``, the preactivations z^(l)_{i;a} (sample first).
        ntk: ``{l: array (n_networks, m, m, N_D, N_D)}``, H^(l)[i1, i2, a1, a2] restricted to
            the first m neurons (m = n_l unless ``neurons`` was given).

    Book: the NTK (8.5) and preactivations of section 8.
    """

    z: dict[int, np.ndarray]
    ntk: dict[int, np.ndarray]


def _with_hyperparameters(structure: MLPConfig, hyper) -> MLPConfig:
    c_b, c_w, l_b, l_w = hyper
    return dataclasses.replace(structure, C_b=c_b, C_W=c_w, lambda_b=l_b, lambda_W=l_w)


def _split_config(config: MLPConfig) -> tuple[MLPConfig, tuple[jax.Array, ...]]:
    """The static part of a compiled NTK program (widths, sigma) and the traced part
    (C_b, C_W, lambda_b, lambda_W), so configs that differ only in the latter share compiles."""
    ones = (1.0,) * config.depth
    structure = dataclasses.replace(config, C_b=ones, C_W=ones, lambda_b=ones, lambda_W=ones)
    hyper = (config.C_b, config.C_W, config.lambda_b, config.lambda_W)
    return structure, tuple(jnp.asarray(v, jnp.float64) for v in hyper)


@partial(jax.jit, static_argnames=("structure", "layer", "neurons"))
def _network_ntk(params, x, hyper, structure, layer, neurons):
    config = _with_hyperparameters(structure, hyper)
    zs = forward(params, x, config.activation)
    return _layer_ntk(params, x, zs, config, layer, neurons)


def _one_network(params, x, config: MLPConfig, keep: tuple[int, ...], neurons: int | None):
    zs = forward(params, x, config.activation)
    ntks = [_layer_ntk(params, x, zs, config, layer, neurons) for layer in keep]
    return [zs[layer - 1] for layer in keep], ntks


@partial(jax.jit, static_argnames=("structure", "keep", "neurons"))
def _ntk_chunk(params, x, hyper, structure, keep, neurons):
    """A vmapped chunk of networks (hyperparameters traced, see :func:`_split_config`)."""
    config = _with_hyperparameters(structure, hyper)
    return jax.vmap(lambda p: _one_network(p, x, config, keep, neurons))(params)


def _chunk_size(config: MLPConfig, n_inputs: int, keep, neurons, itemsize: int) -> int:
    weights = sum(a * b for a, b in zip(config.widths[:-1], config.widths[1:], strict=True))
    per_network = 2 * weights + 4 * n_inputs * sum(config.widths)
    for layer in keep:
        m = config.widths[layer] if neurons is None else neurons
        per_network += 2 * m * m * n_inputs**2 + 3 * n_inputs * m * max(config.widths[1:])
    return int(max(1, min(4096, _CHUNK_BYTES // (per_network * itemsize))))


def sample_ntk(
    key: jax.Array,
    config: MLPConfig,
    x,
    n_networks: int,
    *,
    layers: Iterable[int] | None = None,
    neurons: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> NTKSample:
    """Preactivations and NTKs of ``n_networks`` independent networks at initialization.

    Each network's weights are drawn from (2.21)-(2.22) with the key
    ``jax.random.split(key, n_networks)[s]`` (exactly as
    ``pdltlib.sampling.sample_preactivations(..., method="weights")`` does, so the z's agree),
    and its NTK is computed by :func:`empirical_ntk`'s layer sum. Networks run ``vmap``-ed in
    fixed-size chunks (bounded memory; the numbers do not depend on the chunk size); the
    ensemble axis is the leading axis of every array, the one to shard across devices.

    Args:
        key: a JAX PRNG key.
        config: the architecture and hyperparameters (:func:`pdltlib.network.mlp`).
        x: inputs of shape (N_D, n_0).
        n_networks: ensemble size (>= 1).
        layers: which layers l in 1..L to return (default: the output layer L only).
        neurons: keep the NTK of the first ``neurons`` neurons of each layer only (memory:
            the NTK of a layer costs n_l^2 N_D^2 numbers per network).
        chunk_size: networks per vmapped chunk (default: from a 128 MiB working budget).
        progress: show a progress bar (it appears only after 3 seconds).

    Returns:
        An :class:`NTKSample` of NumPy float64 arrays.
    """
    x = check_inputs(config, x)
    keep = (config.depth,) if layers is None else tuple(sorted({int(v) for v in layers}))
    if not keep or keep[0] < 1 or keep[-1] > config.depth:
        raise ValueError(f"layers must lie in 1..L = 1..{config.depth}, got {layers}")
    neurons = _check_neurons(neurons, config, keep)
    if chunk_size is None:
        chunk_size = _chunk_size(config, x.shape[0], keep, neurons, 8)

    structure, hyper = _split_config(config)
    zs, hs = map_networks(
        lambda params: _ntk_chunk(params, x, hyper, structure, keep, neurons),
        key, n_networks, chunk_size, "sampling NTKs", progress, config=config,
    )  # fmt: skip
    return NTKSample(z=dict(zip(keep, zs, strict=True)), ntk=dict(zip(keep, hs, strict=True)))


@dataclass(frozen=True)
class NTKFlow:
    """The infinite-width kernel K^(l) and frozen NTK Theta^(l), l = 1..depth (index l - 1).

    Shapes (depth,) for a single input, (depth, N_D, N_D) for several.

    Book: the kernel recursion (4.118) and the frozen NTK (9.4)-(9.7).
    """

    K: np.ndarray
    Theta: np.ndarray


def _derivative_moment(act: Activation, k: np.ndarray) -> np.ndarray:
    """<sigma'_a1 sigma'_a2>_K for every pair of inputs (book (9.11) off the diagonal)."""
    n = k.shape[0]
    out = np.empty((n, n))
    for a in range(n):
        for b in range(a, n):
            out[a, b] = out[b, a] = activation_expectation(act, k, (a, b), derivatives=(1, 1))
    return out


def ntk_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    lambda_b: float | Sequence[float],
    lambda_W: float | Sequence[float],
    x,
    depth: int,
) -> NTKFlow:
    """The frozen NTK Theta^(l) (9.4), l = 1..depth, by the recursion (8.63) at leading order,
    i.e. (9.5) (single input: (9.6)), from Theta^(1) of (8.23)/(9.7); with the kernel K^(l).

    Theta^(l+1) = lambda_b^(l+1) + lambda_W^(l+1) <s s>_K(l) + C_W^(l+1) <s' s'>_K(l) Theta^(l).
    The Gaussian integrals are done by :func:`pdltlib.gaussian.activation_expectation`
    (kinks split exactly; the delta function in a step function's derivative is not
    represented, so the perceptron is rejected).

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts.
        C_b, C_W, lambda_b, lambda_W: numbers, or per-layer sequences of length ``depth``
            (entry l - 1 holds layer l's values, as in :class:`pdltlib.network.MLPConfig`).
        x: inputs of shape (N_D, n_0), or one input of shape (n_0,) for scalar outputs.
        depth: the number of layers L >= 1.

    Returns:
        :class:`NTKFlow` with K and Theta of shape (depth,) or (depth, N_D, N_D).
    """
    act = get_activation(activation)
    if act.name == "perceptron":
        raise ValueError("activation: the perceptron's sigma' is a delta function; no NTK flow")
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    c_b = per_layer(C_b, depth, "C_b")
    c_w = per_layer(C_W, depth, "C_W", positive=True)
    l_b = per_layer(lambda_b, depth, "lambda_b")
    l_w = per_layer(lambda_W, depth, "lambda_W")
    inputs = np.asarray(x, dtype=np.float64)
    scalar = inputs.ndim == 1
    inputs = inputs[None, :] if scalar else inputs
    if inputs.ndim != 2 or inputs.shape[1] < 1 or not np.all(np.isfinite(inputs)):
        raise ValueError(f"x must be finite with shape (N_D, n_0) or (n_0,), got {np.shape(x)}")
    gram = inputs @ inputs.T / inputs.shape[1]
    ks = kernel_flow(act, c_b, c_w, first_layer_kernel(inputs, c_b[0], c_w[0]), depth)
    thetas = [l_b[0] + l_w[0] * gram]
    for step in range(depth - 1):
        k = ks[step]
        sigma2 = np.array(
            [[activation_expectation(act, k, (a, b)) for b in range(len(k))] for a in range(len(k))]
        )
        chi = c_w[step + 1] * _derivative_moment(act, k)
        thetas.append(l_b[step + 1] + l_w[step + 1] * sigma2 + chi * thetas[-1])
    theta = np.stack(thetas)
    if scalar:
        return NTKFlow(K=ks[:, 0, 0], Theta=theta[:, 0, 0])
    return NTKFlow(K=ks, Theta=theta)


def _check_targets(config: MLPConfig, x: jax.Array, y) -> jax.Array:
    y = jnp.asarray(y, dtype=jnp.float64)
    y = y[None, :] if y.ndim == 1 else y
    if y.shape != (x.shape[0], config.widths[-1]):
        raise ValueError(
            f"y must have shape (N_A, n_L) = {(x.shape[0], config.widths[-1])}, "
            f"got {tuple(y.shape)}"
        )
    return y


def _mse(params, x, y, activation: Activation):
    return 0.5 * jnp.sum((forward(params, x, activation)[-1] - y) ** 2)


def mse_loss(params: list[dict], x, y, config: MLPConfig) -> jax.Array:
    """The training loss (7.4) with the MSE loss (7.2): (1/2) sum_{i,a} (z^(L)_{i;a} - y_{i;a})^2.

    ``x`` has shape (N_A, n_0) and ``y`` shape (N_A, n_L). Its gradient with respect to z^(L)
    is the error factor epsilon = z - y (7.15)-(7.16).
    """
    x = check_inputs(config, x)
    _check_params(params, config)
    return _mse(params, x, _check_targets(config, x, y), config.activation)


def _descend(params, grads, config: MLPConfig, eta):
    """theta - eta lambda grads with the diagonal learning-rate tensor (8.6), layer by layer."""
    return [
        {
            "W": p["W"] - eta * config.lambda_W[layer] / config.widths[layer] * g["W"],
            "b": p["b"] - eta * config.lambda_b[layer] * g["b"],
        }
        for layer, (p, g) in enumerate(zip(params, grads, strict=True))
    ]


@partial(jax.jit, static_argnames=("structure",))
def _step(params, x, y, hyper, structure, eta):
    config = _with_hyperparameters(structure, hyper)
    return _descend(params, jax.grad(_mse)(params, x, y, config.activation), config, eta)


def gradient_step(params: list[dict], x, y, config: MLPConfig, eta: float) -> list[dict]:
    """One step of tensorial gradient descent (7.11) on the MSE training loss (7.4).

    theta_mu -> theta_mu - eta lambda_mu dL_A/dtheta_mu with the diagonal learning-rate tensor
    (8.6): lambda_b^(l) for every bias of layer l, lambda_W^(l) / n_{l-1} for every weight.
    To first order in eta the outputs then move by :func:`output_change` (7.20).

    Args:
        params: the network's parameters (:func:`pdltlib.network.init_params`).
        x: training inputs of shape (N_A, n_0); y: labels of shape (N_A, n_L).
        config: the architecture and learning rates lambda_b, lambda_W.
        eta: the global learning rate (>= 0).

    Returns:
        The updated parameters (same structure as ``params``).
    """
    if not np.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be finite and >= 0, got {eta}")
    x = check_inputs(config, x)
    _check_params(params, config)
    y = _check_targets(config, x, y)
    structure, hyper = _split_config(config)
    return _step(params, x, y, hyper, structure, jnp.float64(eta))


def output_change(ntk, errors, eta: float) -> np.ndarray:
    """The first-order change of the outputs after one step, eq. (7.20):

        dz_{i;d} = -eta sum_j sum_a H_{ij;d a} epsilon_{j;a}.

    Args:
        ntk: H[i, j, d, a] of shape (n_L, n_L, N_D, N_A): rows d over the inputs where the
            change is wanted, columns a over the training inputs.
        errors: the error factor epsilon (7.16) of shape (N_A, n_L); z - y for the MSE loss.
        eta: the global learning rate.

    Returns:
        dz of shape (N_D, n_L) (sample index first, like z).
    """
    h = np.asarray(ntk, dtype=np.float64)
    eps = np.asarray(errors, dtype=np.float64)
    if h.ndim != 4 or h.shape[0] != h.shape[1]:
        raise ValueError(f"ntk must have shape (n_L, n_L, N_D, N_A), got {h.shape}")
    if eps.shape != (h.shape[3], h.shape[1]):
        raise ValueError(f"errors must have shape (N_A, n_L) = {(h.shape[3], h.shape[1])}")
    return -eta * np.einsum("ijda,aj->di", h, eps)


def second_order_change(params: list[dict], x, x_train, y, config: MLPConfig) -> np.ndarray:
    """The O(eta^2) coefficient c of one gradient step: z(after) - z(before) =
    eta dz_1 + eta^2 c + O(eta^3), with dz_1 from :func:`output_change`.

    One step of :func:`gradient_step` moves the parameters along the fixed direction
    v = -lambda dL_A/dtheta, so c = (1/2) d^2 z(theta + eta v)/d eta^2 at eta = 0, computed by
    two forward-mode derivatives. In the book's language this is the dNTK term of (11.9),
    c_{i;d} = (1/2) sum dH_{ij1j2;d a1 a2} epsilon_{j1;a1} epsilon_{j2;a2}, with the dNTK (11.8).

    Args:
        params, config: the network.
        x: inputs where the change is wanted, shape (N_D, n_0).
        x_train, y: the training set of the step, shapes (N_A, n_0) and (N_A, n_L).

    Returns:
        c of shape (N_D, n_L).
    """
    x = check_inputs(config, x)
    direction = jax.tree_util.tree_map(
        jnp.subtract, gradient_step(params, x_train, y, config, 1.0), params
    )

    def outputs(t):
        moved = jax.tree_util.tree_map(lambda p, v: p + t * v, params, direction)
        return forward(moved, x, config.activation)[-1]

    return 0.5 * np.asarray(jax.jacfwd(jax.jacfwd(outputs))(jnp.float64(0.0)))
