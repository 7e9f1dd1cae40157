"""The end of training at finite width (book section ∞.2): the dynamics of gradient descent to
order 1/n, its solution for one network, and the mean prediction of the trained ensemble.

Dynamics. With the error factor eps_{j;a}(t) = z_{j;a}(t) - y_{j;a} of the MSE loss on the
training set A, one step of tensorial gradient descent moves the output, the NTK and the dNTK
as (∞.81)-(∞.83) (the updates (∞.4), (∞.6), (∞.9), truncated at order 1/n),

    z_d(t+1)    = z_d - eta H_da eps_a + (eta^2/2) dH_{d a1 a2} eps eps
                  - (eta^3/6) ddIH_{d a1a2a3} eps^3,
    H_da(t+1)   = H_da - eta (dH_{dab} + dH_{adb}) eps_b
                  + (eta^2/2) (ddIH_{dab1b2} + ddIH_{adb1b2} + 2 ddIIH_{dab1b2}) eps eps,
    dH_pqr(t+1) = dH_pqr - eta (ddIH_{pqrb} + ddIIH_{pqrb} + ddIIH_{prqb}) eps_b,

with the ddNTKs constant. Here and below one index stands for a pair (neuron i, input delta):
every tensor of the book is *flattened* to p = delta n_L + i with the N_A training inputs first,
so the first N = n_L N_A flat indices are the training set A and sums run over flat indices.
In this notation the book's formulas keep their form with the output components included, and
the network's own NTK (which mixes output components at finite width: wiring) can be used
everywhere the book writes its mean delta_{ij} H_{a1a2}.

Solution. :func:`taylor_dynamics` iterates these equations. Their solution to first order in the
NTK differentials (dH, ddIH, ddIIH, each O(1/n)) around the free solution with the network's own
frozen NTK (∞.88)-(∞.93) is computed two ways:

* :func:`perturbative_dynamics`, at any step t: the free residual eps^F(t) = (1 - eta H_AA)^t eps(0)
  and its tensor powers evolve linearly, and so, once the products of the interaction NTK H^I(t)
  with eps^F(t) are carried along, does the interacting output z^I(t) of (∞.118); the whole
  first-order solution is the t-th power of one block-triangular matrix acting on
  (z^I, eps^F, eps^F x eps^F, eps^F x eps^F x eps^F, H^I x eps^F), and the end of training is its
  resolvent. Not in the book in this form: it needs none of the book's intermediate closed forms.
* :func:`trained_output`, at the end of training: the book's universal form (∞.141)/(∞.154), the
  free part plus the six NTK-differential terms weighted by the *algorithm projectors*
  Z_A, Z_B, Z_IA, Z_IB, Z_IIA, Z_IIB of :func:`gradient_descent_projectors` ((∞.142)-(∞.147),
  gradient flow (∞.149)-(∞.151)) or :func:`newton_projectors` (two second-order updates,
  (∞.148)).

The two agree to rounding when the projectors are built from the network's own training NTK
(the unit tests check it): the resolvent is an independent check of the book's projectors.

Ensemble mean. :func:`mean_prediction` averages the universal form over initializations at
order 1/n (∞.155)-(∞.160): the kernel prediction with the frozen NTK Theta, plus (1/n_{L-1})
times five parts: the NTK mean's correction H^{1}, the NTK variance A, B, the dNTK-preactivation
correlators P, Q, the first ddNTK's mean R and the second's S, T, U. The NTK-variance part is
printed in the book with the wrong sign (see :func:`mean_prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from pdltlib.prediction import kernel_prediction, kernel_prediction_derivative, transfer_matrix

__all__ = [
    "flatten",
    "taylor_dynamics",
    "AlgorithmProjectors",
    "gradient_descent_projectors",
    "newton_projectors",
    "TrainedOutput",
    "trained_output",
    "perturbative_dynamics",
    "MeanPrediction",
    "mean_prediction",
]


# ----------------------------------------------------------------------------------------------
# flattening (neuron, input) pairs


def _flat(tensor: np.ndarray, rank: int) -> np.ndarray:
    """(..., i_1..i_rank, d_1..d_rank) -> (..., M, ..., M) with flat index d n_L + i."""
    lead = tensor.ndim - 2 * rank
    n_out, n_in = tensor.shape[lead], tensor.shape[lead + rank]
    order = [*range(lead)] + [lead + rank + k if j == 0 else lead + k for k in range(rank)
                              for j in (0, 1)]  # fmt: skip
    return np.transpose(tensor, order).reshape(*tensor.shape[:lead], *(n_in * n_out,) * rank)


def flatten(ntk=None, dntk=None, ddih=None, ddiih=None) -> tuple[np.ndarray | None, ...]:
    """The book's tensors with neural indices first and sample indices last (the layout of
    :mod:`pdltlib.ntk`, :mod:`pdltlib.dntk`, :mod:`pdltlib.ddntk`) as tensors of flat indices
    p = delta n_L + i, shapes (..., M, M), (..., M, M, M), (..., M, M, M, M) with M = N_D n_L.

    Leading axes (an ensemble) are kept; None stays None. Outputs z of shape (..., N_D, n_L) and
    labels flatten by ``reshape`` alone. Not in the book: the index convention of this module.
    """
    tensors = (ntk, dntk, ddih, ddiih)
    ranks = (2, 3, 4, 4)
    return tuple(
        None if t is None else _flat(np.asarray(t, dtype=np.float64), r)
        for t, r in zip(tensors, ranks, strict=True)
    )


# ----------------------------------------------------------------------------------------------
# input checks


def _eta(eta, *, allow_zero: bool) -> float:
    if isinstance(eta, bool) or not isinstance(eta, Real) or not np.isfinite(eta):
        raise ValueError(f"eta must be a finite number, got {eta!r}")
    if eta < 0 or (eta == 0 and not allow_zero):
        raise ValueError(f"eta must be {'>= 0' if allow_zero else '> 0'}, got {eta!r}")
    return float(eta)


def _steps(steps) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer or None, got {steps!r}")
    return int(steps)


def _network(z, ntk, dntk, ddih, ddiih, y_train):
    """Validate one network (or a stack) and return flat arrays z, y, H, dH, I, J and N, M."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if z.ndim < 2:
        raise ValueError(f"z must have shape (..., N_D, n_L), got {z.shape}")
    n_inputs, n_out = z.shape[-2:]
    y = y[:, None] if y.ndim == 1 and n_out == 1 else y
    if y.ndim != 2 or y.shape[1] != n_out or not 1 <= y.shape[0] <= n_inputs:
        raise ValueError(
            f"y_train must have shape (N_A, n_L) with n_L = {n_out} and 1 <= N_A <= N_D = "
            f"{n_inputs}, got {np.shape(y_train)}"
        )
    lead = z.shape[:-2]
    expected = {
        "ntk": (n_out,) * 2 + (n_inputs,) * 2,
        "dntk": (n_out,) * 3 + (n_inputs,) * 3,
        "ddih": (n_out,) * 4 + (n_inputs,) * 4,
        "ddiih": (n_out,) * 4 + (n_inputs,) * 4,
    }
    given = {"ntk": ntk, "dntk": dntk, "ddih": ddih, "ddiih": ddiih}
    arrays = {}
    for name, value in given.items():
        if value is None:
            arrays[name] = None
            continue
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != lead + expected[name]:
            raise ValueError(f"{name} must have shape {lead + expected[name]}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite values")
        arrays[name] = arr
    if arrays["ntk"] is None:
        raise ValueError("ntk is required")
    if not np.all(np.isfinite(z)) or not np.all(np.isfinite(y)):
        raise ValueError("z and y_train must be finite")
    h, dh, ddih_f, ddiih_f = flatten(*arrays.values())
    m = n_inputs * n_out
    zeros = lambda rank: np.zeros(lead + (m,) * rank)  # noqa: E731
    dh = zeros(3) if dh is None else dh
    ddih_f = zeros(4) if ddih_f is None else ddih_f
    ddiih_f = zeros(4) if ddiih_f is None else ddiih_f
    n = y.shape[0] * n_out
    return z.reshape(*lead, m), y.reshape(n), h, dh, ddih_f, ddiih_f, n, (n_inputs, n_out)


def _training_block(h: np.ndarray, n: int, name: str = "ntk") -> np.ndarray:
    block = h[..., :n, :n]
    if np.any(np.abs(block - np.swapaxes(block, -1, -2)) > 1e-10 * np.abs(block).max()):
        raise ValueError(f"{name}'s training block must be symmetric")
    if np.any(np.linalg.eigvalsh((block + np.swapaxes(block, -1, -2)) / 2)[..., 0] <= 0):
        raise ValueError(f"{name}'s training block must be positive definite")
    return block


def _check_convergent(block: np.ndarray, eta: float, name: str = "ntk") -> None:
    top = np.linalg.eigvalsh(block)[..., -1]
    if np.any(eta * top >= 2):
        raise ValueError(
            f"eta = {eta:.6g} must be below 2 / lambda_max({name}_AA) = {2 / np.max(top):.6g}: "
            "gradient descent does not converge there (book footnote 16 of section ∞.2.2)"
        )


# ----------------------------------------------------------------------------------------------
# the dynamics (∞.81)-(∞.83), iterated


def taylor_dynamics(
    z, ntk, dntk, ddih, ddiih, y_train, eta: float | None, steps: int | None = None, *,
    algorithm: str = "gradient descent",
) -> np.ndarray:  # fmt: skip
    """Iterate the coupled difference equations (∞.81)-(∞.83) for ``steps`` steps.

    These are the exact gradient-descent updates of the output, the NTK and the dNTK truncated
    at order 1/n (the ddNTKs are constant, the dNTK moves at order eta, the NTK at order eta^2,
    the output at order eta^3; see the module docstring). With ``algorithm="newton"`` it takes
    instead the two second-order updates of section ∞.2.1, (∞.68)/(∞.70): each replaces
    eta eps by the Newton step (H_AA(t))^{-1} eps of the current NTK (the giant leap (∞.71),
    then the small step (∞.77), both with the exact inverse).

    Args:
        z: initial outputs (..., N_D, n_L) on D = A u B (the N_A training inputs first).
        ntk, dntk, ddih, ddiih: the network's NTK (8.5), dNTK (11.8) and ddNTKs (∞.5), (∞.7) on
            D, in the layout of :mod:`pdltlib.ntk`, :mod:`pdltlib.dntk`, :mod:`pdltlib.ddntk`
            (None for a differential means zero). Leading axes are networks.
        y_train: labels (N_A, n_L).
        eta: global learning rate (> 0) of gradient descent (None for Newton).
        steps: number of gradient-descent steps (>= 0); Newton always takes two.
        algorithm: "gradient descent" or "newton".

    Returns:
        The outputs after the steps, shape of ``z``.
    """
    z0, y, h, dh, ddih_f, ddiih_f, n, shape = _network(z, ntk, dntk, ddih, ddiih, y_train)
    if algorithm == "gradient descent":
        eta = _eta(eta, allow_zero=False)
        steps = _steps(steps)
        if steps is None:
            raise ValueError("steps must be a non-negative integer for gradient descent")
    elif algorithm == "newton":
        eta, steps = 1.0, 2
    else:
        raise ValueError(f"algorithm must be 'gradient descent' or 'newton', got {algorithm!r}")
    a = slice(0, n)
    dh_rate = ddih_f + ddiih_f + np.swapaxes(ddiih_f, -2, -3)  # (∞.83)
    h_rate = ddih_f + np.swapaxes(ddih_f, -3, -4) + 2 * ddiih_f  # (∞.82)
    out = z0
    for _ in range(steps):
        eps = out[..., a] - y
        if algorithm == "newton":  # kappa = H_AA(t)^{-1}: (∞.71), (∞.77)
            eps = np.linalg.solve(h[..., a, a], eps[..., None])[..., 0]
        out = (
            out
            - eta * np.einsum("...da,...a->...d", h[..., :, a], eps)
            + eta**2 / 2 * np.einsum("...dab,...a,...b->...d", dh[..., :, a, a], eps, eps)
            - eta**3
            / 6
            * np.einsum("...dabc,...a,...b,...c->...d", ddih_f[..., :, a, a, a], eps, eps, eps)
        )
        dh_sym = dh + np.swapaxes(dh, -2, -3)
        h = (
            h
            - eta * np.einsum("...pqb,...b->...pq", dh_sym[..., a], eps)
            + eta**2 / 2 * np.einsum("...pqbc,...b,...c->...pq", h_rate[..., a, a], eps, eps)
        )
        dh = dh - eta * np.einsum("...pqrb,...b->...pqr", dh_rate[..., a], eps)
    return out.reshape(*out.shape[:-1], *shape)


# ----------------------------------------------------------------------------------------------
# algorithm projectors (∞.107)-(∞.110), (∞.135), (∞.138)-(∞.153)


@dataclass(frozen=True)
class AlgorithmProjectors:
    """The algorithm projectors of the universal fully-trained solution (∞.141)/(∞.154).

    Tensors over training indices (flat (neuron, input) pairs when built from a network's own
    NTK): ``Z_A``, ``Z_B`` of shape (..., N, N, N, N) weigh the two dNTK terms,
    ``Z_IA``, ``Z_IB`` the first ddNTK's and ``Z_IIA``, ``Z_IIB`` the second ddNTK's, shape
    (..., N,)*6. ``algorithm`` names the training algorithm they describe.

    Book: (∞.142)-(∞.147) (gradient descent), (∞.149)-(∞.151) (gradient flow), (∞.148) (two
    second-order updates).
    """

    Z_A: np.ndarray
    Z_B: np.ndarray
    Z_IA: np.ndarray
    Z_IB: np.ndarray
    Z_IIA: np.ndarray
    Z_IIB: np.ndarray
    algorithm: str


def _inverting_tensors(g: np.ndarray, eta: float):
    """X_I = G^{-1}, X_II (∞.107) and X_III (∞.110) (at eta = 0: (∞.152)-(∞.153))."""
    n = g.shape[-1]
    lead = g.shape[:-2]
    eye = np.broadcast_to(np.eye(n), g.shape)
    x1 = np.linalg.inv(g)
    # (∞.107): X_II^{12 34} [G_35 d_46 + d_35 G_46 - eta G_35 G_46] = d_15 d_26
    m2 = (
        np.einsum("...ac,...bd->...abcd", g, eye)
        + np.einsum("...ac,...bd->...abcd", eye, g)
        - eta * np.einsum("...ac,...bd->...abcd", g, g)
    )
    x2 = np.linalg.inv(m2.reshape(*lead, n * n, n * n)).reshape(*lead, n, n, n, n)
    pair = lambda u, v, w: np.einsum("...ad,...be,...cf->...abcdef", u, v, w)  # noqa: E731
    m3 = (
        pair(g, eye, eye) + pair(eye, g, eye) + pair(eye, eye, g)
        - eta * (pair(g, g, eye) + pair(g, eye, g) + pair(eye, g, g))
        + eta**2 * pair(g, g, g)
    )  # fmt: skip
    x3 = np.linalg.inv(m3.reshape(*lead, n**3, n**3)).reshape(*lead, *(n,) * 6)
    return x1, x2, x3


def gradient_descent_projectors(ntk_train, eta: float) -> AlgorithmProjectors:
    """The algorithm projectors of many steps of gradient descent with step ``eta`` trained to
    convergence, (∞.142)-(∞.147), built from the inverting tensors (∞.107)-(∞.110) and the
    shorthands Y_1 (∞.135), Y_2 (∞.138), Y_3 (∞.139), Y_4 (∞.140); ``eta = 0`` is gradient
    flow, (∞.149)-(∞.153).

    Args:
        ntk_train: the NTK on the training set, (..., N, N): the mean NTK Theta_AA (sample
            indices, as in the book's ensemble formulas) or a network's own flattened training
            block (then the projectors are exact for that network; see the module docstring).
        eta: global learning rate, 0 <= eta < 2 / lambda_max (footnote 24 of section ∞.2.3:
            Z_A diverges as eta -> 2 / lambda_max).

    Returns:
        :class:`AlgorithmProjectors`.
    """
    g = np.asarray(ntk_train, dtype=np.float64)
    if g.ndim < 2 or g.shape[-1] != g.shape[-2] or g.shape[-1] == 0:
        raise ValueError(f"ntk_train must have shape (..., N, N), got {g.shape}")
    block = _training_block(g, g.shape[-1], "ntk_train")
    eta = _eta(eta, allow_zero=True)
    _check_convergent(block, eta, "ntk_train")
    x1, x2, x3 = _inverting_tensors(block, eta)
    e = np.einsum
    y1 = e("...abde,...cf->...abcdef", x2, x1) - e("...cg,...abgdef->...abcdef", x1, x3)  # ∞.135
    y2 = e("...ac,...bd->...abcd", x1, x1) - e("...be,...aecd->...abcd", x1, x2)  # ∞.138
    y3 = (
        e("...ad,...be,...cf->...abcdef", x1, x1, x1)
        - e("...bg,...agde,...cf->...abcdef", x1, x2, x1)
        - e("...ad,...cg,...bgef->...abcdef", x1, x1, x2)
        + e("...ci,...bigh,...aghdef->...abcdef", x1, x2, x3)
    )  # (∞.139)
    y4 = e("...ad,...bcef->...abcdef", x1, x2) - e("...bcgh,...aghdef->...abcdef", x2, x3)  # ∞.140
    perm = lambda t, p: np.transpose(t, (*range(t.ndim - 6), *(t.ndim - 6 + i for i in p)))  # noqa: E731
    return AlgorithmProjectors(
        Z_A=y2,  # (∞.142)
        Z_B=y2 + eta / 2 * x2,  # (∞.143)
        Z_IA=-y3 - eta / 2 * y4,  # (∞.144)
        Z_IB=-y3 - eta / 2 * y4 - eta / 2 * y1 - eta**2 / 6 * x3,  # (∞.145)
        Z_IIA=-y3,  # (∞.146)
        Z_IIB=-y3
        - perm(y3, (1, 0, 2, 4, 3, 5))
        - perm(y3, (0, 2, 1, 3, 5, 4))
        - eta * y4
        - eta * y1,  # (∞.147)
        algorithm="gradient flow" if eta == 0 else f"gradient descent (eta = {eta:.6g})",
    )


def newton_projectors(ntk_train) -> AlgorithmProjectors:
    """The algorithm projectors (∞.148) of the two second-order updates of section ∞.2.1 (a
    Newton-like giant leap with the network's NTK inverse (∞.71), then the small step (∞.77)):
    Z_B = (1/2) G^{-1} G^{-1}, Z_IB = -(1/6) G^{-1} G^{-1} G^{-1}, all others zero.

    Args:
        ntk_train: the NTK on the training set, (..., N, N) (see
            :func:`gradient_descent_projectors`).
    """
    g = np.asarray(ntk_train, dtype=np.float64)
    if g.ndim < 2 or g.shape[-1] != g.shape[-2] or g.shape[-1] == 0:
        raise ValueError(f"ntk_train must have shape (..., N, N), got {g.shape}")
    x1 = np.linalg.inv(_training_block(g, g.shape[-1], "ntk_train"))
    zero4 = np.zeros(g.shape[:-2] + (g.shape[-1],) * 4)
    zero6 = np.zeros(g.shape[:-2] + (g.shape[-1],) * 6)
    return AlgorithmProjectors(
        Z_A=zero4,
        Z_B=0.5 * np.einsum("...ac,...bd->...abcd", x1, x1),
        Z_IA=zero6,
        Z_IB=-np.einsum("...ad,...be,...cf->...abcdef", x1, x1, x1) / 6,
        Z_IIA=zero6,
        Z_IIB=zero6,
        algorithm="two second-order updates (Newton)",
    )


# ----------------------------------------------------------------------------------------------
# the universal fully-trained solution (∞.141)/(∞.154), one network


@dataclass(frozen=True)
class TrainedOutput:
    """A trained output split into its parts, each of shape (..., N_D, n_L).

    Attributes:
        free: the free (linear-model) part: training with the network's own frozen NTK,
            (∞.88)-(∞.93).
        dntk: the dNTK terms (Z_A, Z_B of (∞.141)).
        ddntk_1: the first ddNTK's terms (Z_IA, Z_IB).
        ddntk_2: the second ddNTK's terms (Z_IIA, Z_IIB).

    Book: the decomposition (∞.94) into free and interacting parts, with the interacting part
    split as in (∞.141).
    """

    free: np.ndarray
    dntk: np.ndarray
    ddntk_1: np.ndarray
    ddntk_2: np.ndarray

    @property
    def interaction(self) -> np.ndarray:
        """z^I, the sum of the three NTK-differential parts."""
        return self.dntk + self.ddntk_1 + self.ddntk_2

    @property
    def total(self) -> np.ndarray:
        """The trained output z = z^F + z^I."""
        return self.free + self.interaction


def _terms(proj: AlgorithmProjectors, interp, n, dh, ddih, ddiih, eps=None):
    """The three interaction parts of (∞.141) on every input of D (flat, (..., M) each).

    With ``eps`` (..., N) the tensors are one network's dH (..., M, M, M) and ddNTKs; without
    it they are the *moments* E[dH_pqr eps_s eps_t] (M, M, M, N, N) and
    E[ddNTK_pqrs eps eps eps] (M,)*4 + (N,)*3, whose contraction gives the ensemble mean.
    ``interp`` (..., M, N) = G_DA G_AA^{-1} makes the brackets of (∞.141): X_d - interp_db X_b.
    """
    a = slice(0, n)
    e = np.einsum
    if eps is not None:
        w2 = {k: e("...pqst,...s,...t->...pq", getattr(proj, k), eps, eps) for k in ("Z_A", "Z_B")}
        w3 = {
            k: e("...pqrabc,...a,...b,...c->...pqr", getattr(proj, k), eps, eps, eps)
            for k in ("Z_IA", "Z_IB", "Z_IIA", "Z_IIB")
        }
        v = (
            e("...pdq,...pq->...d", dh[..., a, :, a], w2["Z_A"])
            + e("...dpq,...pq->...d", dh[..., :, a, a], w2["Z_B"]),
            e("...pdqr,...pqr->...d", ddih[..., a, :, a, a], w3["Z_IA"])
            + e("...dpqr,...pqr->...d", ddih[..., :, a, a, a], w3["Z_IB"]),
            e("...pqdr,...pqr->...d", ddiih[..., a, a, :, a], w3["Z_IIA"])
            + e("...dpqr,...pqr->...d", ddiih[..., :, a, a, a], w3["Z_IIB"]),
        )
    else:
        v = (
            e("pdqst,pqst->d", dh[a, :, a], proj.Z_A) + e("dpqst,pqst->d", dh[:, a, a], proj.Z_B),
            e("pdqrabc,pqrabc->d", ddih[a, :, a, a], proj.Z_IA)
            + e("dpqrabc,pqrabc->d", ddih[:, a, a, a], proj.Z_IB),
            e("pqdrabc,pqrabc->d", ddiih[a, a, :, a], proj.Z_IIA)
            + e("dpqrabc,pqrabc->d", ddiih[:, a, a, a], proj.Z_IIB),
        )
    return tuple(t - e("...db,...b->...d", interp, t[..., a]) for t in v)


def _interpolation(g: np.ndarray, n: int) -> np.ndarray:
    """G_DA G_AA^{-1}, (..., M, N)."""
    return np.swapaxes(np.linalg.solve(g[..., :n, :n], np.swapaxes(g[..., :, :n], -1, -2)), -1, -2)


def _projectors(algorithm: str, g_train: np.ndarray, eta) -> AlgorithmProjectors:
    if algorithm == "gradient descent":
        if eta is None:
            raise ValueError("eta is required for algorithm='gradient descent' (0: gradient flow)")
        return gradient_descent_projectors(g_train, eta)
    if algorithm == "newton":
        return newton_projectors(g_train)
    raise ValueError(f"algorithm must be 'gradient descent' or 'newton', got {algorithm!r}")


def _kron_outputs(theta: np.ndarray, n_out: int) -> np.ndarray:
    """Theta_{d1 d2} delta_{i1 i2} as a flat (M, M) matrix."""
    n_in = theta.shape[-1]
    return np.einsum("ab,ij->aibj", theta, np.eye(n_out)).reshape(n_in * n_out, n_in * n_out)


def trained_output(
    z,
    ntk,
    dntk,
    ddih,
    ddiih,
    y_train,
    *,
    eta: float | None = None,
    algorithm: str = "gradient descent",
    mean_ntk=None,
) -> TrainedOutput:
    """The fully trained output of one network (or a stack) in the universal form (∞.141)/(∞.154).

    z(T) = z^F + sum of six NTK-differential terms, each the differential with one index on the
    input d minus its kernel interpolation from the training set, contracted with two or three
    initial errors eps = z_A - y and an algorithm projector:

        + [dH_{a1 d a2}] Z_A eps eps + [dH_{d a1 a2}] Z_B eps eps
        + [ddIH_{a1 d a2 a3}] Z_IA eps^3 + [ddIH_{d a1a2a3}] Z_IB eps^3
        + [ddIIH_{a1 a2 d a3}] Z_IIA eps^3 + [ddIIH_{d a1a2a3}] Z_IIB eps^3,

    [X_d] = X_d - sum G_{d b} (G_AA^{-1})_{b b'} X_{b'} (flat indices, module docstring). The free
    part is exact: z^F = z - H_DA H_AA^{-1} eps with the network's own NTK (the book expands this
    inverse to second order in the NTK fluctuation, (∞.71), (∞.154)).

    Args:
        z, ntk, dntk, ddih, ddiih, y_train: as in :func:`taylor_dynamics` (leading axes are
            networks).
        eta: the learning rate of gradient descent (0 = gradient flow); unused for Newton.
        algorithm: "gradient descent" (projectors (∞.142)-(∞.147)) or "newton" (the two
            updates of section ∞.2.1, projectors (∞.148)).
        mean_ntk: None to build the projectors and brackets from the network's own NTK G = H
            (exact to first order in the differentials); or the mean NTK on D, (N_D, N_D) in
            sample indices, G = mean_ntk x delta_ij, as the book does (the difference is
            O(n^{-3/2}) per network, O(1/n^2) on average).

    Returns:
        :class:`TrainedOutput`.
    """
    z0, y, h, dh, ddih_f, ddiih_f, n, shape = _network(z, ntk, dntk, ddih, ddiih, y_train)
    if mean_ntk is None:
        g = h
    else:
        theta = np.asarray(mean_ntk, dtype=np.float64)
        if theta.shape != (shape[0], shape[0]):
            raise ValueError(f"mean_ntk must have shape (N_D, N_D) = {(shape[0],) * 2}")
        g = _kron_outputs(theta, shape[1])
    proj = _projectors(algorithm, _training_block(g, n), eta)
    eps = z0[..., :n] - y
    free = z0 - np.einsum("...da,...a->...d", transfer_matrix(h, n), eps)
    parts = _terms(proj, _interpolation(g, n), n, dh, ddih_f, ddiih_f, eps)
    return TrainedOutput(*(p.reshape(*p.shape[:-1], *shape) for p in (free, *parts)))


# ----------------------------------------------------------------------------------------------
# first-order perturbation theory at any step t (the block-triangular propagator)


def _propagator(h, dh, ddih, ddiih, eps0, n, eta):
    """The linear step of the first-order dynamics on the state
    w = (z^I (M), e1 (N), e2 (N, N), e3 (N, N, N), Q (M, N, N)), e_k = (eps^F)^{(x)k},
    Q_{dab} = H^I_{da} e1_b, as a matrix T (w(t+1) = T w(t)), for one network (flat arrays)."""
    m = h.shape[0]
    a = slice(0, n)
    e = np.einsum
    hinv = np.linalg.inv(h[a, a])
    w0 = hinv @ eps0  # a(t) = w0 - H^{-1} e1(t), (∞.92)
    u = np.eye(n) - eta * h[a, a]
    c = ddih + ddiih + np.swapaxes(ddiih, 1, 2)  # dNTK rate (∞.83)
    c_ddd = c[:, a, a, a]
    s = dh[:, a, a] + np.swapaxes(dh[a, :, a], 0, 1)  # dH_{d a c} + dH_{a d c}
    cs = c[:, a, a, a] + np.swapaxes(c[a, :, a, a], 0, 1)  # C_{d a c b} + C_{a d c b}
    es = (ddih + np.swapaxes(ddih, 0, 1) + 2 * ddiih)[:, a, a, a]  # NTK rate (∞.82)
    sizes = (m, n, n * n, n**3, m * n * n)
    dim = sum(sizes)

    def step(state):  # state (K, dim), K basis vectors at once
        k = state.shape[0]
        zi, e1, e2, e3, q = np.split(state, np.cumsum(sizes)[:-1], axis=1)
        e2, e3, q = e2.reshape(k, n, n), e3.reshape(k, n, n, n), q.reshape(k, m, n, n)
        force = (
            -e("kdaa->kd", q)
            + eta
            / 2
            * (
                e("dab,kab->kd", dh[:, a, a], e2)
                - e("dabc,c,kab->kd", c_ddd, w0, e2)
                + e("dabc,cf,kfab->kd", c_ddd, hinv, e3)
            )
            - eta**2 / 6 * e("dabc,kabc->kd", ddih[:, a, a, a], e3)
        )  # the damping force (∞.119) with dH(t) of (∞.102)
        zi_next = zi - eta * e("da,ka->kd", h[:, a], zi[:, a]) + eta * force  # (∞.118)
        change = (
            -eta * e("dae,kec->kdac", s, e2)
            + eta * e("daeb,b,kec->kdac", cs, w0, e2)
            - eta * e("daeb,bf,kfec->kdac", cs, hinv, e3)
            + eta**2 / 2 * e("daef,kefc->kdac", es, e3)
        )  # (H^I(t+1) - H^I(t))_{da} e1_c, from (∞.82) with dH(t)
        q_next = e("kdac,bc->kdab", q + change, u)
        return np.concatenate(
            [
                zi_next,
                e1 @ u.T,
                e("ac,bd,kcd->kab", u, u, e2).reshape(k, -1),
                e("ad,be,cf,kdef->kabc", u, u, u, e3).reshape(k, -1),
                q_next.reshape(k, -1),
            ],
            axis=1,
        )

    transfer = step(np.eye(dim)).T  # column j = step(basis vector j)
    start = np.concatenate(
        [np.zeros(m), eps0, np.outer(eps0, eps0).ravel(),
         np.einsum("a,b,c->abc", eps0, eps0, eps0).ravel(), np.zeros(m * n * n)]
    )  # fmt: skip
    return transfer, start


def _first_order(h, dh, ddih, ddiih, eps0, n, eta, steps):
    """z^I on D (flat) after ``steps`` steps (None: the end of training), one network."""
    m = h.shape[0]
    transfer, start = _propagator(h, dh, ddih, ddiih, eps0, n, eta)
    if steps is not None:
        return (np.linalg.matrix_power(transfer, steps) @ start)[:m]
    # test rows of z^I only accumulate; everything else decays: z^I_B(inf) = T_Bv (1 - T_v)^-1 v0
    keep = np.r_[np.arange(n), np.arange(m, transfer.shape[0])]
    t_v = transfer[np.ix_(keep, keep)]
    t_bv = transfer[np.ix_(np.arange(n, m), keep)]
    total = np.linalg.solve(np.eye(len(keep)) - t_v, start[keep])
    return np.concatenate([np.zeros(n), t_bv @ total])


def perturbative_dynamics(
    z, ntk, dntk, ddih, ddiih, y_train, eta: float, steps: int | None = None
) -> TrainedOutput:
    """The solution of the dynamics (∞.81)-(∞.83) after ``steps`` steps of gradient descent,
    exact in the network's own frozen NTK and to first order in dH, ddIH, ddIIH.

    The free part is (∞.88)/(∞.91), z^F(t) = z - H_DA H_AA^{-1} [1 - (1 - eta H_AA)^t] eps(0);
    the interacting part z^I(t) solves (∞.118)-(∞.119) with the dynamical dNTK (∞.102) and
    interaction NTK (∞.105): as the module docstring explains, it is the t-th power of one
    block-triangular matrix applied to the initial state (at ``steps=None``, the end of
    training, its resolvent). This matches :func:`trained_output` with the network's own
    projectors as t -> infinity; each part is the solution with only that differential kept.

    Args:
        z, ntk, dntk, ddih, ddiih, y_train: as in :func:`taylor_dynamics`.
        eta: global learning rate, 0 < eta < 2 / lambda_max(H_AA).
        steps: number of steps t >= 0, or None for t -> infinity.

    Returns:
        :class:`TrainedOutput` at step t.
    """
    z0, y, h, dh, ddih_f, ddiih_f, n, shape = _network(z, ntk, dntk, ddih, ddiih, y_train)
    eta = _eta(eta, allow_zero=False)
    steps = _steps(steps)
    _check_convergent(_training_block(h, n), eta)
    eps = z0[..., :n] - y
    free = z0 - np.einsum(
        "...da,...a->...d", transfer_matrix(h, n, eta=None if steps is None else eta,
                                            steps=steps), eps
    )  # fmt: skip
    lead = z0.shape[:-1]
    m = z0.shape[-1]
    parts = np.zeros((3, int(np.prod(lead, dtype=int)), m))
    flat = [x.reshape(-1, *x.shape[len(lead) :]) for x in (h, dh, ddih_f, ddiih_f, eps)]
    zero3, zero4 = np.zeros((m,) * 3), np.zeros((m,) * 4)
    for s, (hs, dhs, ih, iih, es) in enumerate(zip(*flat, strict=True)):
        for p, args in enumerate(((dhs, zero4, zero4), (zero3, ih, zero4), (zero3, zero4, iih))):
            parts[p, s] = _first_order(hs, *args, es, n, eta, steps)
    parts = parts.reshape(3, *lead, m)
    return TrainedOutput(*(p.reshape(*lead, *shape) for p in (free, *parts)))


# ----------------------------------------------------------------------------------------------
# the mean prediction of the trained ensemble at order 1/n (∞.155)-(∞.160)


class _InverseWidthParts:
    """The parts of a 1/n expansion, kernel + correction / n_{L-1}: the shared accessors of
    :class:`MeanPrediction` and :class:`pdltlib.trained_covariance.CovariancePrediction`, whose
    ``linear_model`` property sums their linear-model parts."""

    _quantity: ClassVar[str]

    @property
    def interaction(self) -> np.ndarray:
        """The 1/n coefficient added by the NTK differentials (network minus linear model)."""
        if self.dntk is None:
            raise ValueError(
                "no dNTK/ddNTK statistics were given (an NTK flow): only the linear-model "
                f"part of the {self._quantity} is available"
            )
        return self.dntk + self.ddntk_1 + self.ddntk_2

    @property
    def correction(self) -> np.ndarray:
        """The whole 1/n coefficient."""
        return self.linear_model + self.interaction

    def at(self, width: float) -> np.ndarray:
        """kernel + correction / width: the value at hidden width n_{L-1} = ``width``."""
        if isinstance(width, bool) or not isinstance(width, Real) or not width > 0:
            raise ValueError(f"width must be a number > 0, got {width!r}")
        return self.kernel + self.correction / width


@dataclass(frozen=True)
class MeanPrediction(_InverseWidthParts):
    """The mean output of the fully trained ensemble on D, E[z(T)] = kernel + correction / n
    + O(1/n^2), n = n_{L-1}, each array of shape (N_D, n_L) (training inputs first).

    Attributes:
        kernel: the kernel prediction Theta_DA Theta_AA^{-1} y with the frozen NTK (10.40).
        ntk_mean: the NTK mean's correction H^{1} (9.3) moving the kernel prediction
            (:func:`pdltlib.prediction.kernel_prediction_derivative`).
        ntk_fluctuation: the NTK variance A, B (the free part at second order in the NTK
            fluctuation, (∞.157) with its sign corrected).
        dntk, ddntk_1, ddntk_2: the dNTK (P, Q), first-ddNTK (R) and second-ddNTK (S, T, U)
            parts (∞.158)-(∞.160), which depend on the algorithm through its projectors; None
            when no dNTK statistics were given (kinked activations, whose ddNTK statistics
            diverge: only the linear-model part is then predicted).
        algorithm: the training algorithm of the projectors (None without dNTK statistics).

    The 1/n coefficients carry no 1/n: ``at(n)`` adds them up.
    Book: (∞.155)-(∞.160).
    """

    kernel: np.ndarray
    ntk_mean: np.ndarray
    ntk_fluctuation: np.ndarray
    dntk: np.ndarray | None = None
    ddntk_1: np.ndarray | None = None
    ddntk_2: np.ndarray | None = None
    algorithm: str | None = None
    _quantity: ClassVar[str] = "mean"

    @property
    def linear_model(self) -> np.ndarray:
        """The 1/n coefficient of the mean of the networks' own linear models (free part)."""
        return self.ntk_mean + self.ntk_fluctuation


def _statistic(flow, name: str, shape: tuple[int, ...]) -> np.ndarray:
    value = getattr(flow, name, None)
    if value is None:
        raise ValueError(f"the flows must provide {name} (dntk_fluctuation_flow(..., ddntk=True))")
    value = np.asarray(value, dtype=np.float64)
    if value.shape[1:] != shape:
        raise ValueError(
            f"{name} must have shape (L, {', '.join(map(str, shape))}) for the inputs D: pass x "
            f"of shape (N_D, n_0) to the flows, got {value.shape}"
        )
    return value[-1]


def _flow_and_labels(stats, y_train) -> tuple[np.ndarray, np.ndarray]:
    """The last layer's Theta (N_D, N_D) of a statistics flow and the labels as (N_A, n_L)."""
    theta = np.asarray(getattr(stats, "Theta", None), dtype=np.float64)
    if theta.ndim != 3 or theta.shape[1] != theta.shape[2]:
        raise ValueError("stats must be a statistics flow of inputs x of shape (N_D, n_0)")
    n_in = theta.shape[1]
    y = np.asarray(y_train, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or not 1 <= y.shape[0] < n_in + 1 or not np.all(np.isfinite(y)):
        raise ValueError(f"y_train must be finite with shape (N_A, n_L), N_A <= {n_in}")
    return theta[-1], y


def _delta_sum(specs, tensors, n_out):
    """sum_k delta(pairs_k) X_k(sample order_k) as a flat (M,)*4 tensor."""
    eye = np.eye(n_out)
    n_in = tensors[0].shape[0]
    total = np.zeros((n_in, n_out) * 4)
    for (pairs, samples), x in zip(specs, tensors, strict=True):
        neural = np.einsum(f"{pairs}->ijkl", eye, eye)
        total += np.einsum(f"ijkl,{samples}->aibjckdl", neural, x)
    return total.reshape((n_in * n_out,) * 4)


def _ntk_variance(a4, b4, n_out: int) -> np.ndarray:
    """n E[Delta H_{p1p2} Delta H_{p3p4}] (8.82) from A, B, as a flat (M,)*4 tensor."""
    return _delta_sum(
        (("ij,kl", "abcd"), ("ik,jl", "acbd"), ("il,jk", "adbc")), (a4, b4, b4), n_out
    )


def _ntk_preactivation(d4, f4, n_out: int) -> np.ndarray:
    """n E[Delta H_{p1p2} z_{p3} z_{p4}] (8.67) from D, F, as a flat (M,)*4 tensor (the book's
    D, F carry the preactivations' samples first, the NTK's last)."""
    return _delta_sum(
        (("ij,kl", "cdab"), ("ik,jl", "cadb"), ("il,jk", "cbda")), (d4, f4, f4), n_out
    )


def _dntk_preactivation(p4, q4, n_out: int) -> np.ndarray:
    """n E[dH_{p0p1p2} z_{p3}] (11.45) from P, Q, as a flat (M,)*4 tensor."""
    return _delta_sum(
        (("il,jk", "abcd"), ("ij,kl", "abcd"), ("ik,jl", "acbd")), (p4, q4, q4), n_out
    )


def _ddntk_means(r4, s4, t4, u4, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """n E[ddIH] (∞.11) from R and n E[ddIIH] (∞.12) from S, T, U, as flat (M,)*4 tensors."""
    specs = (("ij,kl", "abcd"), ("ik,jl", "acdb"), ("il,jk", "adbc"))
    return _delta_sum(specs, (r4, r4, r4), n_out), _delta_sum(specs, (s4, t4, u4), n_out)


def mean_prediction(
    stats,
    y_train,
    *,
    eta: float | None = None,
    algorithm: str = "gradient descent",
) -> MeanPrediction:
    """The ensemble mean of the fully trained output at order 1/n (∞.155)-(∞.160), every part.

    Averages the universal solution (∞.154) over initializations with the output-layer
    statistics: E[H] = Theta + H^{1}/n (9.3); the NTK variance (8.82) (A, B); the
    dNTK-preactivation correlators (11.45) (P, Q); the ddNTK means (∞.11)-(∞.12) (R; S, T, U);
    E[z z] = K at leading order. The free part's first order in the NTK fluctuation averages to
    zero; its second order gives

        ntk_fluctuation_d = - sum [E[dH_{d a} dH_{a' a''}] - (Theta_DA Theta_AA^{-1})_{d b}
                            E[dH_{b a} dH_{a' a''}]] (Theta_AA^{-1})_{a a'} (Theta_AA^{-1} y)_{a''},

    (n times), with a minus sign: the book's (∞.155) adds m^{Delta NTK} with a plus sign, because
    its (∞.154) (and (∞.79)) print both NTK-fluctuation terms with flipped signs; expanding
    z - H_DA H_AA^{-1} (z_A - y) gives -[dH_DA - Theta_DA Theta^{-1} dH_AA] Theta^{-1} eps
    + [dH_DA - ...] Theta^{-1} dH_AA Theta^{-1} eps (chapter ∞ checks this sign against sampled
    networks). The interaction parts contract E[dH eps eps] = -E[dH z] y - y E[dH z] and
    E[ddNTK eps eps eps] = E[ddNTK] E[eps eps eps], E[eps^3] = -(y y y + K y + K y + K y), with the
    algorithm projectors at the frozen NTK (the terms of (∞.158)-(∞.160)).

    Args:
        stats: the statistics of the inputs D, last layer used:
            :func:`pdltlib.dntk_fluctuations.dntk_fluctuation_flow` with ``ddntk=True`` (it
            carries K, Theta, H1, A, B and adds P, Q, R, S, T, U) for every part, or
            :func:`pdltlib.ntk_fluctuations.ntk_fluctuation_flow` for the linear-model part
            alone (e.g. ReLU, whose ddNTK statistics diverge, section ∞.1).
        y_train: labels (N_A, n_L); the first N_A inputs of D are the training set.
        eta: learning rate of gradient descent (0 = gradient flow), for that algorithm.
        algorithm: "gradient descent" or "newton" (see :func:`trained_output`).

    Returns:
        :class:`MeanPrediction`.
    """
    theta, y = _flow_and_labels(stats, y_train)
    n_in = theta.shape[0]
    k, h1 = (_statistic(stats, name, (n_in, n_in)) for name in ("K", "H1"))
    a4, b4 = (_statistic(stats, name, (n_in,) * 4) for name in ("A", "B"))
    n_train, n_out = y.shape
    n = n_train * n_out
    a = slice(0, n)
    g = _kron_outputs(theta, n_out)
    interp = _interpolation(g, n)
    y_flat = y.reshape(n)
    e = np.einsum
    cov = _ntk_variance(a4, b4, n_out)  # the free part at second order
    inv = np.linalg.inv(g[a, a])
    perp = cov - e("db,bpqr->dpqr", interp, cov[a])
    fluct = -e("dpqr,pq,r->d", perp[:, a, a, a], inv, inv @ y_flat)
    shape = (n_in, n_out)
    linear = {
        "kernel": kernel_prediction(theta, y),
        "ntk_mean": kernel_prediction_derivative(theta, h1, y),
        "ntk_fluctuation": fluct.reshape(shape),
    }
    if getattr(stats, "P", None) is None:  # an NTK flow: no differentials
        return MeanPrediction(**linear)
    p4, q4, r4, s4, t4, u4 = (_statistic(stats, name, (n_in,) * 4) for name in "PQRSTU")
    proj = _projectors(algorithm, _training_block(g, n, "Theta"), eta)
    k_flat = _kron_outputs(k, n_out)[a, a]
    dz = _dntk_preactivation(p4, q4, n_out)
    mean_i, mean_ii = _ddntk_means(r4, s4, t4, u4, n_out)
    dh_eps2 = -(e("pqrs,t->pqrst", dz[:, :, :, a], y_flat) + e("pqrt,s->pqrst", dz[:, :, :, a],
                                                                 y_flat))  # fmt: skip
    eps3 = -(
        e("a,b,c->abc", y_flat, y_flat, y_flat) + e("ab,c->abc", k_flat, y_flat)
        + e("ac,b->abc", k_flat, y_flat) + e("bc,a->abc", k_flat, y_flat)
    )  # fmt: skip
    parts = _terms(proj, interp, n, dh_eps2, e("pqrs,abc->pqrsabc", mean_i, eps3),
                   e("pqrs,abc->pqrsabc", mean_ii, eps3))  # fmt: skip
    return MeanPrediction(
        **linear,
        dntk=parts[0].reshape(shape),
        ddntk_1=parts[1].reshape(shape),
        ddntk_2=parts[2].reshape(shape),
        algorithm=proj.algorithm,
    )
