"""Exact zero-mean control variates for functions of a network's output NTK at initialization.

The order-1/n part of a mean such as E[H_{-+} / H_{++}] (the trained linear model's prediction,
chapter ∞) is small next to the O(1/sqrt n) spread of the NTK across initializations, so a
plain ensemble average needs very many networks to resolve it, let alone its 1/n^2 remainder.
This module builds, for every sampled network, quantities whose mean is *exactly* zero and
which carry most of that spread, so that subtracting a fixed linear combination of them
(:func:`pdltlib.stats.controlled_mean`) shrinks the noise without biasing the mean.

The construction follows the layer-by-layer structure of the forward equations (4.1) and (8.12).
Given everything below layer l (the sigma-algebra F_{l-1}), the rows (b_i, W_i) of layer l are
independent Gaussians, so any average over the layer's neurons of a quantity of one neuron,

    c = (1/n_l) sum_i g(z^(l)_i, H^(l)_ii) - E[g | F_{l-1}],

has mean zero exactly (the tower property), whatever the rest of the network does. Three
quantities carry the leading fluctuations into the next layers:

- K-type, g = sigma_a sigma_b: the next layer's conditional metric C_b + C_W (1/n) sum_j
  sigma_{j;a} sigma_{j;b} (4.1) and the lambda_W term of (8.12);
- H-type, g = sigma'_a sigma'_b H_{ii;ab}: the next layer's conditional NTK mean, (8.12) averaged
  over the next weights;
- Q-type, g = sigma'_a sigma'_b H_{ii;ab} sigma_c sigma_d: what the H-type expectation of the
  layer after next depends on (below), for the layers l <= L - 2.

At the output layer the control is H^(L)_{i1i2;ab} - E[H^(L)_{i1i2;ab} | F_{L-1}], whose
conditional mean is delta_{i1i2} [lambda_b + lambda_W Sigma_ab + C_W (1/n) sum_j sigma'_{j;a}
sigma'_{j;b} H^(L-1)_{jj;ab}].

The conditional expectations. Given F_{l-1}, the preactivation z = z^(l)_i of one neuron at the
N_D inputs is Gaussian with covariance G = C_b + C_W Sigma, Sigma_ab = (1/n_{l-1}) sum_k
s_{k;a} s_{k;b} (s = sigma(z^(l-1)), s = x in the first layer), so E[g(z)] is an N_D-dimensional
Gaussian integral (Gauss-Hermite, ``order`` nodes per dimension, after the Cholesky factor of G).
The NTK of that neuron is H_{ii;ab} = lambda_b + lambda_W Sigma_ab + sum_{kl} W_ik W_il M^{ab}_kl
with M^{ab}_kl = s'_{k;a} s'_{l;b} H^(l-1)_{kl;ab}, quadratic in the row W_i, which is correlated
with z: Cov(W_ik, z_a) = c s_{k;a}, c = C_W / n_{l-1}. Conditioning the Gaussian row on z,

    E[f(z) W M W^T] = (c tr M - c^2 tr(G^-1 Q)) <f> + c^2 tr(G^-1 Q G^-1 <f z z^T>),
    Q_cd = sum_kl s_{k;c} M_kl s_{l;d},

so the H- and Q-type expectations are Gaussian integrals too. In the first layer H^(1) is the
constant lambda_b + lambda_W x.x / n_0 (8.23) and its integrals are done once, to high order.

At depth L <= 3 these controls span the leading (order 1/sqrt n) fluctuation of the output NTK;
deeper, the off-diagonal neuron pairs of the Q-type sums also enter at that order and are not
included (the controls stay exactly zero-mean, they just remove less of the noise).

Not in the book: the variance reduction behind chapter ∞'s measurement of the mean prediction's
1/n^2 remainder. Cost per network: the full hidden-layer NTKs, n^3 N_D^2 per layer, and
``order``^N_D quadrature nodes per hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import combinations_with_replacement

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation
from pdltlib.ensemble import map_networks
from pdltlib.network import MLPConfig, check_inputs, forward
from pdltlib.ntk import _CHUNK_BYTES, _derivative, _split_config, _with_hyperparameters
from pdltlib.validation import integer_at_least

__all__ = ["NTKControls", "sample_ntk_controls"]

_FIRST_LAYER_ORDER = 160  # Gauss-Hermite nodes per dimension for the (fixed) first-layer integrals


@dataclass(frozen=True)
class NTKControls:
    """An ensemble's output preactivations and NTKs with exactly zero-mean control variates.

    Attributes:
        z: output preactivations z^(L), (N, N_D, n_L) (sample index before neuron index).
        ntk: output NTK H^(L)[i1, i2, a1, a2], (N, n_L, n_L, N_D, N_D).
        features: the control variates, (N, p); each column has mean exactly zero.
        names: a label per column, e.g. ``"l1 K(0,1)"``, ``"l2 H(1,1)"``, ``"out H[0,0](0,1)"``.

    Not in the book: the controls of chapter ∞'s variance reduction (module docstring).
    """

    z: np.ndarray
    ntk: np.ndarray
    features: np.ndarray
    names: tuple[str, ...]


def _pairs(n_inputs: int) -> tuple[tuple[int, int], ...]:
    return tuple(combinations_with_replacement(range(n_inputs), 2))


def _unit_rule(order: int, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product Gauss-Hermite rule for a standard normal vector xi.

    Returns the nodes (m, N_D) and the basis (m, 1 + N_D^2): the weights w and w xi_e xi_f, so
    that one matrix product gives <f> and <f xi xi^T> for many functions f at once.
    """
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * n_inputs), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * n_inputs), indexing="ij"), axis=0).ravel()
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    second = (nodes[:, :, None] * nodes[:, None, :]).reshape(len(nodes), -1)
    return nodes, np.column_stack([weights, weights[:, None] * second])


def _moments(act: Activation, G, nodes, basis, pairs, with_q: bool):
    """Gaussian integrals over z ~ N(0, G) that the conditional expectations need.

    With z = C xi (C the Cholesky factor of G), <f z z^T> = C <f xi xi^T> C^T. Returns <s_a s_b>
    (P,), <s'_a s'_b> (P,), <s'_a s'_b z z^T> (P, N_D, N_D), and, with ``with_q``,
    <s'_a s'_b s_c s_d> (P, P) and <s'_a s'_b s_c s_d z z^T> (P, P, N_D, N_D).
    """
    chol = jnp.linalg.cholesky(G)
    z = nodes @ chol.T  # (m, N_D)
    s, ds = act.fn(z), _derivative(act, z)
    a, b = (jnp.array(i) for i in zip(*pairs, strict=True))
    n_pairs, n_inputs = len(pairs), nodes.shape[1]
    f_k, f_d = s[:, a] * s[:, b], ds[:, a] * ds[:, b]  # (m, P)
    funcs = [f_k, f_d]
    if with_q:
        funcs.append((f_d[:, :, None] * f_k[:, None, :]).reshape(len(nodes), -1))
    proj = jnp.concatenate(funcs, axis=1).T @ basis  # (F, 1 + N_D^2)
    plain = proj[:, 0]
    zz = jnp.einsum("ce,feg,dg->fcd", chol, proj[:, 1:].reshape(-1, n_inputs, n_inputs), chol)
    P = n_pairs
    out = [plain[:P], plain[P : 2 * P], zz[P : 2 * P]]
    if with_q:
        out += [plain[2 * P :].reshape(P, P), zz[2 * P :].reshape(P, P, n_inputs, n_inputs)]
    return out


def _weighted_quadratic(c, G, trace_m, Q, plain, with_zz):
    """E[f(z) W M W^T], z ~ N(0, G): (c tr M - c^2 tr(G^-1 Q)) <f> + c^2 tr(G^-1 Q G^-1 <f zz>).

    ``trace_m`` (P,) and ``Q`` (P, N_D, N_D) belong to the pair (a, b) of M^{ab}; ``plain`` and
    ``with_zz`` are <f> and <f z z^T> with any further leading axes after the pair axis.
    """
    g_inv = jnp.linalg.inv(G)
    gq = jnp.einsum("cd,pde->pce", g_inv, Q)  # G^-1 Q
    first = c * trace_m - c**2 * jnp.trace(gq, axis1=1, axis2=2)  # (P,)
    gqg = jnp.einsum("pce,ef->pcf", gq, g_inv)  # G^-1 Q G^-1
    extra = (plain.ndim - 1) * "q"
    second = jnp.einsum(f"pcf,p{extra}fc->p{extra}", gqg, with_zz)
    shape = (-1,) + (1,) * (plain.ndim - 1)
    return first.reshape(shape) * plain + c**2 * second


def _one_network(params, x, config: MLPConfig, order: int, first_layer):
    """The output z and NTK of one network and its control variates (module docstring)."""
    act, L = config.activation, config.depth
    n_inputs = x.shape[0]
    pairs = _pairs(n_inputs)
    a, b = (jnp.array(i) for i in zip(*pairs, strict=True))
    nodes, basis = (jnp.asarray(v) for v in _unit_rule(order, n_inputs))
    zs = forward(params, x, act)
    s_prev, H_prev, d_prev = x, None, None
    features = []
    for layer in range(1, L + 1):
        n_prev, n = config.widths[layer - 1], config.widths[layer]
        W = params[layer - 1]["W"]
        Sigma = s_prev @ s_prev.T / n_prev
        G = config.C_b[layer - 1] + config.C_W[layer - 1] * Sigma
        c = config.C_W[layer - 1] / n_prev
        base = config.lambda_b[layer - 1] + config.lambda_W[layer - 1] * Sigma  # (N_D, N_D)
        eye = jnp.eye(n, dtype=x.dtype)[:, :, None, None]
        if H_prev is None:  # (8.23): the first-layer NTK is a constant
            H = eye * base
        else:  # (8.12), with M^{ab}_kl = s'_{k;a} s'_{l;b} H^(l-1)_{kl;ab}
            M = d_prev.T[:, None, :, None] * d_prev.T[None, :, None, :] * H_prev
            H = eye * base + jnp.einsum("ik,jl,klab->ijab", W, W, M)
            Mp = M[:, :, a, b]  # (n_prev, n_prev, P)
            trace_m = jnp.trace(Mp, axis1=0, axis2=1)  # (P,)
            Q = jnp.einsum("ck,klp,dl->pcd", s_prev, Mp, s_prev)  # (P, N_D, N_D)
        if layer == L:
            mean = base[a, b] if H_prev is None else base[a, b] + c * trace_m
            rows, cols = np.triu_indices(n)
            H_p = H[:, :, a, b]
            features.append((H_p - eye[:, :, 0, 0, None] * mean)[rows, cols].reshape(-1))
            break
        z = zs[layer - 1]  # (N_D, n)
        s, ds = act.fn(z), _derivative(act, z)
        h = H[jnp.arange(n), jnp.arange(n)][:, a, b]  # (n, P): H_{ii;ab}
        with_q = layer <= L - 2
        if H_prev is None:
            moments = first_layer
        else:
            moments = _moments(act, G, nodes, basis, pairs, with_q)
        e_k, e_d, e_dzz = moments[:3]
        d_h = ds[a].T * ds[b].T * h  # (n, P)
        features.append((s[a] * s[b]).mean(-1) - e_k)
        if H_prev is None:
            e_h = base[a, b] * e_d
        else:
            e_h = base[a, b] * e_d + _weighted_quadratic(c, G, trace_m, Q, e_d, e_dzz)
        features.append(d_h.mean(0) - e_h)
        if with_q:
            e_q, e_qzz = moments[3:]
            k_prod = (s[a] * s[b]).T  # (n, P)
            sample = jnp.einsum("ip,iq->pq", d_h, k_prod) / n
            if H_prev is None:
                e_hq = base[a, b][:, None] * e_q
            else:
                e_hq = base[a, b][:, None] * e_q + _weighted_quadratic(c, G, trace_m, Q, e_q, e_qzz)
            features.append((sample - e_hq).reshape(-1))
        s_prev, H_prev, d_prev = s, H, ds
    return zs[-1], H, jnp.concatenate(features)


@partial(jax.jit, static_argnames=("structure", "order"))
def _controls_chunk(params, x, hyper, structure, order, first_layer):
    config = _with_hyperparameters(structure, hyper)
    return jax.vmap(lambda p: _one_network(p, x, config, order, first_layer))(params)


def _names(config: MLPConfig, n_inputs: int) -> tuple[str, ...]:
    pairs = _pairs(n_inputs)
    names = []
    for layer in range(1, config.depth):
        names += [f"l{layer} K{p}" for p in pairs] + [f"l{layer} H{p}" for p in pairs]
        if layer <= config.depth - 2:
            names += [f"l{layer} Q{p}{q}" for p in pairs for q in pairs]
    n_out = config.widths[-1]
    rows, cols = np.triu_indices(n_out)
    names += [f"out H[{i},{j}]{p}" for i, j in zip(rows, cols, strict=True) for p in pairs]
    return tuple(names)


def _first_layer_moments(config: MLPConfig, x, with_q: bool):
    """The first layer's integrals, over z ~ N(0, G^(1)) (4.3), once and to high order."""
    n_inputs = x.shape[0]
    G1 = config.C_b[0] + config.C_W[0] * x @ x.T / config.widths[0]
    nodes, basis = _unit_rule(min(_FIRST_LAYER_ORDER, int(1e6 ** (1 / n_inputs))), n_inputs)
    return tuple(
        _moments(config.activation, G1, jnp.asarray(nodes), jnp.asarray(basis), _pairs(n_inputs),
                 with_q)
    )  # fmt: skip


def sample_ntk_controls(
    key: jax.Array,
    config: MLPConfig,
    x,
    n_networks: int,
    *,
    order: int = 64,
    chunk_size: int | None = None,
    progress: bool = True,
) -> NTKControls:
    """Output preactivations and NTKs of ``n_networks`` networks with their control variates.

    Network s is drawn with ``jax.random.split(key, n_networks)[s]`` as in every sampler
    (:func:`pdltlib.ntk.sample_ntk` gives the same z and H). The controls are the layer-wise
    K-, H- and Q-type neuron averages minus their exact conditional expectations, and the
    output NTK minus its conditional expectation (module docstring); feed them with any
    per-network function of z and H to :func:`pdltlib.stats.controlled_mean`.

    Args:
        key: a JAX PRNG key.
        config: the architecture (depth L >= 2: a one-layer network's NTK does not fluctuate).
        x: inputs, (N_D, n_0), with N_D <= 3 (the quadrature has ``order``^N_D nodes) and a
            nonsingular first-layer metric (distinct, non-parallel inputs when C_b = 0).
        n_networks: ensemble size (>= 1).
        order: Gauss-Hermite nodes per input dimension for the hidden layers' conditional
            expectations (>= 8). Their error biases the controls, so it must stay far below
            the Monte Carlo resolution: tanh's poles at z = +-i pi/2 slow the rule's
            convergence as the preactivation variance grows; at the default, kernels of order
            one are integrated to about 1e-8 (compare with a larger order when in doubt).
        chunk_size: networks per vmapped chunk (default: from a 128 MiB working budget).
        progress: show a progress bar.

    Returns:
        An :class:`NTKControls` of NumPy float64 arrays.

    Not in the book: exact variance reduction built on the forward equations (4.1), (8.12).
    """
    x = check_inputs(config, x)
    if config.depth < 2:
        raise ValueError(
            f"config must have depth L >= 2 (the NTK of L = 1 is fixed), got {config.depth}"
        )
    n_inputs = x.shape[0]
    if n_inputs > 3:
        raise ValueError(
            f"x must hold N_D <= 3 inputs (order^N_D quadrature nodes), got {n_inputs}"
        )
    order = integer_at_least(order, "order", 8)
    G1 = np.asarray(config.C_b[0] + config.C_W[0] * x @ x.T / config.widths[0])
    if np.linalg.eigvalsh(G1)[0] <= 1e-12 * np.abs(G1).max():
        raise ValueError(f"x gives a singular first-layer metric G^(1) = {G1.tolist()}")
    if chunk_size is None:
        n_max = max(config.widths[1:])
        per_network = 4 * n_max**2 * n_inputs**2 + 8 * order**n_inputs * len(_pairs(n_inputs)) ** 2
        chunk_size = int(max(1, min(4096, _CHUNK_BYTES // (8 * per_network))))
    first_layer = _first_layer_moments(config, x, config.depth >= 3)
    structure, hyper = _split_config(config)
    z, ntk, features = map_networks(
        lambda params: _controls_chunk(params, x, hyper, structure, order, first_layer),
        key, n_networks, chunk_size, "sampling NTK controls", progress, config=config,
    )  # fmt: skip
    return NTKControls(z=z, ntk=ntk, features=features, names=_names(config, n_inputs))
