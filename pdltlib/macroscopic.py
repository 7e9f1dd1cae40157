"""The size of the finite-width effects of trained ensembles (book epilogue ε): representation
learning and instantiation-to-instantiation fluctuations, measured with exact variance
reduction, and the fluctuation's leading-order theory.

Setting: networks with one output (n_L = 1) trained to the end by gradient descent on the MSE
loss (:func:`pdltlib.training.train_ensemble` with ``keep_ntk=True``), D = A u B with the
training inputs first. For a network with initial outputs z_D(0) and initial NTK H = H(theta_0),
its linear model trained to the end gives (10.39) with Theta -> H,

    z_lin(T) = o + m_hat,   o = z_D(0) - H_DA H_AA^{-1} z_A(0),   m_hat = H_DA H_AA^{-1} y.

Estimators (all unbiased, with small variance):

* representation learning: n E[z(T) - z_lin(T)]. The network and its own linear model share
  z(0) and H(theta_0) and differ only through the NTK's motion (the dNTK and ddNTKs), so the
  difference is O(1/n) network by network: the O(1) spread of z(T) over initializations
  cancels exactly. Its mean is the interaction part of the mean prediction (∞.158)-(∞.160)
  (:attr:`pdltlib.end_of_training.MeanPrediction.interaction`).
* fluctuations: n Var[z_hat] with z_hat = z(T) - o. Flipping the sign of the last layer,
  (W^(L), b^(L)) -> -(W^(L), b^(L)), preserves the initialization distribution (2.21)-(2.22),
  maps z(0) -> -z(0) and leaves the NTK unchanged (each of its terms has two output
  derivatives), so o -> -o and E[o] = 0 exactly: E[z_hat] = E[z(T)]. At infinite width
  z_hat = m_infinity on every network (o carries the whole O(1) variance (10.41)), so Var[z_hat]
  is purely finite-width: at order 1/n it is the variance of m_hat from the NTK's fluctuations
  (:func:`prediction_fluctuation`), since z(T) - z_lin(T) adds O(1/n^2).
* the NTK's change in training, n E[H_bb(T) - H_bb(0)] / Theta_bb on the test inputs b, a
  direct measure of representation learning (the frozen NTK of infinite width does not move).

Theory. With the training block Theta_AA, P = Theta_DA Theta_AA^{-1}, w = Theta_AA^{-1} y and
Delta H = H - Theta, to first order

    m_hat_d - m_d = sum_a [Delta H_da - sum_a' P_da' Delta H_a'a] w_a,

and the NTK covariance (8.82) for n_L = 1, n_{L-1} E[Delta H_12 Delta H_34] = A_(12)(34) + B_1324
+ B_1423, gives n_{L-1} Cov[m_hat_d, m_hat_e] (not in the book, which leaves the covariance of
trained outputs unprinted after (∞.161)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pdltlib.prediction import trained_outputs
from pdltlib.stats import Estimate, jackknife, mean_estimate

__all__ = ["prediction_fluctuation", "TrainedEffects", "trained_effects"]


def _labels(y_train, n_train: int | None = None) -> np.ndarray:
    y = np.asarray(y_train, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[1] != 1 or not np.all(np.isfinite(y)):
        raise ValueError(f"y_train must be finite with shape (N_A, 1) (one output), got {y.shape}")
    if n_train is not None and y.shape[0] != n_train:
        raise ValueError(f"y_train must have N_A = {n_train} rows, got {y.shape[0]}")
    return y[:, 0]


def prediction_fluctuation(ntk_stats, y_train) -> np.ndarray:
    """n_{L-1} Cov[m_hat_d1, m_hat_d2], (N_D, N_D): the leading finite-width covariance of the
    kernel prediction with each network's own NTK, m_hat = H_DA H_AA^{-1} y (module docstring).

    Args:
        ntk_stats: :func:`pdltlib.ntk_fluctuations.ntk_fluctuation_flow` of the inputs D (its
            last layer is the output layer: Theta, A, B); training inputs first.
        y_train: labels of shape (N_A, 1) or (N_A,), one output (n_L = 1).

    Returns:
        The covariance coefficient; the training rows and columns vanish (m_hat = y there).
        Not in the book: the book's (∞.161) leaves the covariance of trained outputs unprinted;
        this is its NTK-fluctuation part at order 1/n, from (8.82).
    """
    theta = np.asarray(getattr(ntk_stats, "Theta", None), dtype=np.float64)
    if theta.ndim != 3 or theta.shape[1] != theta.shape[2]:
        raise ValueError("ntk_stats must be an NTKFluctuationFlow of inputs x of shape (N_D, n_0)")
    theta = theta[-1]
    n_d = theta.shape[0]
    a4, b4 = (np.asarray(getattr(ntk_stats, name))[-1] for name in ("A", "B"))
    if a4.shape != (n_d,) * 4 or b4.shape != (n_d,) * 4:
        raise ValueError(f"ntk_stats.A and .B must have shape (L, {n_d}, {n_d}, {n_d}, {n_d})")
    y = _labels(y_train)
    n_a = y.shape[0]
    if not 1 <= n_a < n_d:
        raise ValueError(f"y_train must label 1..N_D - 1 = 1..{n_d - 1} training inputs, got {n_a}")
    weights = np.linalg.solve(theta[:n_a, :n_a], y)
    interp = np.linalg.solve(theta[:n_a, :n_a], theta[:n_a, :]).T  # P = Theta_DA Theta_AA^{-1}
    # c[d, d1, d2]: coefficient of Delta H_{d1 d2} in m_hat_d (d2 in A)
    c = np.zeros((n_d, n_d, n_d))
    c[:, :, :n_a] = np.eye(n_d)[:, :, None] * weights
    c[:, :n_a, :n_a] -= interp[:, :, None] * weights
    cov = a4 + np.einsum("acbd->abcd", b4) + np.einsum("adbc->abcd", b4)
    return np.einsum("dpq,ers,pqrs->de", c, c, cov)


@dataclass(frozen=True)
class TrainedEffects:
    """Finite-width effects of one trained ensemble, each scaled by the width n = n_{L-1} and
    given on the test inputs (shape (N_B,)), as Estimates over the networks.

    Attributes:
        representation: n E[z(T) - z_lin(T)] (the networks' shift from their own linear models).
        fluctuation: n Var[z(T) - o] (the instantiation-to-instantiation fluctuations beyond the
            infinite-width variance).
        ntk_change: n E[H_bb(T) - H_bb(0)] / Theta_bb (the NTK's relative motion).
        variance: Var[z(T)] (unscaled: the variance of the test-loss decomposition (10.52)).
        mean: E[z(T)] (unscaled).

    Not in the book as such: the measured side of the epilogue's r = L/n scaling (∞.165)-(∞.166).
    """

    representation: Estimate
    fluctuation: Estimate
    ntk_change: Estimate
    variance: Estimate
    mean: Estimate


def trained_effects(run, theta, width: int) -> TrainedEffects:
    """The estimators of the module docstring for a :class:`pdltlib.training.TrainingResult`.

    Args:
        run: trained with ``keep_ntk=True``, the network among the models, one output and test
            inputs (D = A u B).
        theta: the frozen NTK Theta^(L) on D, (N_D, N_D) (for the NTK's relative change).
        width: n = n_{L-1}, the scale of the 1/n effects.

    Returns:
        :class:`TrainedEffects`. The linear model's trained outputs are the closed form (10.39)
        with the network's own initial NTK (what the trained ``"linear"`` model converges to;
        chapter 10 checks it to rounding).
    """
    if run.ntk_initial is None or "network" not in run.final:
        raise ValueError("run must be trained with keep_ntk=True and the network among its models")
    z0 = np.asarray(run.initial)
    if z0.shape[2] != 1:
        raise ValueError(f"run must have one output (n_L = 1), got n_L = {z0.shape[2]}")
    n_a = run.n_train
    if z0.shape[1] <= n_a:
        raise ValueError("run must have test inputs (x_test) besides its training inputs")
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (z0.shape[1],) * 2:
        raise ValueError(f"theta must be the ({z0.shape[1]}, {z0.shape[1]}) frozen NTK on D")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    y = _labels(run.y_train, n_a)[:, None]
    h0, h1 = run.ntk_initial[:, 0, 0], run.ntk_final[:, 0, 0]
    test = slice(n_a, None)
    net = run.final["network"][:, test, 0]
    linear = trained_outputs(h0, z0, y)[:, test, 0]
    odd = trained_outputs(h0, z0, np.zeros_like(y))[:, test, 0]  # o: the part odd under the flip
    hat = net - odd
    diag = np.arange(n_a, z0.shape[1])
    change = (h1 - h0)[:, diag, diag] / theta[diag, diag]
    return TrainedEffects(
        representation=mean_estimate(width * (net - linear)),
        fluctuation=jackknife(lambda m1, m2: width * (m2 - m1**2), hat, hat**2),
        ntk_change=mean_estimate(width * change),
        variance=jackknife(lambda m1, m2: m2 - m1**2, net, net**2),
        mean=mean_estimate(net),
    )
