"""Run a per-network computation over an ensemble of networks in fixed-size vmapped chunks.

Every ensemble in the library (preactivations, NTKs, dNTKs, training runs) draws network s from
``jax.random.split(key, n_networks)[s]`` (its parameters with
:func:`pdltlib.network.init_ensemble`, one compiled program per architecture shared by every
sampler), so the same key gives the same networks whatever the chunk size or the quantity
computed; chunks bound the working memory; the last chunk is padded
so that one compiled program serves them all; the ensemble axis leads every result. Not in the
book: a utility.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.network import MLPConfig, init_ensemble
from pdltlib.progress import progress_bar
from pdltlib.validation import integer_at_least

__all__ = ["map_networks"]


def map_networks(
    run_chunk: Callable[[jax.Array], Any],
    key: jax.Array,
    n_networks: int,
    chunk_size: int,
    desc: str,
    progress: bool = True,
    *,
    config: MLPConfig | None = None,
    dtype=jnp.float64,
) -> Any:
    """Apply ``run_chunk`` to the keys of an ensemble, chunk by chunk, and stack the results.

    Args:
        run_chunk: maps a batch of keys (chunk_size, 2), or with ``config`` the networks'
            parameters drawn from them, to a pytree of arrays whose leading axis is the batch
            (typically a jitted ``jax.vmap`` over networks).
        key: the ensemble's PRNG key; network s uses ``jax.random.split(key, n_networks)[s]``.
        n_networks: ensemble size (>= 1).
        chunk_size: networks per call (>= 1; capped at ``n_networks``).
        desc: the progress bar's label.
        progress: show a progress bar (after 3 seconds).
        config: if given, ``run_chunk`` receives ``init_ensemble(keys, config, dtype)`` (the
            initialization (2.21)-(2.22)) instead of the keys.
        dtype: the parameters' dtype (with ``config``).

    Returns:
        The pytree of ``run_chunk``'s output with NumPy leaves of leading size ``n_networks``.

    Not in the book: the ensemble utility behind every sampler (module docstring).
    """
    n_networks = integer_at_least(n_networks, "n_networks")
    chunk_size = min(integer_at_least(chunk_size, "chunk_size"), n_networks)
    keys = jax.random.split(key, n_networks)
    parts = []
    for c in progress_bar(range(-(-n_networks // chunk_size)), desc, progress):
        chunk_keys = keys[c * chunk_size : (c + 1) * chunk_size]
        if chunk_keys.shape[0] < chunk_size:  # pad the last chunk: one compiled shape
            pad = jnp.repeat(chunk_keys[:1], chunk_size - chunk_keys.shape[0], axis=0)
            chunk_keys = jnp.concatenate([chunk_keys, pad])
        inputs = chunk_keys if config is None else init_ensemble(chunk_keys, config, dtype)
        parts.append(jax.tree_util.tree_map(np.asarray, run_chunk(inputs)))
    return jax.tree_util.tree_map(lambda *p: np.concatenate(p)[:n_networks], *parts)
