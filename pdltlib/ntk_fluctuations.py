"""NTK statistics at order 1/n: the NTK-preactivation cross-correlations D, F, the NTK
variance A, B (book section 8.3) and the NTK mean's correction H^{1} (9.3), layer by layer.

Normalization (book eqs. 8.37/8.67 and 8.31/8.82). With the NTK split into its mean and
fluctuation, H^(l)_{i1i2;a1a2} = delta_{i1i2} Theta^(l)_{a1a2} + dH^(l)_{i1i2;a1a2} (8.58),

    E[z_{i1;a1} z_{i2;a2} dH_{i3i4;a3a4}] = (1/n_{l-1}) [ delta_{i1i2} delta_{i3i4} D_{a1a2a3a4}
            + delta_{i1i3} delta_{i2i4} F_{a1a3a2a4} + delta_{i1i4} delta_{i2i3} F_{a1a4a2a3} ],
    E[dH_{i1i2;a1a2} dH_{i3i4;a3a4}]     = (1/n_{l-1}) [ delta_{i1i2} delta_{i3i4} A_{(a1a2)(a3a4)}
            + delta_{i1i3} delta_{i2i4} B_{a1a3a2a4} + delta_{i1i4} delta_{i2i3} B_{a1a4a2a3} ],

all at layer l, and E[z dH] = 0 (8.35). Arrays are indexed exactly as the book's subscripts:
``D[l-1, a1, a2, a3, a4]``, ``F[l-1, a1, a3, a2, a4]``, ``A[l-1, a1, a2, a3, a4]``,
``B[l-1, a1, a3, a2, a4]``. All four vanish in the first layer (the NTK is deterministic, 8.23).

Recursions (leading order in 1/n), with the auxiliary variable (8.74)
Omega_{a1a2} = lambda_W sigma_a1 sigma_a2 + C_W Theta_{a1a2} sigma'_a1 sigma'_a2, Gaussian
brackets <.> over K^(l), layer-(l+1) hyperparameters C_W, lambda_W and r = n_l / n_{l-1}:

    D^(l+1) = C_W [<s s Omega> - <s s><Omega>] + r C_W/4 V.<dd(s s)>.<dd Omega>
              + r C_W^2/2 <dd(s s)>.D <s' s'>                                          (8.77)
    F^(l+1) = C_W^2 <s_a1 s_a2 s'_a3 s'_a4> Theta_a3a4 + r C_W^2 <d(s_a1 s'_a3)> <d(s_a2 s'_a4)>.F
                                                                                        (8.79)
    B^(l+1) = C_W^2 [<s'_a1 s'_a2 s'_a3 s'_a4> Theta_a1a2 Theta_a3a4
              + r <s'_a1 s'_a3><s'_a2 s'_a4> B_{a1a3a2a4}]                              (8.89)
    A^(l+1) = <Omega Omega> - <Omega><Omega> + r/4 V.<dd Omega>.<dd Omega>
              + r C_W^2 <s's'>_{a1a2} <s's'>_{a3a4} A
              + r C_W/2 [<dd Omega_a1a2>.D_{..a3a4} <s's'>_{a3a4} + (12) <-> (34)]      (8.97)

Here <d_g1 d_g2 X> = sum_b G^{g1 b1} G^{g2 b2} <(z_b1 z_b2 - G_b1b2) X> and
<d_g X> = sum_b G^{g b} <z_b X> are the Gaussian-integration-by-parts forms the book writes with
the inverse metric; they are evaluated as <X He(w)> with w = K^{-1} z, exact for kinked
activations such as ReLU. Gaussian integrals are done on a product quadrature rule over the
whole (at most two-dimensional) input space, split at the activation's kinks.

The NTK mean at order 1/n. The book stops its mean recursion (8.63) at leading order, writes
the expansion H = Theta + H^{1}/n_{l-1} + ... (9.3), and does not compute H^{1} (footnote 7 of
section infinity.3 expects it to behave like the NLO metric). This module derives it from the
exact mean recursion (8.59),
E[H^(l+1)] = lambda_b + lambda_W E[s s] + C_W E[s' s' H_jj], by expanding each expectation
to order 1/n with the statistics already at hand:

    H^{1}(l+1) = (lambda_W / C_W) G^{1}(l+1)
                 + r C_W [ E1<s'_a1 s'_a2> Theta_a1a2 + <s' s'>_a1a2 H^{1}(l)_a1a2
                 + (1/2) <d_g1 d_g2 (s'_a1 s'_a2)> (D_{g1 g2 a1 a2} + F_{g1 a1 g2 a2}
                 + F_{g1 a2 g2 a1}) ],

with H^{1}(1) = H^{1}(2) = 0. The first term is exact: E[s s] = (E[z z]^(l+1) - C_b) / C_W with
E[z z]^(l+1) = K + G^{1}/n_l (4.104). E1 is the order-1/n part of a single neuron's
expectation, E[O] = <O>_K + (1/n_{l-1}) [ (1/2) G^{1}.<dd O> + (1/8) V.<dddd O> ] (its
second and fourth cumulants, (4.104)-(4.105)); the last term is the cross-correlation
E[O(z_j) dH_jj] = (1/2) sum E[z_j z_j dH_jj] <dd O> (Gaussian integration by parts against the
leading-order joint statistics (8.67)). A unit test checks E1 against the NLO metric recursion
(4.115) and chapter 9 checks H^{1} against sampled networks; for ReLU with C_b = 0 and one input
it vanishes (the mean is exact at any width, as chapter 9 shows by a sign-flip symmetry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.gaussian import _padded_call, normal_rule
from pdltlib.kernels import _width_ratios, preactivation_flow
from pdltlib.ntk import ntk_flow
from pdltlib.validation import per_layer

__all__ = ["NTKFluctuationFlow", "ntk_fluctuation_flow", "single_neuron_nlo"]

_MAX_INPUTS = 2
_DEGENERATE_PAIR = 1e-10  # 1 - rho^2 below this: two inputs too close for the quadrature


@dataclass(frozen=True)
class NTKFluctuationFlow:
    """K, Theta, V, D, F, A, B, H^{1} and G^{1} at layers l = 1..depth (index l - 1).

    ``H1`` is the NTK mean's 1/n correction, E[H^(l)] = Theta^(l) + H1^(l)/n_{l-1} + O(1/n^2)
    (9.3; derived in the module docstring), and ``G1`` the metric's, E[z z] = K + G1/n_{l-1}
    (4.104; :func:`pdltlib.kernels.preactivation_flow`). Shapes (depth,) for a single input
    given as a vector; otherwise (depth, N_D, N_D) for K, Theta, H1 and G1 and
    (depth, N_D, N_D, N_D, N_D) for V, D, F, A, B, indexed as in the module docstring (the
    book's subscript order: V[a1,a2,a3,a4] = V_(a1a2)(a3a4), F[a1,a3,a2,a4] = F_{a1a3a2a4}, ...).

    Book: D, F (8.67), A, B (8.82), the mean correction H^{1} (9.3) and G^{1} (4.104).
    """

    K: np.ndarray
    Theta: np.ndarray
    V: np.ndarray
    D: np.ndarray
    F: np.ndarray
    A: np.ndarray
    B: np.ndarray
    H1: np.ndarray
    G1: np.ndarray


def _quadrature(act: Activation, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z (P, d) and weights (P,) with sum_p w_p f(z_p) ~ <f(z)>_K, d = 1 or 2.

    z = L u with L the Cholesky factor of K; u_1 by :func:`pdltlib.gaussian.normal_rule` split
    where z_1 or z_2 (at u_2 = 0) cross a kink, and u_2 for every u_1 node split where z_2 does.
    """
    d = k.shape[0]
    lo = np.linalg.cholesky(k)
    kinks = np.asarray(act.kinks, dtype=float)
    width = 1.0 / max(1.0, float(np.max(np.abs(lo[:, 0]))))
    breaks = [kinks / lo[i, 0] for i in range(d) if lo[i, 0] != 0]
    u1, w1 = normal_rule(np.concatenate(breaks), panel_width=width)
    if d == 1:
        return lo[0, 0] * u1[:, None], w1
    zs, ws = [], []
    width2 = 1.0 / max(1.0, lo[1, 1])
    for u, w in zip(u1, w1, strict=True):
        u2, w2 = normal_rule((kinks - lo[1, 0] * u) / lo[1, 1], panel_width=width2)
        zs.append(np.stack([np.full_like(u2, lo[0, 0] * u), lo[1, 0] * u + lo[1, 1] * u2], 1))
        ws.append(w * w2)
    return np.concatenate(zs), np.concatenate(ws)


@lru_cache(maxsize=64)
def _derivative_program(act: Activation, order: int):
    """sigma, sigma', ..., sigma^(order) of a flat array, along a last axis: one jitted program
    per activation and order."""
    functions = [act.derivative(m) for m in range(order + 1)]
    return jax.jit(lambda z: jnp.stack([fn(z) for fn in functions], axis=-1))


def _node_derivatives(act: Activation, z: np.ndarray, order: int) -> list[np.ndarray]:
    """[sigma(z), sigma'(z), ..., sigma^(order)(z)] elementwise at the quadrature nodes z
    (padded to a power of two by :func:`pdltlib.gaussian._padded_call`)."""
    values = _padded_call(_derivative_program(act, order), z.ravel())
    return [values[:, m].reshape(z.shape) for m in range(order + 1)]


def _node_outer(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """f_{p...} g_{p...} per quadrature node p: shape (P,) + f.shape[1:] + g.shape[1:]."""
    n = f.shape[0]
    return (f.reshape(n, -1, 1) * g.reshape(n, 1, -1)).reshape(f.shape + g.shape[1:])


def _gram(weights: np.ndarray, f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """sum_p w_p f_{p...} g_{p...}: the bracket <f g> of two node arrays as one matrix product,
    shape f.shape[1:] + g.shape[1:]."""
    n = weights.shape[0]
    out = (weights[:, None] * f.reshape(n, -1)).T @ g.reshape(n, -1)
    return out.reshape(f.shape[1:] + g.shape[1:])


def _quadratic_form(white: np.ndarray, m: np.ndarray) -> np.ndarray:
    """sum_ab w_a M_ab w_b at every node (white has shape (P, N_D))."""
    return np.sum((white @ m) * white, axis=1)


def _hermite2_dot(white: np.ndarray, inv: np.ndarray, g: np.ndarray) -> np.ndarray:
    """He_ab(w) G_ab per node, He_ab(w) = w_a w_b - K^{-1}_ab."""
    return _quadratic_form(white, g) - np.sum(inv * g)


_PAIRINGS = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2), (1, 2, 0, 3), (1, 3, 0, 2), (2, 3, 0, 1))


def _hermite4_dot(white: np.ndarray, inv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """He_abcd(w) V_abcd per node, so that <d_a d_b d_c d_d X> V_abcd = <X He_abcd(w) V_abcd>:
    He_abcd = w_a w_b w_c w_d - (six terms K^{-1}_ab w_c w_d) + (three terms K^{-1}_ab K^{-1}_cd),
    contracted with V before the sum over nodes (no (P, N_D^4) array)."""
    n = white.shape[1]
    pairs = _node_outer(white, white).reshape(white.shape[0], n * n)
    quartic = _quadratic_form(pairs, v.reshape(n * n, n * n))
    quadratic = sum(np.einsum(v, [0, 1, 2, 3], inv, [i, j], [k, m]) for i, j, k, m in _PAIRINGS)
    constant = sum(np.einsum(v, [0, 1, 2, 3], inv, [i, j], inv, [k, m], []) for i, j, k, m in
                   _PAIRINGS[:3])  # fmt: skip
    return quartic - _quadratic_form(white, quadratic) + constant


def single_neuron_nlo(values: np.ndarray, z: np.ndarray, w: np.ndarray, k, G1, V) -> np.ndarray:
    """The order-1/n part E1 of a single neuron's expectation at a layer with statistics K, G1, V.

    E[O(z_j)] = <O>_K + (1/n_{l-1}) E1 + O(1/n^2) with
    E1 = (1/2) sum G1_{g1g2} <d_g1 d_g2 O> + (1/8) sum V_{(g1g2)(g3g4)} <d_g1 d_g2 d_g3 d_g4 O>,
    the shift of the second cumulant (4.104) and the fourth cumulant (4.105) of one neuron,
    derivatives by Gaussian integration by parts (exact for kinked activations).

    Args:
        values: O at the quadrature nodes, shape (P, ...) (trailing axes are kept).
        z, w: quadrature nodes (P, N_D) and weights (P,) for <.>_K.
        k, G1, V: K (N_D, N_D), G^{1} (N_D, N_D) and V (N_D,)*4 at that layer.
    """
    inv = np.linalg.inv(k)
    white = z @ inv
    kernel = _hermite2_dot(white, inv, G1) / 2 + _hermite4_dot(white, inv, V) / 8
    return np.tensordot(w * kernel, values, axes=1)


def _layer_step(act, k, theta, v, d, f, a, b, c_w, l_w, r, g1, g1_next, h_nlo):
    """One step l -> l+1 of (8.77), (8.79), (8.89), (8.97) and of H^{1} (module docstring)."""
    z, w = _quadrature(act, k)
    s, p = _node_derivatives(act, z, 1)
    inv = np.linalg.inv(k)
    white = z @ inv  # w = K^{-1} z
    h1 = white  # <d_g X> = <X w_g>
    h2 = _node_outer(white, white) - inv  # <d_g1 d_g2 X> = <X He_g1g2(w)>
    ss, pp = _node_outer(s, s), _node_outer(p, p)
    omega = l_w * ss + c_w * theta * pp

    def mean(x):
        return np.tensordot(w, x, axes=1)

    e_ss, e_pp, e_om = mean(ss), mean(pp), mean(omega)
    dd_ss, dd_om = _gram(w, ss, h2), _gram(w, omega, h2)
    d_sp = _gram(w, _node_outer(s, p), h1)  # <d_g (s_a s'_c)>

    d_next = c_w * (_gram(w, ss, omega) - np.einsum("ab,cd->abcd", e_ss, e_om))
    d_next += r * c_w / 4 * np.einsum("ghkl,abgh,cdkl->abcd", v, dd_ss, dd_om)
    d_next += r * c_w**2 / 2 * np.einsum("abgh,ghcd,cd->abcd", dd_ss, d, e_pp)

    f_next = c_w**2 * _gram(w, ss, pp).transpose(0, 2, 1, 3) * theta[None, :, None, :]
    f_next += r * c_w**2 * np.einsum("acg,bdh,gchd->acbd", d_sp, d_sp, f)

    theta2 = np.einsum("ab,cd->acbd", theta, theta)
    b_next = c_w**2 * _gram(w, pp, pp).transpose(0, 2, 1, 3) * theta2
    b_next += r * c_w**2 * np.einsum("ac,bd,acbd->acbd", e_pp, e_pp, b)

    a_next = _gram(w, omega, omega) - np.einsum("ab,cd->abcd", e_om, e_om)
    a_next += r / 4 * np.einsum("ghkl,abgh,cdkl->abcd", v, dd_om, dd_om)
    a_next += r * c_w**2 * np.einsum("ab,cd,abcd->abcd", e_pp, e_pp, a)
    cross = np.einsum("abgh,ghcd,cd->abcd", dd_om, d, e_pp)
    a_next += r * c_w / 2 * (cross + cross.transpose(2, 3, 0, 1))

    dd_pp = _gram(w, pp, h2)
    joint = d + np.einsum("gahb->ghab", f) + np.einsum("gbha->ghab", f)  # E[z_g z_h dH_ab] n
    h1_next = l_w / c_w * g1_next + r * c_w * (
        single_neuron_nlo(pp, z, w, k, g1, v) * theta + e_pp * h_nlo
        + np.einsum("abgh,ghab->ab", dd_pp, joint) / 2
    )  # fmt: skip
    return d_next, f_next, a_next, b_next, h1_next


def ntk_fluctuation_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    lambda_b: float | Sequence[float],
    lambda_W: float | Sequence[float],
    x,
    depth: int,
    widths: Sequence[int] | None = None,
) -> NTKFluctuationFlow:
    """The order-1/n NTK statistics D, F, A, B (section 8.3) and the NTK mean's H^{1}, l = 1..L.

    D^(1) = F^(1) = A^(1) = B^(1) = 0 (deterministic first-layer NTK, 8.23); the second layer
    reproduces (8.32)-(8.33), (8.38)-(8.39) exactly; deeper layers follow (8.77), (8.79),
    (8.89), (8.97) (see the module docstring for the normalization and the formulas). K and V
    come from :func:`pdltlib.kernels.preactivation_flow`, Theta from :func:`pdltlib.ntk.ntk_flow`.

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts (not the
            perceptron: its sigma' is a delta function).
        C_b, C_W, lambda_b, lambda_W: numbers, or per-layer sequences of length ``depth``
            (entry l - 1 holds layer l's values, as in :class:`pdltlib.network.MLPConfig`).
        x: inputs of shape (N_D, n_0) with N_D <= 2, or one input of shape (n_0,) (scalar
            outputs per layer). Theta^(1) (8.23) needs the inputs, not only K^(1).
        depth: the number of layers L >= 1.
        widths: (n_1, ..., n_{depth-1}) for unequal hidden widths, or None for equal ones; only
            the ratios n_l / n_{l-1} enter.

    Returns:
        :class:`NTKFluctuationFlow`.

    Raises:
        ValueError: naming the bad argument (activation, x, depth, widths, hyperparameters), or
            for two (nearly) identical inputs.
    """
    act = get_activation(activation)
    if act.name == "perceptron":
        raise ValueError("activation: the perceptron's sigma' is a delta function; no NTK flow")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] < 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"x must be finite with shape (N_D, n_0) or (n_0,), got {arr.shape}")
    scalar = arr.ndim == 1
    inputs = arr[None, :] if scalar else arr
    if inputs.shape[0] > _MAX_INPUTS:
        raise ValueError(f"x: at most {_MAX_INPUTS} inputs are supported, got {inputs.shape[0]}")
    flow = ntk_flow(act, C_b, C_W, lambda_b, lambda_W, inputs, depth)
    c_w = per_layer(C_W, depth, "C_W", positive=True)
    l_w = per_layer(lambda_W, depth, "lambda_W")
    ratios = _width_ratios(widths, depth)
    ks, thetas = flow.K, flow.Theta
    for k in ks:
        if inputs.shape[0] == 2 and np.linalg.det(k) / (k[0, 0] * k[1, 1]) < _DEGENERATE_PAIR:
            raise ValueError("x: the two inputs are (nearly) identical; merge them into one")
    preactivations = preactivation_flow(act, C_b, C_W, ks[0], depth, widths, nlo=True)
    vs, g1s = preactivations.V, preactivations.G1
    n = inputs.shape[0]
    out = {name: [np.zeros((n,) * 4)] for name in "DFAB"}
    out["H1"] = [np.zeros((n, n))]
    for step in range(depth - 1):
        args = [out[name][-1] for name in "DFAB"]
        nxt = _layer_step(
            act, ks[step], thetas[step], vs[step], *args, c_w[step + 1], l_w[step + 1],
            ratios[step], g1s[step], g1s[step + 1], out["H1"][-1],
        )  # fmt: skip
        for name, value in zip(("D", "F", "A", "B", "H1"), nxt, strict=True):
            out[name].append(value)
    result = {name: np.stack(values) for name, values in out.items()}
    result["G1"] = np.asarray(g1s)
    K, Theta, V = ks, thetas, vs
    if scalar:
        K, Theta, V = K[:, 0, 0], Theta[:, 0, 0], V[:, 0, 0, 0, 0]
        result = {name: value.reshape(depth, -1)[:, 0] for name, value in result.items()}
    return NTKFluctuationFlow(K=K, Theta=Theta, V=V, **result)
