"""Monte Carlo estimators with measured standard errors, and the honest check.

Everything a chapter needs to compare a theory value T with a Monte Carlo estimate M:

* :class:`Estimate` -- a value with a standard error measured from independent replicas
  (networks, or batches of networks), never assumed.
* Neuron-level estimators for an ensemble of preactivations ``z`` of shape
  ``(networks, N_D, n)``: the two-point correlator and the connected four-point correlators,
  including the estimator over neuron pairs i != j that gives each network n(n-1) samples.
  Book: (1.54) defines the connected four-point correlator; (4.43) says what it is for an MLP.
* :func:`honest_check` / :func:`assert_checks` -- the check of DESIGN.md: |M - T| <= k s + tau,
  with the power requirement |T - T_inf| >= 3 s for finite-width claims, and an agreement table.
* Weighted least-squares fits (power laws, expansions in 1/n) with coefficient errors, so a
  chapter can compare a fitted 1/n coefficient with the theory's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Estimate",
    "mean_estimate",
    "controlled_mean",
    "jackknife",
    "two_point",
    "connected_four_point_pairs",
    "connected_four_point_same_neuron",
    "excess_kurtosis",
    "normalized_six_point_triples",
    "Check",
    "honest_check",
    "assert_checks",
    "AgreementTable",
    "Table",
    "weighted_least_squares",
    "fit_power_law",
    "fit_inverse_width",
    "ResidualSlope",
    "residual_slope",
]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate ``value`` with standard error ``stderr`` from ``n`` replicas.

    ``value`` and ``stderr`` are floats or arrays of the same shape.

    Not in the book: the Monte Carlo side of the honest check (DESIGN.md).
    """

    value: float | np.ndarray
    stderr: float | np.ndarray
    n: int

    def __getitem__(self, index) -> Estimate:
        return Estimate(np.asarray(self.value)[index], np.asarray(self.stderr)[index], self.n)

    def scaled(self, factor: float) -> Estimate:
        """The estimate of ``factor * quantity`` (for example n * connected correlator)."""
        return Estimate(self.value * factor, self.stderr * abs(factor), self.n)

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        return f"{format(float(self.value), spec)} ± {format(float(self.stderr), '.2g')}"

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            return format(self, "")
        return f"Estimate(value={self.value}, stderr={self.stderr}, n={self.n})"


def _replicas(samples, name: str = "samples") -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 independent replicas along axis 0")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def mean_estimate(samples) -> Estimate:
    """Mean over independent replicas (axis 0) with standard error std/sqrt(N).

    Not in the book: a Monte Carlo estimator.
    """
    arr = _replicas(samples)
    n = arr.shape[0]
    return Estimate(arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(n), n)


def controlled_mean(values, controls, pilot_values, pilot_controls) -> Estimate:
    """Mean of ``values`` with control variates whose mean is exactly zero.

    Estimates E[Y] by the mean of Y_s - beta . C_s over the replicas s, where each row C_s of
    ``controls`` has exact mean zero (for instance :mod:`pdltlib.ntk_controls`). The
    coefficients beta are the least-squares regression of Y on C (with an intercept) over an
    independent *pilot* ensemble, so beta is independent of the replicas it is applied to and
    the estimator is exactly unbiased, whatever beta is; its standard error is the plain one of
    the adjusted replicas. The variance shrinks by 1 / (1 - R^2), R^2 the fraction of Var[Y]
    the controls explain.

    Args:
        values: Y, (N,) or (N, ...) (each trailing entry gets its own coefficients).
        controls: C, (N, p).
        pilot_values, pilot_controls: the same quantities on an independent pilot ensemble of
            N' > p + 1 replicas.

    Not in the book: a Monte Carlo estimator (control variates with pilot-fitted coefficients).
    """
    y, c = _replicas(values, "values"), _replicas(controls, "controls")
    y_p, c_p = _replicas(pilot_values, "pilot_values"), _replicas(pilot_controls, "pilot_controls")
    if c.ndim != 2 or c_p.ndim != 2 or c.shape[1] != c_p.shape[1]:
        raise ValueError(
            "controls and pilot_controls must be (N, p) with the same p, got "
            f"{c.shape}, {c_p.shape}"
        )
    if y.shape[0] != c.shape[0] or y_p.shape[0] != c_p.shape[0] or y.shape[1:] != y_p.shape[1:]:
        raise ValueError(
            f"values {y.shape} / pilot_values {y_p.shape} do not match their controls "
            f"{c.shape} / {c_p.shape}"
        )
    if c_p.shape[0] <= c_p.shape[1] + 1:
        raise ValueError(
            f"the pilot ensemble needs more than p + 1 = {c_p.shape[1] + 1} replicas, "
            f"got {c_p.shape[0]}"
        )
    design = np.column_stack([np.ones(c_p.shape[0]), c_p])
    beta = np.linalg.lstsq(design, y_p.reshape(y_p.shape[0], -1), rcond=None)[0][1:]
    adjusted = y.reshape(y.shape[0], -1) - c @ beta
    return mean_estimate(adjusted.reshape(y.shape))


def jackknife(
    statistic: Callable[..., np.ndarray], *replicas, n_blocks: int | None = None
) -> Estimate:
    """Delete-one-block jackknife for a smooth function of means.

    Args:
        statistic: maps the means (over axis 0) of each array in ``replicas`` to the quantity,
            e.g. ``lambda m4, m2: m4 - 3 * m2**2``.
        *replicas: arrays whose axis 0 runs over independent replicas (networks).
        n_blocks: number of jackknife blocks (default ``min(N, 200)``).

    Returns:
        The bias-corrected jackknife estimate (the O(1/N) bias of a nonlinear statistic of means
        is removed) and its standard error.

    Not in the book: a Monte Carlo estimator.
    """
    arrays = [_replicas(r, "replicas") for r in replicas]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all replicas arrays must have the same length along axis 0")
    blocks = min(n, 200) if n_blocks is None else int(n_blocks)
    if not 2 <= blocks <= n:
        raise ValueError(f"n_blocks must be between 2 and the number of replicas {n}, got {blocks}")
    labels = np.arange(n) * blocks // n
    sums = [np.stack([a[labels == b].sum(axis=0) for b in range(blocks)]) for a in arrays]
    counts = np.bincount(labels, minlength=blocks).astype(np.float64)
    totals = [s.sum(axis=0) for s in sums]
    full = np.asarray(statistic(*[t / n for t in totals]), dtype=np.float64)
    leave_out = np.stack(
        [
            np.asarray(
                statistic(
                    *[(t - s[b]) / (n - counts[b]) for t, s in zip(totals, sums, strict=True)]
                ),
                dtype=np.float64,
            )
            for b in range(blocks)
        ]
    )
    mean_leave_out = leave_out.mean(axis=0)
    value = blocks * full - (blocks - 1) * mean_leave_out
    stderr = np.sqrt((blocks - 1) / blocks * ((leave_out - mean_leave_out) ** 2).sum(axis=0))
    return Estimate(value, stderr, n)


def _ensemble(z) -> np.ndarray:
    arr = np.asarray(z, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(
            f"z must have shape (networks, N_D, n) -- networks, inputs, neurons; got {arr.shape}"
        )
    if arr.shape[2] < 2:
        raise ValueError("z needs at least 2 neurons (axis 2) for neuron-pair estimators")
    return _replicas(arr, "z")


def _neuron_moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-network neuron averages: M2[a,b], same-neuron M4[a,b,c,d], pair P[a,b,c,d] (i != j)."""
    n = z.shape[2]
    m2 = np.einsum("sai,sbi->sab", z, z) / n
    m4 = np.einsum("sai,sbi,sci,sdi->sabcd", z, z, z, z) / n
    pairs = (n * np.einsum("sab,scd->sabcd", m2, m2) - m4) / (n - 1)
    return m2, m4, pairs


def two_point(z) -> Estimate:
    """E[z_{i;a} z_{i;b}] for an ensemble ``z`` of shape (networks, N_D, n).

    Averages over neurons within each network, then over networks (the replicas). At leading
    order this is the kernel K_{ab} (book eq. 4.41 for the second layer).
    """
    arr = _ensemble(z)
    return mean_estimate(np.einsum("sai,sbi->sab", arr, arr) / arr.shape[2])


def connected_four_point_pairs(z) -> Estimate:
    """Connected E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}] for i != j, shape (N_D,)*4.

    Equals E[z_i z_i z_j z_j] - E[z_i z_i] E[z_j z_j]; by (4.43) it is V_{(a1a2)(a3a4)}/n_{l-1}
    (exactly in the second layer). Each network contributes the average over its n(n-1)
    ordered neuron pairs; errors come from a jackknife over networks.
    """
    m2, _, pairs = _neuron_moments(_ensemble(z))
    return jackknife(lambda p, m: p - np.einsum("ab,cd->abcd", m, m), pairs, m2)


def connected_four_point_same_neuron(z) -> Estimate:
    """Connected E[z_{i;a1} z_{i;a2} z_{i;a3} z_{i;a4}] on one neuron, shape (N_D,)*4.

    The moment minus its three Wick pairings (book eq. 1.54); by (4.43) it equals
    (V_{(a1a2)(a3a4)} + V_{(a1a3)(a2a4)} + V_{(a1a4)(a2a3)}) / n_{l-1}.
    """
    m2, m4, _ = _neuron_moments(_ensemble(z))

    def connected(m4_mean, m2_mean):
        return m4_mean - (
            np.einsum("ab,cd->abcd", m2_mean, m2_mean)
            + np.einsum("ac,bd->abcd", m2_mean, m2_mean)
            + np.einsum("ad,bc->abcd", m2_mean, m2_mean)
        )

    return jackknife(connected, m4, m2)


def excess_kurtosis(z) -> Estimate:
    """Excess kurtosis E[z^4]/E[z^2]^2 - 3 of one neuron, for each input, shape (N_D,).

    Moments are averaged over the n identically distributed neurons within each network, the
    ratio is jackknifed over networks. Zero for a Gaussian; at leading order 3 V/(n K^2)
    (book eq. 4.43 with all neural and sample indices equal).
    """
    arr = _ensemble(z)
    return jackknife(lambda m4, m2: m4 / m2**2 - 3, (arr**4).mean(axis=2), (arr**2).mean(axis=2))


def normalized_six_point_triples(z, input_index: int = 0) -> Estimate:
    """Connected six-point correlator over distinct neurons, normalized by the kernel cubed:

        (E[z_i^2 z_j^2 z_k^2] - 3 E[z^2] E[z_i^2 z_j^2] + 2 E[z^2]^3) / E[z^2]^3,  i, j, k distinct,

    for one input (book eq. 3.57 for deep linear networks). Each network supplies the averages
    over its n(n-1) ordered pairs and n(n-1)(n-2) ordered triples (power sums, O(n)); the ratio
    is jackknifed over networks. Needs n >= 3 neurons.
    """
    arr = _ensemble(z)
    n = arr.shape[2]
    if n < 3:
        raise ValueError("z needs at least 3 neurons (axis 2) for neuron-triple estimators")
    y = arr[:, input_index, :] ** 2
    p1, p2, p3 = y.sum(axis=1), (y**2).sum(axis=1), (y**3).sum(axis=1)
    m1 = p1 / n
    m2 = (p1**2 - p2) / (n * (n - 1))
    m3 = (p1**3 - 3 * p1 * p2 + 2 * p3) / (n * (n - 1) * (n - 2))
    return jackknife(lambda a, b, c: (c - 3 * a * b + 2 * a**3) / a**3, m1, m2, m3)


@dataclass(frozen=True)
class Check:
    """One honest check: is the Monte Carlo estimate ``mc`` consistent with ``theory``?

    Passes when |M - T| <= k s + truncation. A finite-width claim (``infinite_width`` given) is
    *resolvable* only when |T - T_inf| >= power_sigmas * s + truncation: otherwise the check
    could not tell the finite-width theory from the infinite-width one (the truncation alone
    could cover the difference) and is a defect.

    Not in the book: the honest check of DESIGN.md.
    """

    name: str
    theory: float
    mc: Estimate
    truncation: float = 0.0
    k: float = 4.5
    infinite_width: float | None = None
    power_sigmas: float = 3.0

    @property
    def deviation(self) -> float:
        return float(self.mc.value) - self.theory

    @property
    def z(self) -> float:
        """Deviation in units of the standard error."""
        s = float(self.mc.stderr)
        return self.deviation / s if s > 0 else (0.0 if self.deviation == 0 else np.inf)

    @property
    def tolerance(self) -> float:
        return self.k * float(self.mc.stderr) + self.truncation

    @property
    def passed(self) -> bool:
        return abs(self.deviation) <= self.tolerance

    @property
    def power(self) -> float | None:
        """(|T - T_inf| - truncation) / s, or None when no infinite-width alternative is given.

        The distance to the infinite-width answer that the truncation does not already cover,
        in standard errors (0 when the truncation covers all of it).
        """
        if self.infinite_width is None:
            return None
        margin = max(abs(self.theory - self.infinite_width) - self.truncation, 0.0)
        s = float(self.mc.stderr)
        return margin / s if s > 0 else (np.inf if margin > 0 else 0.0)

    @property
    def resolvable(self) -> bool:
        return self.power is None or self.power >= self.power_sigmas

    @property
    def ok(self) -> bool:
        return self.passed and self.resolvable


def honest_check(
    name: str,
    mc: Estimate,
    theory: float,
    *,
    truncation: float = 0.0,
    k: float = 4.5,
    infinite_width: float | None = None,
    power_sigmas: float = 3.0,
) -> Check:
    """Build a :class:`Check` of ``mc`` (an :class:`Estimate` of a scalar) against ``theory``.

    Args:
        name: the quantity, as it should appear in the agreement table.
        mc: Monte Carlo estimate with a measured standard error.
        theory: the theory value T.
        truncation: tau, the theory's stated truncation error (size of the neglected order).
        k: number of standard errors allowed (4 to 5).
        infinite_width: the infinite-width prediction, for finite-width claims (power check).
        power_sigmas: required |T - T_inf| / s.

    Not in the book: the honest check of DESIGN.md.
    """
    if np.ndim(mc.value) != 0:
        raise ValueError(f"mc must be a scalar Estimate for check {name!r}; index it first")
    if not np.isfinite(theory):
        raise ValueError(f"theory value for check {name!r} is not finite: {theory}")
    if truncation < 0:
        raise ValueError(f"truncation must be >= 0, got {truncation}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    return Check(
        name=name,
        theory=float(theory),
        mc=mc,
        truncation=float(truncation),
        k=float(k),
        infinite_width=None if infinite_width is None else float(infinite_width),
        power_sigmas=float(power_sigmas),
    )


class Table:
    """A text/HTML table: subclasses set ``columns`` and implement ``rows()``.

    Not in the book: a utility.
    """

    columns: tuple[str, ...] = ()

    def rows(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def __str__(self) -> str:
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in self.rows()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class AgreementTable(Table):
    """The table a chapter shows: quantity, theory, MC +- s, z-score, tolerance, power, verdict.

    Not in the book: the honest check of DESIGN.md.
    """

    columns = ("quantity", "theory", "MC ± s", "z", "k·s+τ", "∞-width", "power", "verdict")

    def __init__(self, checks: Sequence[Check]):
        self.checks = list(checks)

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for c in self.checks:
            verdict = "ok" if c.ok else ("no power" if c.passed else "FAIL")
            out.append(
                (
                    c.name,
                    f"{c.theory:.6g}",
                    format(c.mc, ".6g"),
                    f"{c.z:+.2f}" if float(c.mc.stderr) > 0 else "exact",
                    f"{c.tolerance:.3g}",
                    "—" if c.infinite_width is None else f"{c.infinite_width:.6g}",
                    "—" if c.power is None else f"{c.power:.1f}σ",
                    verdict,
                )
            )
        return out


def assert_checks(checks: Sequence[Check]) -> AgreementTable:
    """Raise AssertionError (with the table) unless every check passes and has power.

    Returns the :class:`AgreementTable`, so a chapter cell can end with it and show it.

    Not in the book: the honest check of DESIGN.md.
    """
    checks = list(checks)
    if not checks:
        raise ValueError("assert_checks needs at least one check")
    table = AgreementTable(checks)
    bad = [c.name for c in checks if not c.ok]
    if bad:
        raise AssertionError(f"honest check failed for {bad}:\n{table}")
    return table


def weighted_least_squares(design, y, yerr) -> tuple[Estimate, float]:
    """Fit y = design @ beta with independent Gaussian errors ``yerr``.

    Returns the coefficient :class:`Estimate` (array-valued, errors from (A^T W A)^{-1}) and
    chi^2 per degree of freedom (NaN-free: 0 when there are no degrees of freedom).

    Not in the book: a fitting utility.
    """
    a = np.atleast_2d(np.asarray(design, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    yerr = np.asarray(yerr, dtype=np.float64)
    if a.shape[0] != y.shape[0] or y.shape != yerr.shape:
        raise ValueError(f"design {a.shape}, y {y.shape} and yerr {yerr.shape} do not fit")
    if a.shape[0] < a.shape[1]:
        raise ValueError(f"need at least {a.shape[1]} points to fit {a.shape[1]} coefficients")
    if np.any(yerr <= 0) or not np.all(np.isfinite(yerr)):
        raise ValueError("yerr must be finite and > 0")
    w = 1.0 / yerr**2
    cov = np.linalg.inv(a.T @ (a * w[:, None]))
    beta = cov @ (a.T @ (w * y))
    dof = a.shape[0] - a.shape[1]
    chi2 = float(np.sum(w * (y - a @ beta) ** 2))
    return Estimate(beta, np.sqrt(np.diag(cov)), a.shape[0]), (chi2 / dof if dof else 0.0)


def fit_power_law(x, y, yerr) -> tuple[Estimate, Estimate]:
    """Fit y = A x^p in log-log space. Returns (p, A) as Estimates.

    Log errors are yerr / |y|; all y must be positive.

    Not in the book: a fitting utility (for the book's power laws, e.g. (5.92)).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law needs x > 0 and y > 0")
    coef, _ = weighted_least_squares(
        np.stack([np.ones_like(x), np.log(x)], axis=1), np.log(y), np.asarray(yerr) / y
    )
    amplitude = float(np.exp(coef.value[0]))
    return coef[1], Estimate(amplitude, amplitude * float(coef.stderr[0]), coef.n)


def fit_inverse_width(widths, y, yerr, powers: Sequence[int] = (0, 1)) -> dict[int, Estimate]:
    """Fit y(n) = sum_p c_p n^{-p} over ``powers``; returns {p: c_p as Estimate}.

    With powers (0, 1) the c_1 coefficient is the 1/n coefficient to compare with theory.

    Not in the book: a fitting utility for the 1/n expansion (e.g. (4.104)).
    """
    n = np.asarray(widths, dtype=np.float64)
    if np.any(n <= 0):
        raise ValueError("widths must be > 0")
    coef, _ = weighted_least_squares(np.stack([n ** (-p) for p in powers], axis=1), y, yerr)
    return {p: coef[i] for i, p in enumerate(powers)}


@dataclass(frozen=True)
class ResidualSlope:
    """Result of :func:`residual_slope`: |r| = amplitude n^slope, with the slope's truncation.

    Not in the book: what a truncated 1/n expansion leaves out (e.g. beyond (4.104)).
    """

    slope: Estimate
    amplitude: Estimate
    truncation: float
    coefficients: dict[int, Estimate]


def residual_slope(widths, residual, error, order: int = 2) -> ResidualSlope:
    """The width scaling of what a truncated 1/n theory leaves out.

    If a theory is right through order ``order - 1`` in 1/n, the residual r(n) = MC - theory
    is c_o / n^o + c_{o+1} / n^{o+1} + ..., so on a log-log plot |r| has slope -o. This fits
    |r| = A n^p (:func:`fit_power_law`) and states the slope's truncation: from a fit of r to
    c_o n^-o + c_{o+1} n^-(o+1), the truncation is how far the same log-log fit of that fitted
    two-term curve (same widths, same relative weights) lands from -o: the tilt the next order
    gives the measured slope (about |c_{o+1} / (c_o n + c_{o+1})| at a single width n). A
    theory wrong at order o - 1 would leave slope -(o - 1), the alternative an honest check of
    the slope should reject.

    Not in the book: a fitting utility.
    """
    n = np.asarray(widths, dtype=np.float64)
    r = np.asarray(residual, dtype=np.float64)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if n.shape != r.shape or n.size < 3:
        raise ValueError(
            f"widths and residual need the same shape and >= 3 widths, got {n.shape}, {r.shape}"
        )
    if not (np.all(r > 0) or np.all(r < 0)):
        raise ValueError(f"residual must have one sign at every width to fit a power law, got {r}")
    slope, amplitude = fit_power_law(n, np.abs(r), error)
    fit = fit_inverse_width(n, r, error, powers=(order, order + 1))
    model = float(fit[order].value) * n**-order + float(fit[order + 1].value) * n ** -(order + 1)
    if not (np.all(model > 0) or np.all(model < 0)):
        raise ValueError(f"the next order changes the residual's sign within the widths {n}")
    model_slope, _ = fit_power_law(n, np.abs(model), np.asarray(error) * np.abs(model / r))
    return ResidualSlope(slope, amplitude, abs(float(model_slope.value) + order), fit)
