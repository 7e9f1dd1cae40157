"""Ensembles of preactivations at initialization, sampled two ways.

* ``method="weights"``: draw W and b from (2.21)-(2.22) and run the network (2.5).
* ``method="markov"``: the exact layer-to-layer sampler. Conditioned on layer l, the next
  layer's preactivations are i.i.d. across neurons and Gaussian (book eqs. 4.33-4.36):

      z^(l+1)_{i;a} | z^(l)  ~  N(0, G^(l+1)),
      G^(l+1)_{ab} = C_b + (C_W / n_l) sum_j sigma(z^(l)_{j;a}) sigma(z^(l)_{j;b}),

  and the first layer is Gaussian with G^(1)_{ab} = C_b + C_W x_a . x_b / n_0 (4.8). Sampling
  costs O(n N_D^2) per layer instead of O(n^2 N_D), and is exact in distribution.

Both run ``vmap`` over networks inside fixed-size chunks (memory stays bounded however many
networks are asked for) and derive one PRNG key per network from the given key, so the
numbers do not depend on the chunk size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.ensemble import map_networks
from pdltlib.network import FAST_COMPILE, MLPConfig, check_inputs, forward

__all__ = ["sample_preactivations", "psd_sqrt", "METHODS"]

METHODS = ("markov", "weights")
_CHUNK_BYTES = 128 * 2**20  # working-memory budget per chunk


def psd_sqrt(g: jax.Array) -> jax.Array:
    """Symmetric square root of a positive-semidefinite matrix (eigenvalues clipped at 0).

    Unlike a Cholesky factor it exists for singular G (e.g. two identical inputs).

    Not in the book: a linear-algebra utility of the Markov sampler.
    """
    evals, evecs = jnp.linalg.eigh(g)
    return (evecs * jnp.sqrt(jnp.clip(evals, 0.0, None))[..., None, :]) @ jnp.swapaxes(
        evecs, -1, -2
    )


def _markov_layer(key, features, c_b, c_w, n_next: int):
    """One exact Markov step: z ~ N(0, G) i.i.d. over n_next neurons, G = C_b + C_W s s^T / n."""
    g = c_b + (c_w / features.shape[1]) * features @ features.T
    noise = jax.random.normal(key, (features.shape[0], n_next), features.dtype)
    return psd_sqrt(g) @ noise


def _segments(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """Split layers 0..L-1 into runs [start, end): runs of >= 2 width-preserving layers
    (n_l = n_{l+1}) are scanned, every other layer is its own run."""
    segments, layer, depth = [], 0, len(widths) - 1
    while layer < depth:
        end = layer
        while end < depth and widths[end] == widths[end + 1] == widths[layer]:
            end += 1
        end = end if end - layer >= 2 else layer + 1
        segments.append((layer, end))
        layer = end
    return segments


def _markov_network(key, x, config: MLPConfig, keep: tuple[int, ...], dtype):
    """One network's preactivations by the exact Markov sampler (layers in ``keep``).

    Equal-width stretches of layers run under ``jax.lax.scan``, so the traced program (and the
    compile time) does not grow with depth; the random numbers are those of a plain loop.
    """
    keys = jax.random.split(key, config.depth)
    c_b, c_w = jnp.asarray(config.C_b, dtype), jnp.asarray(config.C_W, dtype)
    act = config.activation.fn
    features, out = x.astype(dtype), {}
    for start, end in _segments(config.widths):
        n_next = config.widths[end]
        if end - start == 1:
            z = _markov_layer(keys[start], features, c_b[start], c_w[start], n_next)
            zs, features = z[None], act(z)
        else:

            def step(h, args, n_next=n_next):
                layer_key, layer_c_b, layer_c_w = args
                z = _markov_layer(layer_key, h, layer_c_b, layer_c_w, n_next)
                return act(z), z

            features, zs = jax.lax.scan(
                step, features, (keys[start:end], c_b[start:end], c_w[start:end])
            )
        out.update({layer + 1: zs[layer - start] for layer in range(start, end)})
    return [out[layer] for layer in keep]


def _weights_network(params, x, config: MLPConfig, keep: tuple[int, ...], dtype):
    """One network's preactivations: run it with its sampled weights ``params``."""
    zs = forward(params, x.astype(dtype), config.activation)
    return [zs[layer - 1] for layer in keep]


@partial(
    jax.jit,
    static_argnames=("structure", "keep", "method", "dtype"),
    compiler_options=FAST_COMPILE,
)
def _sample_chunk(inputs, x, c_b, c_w, structure, keep, method, dtype):
    """A vmapped chunk of networks, from their keys (Markov) or their parameters (weights).
    The variances C_b, C_W are traced data, so ensembles that differ only in them share one
    compiled program; ``structure`` fixes widths and sigma. The Markov sampler draws its
    Gaussians inside, so it compiles as :func:`pdltlib.network.init_ensemble` does."""
    config = dataclasses.replace(structure, C_b=c_b, C_W=c_w)
    one = _markov_network if method == "markov" else _weights_network
    return jax.vmap(lambda v: one(v, x, config, keep, dtype))(inputs)


def _structure(config: MLPConfig) -> MLPConfig:
    """The config with its variances blanked: the static part of a compiled sampler."""
    ones = (1.0,) * config.depth
    return dataclasses.replace(config, C_b=ones, C_W=ones, lambda_b=ones, lambda_W=ones)


def _chunk_size(config: MLPConfig, n_inputs: int, method: str, itemsize: int) -> int:
    per_network = n_inputs * sum(config.widths) * 4
    if method == "weights":  # every layer's weight matrix, plus its random-number buffer
        per_network += 2 * sum(
            a * b for a, b in zip(config.widths[:-1], config.widths[1:], strict=True)
        )
    return int(max(1, min(4096, _CHUNK_BYTES // (per_network * itemsize))))


def sample_preactivations(
    key: jax.Array,
    config: MLPConfig,
    x,
    n_networks: int,
    *,
    method: str = "markov",
    layers: Iterable[int] | None = None,
    chunk_size: int | None = None,
    dtype=jnp.float64,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Preactivations z^(l) of ``n_networks`` independent networks at initialization.

    Args:
        key: a JAX PRNG key; network s uses ``jax.random.split(key, n_networks)[s]``.
        config: the architecture, from :func:`pdltlib.network.mlp`.
        x: inputs of shape (N_D, n_0).
        n_networks: ensemble size (>= 1).
        method: ``"markov"`` (exact layer-to-layer Gaussian sampler) or ``"weights"``.
        layers: which layers l in 1..L to return (default: the output layer L only).
        chunk_size: networks per vmapped chunk (default: from a 128 MiB working budget).
        dtype: float64 (default) or float32.
        progress: show a progress bar (default True; it appears only once a run has taken
            more than 3 seconds, so quick ensembles print nothing).

    Returns:
        ``{l: array of shape (n_networks, N_D, n_l)}`` as NumPy arrays.

    Book: the initialization distribution (2.21)-(2.22) of the MLP (2.5); the Markov sampler draws
    z^(l+1) given layer l from the conditional Gaussian (4.6)-(4.7) with the stochastic metric
    (4.70).
    """
    x = check_inputs(config, x)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    keep = (config.depth,) if layers is None else tuple(sorted({int(v) for v in layers}))
    if not keep or keep[0] < 1 or keep[-1] > config.depth:
        raise ValueError(f"layers must lie in 1..L = 1..{config.depth}, got {layers}")
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if chunk_size is None:
        chunk_size = _chunk_size(config, x.shape[0], method, dtype.itemsize)

    structure = _structure(config)
    c_b, c_w = jnp.asarray(config.C_b, dtype), jnp.asarray(config.C_W, dtype)
    zs = map_networks(
        lambda inputs: _sample_chunk(inputs, x, c_b, c_w, structure, keep, method, dtype),
        key, n_networks, chunk_size, f"sampling ({method})", progress,
        config=None if method == "markov" else config, dtype=dtype,
    )  # fmt: skip
    return dict(zip(keep, zs, strict=True))
