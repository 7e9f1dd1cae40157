"""Bayesian learning with the network prior (book chapter 6).

Notation: D = A ∪ B, training inputs A (observed outputs y_{i;α}, i = 1..n_L) and test inputs
B; ``train`` and ``test`` index the rows of a kernel on D. ``noise`` is sigma_epsilon^2 of the
uncertain hypothesis (6.10); ``noise=0`` is the book's deterministic hypothesis (6.9), in which
the outputs are conditioned exactly, z_A -> y_A (6.24). Throughout K̃ = K_AA + noise * 1 and
u_{i;α} = sum_α' K̃^{αα'} y_{i;α'}.

* Infinite width (section 6.3): the prior is Gaussian with the kernel K^(L) (6.32), the evidence
  is (6.34) and the posterior is Gaussian with mean (6.64) and covariance (6.57):
  :func:`gp_posterior`, :func:`log_evidence`.
* Finite width (section 6.4): the posterior mean to order 1/n, from K, V and G^{1}
  (:func:`finite_width_posterior_mean`), and the Bayesian update of the penultimate-layer
  observable (6.101), (6.104) (:func:`penultimate_update`).
* Exact Bayesian inference on sampled networks, for verification. Given the penultimate layer,
  the outputs are exactly Gaussian with the stochastic metric G^(L) (4.74), (6.103), so each
  network's likelihood of y_A is the Gaussian (6.94) and its conditional mean of z_B is a
  regression on its own metric. Self-normalized importance sampling of prior networks with these
  weights is exact Bayesian inference with only the error of the finite ensemble
  (:func:`output_metric`, :func:`metric_posterior_mean`, :func:`metric_posterior_update`);
  :func:`importance_posterior_mean` weights sampled outputs directly (needs noise > 0).
  Errors are jackknifed over networks; every result reports the effective sample size.

The finite-width mean is derived in the chapter (eq-ch6-finite-mean) from the first-order
Edgeworth expansion of a distribution with metric K + G^{1}/n and connected four-point function
(4.77): it contracts the four-point vertex with the Hermite polynomial He_3(y), which is the
Wick contraction (6.88) of the book written in correlators instead of couplings. The vertex V
comes from :func:`pdltlib.kernels.preactivation_flow`, whose quadrature allows N_D <= 3 inputs:
one or two training points and one test point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.stats import Estimate, jackknife
from pdltlib.validation import covariance

__all__ = [
    "GPPosterior",
    "FiniteWidthMean",
    "ImportanceResult",
    "gp_posterior",
    "log_evidence",
    "finite_width_posterior_mean",
    "penultimate_update",
    "output_metric",
    "metric_posterior_mean",
    "metric_posterior_update",
    "importance_posterior_mean",
]


@dataclass(frozen=True)
class GPPosterior:
    """Infinite-width posterior on the test inputs: mean (6.64) and covariance (6.57).

    ``mean`` has shape (N_B, n_L) (or (N_B,) for a single output given as a vector) and
    ``covariance`` (N_B, N_B), the same for every output component (6.66)-(6.67).
    """

    mean: np.ndarray
    covariance: np.ndarray


@dataclass(frozen=True)
class FiniteWidthMean:
    """Posterior mean to order 1/n: ``infinite_width + coefficient / width`` (width = n_{L-1}).

    ``coefficient`` is the width-independent 1/n coefficient (the G^{1} and V terms of
    eq-ch6-finite-mean); ``mean`` is the sum at the given width.

    Book: the 1/n expansion of the posterior mean, section 6.4 (eq. (6.88)).
    """

    infinite_width: np.ndarray
    coefficient: np.ndarray
    width: float

    @property
    def mean(self) -> np.ndarray:
        return self.infinite_width + self.coefficient / self.width


@dataclass(frozen=True)
class ImportanceResult:
    """A self-normalized importance-sampling estimate and its effective sample size.

    ``ess`` = (sum w)^2 / sum w^2 out of ``estimate.n`` networks.

    Not in the book: the Monte Carlo side of exact Bayesian inference (6.8)-(6.10) on sampled
    networks.
    """

    estimate: Estimate
    ess: float


# --- input validation ------------------------------------------------------------------------


def _noise(noise: float) -> float:
    value = float(noise)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"noise (sigma_epsilon^2) must be finite and >= 0, got {noise}")
    return value


def _indices(index, n_inputs: int, name: str) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(index))
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty sequence of integer input indices")
    if np.any(idx < 0) or np.any(idx >= n_inputs) or len(set(idx.tolist())) != idx.size:
        raise ValueError(f"{name} must hold distinct indices in 0..{n_inputs - 1}, got {index}")
    return idx


def _split(n_inputs: int, train, test) -> tuple[np.ndarray, np.ndarray]:
    a, b = _indices(train, n_inputs, "train"), _indices(test, n_inputs, "test")
    if set(a.tolist()) & set(b.tolist()):
        raise ValueError(f"train {train} and test {test} must not share inputs")
    return a, b


def _outputs(y, n_train: int) -> tuple[np.ndarray, bool]:
    """y as (N_A, n_L) and whether it was given as a vector (a single output component)."""
    arr = np.asarray(y, dtype=np.float64)
    vector = arr.ndim == 1
    arr = arr[:, None] if vector else arr
    if arr.ndim != 2 or arr.shape[0] != n_train:
        raise ValueError(
            f"y must have shape (N_A,) or (N_A, n_L) with N_A = {n_train} training inputs, "
            f"got {np.shape(y)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("y must be finite")
    return arr, vector


def _train_inverse(k_train: np.ndarray, noise: float, name: str) -> np.ndarray:
    k_tilde = k_train + noise * np.eye(k_train.shape[0])
    if np.linalg.eigvalsh(k_tilde)[0] <= 1e-12 * max(np.abs(k_tilde).max(), 1e-300):
        raise ValueError(
            f"{name} restricted to the training inputs (plus noise) must be positive definite"
        )
    return np.linalg.inv(k_tilde)


# --- infinite width (section 6.3) --------------------------------------------------------------


def gp_posterior(K, y, train: Sequence[int], test: Sequence[int], noise: float = 0.0):
    """The infinite-width posterior of the outputs on ``test`` given ``y`` on ``train``.

    Mean (6.64) m_{i;β} = sum K_{βα1} K̃^{α1α2} y_{i;α2} and covariance (6.57)
    K_ββ' - K_βα K̃^{αα'} K_α'β', with K̃ = K_AA + noise (noise = 0: the book's exact conditioning).

    Args:
        K: the output kernel K^(L) on D = train ∪ test, an (N_D, N_D) matrix.
        y: observed outputs, shape (N_A,) for one output component or (N_A, n_L).
        train, test: disjoint index sequences into the rows of K.
        noise: the observation-noise variance sigma_epsilon^2 >= 0 (6.10).

    Returns:
        A :class:`GPPosterior`.
    """
    k, _ = covariance(K, "K")
    a, b = _split(k.shape[0], train, test)
    y, vector = _outputs(y, a.size)
    inverse = _train_inverse(k[np.ix_(a, a)], _noise(noise), "K")
    projector = k[np.ix_(b, a)] @ inverse
    mean = projector @ y
    cov = k[np.ix_(b, b)] - projector @ k[np.ix_(a, b)]
    return GPPosterior(mean=mean[:, 0] if vector else mean, covariance=(cov + cov.T) / 2)


def log_evidence(K_train, y, noise: float = 0.0) -> float:
    """The log of the Bayesian evidence (6.34) at infinite width:

        log p(y_A | H) = -(n_L / 2) log|2 pi K̃| - (1/2) sum_i sum y_{i;α1} K̃^{α1α2} y_{i;α2},

    with K̃ = K_AA + noise. Compare hypotheses (C_b, C_W, depth, activation) by their evidence
    (6.30); for one input it peaks at K̃ = sum_i y_i^2 / n_L (6.36).

    Args:
        K_train: the output kernel on the training inputs, a variance or (N_A, N_A) matrix.
        y: observed outputs, shape (N_A,) for one output component or (N_A, n_L); a scalar
            is accepted for a single input and output.
        noise: sigma_epsilon^2 >= 0.
    """
    k, _ = covariance(K_train, "K_train")
    y, _ = _outputs(np.reshape(y, (1,)) if np.ndim(y) == 0 else y, k.shape[0])
    k_tilde = k + _noise(noise) * np.eye(k.shape[0])
    sign, logdet = np.linalg.slogdet(2 * np.pi * k_tilde)
    if sign <= 0 or np.linalg.eigvalsh(k_tilde)[0] <= 0:
        raise ValueError("K_train (plus noise) must be positive definite for the evidence")
    quad = np.einsum("ai,ab,bi->", y, np.linalg.inv(k_tilde), y)
    return float(-0.5 * y.shape[1] * logdet - 0.5 * quad)


# --- finite width (section 6.4) ----------------------------------------------------------------


def _vertex(V, n_inputs: int) -> np.ndarray:
    v = np.asarray(V, dtype=np.float64)
    if v.shape != (n_inputs,) * 4 or not np.all(np.isfinite(v)):
        raise ValueError(f"V must be a finite array of shape {(n_inputs,) * 4}, got {v.shape}")
    return v


def _width(width: float) -> float:
    value = float(width)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"width (n_{{L-1}}) must be > 0, got {width}")
    return value


def finite_width_posterior_mean(
    K,
    V,
    y,
    train: Sequence[int],
    test: Sequence[int],
    width: float,
    *,
    G1=None,
    noise: float = 0.0,
) -> FiniteWidthMean:
    """The posterior mean of the outputs on ``test`` to order 1/n (book 6.4.2, (6.87)-(6.88)).

    With P = K_BA K̃^{-1}, the residual vertex V⊥_{(βα1)(α2α3)} = V_{(βα1)(α2α3)} -
    sum_α P_βα V_{(αα1)(α2α3)}, the residual metric G⊥_{βα} = G^{1}_{βα} - sum P G^{1}_{α'α},
    u = K̃^{-1} y and U_{α2α3} = sum_j u_{j;α2} u_{j;α3}:

        E[z_{i;β} | y_A] = m_{i;β} + (1/n) [ sum_α G⊥_{βα} u_{i;α}
            + (1/2) sum V⊥_{(βα1)(α2α3)} ( u_{i;α1} (U_{α2α3} - n_L K̃^{α2α3})
                                           - 2 K̃^{α1α2} u_{i;α3} ) ] + O(1/n^2),

    m the infinite-width mean (6.64) and n = n_{L-1} (the normalization (4.104)-(4.105) of K, V,
    G^{1}). Derived in the chapter (eq-ch6-finite-mean) from the Edgeworth expansion; it is
    the Wick contraction (6.88) written in correlators.

    Args:
        K, V: the output kernel K^(L) (N_D, N_D) and four-point vertex V^(L) (N_D,)*4 on D,
            e.g. from :func:`pdltlib.kernels.preactivation_flow` (N_D <= 3 there).
        y: observed outputs of all n_L components, (N_A, n_L), or (N_A,) when n_L = 1
            (the V term couples the components through U, (6.89)).
        train, test: disjoint index sequences into D.
        width: n_{L-1}, the width of the penultimate layer.
        G1: the NLO metric G^{1}(L) on D (default zero, as for scale-invariant activations).
        noise: sigma_epsilon^2 >= 0.
    """
    k, _ = covariance(K, "K")
    n_inputs = k.shape[0]
    a, b = _split(n_inputs, train, test)
    y, vector = _outputs(y, a.size)
    v = _vertex(V, n_inputs)
    n = _width(width)
    g1 = np.zeros_like(k) if G1 is None else np.asarray(G1, dtype=np.float64)
    if g1.shape != k.shape or not np.all(np.isfinite(g1)):
        raise ValueError(f"G1 must be a finite array of shape {k.shape}, got {g1.shape}")
    inverse = _train_inverse(k[np.ix_(a, a)], _noise(noise), "K")
    projector = k[np.ix_(b, a)] @ inverse
    u = inverse @ y  # (N_A, n_L)
    n_l, big_u = y.shape[1], u @ u.T
    v_ba = v[np.ix_(b, a, a, a)] - np.einsum("ba,acde->bcde", projector, v[np.ix_(a, a, a, a)])
    g_perp = g1[np.ix_(b, a)] - projector @ g1[np.ix_(a, a)]
    coefficient = g_perp @ u
    coefficient += 0.5 * np.einsum("bpqr,pi,qr->bi", v_ba, u, big_u - n_l * inverse)
    coefficient -= np.einsum("bpqr,pq,ri->bi", v_ba, inverse, u)
    mean = projector @ y
    if vector:
        mean, coefficient = mean[:, 0], coefficient[:, 0]
    return FiniteWidthMean(infinite_width=mean, coefficient=coefficient, width=n)


def penultimate_update(
    K_train, V_train, y, C_W: float, width: float, noise: float = 0.0
) -> np.ndarray:
    """The Bayesian update (6.104) of the penultimate-layer observable (6.101):

        dŌ_{δ1δ2} = 1/(2 n_{L-1} C_W) sum V_{(δ1δ2)(α1α2)} K̃^{α1α3} K̃^{α2α4}
                    (sum_i y_{i;α3} y_{i;α4} - n_L K̃_{α3α4}),

    O = (1/n_{L-1}) sum_j sigma_{j;δ1} sigma_{j;δ2}. Zero at infinite width (6.71): this is
    representation learning. Here on the training inputs (δ ∈ A); with noise, K̃ = K_AA + noise.

    Args:
        K_train: the output kernel on the training inputs (N_A, N_A) (or a variance).
        V_train: the output four-point vertex on the training inputs, shape (N_A,)*4
            (or a scalar for one input).
        y: (N_A,) or (N_A, n_L) observed outputs.
        C_W: the last layer's weight variance C_W^(L) > 0.
        width: n_{L-1}.
        noise: sigma_epsilon^2 >= 0.

    Returns:
        dŌ on the training inputs, shape (N_A, N_A).
    """
    k, _ = covariance(K_train, "K_train")
    v = _vertex(np.reshape(V_train, (1,) * 4) if np.ndim(V_train) == 0 else V_train, k.shape[0])
    y, _ = _outputs(np.reshape(y, (1,)) if np.ndim(y) == 0 else y, k.shape[0])
    if not np.isfinite(C_W) or C_W <= 0:
        raise ValueError(f"C_W must be > 0, got {C_W}")
    n = _width(width)
    k_tilde = k + _noise(noise) * np.eye(k.shape[0])
    inverse = _train_inverse(k, _noise(noise), "K_train")
    source = inverse @ (y @ y.T - y.shape[1] * k_tilde) @ inverse
    return np.einsum("abcd,cd->ab", v, source) / (2 * n * C_W)


# --- exact Bayesian inference on sampled networks ---------------------------------------------


def output_metric(z_penultimate, activation: str | Activation, C_b: float, C_W: float):
    """The stochastic output metric (4.74), (6.103) of each sampled network:

        G^(L)_{δ1δ2} = C_b + (C_W / n_{L-1}) sum_j sigma(z^(L-1)_{j;δ1}) sigma(z^(L-1)_{j;δ2}).

    Given the penultimate layer, the outputs are exactly N(0, G^(L)), i.i.d. over components.

    Args:
        z_penultimate: shape (networks, N_D, n_{L-1}), e.g. from
            :func:`pdltlib.sampling.sample_preactivations` with ``layers=[L - 1]``.
        activation: anything :func:`pdltlib.activations.get_activation` accepts.
        C_b, C_W: the last layer's bias and weight variances.

    Returns:
        Shape (networks, N_D, N_D).
    """
    z = np.asarray(z_penultimate, dtype=np.float64)
    if z.ndim != 3 or z.shape[0] < 1 or z.shape[2] < 1:
        raise ValueError(f"z_penultimate must have shape (networks, N_D, n), got {z.shape}")
    if not np.isfinite(C_b) or C_b < 0:
        raise ValueError(f"C_b must be >= 0, got {C_b}")
    if not np.isfinite(C_W) or C_W <= 0:
        raise ValueError(f"C_W must be > 0, got {C_W}")
    s = np.asarray(get_activation(activation).fn(jnp.asarray(z)))
    return C_b + (C_W / z.shape[2]) * np.einsum("sai,sbi->sab", s, s)


def _metrics(G) -> np.ndarray:
    g = np.asarray(G, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] != g.shape[2] or g.shape[0] < 2:
        raise ValueError(f"G must have shape (networks >= 2, N_D, N_D), got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("G must be finite")
    return g


def _weighted(log_w: np.ndarray, values: np.ndarray, relative: bool) -> ImportanceResult:
    """Self-normalized importance sampling sum w f / sum w (minus the unweighted mean of f when
    ``relative``), with the standard error of a delete-one-block jackknife over networks.

    The value is the plain ratio, not the jackknife's bias-corrected one: the O(1/N) bias is far
    below the O(1/sqrt N) error, and the plain ratio is exact when the networks enumerate a
    discrete prior with equal probabilities (as in the unit tests).
    """
    w = np.exp(log_w - log_w.max())
    wv = w.reshape((-1,) + (1,) * (values.ndim - 1)) * values
    if relative:

        def statistic(mw, mwv, mv):
            return mwv / mw - mv

        replicas = (w, wv, values)
    else:

        def statistic(mw, mwv):
            return mwv / mw

        replicas = (w, wv)
    value = statistic(*[r.mean(axis=0) for r in replicas])
    stderr = jackknife(statistic, *replicas).stderr
    estimate = Estimate(value, stderr, w.size)
    return ImportanceResult(estimate=estimate, ess=float(w.sum() ** 2 / (w**2).sum()))


def _metric_log_weights(g_train: np.ndarray, y: np.ndarray, noise: float) -> np.ndarray:
    """log p(y_A | G) of (6.94), per network, up to a network-independent constant."""
    g_tilde = g_train + noise * np.eye(g_train.shape[1])
    sign, logdet = np.linalg.slogdet(g_tilde)
    if np.any(sign <= 0):
        raise ValueError(
            "G restricted to the training inputs (plus noise) must be positive definite"
        )
    quad = np.einsum("ai,sab,bi->s", y, np.linalg.inv(g_tilde), y)
    return -0.5 * y.shape[1] * logdet - 0.5 * quad


def metric_posterior_mean(
    G, y, train: Sequence[int], test: Sequence[int], noise: float = 0.0
) -> ImportanceResult:
    """Exact Bayesian posterior mean of the test outputs, by importance sampling of networks.

    Network s has output metric G_s (:func:`output_metric`); its likelihood of the observations
    is the Gaussian (6.94) w_s = prod_i N(y_{i;A}; 0, G_s,AA + noise) and its conditional mean is
    m_s = G_s,BA (G_s,AA + noise)^{-1} y. Then E[z_B | y_A] = sum_s w_s m_s / sum_s w_s: exact
    (noise = 0 included) up to the Monte Carlo error, which is jackknifed over networks.

    Returns:
        An :class:`ImportanceResult` with estimate shape (N_B,) or (N_B, n_L) like y.
    """
    g = _metrics(G)
    a, b = _split(g.shape[1], train, test)
    y, vector = _outputs(y, a.size)
    noise = _noise(noise)
    g_aa = g[:, a][:, :, a]
    log_w = _metric_log_weights(g_aa, y, noise)
    solved = np.linalg.solve(
        g_aa + noise * np.eye(a.size), np.broadcast_to(y, (g.shape[0],) + y.shape)
    )
    means = np.einsum("sba,sai->sbi", g[:, b][:, :, a], solved)
    return _weighted(log_w, means[:, :, 0] if vector else means, relative=False)


def metric_posterior_update(G, y, train: Sequence[int], noise: float = 0.0) -> ImportanceResult:
    """Exact posterior-minus-prior change of the output metric on all inputs, by importance
    sampling: E[G | y_A] - E[G], shape (N_D, N_D).

    Since G^(L) = C_b + C_W O with O the penultimate observable (6.101), this is C_W dŌ of
    (6.90); compare with C_W times :func:`penultimate_update`. Weights as in
    :func:`metric_posterior_mean`; the difference is jackknifed as one statistic, so the prior
    fluctuations common to both terms cancel.
    """
    g = _metrics(G)
    a = _indices(train, g.shape[1], "train")
    y, _ = _outputs(y, a.size)
    log_w = _metric_log_weights(g[:, a][:, :, a], y, _noise(noise))
    return _weighted(log_w, g, relative=True)


def importance_posterior_mean(
    z, y, train: Sequence[int], test: Sequence[int], noise: float
) -> ImportanceResult:
    """Posterior mean of the test outputs by weighting sampled outputs with the likelihood
    (6.10), w_s = exp(-sum_{i,α} (y_{i;α} - z_{s;i;α})^2 / (2 noise)): the plain version of
    :func:`metric_posterior_mean`, usable for any prior sampler but only for noise > 0.

    Args:
        z: sampled outputs, shape (networks, N_D, n_L) (``sample_preactivations`` layout).
        y: (N_A,) or (N_A, n_L) observations.
        train, test: disjoint index sequences into the N_D inputs.
        noise: sigma_epsilon^2 > 0.
    """
    arr = np.asarray(z, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"z must be finite with shape (networks >= 2, N_D, n_L), got {arr.shape}")
    a, b = _split(arr.shape[1], train, test)
    y, vector = _outputs(y, a.size)
    if y.shape[1] != arr.shape[2] and not vector:
        raise ValueError(f"y has {y.shape[1]} output components but z has {arr.shape[2]}")
    noise = _noise(noise)
    if noise == 0:
        raise ValueError(
            "noise must be > 0 for importance_posterior_mean; use metric_posterior_mean"
        )
    z_a = arr[:, a, :1] if vector else arr[:, a, :]
    log_w = -((z_a - y) ** 2).sum(axis=(1, 2)) / (2 * noise)
    values = arr[:, b, 0] if vector else arr[:, b, :]
    return _weighted(log_w, values, relative=False)
