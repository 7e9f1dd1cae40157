"""Multilayer perceptrons in the book's conventions (section 2.1, eq. 2.5; section 2.3).

Preactivations of an MLP of depth L with widths (n_0, n_1, ..., n_L):

    z^(1)_{i;a}   = b^(1)_i   + sum_j W^(1)_{ij} x_{j;a},
    z^(l+1)_{i;a} = b^(l+1)_i + sum_j W^(l+1)_{ij} sigma(z^(l)_{j;a}),

with the initialization distribution (2.21)-(2.22)

    b^(l)_i ~ N(0, C_b^(l)),    W^(l)_{ij} ~ N(0, C_W^(l) / n_{l-1}).

Arrays follow the book's index order with the sample index first: inputs ``x`` have shape
(N_D, n_0) and ``z^(l)`` has shape (N_D, n_l). The learning-rate hyperparameters lambda_b,
lambda_W (book eq. 8.6) are stored with the architecture for the NTK chapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.validation import per_layer

__all__ = ["MLPConfig", "mlp", "init_params", "init_ensemble", "forward", "check_inputs"]


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and initialization hyperparameters of an MLP.

    Attributes:
        widths: (n_0, n_1, ..., n_L); n_0 is the input dimension, n_L the output dimension.
        activation: the :class:`~pdltlib.activations.Activation` sigma.
        C_b, C_W: per-layer bias and weight variances (length L).
        lambda_b, lambda_W: per-layer learning-rate hyperparameters (length L), eq. (8.6).
    """

    widths: tuple[int, ...]
    activation: Activation
    C_b: tuple[float, ...]
    C_W: tuple[float, ...]
    lambda_b: tuple[float, ...]
    lambda_W: tuple[float, ...]

    @property
    def depth(self) -> int:
        """L, the number of layers."""
        return len(self.widths) - 1


def mlp(
    widths: Sequence[int],
    activation: str | Activation = "relu",
    C_b: float | Sequence[float] = 0.0,
    C_W: float | Sequence[float] = 1.0,
    lambda_b: float | Sequence[float] = 1.0,
    lambda_W: float | Sequence[float] = 1.0,
) -> MLPConfig:
    """Validate hyperparameters and build an :class:`MLPConfig`.

    Scalars are broadcast to every layer. Raises ValueError naming the offending parameter
    (widths must be positive integers, C_b >= 0, C_W > 0, lambda_b >= 0, lambda_W >= 0).

    Book: the MLP of section 2.1 (eq. (2.5)) with the initialization (2.21)-(2.22) and the learning
    rates (8.6).
    """
    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError("widths must list n_0 and at least one layer width: (n_0, ..., n_L)")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"widths must be positive integers, got {widths}")
    depth = len(widths) - 1
    return MLPConfig(
        widths=tuple(int(w) for w in widths),
        activation=get_activation(activation),
        C_b=tuple(per_layer(C_b, depth, "C_b").tolist()),
        C_W=tuple(per_layer(C_W, depth, "C_W", positive=True).tolist()),
        lambda_b=tuple(per_layer(lambda_b, depth, "lambda_b").tolist()),
        lambda_W=tuple(per_layer(lambda_W, depth, "lambda_W").tolist()),
    )


def check_inputs(config: MLPConfig, x) -> jax.Array:
    """Return ``x`` as a float64 array of shape (N_D, n_0), or raise ValueError.

    Not in the book: input validation (the inputs x_{j;a} of eq. (2.5)).
    """
    x = jnp.asarray(x, dtype=jnp.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != config.widths[0]:
        raise ValueError(
            f"x must have shape (N_D, n_0) with n_0 = {config.widths[0]}, got {tuple(x.shape)}"
        )
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("x contains non-finite values")
    return x


def init_params(key: jax.Array, config: MLPConfig, dtype=jnp.float64) -> list[dict]:
    """Sample parameters from the initialization distribution (2.21)-(2.22).

    Returns a list over layers l = 1..L of ``{"W": (n_l, n_{l-1}), "b": (n_l,)}``.
    """
    return _init_layers(key, config.widths, config.C_b, config.C_W, dtype)


def _init_layers(key, widths, C_b, C_W, dtype) -> list[dict]:
    params = []
    keys = jax.random.split(key, len(widths) - 1)
    for layer, k in enumerate(keys):
        n_in, n_out = widths[layer], widths[layer + 1]
        k_w, k_b = jax.random.split(k)
        w = jax.random.normal(k_w, (n_out, n_in), dtype) * jnp.sqrt(C_W[layer] / n_in)
        b = jax.random.normal(k_b, (n_out,), dtype) * jnp.sqrt(C_b[layer])
        params.append({"W": w, "b": b})
    return params


# Compiler options of programs that draw random numbers. The threefry generator's compile
# spends most of its time in LLVM's most expensive passes (level 2, the default): at level 1
# it compiles in about half the time (once for every architecture a chapter samples), runs as
# fast, and draws the same bits (benchmarks/bench_compile.py measures all three).
FAST_COMPILE = {"xla_backend_optimization_level": 1}


@partial(jax.jit, static_argnames=("widths", "dtype"), compiler_options=FAST_COMPILE)
def _init_vmapped(keys, C_b, C_W, widths, dtype):
    return jax.vmap(lambda k: _init_layers(k, widths, C_b, C_W, dtype))(keys)


_INIT_BLOCK = 128  # keys per call of the compiled program: one shape for every chunk size


def init_ensemble(keys: jax.Array, config: MLPConfig, dtype=jnp.float64) -> list[dict]:
    """The initialization distribution (2.21)-(2.22) for a batch of keys (K, 2):
    :func:`init_params` of each key, every leaf a NumPy array with a leading axis K.

    One compiled program per widths and dtype (C_b, C_W are traced), kept apart from the
    computations that use the parameters: fused into them, the Gaussian sampling is copied into
    every kernel that reads the parameters, and compiling is several times slower. The keys go
    through it in blocks of a fixed size (the last one padded), so every chunk size and ensemble
    size shares that one program; each network's parameters depend on its key alone.
    """
    c_b, c_w = (jnp.asarray(v, dtype) for v in (config.C_b, config.C_W))
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):  # typed keys: their raw key data
        keys = jax.random.key_data(keys)
    host = np.asarray(keys)  # blocks are cut and joined on the host: no program per shape
    n = host.shape[0]
    padded = np.concatenate([host, np.broadcast_to(host[:1], (-n % _INIT_BLOCK, *host.shape[1:]))])
    blocks = [
        _init_vmapped(
            padded[start : start + _INIT_BLOCK], c_b, c_w, config.widths, jnp.dtype(dtype)
        )
        for start in range(0, padded.shape[0], _INIT_BLOCK)
    ]
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves)[:n], *blocks)


def forward(params: list[dict], x: jax.Array, activation: Activation) -> list[jax.Array]:
    """All preactivations [z^(1), ..., z^(L)] of the network, each of shape (N_D, n_l).

    Implements the MLP recursion (2.5) with the last layer left linear (no activation).
    """
    zs = []
    h = x
    for layer, p in enumerate(params):
        z = h @ p["W"].T + p["b"]
        zs.append(z)
        if layer + 1 < len(params):
            h = activation.fn(z)
    return zs
