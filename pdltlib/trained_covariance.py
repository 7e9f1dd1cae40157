"""The covariance of the fully trained ensemble at order 1/n (book (∞.161), which the book does
not print: "the full expression doesn't really play nicely with the constraints of the page").

Derivation. Write the universal solution (∞.154) of one network (flat (neuron, input) indices
as in :mod:`pdltlib.end_of_training`; a, b, c run over the training set A) around the NTK mean
G = Theta + H^{1}/n, with Delta = H - G, v = G_AA^{-1} eps, eps = z_A - y and
[X]_{d...} = X_{d...} - M_{db} X_{b...}, M = G_DA G_AA^{-1}:

    z_d(T) = m_d + u_d + T1_d + T2_d + T3_d + T4_d + O(n^{-3/2}),
    m = M y,   u = z_D - M z_A = L z   (L = 1 - M E_A, linear in z, zero mean),
    T1 = -[Delta]_{da} v_a                              (O(n^{-1/2})),
    T2 = [Delta]_{da} G^{ab} Delta_{bc} v_c              (O(1/n)),
    T3, T4 = the dNTK and ddNTK terms of (∞.154)       (O(1/n)).

At order 1/n the joint statistics at initialization enter only through (the book's
leading-order rules, (8.71), (11.42) and footnote 6 of chapter 11, section ∞.1):

    E[z z] = K + G^{1}/n (4.104),   E[Delta Delta] = C/n (8.82: A, B),
    E[Delta_pq O(z)] = (1/2) Y_{pq,ww'} <d_w d_w' O> (8.67, 8.71: D, F),
    E[dH_pqr O(z)] = X_{pqr,w} <d_w O> (11.42: P, Q),   E[ddH O(z)] = E[ddH] <O> (∞.11)-(∞.12),

with <.> Gaussian over K and Y_{pq,ww'} = n E[Delta_pq z_w z_w'], X_{pqr,w} = n E[dH_pqr z_w]. The
cross-correlations E[Delta dH z], E[dH dH] and the ddNTK fluctuations are O(1/n^2) (footnote 6
of chapter 11; section ∞.1), E[Delta z] = E[dH] = 0 by the parity z -> -z. So

    Cov[z_d(T), z_e(T)] = (L K L^T)_{de}                                   (infinite width, 10.41)
      + (1/n) { L G^{1} L^T + dL K L^T + L K dL^T                         (metric, NTK mean)
              + C[perp]_{d a e b} S^{vv}_{ab} - (Y[perp]_{e a w c} L_{dw} G^{ac} + (d <-> e))
              + (C[perp]_{e a b c} G^{ab} S^{uv}_{dc} + (d <-> e))          (NTK fluctuation)
              + (n E[u_d T3_e] + (d <-> e)) + (n E[u_d T4_e] + (d <-> e)) }  (dNTK, ddNTKs)

where dL = -dM E_A, dM = [H^{1}]_{DA} Theta^{-1}_AA is the NTK mean's shift of M, S^{vv} =
G^{-1}(K_AA + y y^T)G^{-1} = E[v v^T], S^{uv} = L K_{DA} G^{-1} = E[u v^T], and [perp] brackets
the first (and for C[perp]_{d a e b} also the third) index. The last two terms reuse the mean's
contractions with the moments

    n E[u_d dH_pqr eps_s eps_t] = X_{pqr,w} L_{dw} S_st + X_{pqr,s} S^ue_dt + X_{pqr,t} S^ue_ds,
    E[u_d eps_a eps_b eps_c] = S^ue_da S_bc + S^ue_db S_ac + S^ue_dc S_ab,

S = K_AA + y y^T = E[eps eps^T], S^ue = L K_{DA} = E[u eps^T] (Stein's lemma). Every part
vanishes on the training inputs, where each network interpolates: z_A(T) = y exactly. Wiring
(the book's (∞.162)): with several outputs, the y y^T in S and S^{vv} correlates different
output components, which are independent at infinite width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pdltlib.end_of_training import (
    _ddntk_means,
    _dntk_preactivation,
    _flow_and_labels,
    _interpolation,
    _InverseWidthParts,
    _kron_outputs,
    _ntk_preactivation,
    _ntk_variance,
    _projectors,
    _statistic,
    _terms,
    _training_block,
)

__all__ = ["CovariancePrediction", "covariance_prediction"]


@dataclass(frozen=True)
class CovariancePrediction(_InverseWidthParts):
    """Cov[z_{i1;d1}(T), z_{i2;d2}(T)] of the fully trained ensemble, each array of shape
    (N_D, n_L, N_D, n_L) (training inputs first): kernel + correction / n + O(1/n^2),
    n = n_{L-1}.

    Attributes:
        kernel: the infinite-width covariance with the frozen NTK (10.41), delta_{i1i2}.
        metric: the 1/n coefficient from the metric's correction G^{1} (4.104).
        ntk_mean: from the NTK mean's correction H^{1} (9.3) moving the interpolation M.
        ntk_fluctuation: from the NTK variance A, B (8.82) and the NTK-preactivation
            cross-correlations D, F (8.67).
        dntk, ddntk_1, ddntk_2: from P, Q (11.45), R (∞.11) and S, T, U (∞.12), through the
            algorithm projectors; None without dNTK statistics (kinked activations).
        algorithm: the training algorithm of the projectors (None without dNTK statistics).

    Book: (∞.161) (defined, not printed); the derivation is in the module docstring.
    """

    kernel: np.ndarray
    metric: np.ndarray
    ntk_mean: np.ndarray
    ntk_fluctuation: np.ndarray
    dntk: np.ndarray | None = None
    ddntk_1: np.ndarray | None = None
    ddntk_2: np.ndarray | None = None
    algorithm: str | None = None
    _quantity: ClassVar[str] = "covariance"

    @property
    def linear_model(self) -> np.ndarray:
        """The 1/n coefficient of the covariance of the networks' own trained linear models."""
        return self.metric + self.ntk_mean + self.ntk_fluctuation


def _symmetrize(x: np.ndarray) -> np.ndarray:
    return x + x.T


def covariance_prediction(
    stats,
    y_train,
    *,
    eta: float | None = None,
    algorithm: str = "gradient descent",
) -> CovariancePrediction:
    """The covariance of the fully trained output over initializations at order 1/n, every
    part (module docstring; the book defines it as (∞.161) and prints one of its terms,
    (∞.162)).

    Args:
        stats: the statistics of the inputs D, last layer used:
            :func:`pdltlib.dntk_fluctuations.dntk_fluctuation_flow` with ``ddntk=True`` for every
            part, or :func:`pdltlib.ntk_fluctuations.ntk_fluctuation_flow` for the linear-model
            part alone (kinked activations).
        y_train: labels (N_A, n_L); the first N_A inputs of D are the training set.
        eta: learning rate of gradient descent (0 = gradient flow), for that algorithm.
        algorithm: "gradient descent" or "newton"
            (see :func:`pdltlib.end_of_training.trained_output`).

    Returns:
        :class:`CovariancePrediction`.
    """
    theta, y = _flow_and_labels(stats, y_train)
    n_in = theta.shape[0]
    k, h1, g1 = (_statistic(stats, name, (n_in, n_in)) for name in ("K", "H1", "G1"))
    a4, b4, d4, f4 = (_statistic(stats, name, (n_in,) * 4) for name in "ABDF")
    n_train, n_out = y.shape
    n = n_train * n_out
    a = slice(0, n)
    e = np.einsum
    g = _kron_outputs(theta, n_out)
    kf, g1f, h1f = (_kron_outputs(t, n_out) for t in (k, g1, h1))
    m_all = g.shape[0]
    interp = _interpolation(g, n)
    inv = np.linalg.inv(_training_block(g, n, "Theta"))
    ell = np.eye(m_all)
    ell[:, a] -= interp  # u = L z
    d_ell = np.zeros_like(ell)
    d_ell[:, a] = -(h1f[:, a] - interp @ h1f[a, a]) @ inv
    y_flat = y.reshape(n)
    s_eps = kf[a, a] + np.outer(y_flat, y_flat)  # E[eps eps^T]
    s_ueps = ell @ kf[:, a]  # E[u eps^T]
    # the free part: T1 T1, u T1 (D, F) and u T2 (A, B)
    cov = _ntk_variance(a4, b4, n_out)
    perp = cov - e("db,bpqr->dpqr", interp, cov[a])
    perp2 = perp - e("eb,dpbr->dper", interp, perp[:, :, a])
    t1t1 = e("daeb,ab->de", perp2[:, a, :, a], inv @ s_eps @ inv)
    y4 = _ntk_preactivation(d4, f4, n_out)
    y_perp = y4 - e("db,bpqr->dpqr", interp, y4[a])
    u_t1 = -e("eawc,dw,ac->de", y_perp[:, a, :, a], ell, inv)
    u_t2 = e("eabc,ab,dc->de", perp[:, a, a, a], inv, s_ueps @ inv)
    shape = (n_in, n_out, n_in, n_out)
    linear = {
        "kernel": (ell @ kf @ ell.T).reshape(shape),
        "metric": (ell @ g1f @ ell.T).reshape(shape),
        "ntk_mean": _symmetrize(d_ell @ kf @ ell.T).reshape(shape),
        "ntk_fluctuation": (t1t1 + _symmetrize(u_t1) + _symmetrize(u_t2)).reshape(shape),
    }
    if getattr(stats, "P", None) is None:  # an NTK flow: no differentials
        return CovariancePrediction(**linear)
    p4, q4, r4, s4, t4, u4 = (_statistic(stats, name, (n_in,) * 4) for name in "PQRSTU")
    proj = _projectors(algorithm, _training_block(g, n, "Theta"), eta)
    dz = _dntk_preactivation(p4, q4, n_out)
    mean_i, mean_ii = _ddntk_means(r4, s4, t4, u4, n_out)
    rows = []
    for d in range(m_all):
        dh_moment = (
            e("pqrw,w,st->pqrst", dz, ell[d], s_eps)
            + e("pqrs,t->pqrst", dz[..., a], s_ueps[d])
            + e("pqrt,s->pqrst", dz[..., a], s_ueps[d])
        )
        u_eps3 = (
            e("a,bc->abc", s_ueps[d], s_eps)
            + e("b,ac->abc", s_ueps[d], s_eps)
            + e("c,ab->abc", s_ueps[d], s_eps)
        )
        rows.append(
            _terms(
                proj,
                interp,
                n,
                dh_moment,
                e("pqrs,abc->pqrsabc", mean_i, u_eps3),
                e("pqrs,abc->pqrsabc", mean_ii, u_eps3),
            )  # fmt: skip
        )
    parts = [_symmetrize(np.array([row[k_] for row in rows])).reshape(shape) for k_ in range(3)]
    return CovariancePrediction(
        **linear, dntk=parts[0], ddntk_1=parts[1], ddntk_2=parts[2], algorithm=proj.algorithm
    )
