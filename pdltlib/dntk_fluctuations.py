"""Statistics of the NTK's differentials at order 1/n: the dNTK-preactivation cross-correlations
P, Q (book section 11.2) and the ddNTK means R, S, T, U (book sections ∞.1, ∞.3),
layer by layer.

Normalization (book eqs. 11.45, ∞.11, ∞.12). At layer l, with the dNTK dH (11.8)
and the ddNTKs ddIH (∞.5), ddIIH (∞.7):

    n_{l-1} E[dH_{i0i1i2;d0d1d2} z_{i3;d3}] = delta_{i0i3} delta_{i1i2} P_{d0d1d2d3}
        + delta_{i0i1} delta_{i2i3} Q_{d0d1d2d3} + delta_{i0i2} delta_{i1i3} Q_{d0d2d1d3},
    n_{l-1} E[ddIH_{i0i1i2i3;d0d1d2d3}] = delta_{i0i1} delta_{i2i3} R_{d0d1d2d3}
        + delta_{i0i2} delta_{i3i1} R_{d0d2d3d1} + delta_{i0i3} delta_{i1i2} R_{d0d3d1d2},
    n_{l-1} E[ddIIH_{i1i2i3i4;d1d2d3d4}] = delta_{i1i2} delta_{i3i4} S_{d1d2d3d4}
        + delta_{i1i3} delta_{i4i2} T_{d1d3d4d2} + delta_{i1i4} delta_{i2i3} U_{d1d4d2d3}.

The dNTK has zero mean, and at this order P and Q fix every dNTK-preactivation correlator
(11.42); the ddNTKs enter through their means only. Arrays are indexed exactly as the book's
subscripts: ``P[l-1, d0, d1, d2, d3] = P_{d0d1d2d3}``, likewise Q, R, S,
``T[l-1, a, b, c, d] = T_{abcd}`` and ``U[l-1, a, b, c, d] = U_{abcd}``, so that for distinct
neurons i != j: n_{l-1} E[ddIIH_{ijij;d1d2d3d4}] = T_{d1d3d4d2} and n_{l-1} E[ddIIH_{ijji;
d1d2d3d4}] = U_{d1d4d2d3}. All vanish in the first layer and are exact in the second.

Recursions (leading order in 1/n). Brackets <.> are Gaussian over K^(l), Theta = Theta^(l),
B, F the NTK tensors of :mod:`pdltlib.ntk_fluctuations`, C_W, lambda_W the layer-(l+1)
hyperparameters, r = n_l / n_{l-1}, <d_g X> = sum_b K^{gb} <z_b X> (Gaussian integration by
parts) and, for a product of factors of the inputs, <d_e X> the same derivative acting on it:

    P'_{0123} = C_W^2 [ <s''_0 s'_1 s'_2 s_3> Theta_01 Theta_02
                + r <s''_0 s_3> <s'_1 s'_2> B_{0012} + r <s'_1 s'_2> P_{012e} <d_e (s'_0 s_3)> ]
                                                                                        (11.49)
    Q'_{0123} = C_W^2 [ <s''_0 s'_1 s'_2 s_3> Theta_01 Theta_02
                + r Theta_01 <d_g (s''_0 s'_1)> <d_h (s'_2 s_3)> F_{g0h2}
                + r <s'_0 s'_1> Q_{012e} <d_e (s'_2 s_3)> ]
              + lambda_W C_W [ <s'_0 s_1 s'_2 s_3> Theta_02
                + r <d_g (s'_0 s_1)> <d_h (s'_2 s_3)> F_{g0h2} ]                       (11.52)

(the last bracket is (lambda_W / C_W) F^(l+1)_{1032} of (11.52), written with layer-l
quantities). R, S, T, U follow (∞.172), (∞.174)-(∞.176), quoted in full in
:func:`_ddntk_step`; each was rederived here from the forward equations (∞.169),
(∞.170) by the same Wick contractions (the derivation agrees with the book).

Kinks. sigma'' appears explicitly in P and Q. Each bracket holding sigma''_a is integrated by
parts in z_a with the chain rule s''_a s'_a^k = (s'_a^{k+1})' / (k + 1):

    <s''_a s'_a^k Y> = (1/(k+1)) [ <s'_a^{k+1} Y w_a> - <s'_a^{k+1} d_a Y> ],   w = K^{-1} z,

where Y holds no s'_a. This is exact for smooth activations, and for kinked ones (ReLU) it is
the limit of smooth approximations such as softplus(beta z)/beta, beta -> infinity (the delta
function in sigma'' is kept). For one input and a scale-invariant activation the delta-function
terms vanish (book (11.67), (11.70)), so every convention agrees, including sigma'' = 0 almost
surely of a sampled ReLU network differentiated by automatic differentiation; for two inputs
they do not. Neither convention gives the mean NTK change of ReLU networks in a small gradient
step: activations crossing the kink add a term of order eta / sqrt(n) that is not a dNTK
contraction (chapter 11 derives and checks it; book section ∞.1 reports the 1/sqrt(n) scaling).
The ddNTK statistics need sigma''' and products sigma'' sigma'' of delta functions, which
diverge for kinked activations (book section ∞.1): they are computed for smooth activations
only.

Gaussian integrals use the product quadrature of :mod:`pdltlib.ntk_fluctuations` (split at the
activation's kinks) over the whole input space, at most two inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.kernels import _width_ratios
from pdltlib.ntk_fluctuations import (
    _gram,
    _node_derivatives,
    _node_outer,
    _quadrature,
    ntk_fluctuation_flow,
)
from pdltlib.validation import per_layer

__all__ = ["DNTKFluctuationFlow", "dntk_fluctuation_flow"]


@dataclass(frozen=True)
class DNTKFluctuationFlow:
    """The NTK statistics it is built on (every field of
    :class:`pdltlib.ntk_fluctuations.NTKFluctuationFlow`: K, Theta, V, D, F, A, B, H1, G1) and the
    differentials' statistics P, Q (11.45) and R, S, T, U (∞.11)-(∞.12), at layers l = 1..depth
    (index l - 1). Carrying the NTK statistics lets one flow serve every consumer of both (the
    trained mean of :mod:`pdltlib.end_of_training` reads Theta, K, H1, A, B from it).

    Shapes (depth,) for a single input given as a vector, otherwise (depth, N_D, N_D) for K,
    Theta, H1 and G1 and (depth, N_D, N_D, N_D, N_D) for the rest, indexed as the book's subscripts
    (module docstring). R, S, T, U are None unless requested with ``ddntk=True``.
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
    P: np.ndarray
    Q: np.ndarray
    R: np.ndarray | None = None
    S: np.ndarray | None = None
    T: np.ndarray | None = None
    U: np.ndarray | None = None


class _Brackets:
    """Gaussian expectations over K^(l) of products of sigma and its derivatives, at the nodes
    of one quadrature rule: s (sigma), p (sigma'), q (sigma''), t (sigma'''), w = K^{-1} z."""

    def __init__(self, act: Activation, k: np.ndarray, order: int):
        z, self.weights = _quadrature(act, k)
        self.inv = np.linalg.inv(k)
        self.w = z @ self.inv
        self.s, self.p, *rest = _node_derivatives(act, z, order)
        self.q, self.t = (rest + [None, None])[:2]

    def pair(self, f, g) -> np.ndarray:
        """<f_a g_b>[a, b]."""
        return _gram(self.weights, f, g)

    def four(self, f, g, h, k) -> np.ndarray:
        """<f_a g_b h_c k_d>[a, b, c, d]."""
        return _gram(self.weights, _node_outer(f, g), _node_outer(h, k))

    def d(self, f, g) -> np.ndarray:
        """<d_e (f_a g_b)>[a, b, e] = <f_a g_b w_e> (integration by parts)."""
        return _gram(self.weights, _node_outer(f, g), self.w)


def _second_derivative_brackets(br: _Brackets):
    """The brackets with sigma'' of P and Q, integrated by parts (module docstring):
    <s''_0 s'_1 s'_2 s_3>[0,1,2,3], <s''_0 s_3>[0,3] and <d_g (s''_0 s'_1)>[0,1,g]."""
    p, s, w = br.p, br.s, br.w
    eye = np.eye(w.shape[1])
    e1 = br.four(p * w, p, p, s) - eye[:, None, None, :] * br.four(p, p, p, p)
    e1 /= 1 + eye[:, :, None, None] + eye[:, None, :, None]  # k = #(s'_0 among s'_1, s'_2)
    e2 = br.pair(p * w, s) - eye * br.pair(p, p)
    hermite = _node_outer(w, w) - br.inv  # <d_g d_h X> = <X He_gh(w)>
    e3 = np.einsum("p,pa,pb,pga->abg", br.weights, p, p, hermite) / (1 + eye)[:, :, None]
    return e1, e2, e3


def _dntk_step(br: _Brackets, theta, b, f, p_prev, q_prev, c_w, l_w, r):
    """One step l -> l+1 of (11.49) and (11.52) (module docstring)."""
    e1, e2, e3 = _second_derivative_brackets(br)
    pp, g = br.pair(br.p, br.p), br.d(br.p, br.s)  # <s' s'>, <d_e (s'_a s_b)>
    b_diag = np.einsum("aabc->abc", b)  # B_{0012}
    source = e1 * theta[:, :, None, None] * theta[:, None, :, None]
    p_next = c_w**2 * (
        source
        + r * np.einsum("ad,bc,abc->abcd", e2, pp, b_diag)
        + r * np.einsum("bc,abce,ade->abcd", pp, p_prev, g)
    )
    q_next = c_w**2 * (
        source
        + r * np.einsum("ab,abg,cdh,gahc->abcd", theta, e3, g, f)
        + r * np.einsum("ab,abce,cde->abcd", pp, q_prev, g)
    ) + l_w * c_w * (
        br.four(br.p, br.s, br.p, br.s) * theta[:, None, :, None]
        + r * np.einsum("abg,cdh,gahc->abcd", g, g, f)
    )
    return p_next, q_next


def _ddntk_step(br: _Brackets, theta, b, f, p_prev, q_prev, r_prev, s_prev, x_prev, y_prev,
                c_w, l_w, r):  # fmt: skip
    """One step l -> l+1 of R, S, T, U (book ∞.172, ∞.174-176), smooth sigma.

    Indices 0..3 of R and 1..4 of S, T, U are the book's d0..d3 and d1..d4; T and U are carried
    in the layout X[1,2,3,4] = T_{1342}, Y[1,2,3,4] = U_{1423} (module docstring):

    R'_{0123} = lambda_W C_W [ <s''_0 s_1 s'_2 s'_3> Theta_02 Theta_03
                + r <s''_0 s_1><s'_2 s'_3> B_{0023} + r <s'_2 s'_3> P_{023e} <d_e (s'_0 s_1)> ]
              + C_W^2 [ <s'''_0 s'_1 s'_2 s'_3> Theta_01 Theta_02 Theta_03
                + r <s'''_0 s'_1> Theta_01 <s'_2 s'_3> B_{0023}
                + r Theta_01 <s'_2 s'_3> P_{023e} <d_e (s''_0 s'_1)>
                + r <s'_0 s'_1><s'_2 s'_3> R_{0123} ]
    S'_{1234} = lambda_W C_W [ <s'_1 s'_2 s'_3 s'_4> Theta_13 Theta_24
                + r <s'_1 s'_2><s'_3 s'_4> B_{1234} ]
              + C_W^2 [ <s''_1 s''_2 s'_3 s'_4> Theta_12 Theta_13 Theta_24
                + r Theta_12 <s''_1 s''_2><s'_3 s'_4> B_{1234} + r <s'_1 s'_2><s'_3 s'_4> S_{1234} ]
    X'_{1234} = lambda_W^2 [ <s'_1 s'_2 s_3 s_4> Theta_12
                + r <d_g (s'_1 s_3)><d_h (s'_2 s_4)> F_{g1h2} ]
              + lambda_W C_W [ Z_{1234} + Z_{2143} ]
              + C_W^2 [ <s''_1 s''_2 s'_3 s'_4> Theta_12 Theta_13 Theta_24
                + r Theta_13 Theta_24 <d_g (s''_1 s'_3)><d_h (s''_2 s'_4)> F_{g1h2}
                + r Theta_13 <s'_2 s'_4> Q_{241e} <d_e (s''_1 s'_3)>
                + r Theta_24 <s'_1 s'_3> Q_{132e} <d_e (s''_2 s'_4)>
                + r <s'_1 s'_3><s'_2 s'_4> X_{1234} ],
      Z_{1234} = <s''_1 s'_2 s'_3 s_4> Theta_12 Theta_13
                + r Theta_13 <d_g (s''_1 s'_3)><d_h (s'_2 s_4)> F_{g1h2}
                + r <s'_1 s'_3> Q_{132e} <d_e (s'_2 s_4)>
    Y'_{1234} = C_W^2 [ <s''_1 s''_2 s'_3 s'_4> Theta_12 Theta_13 Theta_24
                + r <s'_1 s'_4><s'_2 s'_3> Y_{1234} ]
    """
    s, p, q, t = br.s, br.p, br.q, br.t
    pp, b_diag = br.pair(p, p), np.einsum("aacd->acd", b)
    g, gq = br.d(p, s), br.d(q, p)  # <d_e (s'_a s_b)>, <d_e (s''_a s'_b)>
    th3 = theta[:, :, None, None] * theta[:, None, :, None] * theta[None, :, None, :]  # 12 13 24
    qqpp = br.four(q, q, p, p) * th3
    r_next = l_w * c_w * (
        br.four(q, s, p, p) * theta[:, None, :, None] * theta[:, None, None, :]
        + r * np.einsum("ab,cd,acd->abcd", br.pair(q, s), pp, b_diag)
        + r * np.einsum("cd,acde,abe->abcd", pp, p_prev, g)
    ) + c_w**2 * (
        br.four(t, p, p, p)
        * theta[:, :, None, None] * theta[:, None, :, None] * theta[:, None, None, :]
        + r * np.einsum("ab,ab,cd,acd->abcd", br.pair(t, p), theta, pp, b_diag)
        + r * np.einsum("ab,cd,acde,abe->abcd", theta, pp, p_prev, gq)
        + r * np.einsum("ab,cd,abcd->abcd", pp, pp, r_prev)
    )  # fmt: skip
    s_next = l_w * c_w * (
        br.four(p, p, p, p) * theta[:, None, :, None] * theta[None, :, None, :]
        + r * np.einsum("ab,cd,abcd->abcd", pp, pp, b)
    ) + c_w**2 * (
        qqpp
        + r * np.einsum("ab,ab,cd,abcd->abcd", theta, br.pair(q, q), pp, b)
        + r * np.einsum("ab,cd,abcd->abcd", pp, pp, s_prev)
    )
    z = (
        br.four(q, p, p, s) * theta[:, :, None, None] * theta[:, None, :, None]
        + r * np.einsum("ac,acg,bdh,gahb->abcd", theta, gq, g, f)
        + r * np.einsum("ac,acbe,bde->abcd", pp, q_prev, g)
    )
    x_next = (
        l_w**2 * (
            br.four(p, p, s, s) * theta[:, :, None, None]
            + r * np.einsum("acg,bdh,gahb->abcd", g, g, f)
        )
        + l_w * c_w * (z + z.transpose(1, 0, 3, 2))
        + c_w**2 * (
            qqpp
            + r * np.einsum("ac,bd,acg,bdh,gahb->abcd", theta, theta, gq, gq, f)
            + r * np.einsum("ac,bd,bdae,ace->abcd", theta, pp, q_prev, gq)
            + r * np.einsum("bd,ac,acbe,bde->abcd", theta, pp, q_prev, gq)
            + r * np.einsum("ac,bd,abcd->abcd", pp, pp, x_prev)
        )
    )  # fmt: skip
    y_next = c_w**2 * (qqpp + r * np.einsum("ad,bc,abcd->abcd", pp, pp, y_prev))
    return r_next, s_next, x_next, y_next


def dntk_fluctuation_flow(
    activation: str | Activation,
    C_b: float | Sequence[float],
    C_W: float | Sequence[float],
    lambda_b: float | Sequence[float],
    lambda_W: float | Sequence[float],
    x,
    depth: int,
    widths: Sequence[int] | None = None,
    *,
    ddntk: bool = False,
) -> DNTKFluctuationFlow:
    """The dNTK-preactivation cross-correlations P, Q (11.49), (11.52) and, with ``ddntk``, the
    ddNTK means R, S, T, U (∞.172), (∞.174)-(∞.176), for l = 1..depth.

    All vanish in the first layer (11.26); the second layer reproduces (11.31)-(11.32) exactly;
    deeper layers follow the recursions of the module docstring, built on K, Theta, B and F from
    :func:`pdltlib.ntk_fluctuations.ntk_fluctuation_flow`.

    Args:
        activation: anything :func:`pdltlib.activations.get_activation` accepts (not the
            perceptron; with ``ddntk``, no kinks: the ddNTK statistics of kinked activations
            diverge, book section ∞.1).
        C_b, C_W, lambda_b, lambda_W: numbers, or per-layer sequences of length ``depth``
            (entry l - 1 holds layer l's values, as in :class:`pdltlib.network.MLPConfig`).
        x: inputs of shape (N_D, n_0) with N_D <= 2, or one input of shape (n_0,) (scalar
            outputs per layer).
        depth: the number of layers L >= 1.
        widths: (n_1, ..., n_{depth-1}) for unequal hidden widths, or None for equal ones; only
            the ratios n_l / n_{l-1} enter.
        ddntk: also compute R, S, T, U.

    Returns:
        :class:`DNTKFluctuationFlow`.

    Raises:
        ValueError: naming the bad argument (activation, x, depth, widths, hyperparameters,
            ddntk), or for two (nearly) identical inputs.
    """
    act = get_activation(activation)
    if not isinstance(ddntk, bool):
        raise ValueError(f"ddntk must be True or False, got {ddntk!r}")
    if ddntk and not act.is_smooth:
        raise ValueError(
            f"activation: {act.name} has kinks at {act.kinks}; its ddNTK statistics need "
            "sigma''' and (sigma'')^2, which diverge (book section ∞.1): use a smooth one"
        )
    ntk = ntk_fluctuation_flow(act, C_b, C_W, lambda_b, lambda_W, x, depth, widths)
    c_w = per_layer(C_W, depth, "C_W", positive=True)
    l_w = per_layer(lambda_W, depth, "lambda_W")
    ratios = _width_ratios(widths, depth)
    scalar = np.ndim(ntk.K) == 1
    shape = (1, 1) if scalar else ntk.K.shape[1:]
    ks, thetas = ntk.K.reshape(depth, *shape), ntk.Theta.reshape(depth, *shape)
    bs, fs = ntk.B.reshape(depth, *shape * 2), ntk.F.reshape(depth, *shape * 2)
    names = ("P", "Q", "R", "S", "X", "Y") if ddntk else ("P", "Q")
    out = {name: [np.zeros(shape * 2)] for name in names}
    for step in range(depth - 1):
        br = _Brackets(act, ks[step], 3 if ddntk else 1)
        args = (thetas[step], bs[step], fs[step])
        hyper = (c_w[step + 1], l_w[step + 1], ratios[step])
        prev = {name: values[-1] for name, values in out.items()}
        new = dict(zip("PQ", _dntk_step(br, *args, prev["P"], prev["Q"], *hyper), strict=True))
        if ddntk:
            stats = [prev[name] for name in ("P", "Q", "R", "S", "X", "Y")]
            new.update(zip("RSXY", _ddntk_step(br, *args, *stats, *hyper), strict=True))
        for name, value in new.items():
            out[name].append(value)
    result = {name: np.stack(values) for name, values in out.items()}
    if ddntk:  # X[1,2,3,4] = T_{1342}, Y[1,2,3,4] = U_{1423} -> the book's subscript order
        result["T"] = np.einsum("ladbc->labcd", result.pop("X"))
        result["U"] = np.einsum("lacdb->labcd", result.pop("Y"))
    if scalar:
        result = {name: value.reshape(depth) for name, value in result.items()}
    return DNTKFluctuationFlow(**dataclasses.asdict(ntk), **result)
