"""Kernel learning at infinite width (book chapter 10): gradient descent with the frozen NTK,
the kernel prediction, its covariance over initializations, Newton's method, algorithm
independence and the generalized bias-variance decomposition.

Conventions. D = A u B lists the N_A training inputs first, then the test inputs; ``theta`` is
the frozen NTK Theta^(L) (9.4) on D, shape (N_D, N_D), ``kernel`` the kernel K^(L) on D;
outputs and labels carry the sample index first, (N, n_L), as elsewhere in the library. At
infinite width the NTK is diagonal in the output components, so every component learns
independently with the same Theta ("no wiring", book section 10.1.1).

Dynamics. One step of gradient descent on the MSE loss (7.2) with the frozen NTK moves every
output by (10.3), z_d(t+1) = z_d(t) - eta sum_a Theta_{d a} (z_a(t) - y_a). The training
residual therefore evolves as r(t) = (1 - eta Theta_AA)^t r(0), mode by mode in the
eigenbasis of the training block Theta_AA (each mode k decays as (1 - eta lambda_k)^t), and
on every input

    z_D(t) = z_D(0) - Theta_DA Theta_AA^{-1} [1 - (1 - eta Theta_AA)^t] (z_A(0) - y),

which at t -> infinity (for 0 < eta < 2 / lambda_max) is the fully trained, stochastic kernel
prediction (10.39), reached in one Newton step (10.31) as well: algorithm independence
(10.35). Its mean over initializations (E[z(0)] = 0) is the kernel prediction (10.40),
m = Theta_BA Theta_AA^{-1} y, and since z(t) = T z(0) + P y is linear in the Gaussian z(0)
(covariance K), its covariance is T K T^T, which at the end of training is the book's (10.41).

:func:`frozen_ntk` gives K and Theta for any :class:`pdltlib.network.MLPConfig`, in closed
form for the scale-invariant activations (book (5.60)-(5.62), (10.85)-(10.86), unequal norms
included) and erf (the arcsine kernel), and by :func:`pdltlib.ntk.ntk_flow` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from pdltlib.network import MLPConfig
from pdltlib.ntk import NTKFlow, ntk_flow
from pdltlib.validation import SYMMETRY_TOLERANCE, covariance

__all__ = [
    "frozen_ntk",
    "stability_bound",
    "transfer_matrix",
    "trained_outputs",
    "kernel_prediction",
    "kernel_prediction_derivative",
    "prediction_covariance",
    "kernel_step",
    "BiasVariance",
    "bias_variance",
    "gamma_components",
    "robustness",
    "interpolation_curvature",
    "interpolation_prediction",
]


def _scale_invariant_integrals(a_plus: float, a_minus: float):
    """<s s>_K and <s' s'>_K for sigma = a_+ z (z >= 0), a_- z (z < 0): with
    A_2 = (a_+^2 + a_-^2)/2, rho = (a_+ - a_-)^2 / (pi (a_+^2 + a_-^2)) and the angle psi of
    each pair, A_2 [K_12 + rho sqrt(K_11 K_22) (sin psi - psi cos psi)] and A_2 (1 - rho psi)
    (book (10.85)-(10.86), unequal norms included; (5.60)-(5.62) on the diagonal)."""
    a2 = (a_plus**2 + a_minus**2) / 2
    rho = (a_plus - a_minus) ** 2 / (np.pi * (a_plus**2 + a_minus**2))

    def integrals(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = np.sqrt(np.outer(np.diag(k), np.diag(k)))
        psi = np.arctan2(np.sqrt(np.maximum(scale**2 - k**2, 0.0)), k)
        np.fill_diagonal(psi, 0.0)  # an input and itself: exactly zero angle
        return a2 * (k + rho * scale * (np.sin(psi) - psi * np.cos(psi))), a2 * (1 - rho * psi)

    return integrals


def _erf_integrals(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """<erf erf>_K = (2/pi) arcsin(2 K_12 / sqrt((1 + 2 K_11)(1 + 2 K_22))) and
    <erf' erf'>_K = (4/pi) / sqrt((1 + 2 K_11)(1 + 2 K_22) - 4 K_12^2), the arcsine kernel."""
    d = 1 + 2 * np.diag(k)
    norm = np.outer(d, d)
    ss = (2 / np.pi) * np.arcsin(np.clip(2 * k / np.sqrt(norm), -1.0, 1.0))
    return ss, (4 / np.pi) / np.sqrt(norm - 4 * k**2)


def _closed_form(config: MLPConfig):
    """The Gaussian integrals of the recursions in closed form, when the activation has one."""
    act = config.activation
    if act.name == "linear":
        return _scale_invariant_integrals(1.0, 1.0)
    if {"a_plus", "a_minus"} <= set(act.params):
        return _scale_invariant_integrals(act.params["a_plus"], act.params["a_minus"])
    if act.name == "erf":
        return _erf_integrals
    return None


def _closed_form_flow(config: MLPConfig, x: np.ndarray, integrals) -> NTKFlow:
    """K^(l) (4.118) and Theta^(l) (9.5) with closed-form integrals, all pairs at once."""
    gram = x @ x.T / x.shape[1]
    ks = [config.C_b[0] + config.C_W[0] * gram]
    thetas = [config.lambda_b[0] + config.lambda_W[0] * gram]
    for layer in range(1, config.depth):
        ss, dd = integrals(ks[-1])
        chi = config.C_W[layer] * dd
        ks.append(config.C_b[layer] + config.C_W[layer] * ss)
        thetas.append(config.lambda_b[layer] + config.lambda_W[layer] * ss + chi * thetas[-1])
    return NTKFlow(K=np.stack(ks), Theta=np.stack(thetas))


def frozen_ntk(config: MLPConfig, x) -> NTKFlow:
    """The infinite-width kernel K^(l) and frozen NTK Theta^(l), l = 1..L, on the inputs ``x``.

    The recursions (4.118) and (9.5) with ``config``'s hyperparameters (C_b, C_W, lambda_b,
    lambda_W per layer). For the scale-invariant family (linear, ReLU, leaky ReLU) and erf the
    Gaussian integrals are closed forms, vectorized over all pairs of inputs (milliseconds for
    hundreds of inputs or thousands of layers); other activations go through
    :func:`pdltlib.ntk.ntk_flow` (quadrature, about N_D^2 two-dimensional integrals per layer).

    Args:
        config: the architecture and hyperparameters (:func:`pdltlib.network.mlp`).
        x: inputs of shape (N_D, n_0).

    Returns:
        :class:`pdltlib.ntk.NTKFlow` with K and Theta of shape (L, N_D, N_D).
    """
    inputs = np.asarray(x, dtype=np.float64)
    if inputs.ndim != 2 or inputs.shape[1] != config.widths[0] or not np.all(np.isfinite(inputs)):
        raise ValueError(
            f"x must be finite with shape (N_D, n_0) = (N_D, {config.widths[0]}), got {np.shape(x)}"
        )
    integrals = _closed_form(config)
    first = config.C_b[0] + config.C_W[0] * np.einsum("aj,aj->a", inputs, inputs) / inputs.shape[1]
    if integrals is not None and np.all(first > 0):
        return _closed_form_flow(config, inputs, integrals)
    return ntk_flow(
        config.activation, config.C_b, config.C_W, config.lambda_b, config.lambda_W, inputs,
        config.depth,
    )  # fmt: skip


def _theta(theta, name: str = "theta") -> np.ndarray:
    """An NTK (or kernel) on D as a float64 array (..., N_D, N_D): one symmetric positive
    semidefinite matrix (checked fully), or a stack of symmetric ones (one per network)."""
    array = np.asarray(theta, dtype=np.float64)
    if array.ndim == 2:
        matrix, _ = covariance(array, name)
        return matrix
    if array.ndim < 2 or array.shape[-1] != array.shape[-2] or array.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., N_D, N_D), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must have finite entries")
    scale = np.abs(array).max(axis=(-2, -1), keepdims=True)
    if np.any(np.abs(array - np.swapaxes(array, -1, -2)) > SYMMETRY_TOLERANCE * scale):
        raise ValueError(f"{name} must be symmetric in its last two axes")
    return (array + np.swapaxes(array, -1, -2)) / 2


def _train_block(theta: np.ndarray, n_train: int) -> np.ndarray:
    if isinstance(n_train, bool) or not isinstance(n_train, Integral):
        raise ValueError(f"n_train must be an integer, got {n_train!r}")
    if not 1 <= n_train <= theta.shape[-1]:
        raise ValueError(
            f"the training set must have 1..N_D = 1..{theta.shape[-1]} inputs, got {n_train}"
        )
    block = theta[..., :n_train, :n_train]
    smallest = np.linalg.eigvalsh(block)[..., 0]
    scale = np.maximum(np.abs(block).max(axis=(-2, -1)), 1e-300)
    if np.any(smallest <= 1e-12 * scale):
        raise ValueError(
            "theta's training block must be positive definite (distinct training inputs); "
            f"its smallest eigenvalue is {np.min(smallest):.3e}"
        )
    return block


def _labels(y, n_train: int | None = None) -> tuple[np.ndarray, bool]:
    labels = np.asarray(y, dtype=np.float64)
    vector = labels.ndim == 1
    labels = labels[:, None] if vector else labels
    if labels.ndim != 2 or (n_train is not None and labels.shape[0] != n_train):
        raise ValueError(f"y_train must have shape (N_A, n_L) or (N_A,), got {np.shape(y)}")
    if not np.all(np.isfinite(labels)):
        raise ValueError("y_train contains non-finite values")
    return labels, vector


def _schedule(eta, steps) -> tuple[float | None, int | None]:
    if steps is None:
        return None, None
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer or None, got {steps!r}")
    if eta is None or not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be finite and > 0 when steps is given, got {eta!r}")
    return float(eta), int(steps)


def stability_bound(theta_train) -> float:
    """2 / lambda_max(Theta_AA): gradient descent with the frozen NTK, book (10.3), converges
    for 0 < eta < 2 / lambda_max, since each training mode decays as (1 - eta lambda_k)^t."""
    block = _theta(theta_train, "theta_train")
    return float(2.0 / np.linalg.eigvalsh(block)[-1])


def transfer_matrix(theta, n_train: int, *, eta: float | None = None, steps: int | None = None):
    """P = Theta_DA Theta_AA^{-1} [1 - (1 - eta Theta_AA)^t], shape (..., N_D, N_A): after t
    steps, z_D(t) = z_D(0) - P (z_A(0) - y). ``steps=None``: the end of training,
    P = Theta_DA Theta_AA^{-1} of (10.39) (any algorithm, (10.35)). Rows A of P are
    1 - (1 - eta Theta_AA)^t. ``theta`` may carry leading axes (one NTK per network).
    """
    matrix = _theta(theta)
    block = _train_block(matrix, n_train)
    eta, steps = _schedule(eta, steps)
    cross = matrix[..., :, :n_train]
    if steps is None:
        return np.swapaxes(np.linalg.solve(block, np.swapaxes(cross, -1, -2)), -1, -2)
    lam, modes = np.linalg.eigh(block)
    decay = (1 - eta * lam) ** steps  # each training mode, (1 - eta lambda_k)^t
    learned = (modes * ((1 - decay) / lam)[..., None, :]) @ np.swapaxes(modes, -1, -2)
    return cross @ learned


def trained_outputs(
    theta, z_initial, y_train, *, eta: float | None = None, steps: int | None = None
) -> np.ndarray:
    """The outputs of frozen-NTK gradient descent from given initial outputs (10.39).

    z_D(t) = z_D(0) - P (z_A(0) - y) with P of :func:`transfer_matrix`; at ``steps=None`` this
    is the fully trained prediction (10.39) of one network (equal to one Newton step (10.31)).

    Args:
        theta: the frozen NTK on D = A u B, (N_D, N_D), training inputs first.
        z_initial: initial outputs of shape (..., N_D, n_L) (leading axes: networks).
        y_train: labels (N_A, n_L).
        eta, steps: global learning rate and number of steps; ``steps=None``: end of training.

    Returns:
        Outputs of the shape of ``z_initial``.
    """
    labels, _ = _labels(y_train)
    p = transfer_matrix(theta, labels.shape[0], eta=eta, steps=steps)
    z0 = np.asarray(z_initial, dtype=np.float64)
    if z0.ndim < 2 or z0.shape[-2:] != (p.shape[-2], labels.shape[1]):
        raise ValueError(
            f"z_initial must have shape (..., N_D, n_L) = (..., {p.shape[-2]}, {labels.shape[1]}),"
            f" got {z0.shape}"
        )
    residual = z0[..., : labels.shape[0], :] - labels
    return z0 - np.einsum("...da,...ai->...di", p, residual)


def kernel_prediction(
    theta, y_train, *, eta: float | None = None, steps: int | None = None
) -> np.ndarray:
    """The mean output over initializations, m_D = P y (N_D, n_L) or (N_D,) for 1-D labels.

    At the end of training (``steps=None``) this is the kernel prediction (10.40),
    m = Theta_DA Theta_AA^{-1} y (on the training inputs m = y); after t steps of gradient
    descent with step ``eta`` it is Theta_DA Theta_AA^{-1} [1 - (1 - eta Theta_AA)^t] y.
    """
    labels, vector = _labels(y_train)
    mean = transfer_matrix(theta, labels.shape[0], eta=eta, steps=steps) @ labels
    return mean[..., 0] if vector else mean


def kernel_prediction_derivative(theta, d_theta, y_train) -> np.ndarray:
    """The first-order change of the kernel prediction (10.40) when Theta -> Theta + d_theta:

        dm_D = d_theta_DA Theta_AA^{-1} y - Theta_DA Theta_AA^{-1} d_theta_AA Theta_AA^{-1} y,

    (zero on the training inputs, where m = y always). ``d_theta`` may carry leading axes, e.g.
    H - Theta for an ensemble of networks' NTKs H: a linear function of d_theta, so its mean is
    the derivative at the mean NTK change (zero when E[H] = Theta, as in the second layer).

    Returns:
        dm of shape (..., N_D, n_L) ((..., N_D) for 1-D labels).
    """
    labels, vector = _labels(y_train)
    matrix = _theta(theta)
    if matrix.ndim != 2:
        raise ValueError(f"theta must be one (N_D, N_D) matrix, got shape {matrix.shape}")
    n_train = labels.shape[0]
    block = _train_block(matrix, n_train)
    tangent = np.asarray(d_theta, dtype=np.float64)
    if tangent.shape[-2:] != matrix.shape or not np.all(np.isfinite(tangent)):
        raise ValueError(
            f"d_theta must be finite with shape (..., {matrix.shape}), got {tangent.shape}"
        )
    weights = np.linalg.solve(block, labels)  # Theta_AA^{-1} y
    p = transfer_matrix(matrix, n_train)
    dm = tangent[..., :, :n_train] @ weights - p @ (tangent[..., :n_train, :n_train] @ weights)
    return dm[..., 0] if vector else dm


def prediction_covariance(
    theta, kernel, n_train: int, *, eta: float | None = None, steps: int | None = None
) -> np.ndarray:
    """Cov[z_{i;d1}(t), z_{i;d2}(t)] over initializations, (N_D, N_D), for each component i.

    z_D(t) = T z_D(0) + P y with T = 1 - P E_A (E_A picks the training rows), so the covariance
    is T K T^T for the initial kernel K (the outputs at initialization are Gaussian with
    covariance K at infinite width). At the end of training its test block is the book's
    (10.41): K_BB - Theta_BA Theta_AA^{-1} K_AB - K_BA Theta_AA^{-1} Theta_AB
    + Theta_BA Theta_AA^{-1} K_AA Theta_AA^{-1} Theta_AB; its training block vanishes.
    """
    matrix = _theta(theta)
    k = _theta(kernel, "kernel")
    if k.shape != matrix.shape:
        raise ValueError(f"kernel must have the shape {matrix.shape} of theta, got {k.shape}")
    p = transfer_matrix(matrix, n_train, eta=eta, steps=steps)
    t = np.eye(matrix.shape[0])
    t[:, :n_train] -= p
    return t @ k @ t.T


def kernel_step(theta, z, y_train, eta: float, kappa=None) -> np.ndarray:
    """One step of frozen-NTK gradient descent on the MSE loss with a Newton tensor, (10.20):

        z_d -> z_d - eta sum_{a1 a2} Theta_{d a1} kappa^{a1 a2} (z_{a2} - y_{a2}).

    ``kappa=None`` is plain gradient descent (kappa = identity); a projector onto a minibatch
    S of the training set is a step of SGD (book footnote 12 of chapter 10); ``eta = 1``,
    ``kappa = Theta_AA^{-1}`` is Newton's method (10.25), which trains fully in one step.

    Args:
        theta: frozen NTK on D, (N_D, N_D), training inputs first.
        z: current outputs (..., N_D, n_L).
        y_train: labels (N_A, n_L).
        eta: global learning rate (finite).
        kappa: symmetric (N_A, N_A) Newton tensor, or None.
    """
    labels, _ = _labels(y_train)
    matrix = _theta(theta)
    n_train = labels.shape[0]
    _train_block(matrix, n_train)
    if not np.isfinite(eta):
        raise ValueError(f"eta must be finite, got {eta}")
    metric = np.eye(n_train) if kappa is None else np.asarray(kappa, dtype=np.float64)
    if metric.shape != (n_train, n_train) or not np.allclose(metric, metric.T, atol=1e-12):
        raise ValueError(f"kappa must be a symmetric (N_A, N_A) = ({n_train}, {n_train}) matrix")
    outputs = np.asarray(z, dtype=np.float64)
    if outputs.ndim < 2 or outputs.shape[-2:] != (matrix.shape[0], labels.shape[1]):
        raise ValueError(f"z must have shape (..., N_D, n_L), got {outputs.shape}")
    residual = outputs[..., :n_train, :] - labels
    return outputs - eta * np.einsum("da,ab,...bi->...di", matrix[:, :n_train], metric, residual)


@dataclass(frozen=True)
class BiasVariance:
    """The generalized bias-variance decomposition (10.52) of the mean MSE test loss.

    Attributes:
        bias: (1/2) sum_{i, beta} (m_{i;beta} - y_{i;beta})^2.
        variance: (1/2) sum_{i, beta} Cov[z_{i;beta}(T), z_{i;beta}(T)].
    """

    bias: float
    variance: float

    @property
    def total(self) -> float:
        """E[L_B] = bias + variance over the ensemble of trained networks."""
        return self.bias + self.variance


def bias_variance(theta, kernel, y_train, y_test, *, eta=None, steps=None) -> BiasVariance:
    """Bias and variance (10.52) of the test loss E[L_B] of the trained ensemble at infinite
    width, from the kernel prediction (10.40) and the covariance (10.41) (after ``steps``
    steps of gradient descent when given).

    Args:
        theta, kernel: frozen NTK and kernel on D = A u B (training inputs first).
        y_train: (N_A, n_L) training labels; y_test: (N_B, n_L) test labels.
    """
    labels, _ = _labels(y_train)
    targets, _ = _labels(y_test)
    n_train = labels.shape[0]
    mean = kernel_prediction(theta, labels, eta=eta, steps=steps)[n_train:]
    if targets.shape != mean.shape:
        raise ValueError(f"y_test must have shape (N_B, n_L) = {mean.shape}, got {targets.shape}")
    cov = prediction_covariance(theta, kernel, n_train, eta=eta, steps=steps)[n_train:, n_train:]
    bias = 0.5 * float(np.sum((mean - targets) ** 2))
    return BiasVariance(bias=bias, variance=0.5 * labels.shape[1] * float(np.trace(cov)))


def gamma_components(pair) -> tuple[float, float, float]:
    """(M[0], M[1], M[2]) of a symmetric 2 x 2 matrix on the inputs (x_+, x_-) in the gamma
    basis of book (5.15)/(10.58): M_{++} = M[0] + M[1] + M[2], M_{--} = M[0] - M[1] + M[2],
    M_{+-} = M[0] - M[2]."""
    m = _theta(pair, "pair")
    if m.shape != (2, 2):
        raise ValueError(f"pair must be a 2 x 2 matrix on (x_+, x_-), got shape {m.shape}")
    return (
        (m[0, 0] + m[1, 1] + 2 * m[0, 1]) / 4,
        (m[0, 0] - m[1, 1]) / 2,
        (m[0, 0] + m[1, 1] - 2 * m[0, 1]) / 4,
    )


def robustness(pair) -> float:
    """The robustness measure (10.57), Theta_{-+} / Theta_{++} - 1, for a training input x_+
    (index 0 of the 2 x 2 frozen NTK ``pair``) and a test input x_- (index 1): the bias of
    the one-sample kernel prediction is m_- - y_- = (y_+ - y_-) + (this) y_+ (10.56)."""
    m = _theta(pair, "pair")
    if m.shape != (2, 2) or m[0, 0] <= 0:
        raise ValueError(f"pair must be a 2 x 2 matrix with Theta_++ > 0, got {m.tolist()}")
    return float(m[1, 0] / m[0, 0] - 1)


def interpolation_curvature(pair, midpoint: float) -> float:
    """delta delta Theta[0] / Theta_00 = (Theta[0] - Theta_00) / Theta_00, the curvature of
    the *-polation through two training inputs x_+- = x_0 +- dx/2 (book (10.59), (10.115));
    ``midpoint`` is Theta_00 = Theta(x_0, x_0). Accurate to O(delta^2) (the O(delta^4) terms of
    Theta[0] are kept)."""
    if not np.isfinite(midpoint) or midpoint <= 0:
        raise ValueError(f"midpoint (Theta_00) must be finite and > 0, got {midpoint}")
    return float((gamma_components(pair)[0] - midpoint) / midpoint)


def interpolation_prediction(
    s, y_plus: float, y_minus: float, curvature: float, z_line=0.0, z_plus=0.0, z_minus=0.0
) -> np.ndarray:
    """The book's (10.114) for the trained output on x_(2s-1) = s x_+ + (1 - s) x_-, for two
    equal-norm training inputs, corrected; with zero initial outputs, the mean (10.115):

        z(s) = [z_s - s z_+ - (1 - s) z_-] + [s y_+ + (1 - s) y_-]
               - s (1 - s) (delta delta Theta[0] / Theta_00) (y_+ + y_- - z_+ - z_-).

    Two misprints are corrected: the book has 4 s (1 - s) for s (1 - s) (from Theta_00 delta
    delta Theta[2] where the determinant in (10.113) is 4 Theta_00 delta delta Theta[2]; the
    factor 1 follows from [1, 1] Theta_AA^{-1} = [1, 1] / (Theta_++ + Theta_+-)), and
    (z_+ + z_- + y_+ + y_-) for (y_+ + y_- - z_+ - z_-) (the prediction depends on the
    training outputs only through z_A - y). This is the whole O(delta^2) answer for symmetric
    labels y_+ = y_- and initial outputs z_+ = z_- (error O(delta^4)), and at the midpoint
    s = 1/2. Otherwise there is a further O(delta^2) term proportional to
    s (1 - s) (2 s - 1) (y_+ - y_- - z_+ + z_-), which the book's O(delta^3) remainder hides:
    that channel divides by Theta_++ - Theta_+- = O(delta^2), so it needs the fourth-order
    terms of Theta_{eps1 eps2} that (10.110) truncates (chapter 10 shows it).

    Args:
        s: positions on the line (s in [0, 1] interpolates, outside extrapolates).
        y_plus, y_minus: the labels of x_+ and x_-.
        curvature: delta delta Theta[0] / Theta_00 (:func:`interpolation_curvature`).
        z_line, z_plus, z_minus: one network's initial outputs on x_(2s-1), x_+, x_- (zero for
            the mean over initializations).
    """
    s = np.asarray(s, dtype=np.float64)
    nonlinear = z_line - s * z_plus - (1 - s) * z_minus
    linear = s * y_plus + (1 - s) * y_minus
    return nonlinear + linear - s * (1 - s) * curvature * (y_plus + y_minus - z_plus - z_minus)
