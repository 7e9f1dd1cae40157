"""The ddNTKs, the NTK's second differentials (book section ∞.1): empirical, for one
network and for ensembles.

Definitions (∞.5), (∞.7), with the diagonal learning-rate tensor of (8.6) and the
tangent vectors u_{i;d} = lambda grad_theta z^(l)_{i;d} of :mod:`pdltlib.dntk`:

    ddIH^(l)_{i0i1i2i3;d0d1d2d3}  = D^3 z^(l)_{i0;d0} [u_{i1;d1}, u_{i2;d2}, u_{i3;d3}],
    ddIIH^(l)_{i1i2i3i4;d1d2d3d4} = sum_{mu,nu} lambda_{mu nu} v_{i1d1|i3d3,mu} v_{i2d2|i4d4,nu},
    v_{id|je} = Hess(z^(l)_{i;d}) u_{j;e}   (a Hessian-vector product),

the third derivative of the outputs along three tangents, and the learning-rate inner product of
two Hessian-vector products. ddIH is symmetric in its last three (neuron, input) pairs; ddIIH
only under the joint swap (i1 d1, i3 d3) <-> (i2 d2, i4 d4). Both vanish in the first layer.

They complete the order-1/n dynamics: they move the outputs at order eta^3 (∞.4),

    dz_{i;d} = -eta H eps + (eta^2/2) dH eps eps - (eta^3/6) ddIH_{i j1 j2 j3; d a1 a2 a3}
               eps_{j1;a1} eps_{j2;a2} eps_{j3;a3} + O(eta^4),

the NTK at order eta^2 (∞.6), and the dNTK at order eta (∞.9):

    dH_{i0i1i2}(t=1) - dH_{i0i1i2}(t=0) = -eta sum_{j,a} [ddIH_{i0i1i2j} + ddIIH_{i0i1i2j}
                                          + ddIIH_{i0i2i1j}]_{d0d1d2a} eps_{j;a} + O(eta^2).

Computation. ddIH: three nested forward-mode products per triple of tangents, for the sorted
triples only (the symmetry fills in the rest). ddIIH: one reverse-over-forward Hessian-vector
product per tangent, vmapped, then the lambda-weighted inner products. The parameter Hessian is
never formed; the cost grows like (m N_D)^3 for ddIH and (m N_D)^2 parameter-sized vectors for
ddIIH, so keep ``neurons`` and N_D small.

Array conventions: ddIH[i0, i1, i2, i3, d0, d1, d2, d3] and ddIIH[i1, i2, i3, i4, d1, d2, d3, d4],
neural indices first, sample indices last, as for the NTK and the dNTK.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.dntk import (
    _kept_neurons,
    _learning_rates,
    _network_tensors,
    _one_network_arguments,
    _tangents,
)
from pdltlib.ensemble import map_networks
from pdltlib.network import MLPConfig
from pdltlib.ntk import (
    _split_config,
    _with_hyperparameters,
)

__all__ = ["empirical_ddntk", "DDNTKSample", "sample_ddntk"]

_CHUNK_BYTES = 64 * 2**20  # working-memory budget of one vmapped chunk of networks


def _sorted_triples(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The triples a <= b <= c of range(n), and for every (a, b, c) the row of its sorted one."""
    triples = np.array(list(itertools.combinations_with_replacement(range(n), 3)), dtype=int)
    row = {tuple(t): k for k, t in enumerate(triples.tolist())}
    full = np.array([row[tuple(sorted(t))] for t in itertools.product(range(n), repeat=3)])
    return triples, full


def _layer_ddntks(params, x, config: MLPConfig, layer: int, m: int):
    """(ddIH, ddIIH) of layer ``layer`` for its first m neurons (module docstring)."""
    params, outputs, tangents = _tangents(params, x, config, layer, m)
    n_inputs = x.shape[0]
    n_t = n_inputs * m

    def third(a, b, c):
        """D^3 outputs [u_a, u_b, u_c] for every output, shape (N_D, m)."""
        pick = lambda k: jax.tree_util.tree_map(lambda t: t[k], tangents)  # noqa: E731
        once = lambda p: jax.jvp(outputs, (p,), (pick(c),))[1]  # noqa: E731
        twice = lambda p: jax.jvp(once, (p,), (pick(b),))[1]  # noqa: E731
        return jax.jvp(twice, (params,), (pick(a),))[1]

    triples, full = _sorted_triples(n_t)
    values = jax.vmap(third)(*(jnp.asarray(triples[:, k]) for k in range(3)))  # (T, N_D, m)
    table = values[jnp.asarray(full)]  # (n_t^3, N_D, m), rows (a, b, c) = (d1 i1, d2 i2, d3 i3)
    table = table.reshape((n_inputs, m) * 4)  # [d1, i1, d2, i2, d3, i3, d0, i0]
    ddih = jnp.transpose(table, (7, 1, 3, 5, 6, 0, 2, 4))

    def hvp(u):
        """Hess(z_{i;d}) u for every output: leaves (N_D, m, *shape)."""
        return jax.jacrev(lambda p: jax.jvp(outputs, (p,), (u,))[1])(params)

    v = jax.vmap(hvp)(tangents)  # leaves (n_t, N_D, m, *shape): [(d3 i3), d1, i1, ...]
    rates = _learning_rates(config, layer)
    leaves = zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(rates), strict=True)
    flat = [(leaf.reshape(*leaf.shape[:3], -1), lam) for leaf, lam in leaves]
    inner = sum(
        jnp.einsum("bdip,cejp->bdicej", leaf * lam, leaf) for leaf, lam in flat
    )  # [(d3 i3), d1, i1, (d4 i4), d2, i2]
    inner = inner.reshape(n_inputs, m, n_inputs, m, n_inputs, m, n_inputs, m)
    # [d3, i3, d1, i1, d4, i4, d2, i2] -> [i1, i2, i3, i4, d1, d2, d3, d4]
    ddiih = jnp.transpose(inner, (3, 7, 1, 5, 2, 6, 0, 4))
    return ddih, ddiih


@partial(jax.jit, static_argnames=("structure", "layer", "m"))
def _network_ddntks(params, x, hyper, structure, layer, m):
    config = _with_hyperparameters(structure, hyper)
    return _layer_ddntks(params, x, config, layer, m)


def empirical_ddntk(
    params: list[dict],
    x,
    config: MLPConfig,
    layer: int | None = None,
    *,
    neurons: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The two ddNTKs (∞.5), (∞.7) of one network, by nested forward-mode products
    and Hessian-vector products (module docstring).

    Args:
        params: the network's parameters (:func:`pdltlib.network.init_params`).
        x: inputs of shape (N_D, n_0).
        config: the architecture and the learning rates lambda_b, lambda_W (8.6).
        layer: l in 1..L (default L).
        neurons: keep the first ``neurons`` neurons of layer l for every neural index (default
            all n_l; the cost grows like (neurons N_D)^3).

    Returns:
        (ddIH, ddIIH), each of shape (m, m, m, m, N_D, N_D, N_D, N_D), indexed
        ddIH[i0, i1, i2, i3, d0, d1, d2, d3] and ddIIH[i1, i2, i3, i4, d1, d2, d3, d4].
    """
    x, layer, m, structure, hyper = _one_network_arguments(params, x, config, layer, neurons)
    return _network_ddntks(params, x, hyper, structure, layer, m)


@dataclass(frozen=True)
class DDNTKSample:
    """An ensemble of networks at initialization: one layer's ddNTKs (∞.5), (∞.7), first m neurons.

    Attributes:
        ddih: (n_networks, m, m, m, m, N_D, N_D, N_D, N_D), ddIH[i0, i1, i2, i3, d0, d1, d2, d3].
        ddiih: (n_networks, m, m, m, m, N_D, N_D, N_D, N_D), ddIIH[i1, i2, i3, i4, d1, ..., d4].
        z, ntk, dntk: with ``with_dntk=True``, the same networks' preactivations z^(l)
            (n_networks, N_D, n_l), NTK (8.5) and dNTK (11.8) of the first m neurons, laid out
            as in :class:`pdltlib.dntk.DNTKSample`; otherwise None.
    """

    ddih: np.ndarray
    ddiih: np.ndarray
    z: np.ndarray | None = None
    ntk: np.ndarray | None = None
    dntk: np.ndarray | None = None


@partial(jax.jit, static_argnames=("structure", "layer", "m", "with_dntk"))
def _ddntk_chunk(params, x, hyper, structure, layer, m, with_dntk):
    config = _with_hyperparameters(structure, hyper)

    def one(params):
        ddntks = _layer_ddntks(params, x, config, layer, m)
        return (*ddntks, *_network_tensors(params, x, config, layer, m)) if with_dntk else ddntks

    return jax.vmap(one)(params)


def sample_ddntk(
    key: jax.Array,
    config: MLPConfig,
    x,
    n_networks: int,
    *,
    layer: int | None = None,
    neurons: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    with_dntk: bool = False,
) -> DDNTKSample:
    """The ddNTKs (∞.5), (∞.7) of layer l for ``n_networks`` networks at initialization.

    Network s is initialized with ``jax.random.split(key, n_networks)[s]``, as in
    :func:`pdltlib.dntk.sample_dntk`, so the same key gives the same networks; networks run
    vmapped in fixed-size chunks through :func:`pdltlib.ensemble.map_networks`.

    Args:
        key: a JAX PRNG key.
        config: the architecture and hyperparameters (:func:`pdltlib.network.mlp`).
        x: inputs of shape (N_D, n_0).
        n_networks: ensemble size (>= 1).
        layer: l in 1..L (default L).
        neurons: keep the first ``neurons`` neurons (default all n_l).
        chunk_size: networks per vmapped chunk (default from a 64 MiB working budget).
        progress: show a progress bar (it appears only after 3 seconds).
        with_dntk: also return the networks' z, NTK and dNTK (as :func:`pdltlib.dntk.sample_dntk`
            does with the same key), computed in the same compiled program: one compile instead
            of two for everything the trained output (∞.154) of each network needs.
    """
    x, layer, m = _kept_neurons(config, x, layer, neurons)
    if not isinstance(with_dntk, bool):
        raise ValueError(f"with_dntk must be True or False, got {with_dntk!r}")
    if chunk_size is None:
        n_t = m * x.shape[0]
        weights = sum(a * b + b for a, b in zip(config.widths[:-1], config.widths[1:], strict=True))
        per_network = 8 * (4 * weights * n_t * (n_t + 1) + 2 * n_t**4 + n_t**3 * sum(config.widths))
        per_network *= 2 if with_dntk else 1  # the dNTK's working memory is below the ddNTKs'
        chunk_size = max(1, min(1024, _CHUNK_BYTES // per_network))
    structure, hyper = _split_config(config)
    tensors = map_networks(
        lambda params: _ddntk_chunk(params, x, hyper, structure, layer, m, with_dntk),
        key, n_networks, chunk_size, "sampling ddNTKs", progress, config=config,
    )  # fmt: skip
    return DDNTKSample(*tensors)
