"""Input validation shared by the library: bad input raises a ValueError naming the parameter.

Not in the book: a utility.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = [
    "covariance",
    "per_layer",
    "positive_variance",
    "integer_at_least",
    "SYMMETRY_TOLERANCE",
    "PSD_TOLERANCE",
]

SYMMETRY_TOLERANCE = 1e-12  # relative asymmetry accepted as rounding
PSD_TOLERANCE = 1e-10  # eigenvalues above -this * max eigenvalue are rounding


def covariance(K, name: str = "K") -> tuple[np.ndarray, bool]:
    """Validate a covariance: a variance >= 0 or a symmetric positive-semidefinite matrix.

    Returns it as a symmetrized (N, N) float64 matrix and whether it was given as a scalar.
    Eigenvalues down to -1e-10 times the largest are accepted as rounding.

    Not in the book: input validation for kernels K (4.8), G^(l).
    """
    try:
        kernel = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a square matrix, got {K!r}") from None
    if not np.all(np.isfinite(kernel)):
        raise ValueError(f"{name} must have finite entries, got {kernel.tolist()}")
    if kernel.ndim == 0:
        if kernel < 0:
            raise ValueError(f"{name} (a variance) must be >= 0, got {float(kernel)}")
        return kernel.reshape(1, 1), True
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] == 0:
        raise ValueError(f"{name} must be a variance or a square matrix, got shape {kernel.shape}")
    scale = float(np.max(np.abs(kernel)))
    if np.max(np.abs(kernel - kernel.T)) > SYMMETRY_TOLERANCE * scale:
        raise ValueError(f"{name} must be symmetric, got {kernel.tolist()}")
    kernel = (kernel + kernel.T) / 2
    eigenvalues = np.linalg.eigvalsh(kernel)
    if eigenvalues[0] < -PSD_TOLERANCE * max(eigenvalues[-1], 0.0):
        raise ValueError(
            f"{name} must be positive semidefinite; its smallest eigenvalue is "
            f"{eigenvalues[0]:.3e}, {name} = {kernel.tolist()}"
        )
    return kernel, False


def per_layer(value, depth: int, name: str, *, positive: bool = False) -> np.ndarray:
    """A per-layer hyperparameter as a (depth,) float64 array (a number is broadcast).

    Raises ValueError naming ``name`` unless every entry is finite and >= 0 (> 0 with
    ``positive``) and a sequence has length ``depth``.

    Not in the book: input validation for per-layer hyperparameters (2.21)-(2.22), (8.6).
    """
    values = np.asarray(value, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(depth, float(values))
    if values.shape != (depth,):
        raise ValueError(f"{name} must be a number or a sequence of length L={depth}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {value}")
    if np.any(values <= 0 if positive else values < 0):
        raise ValueError(
            f"{name} must be {'> 0' if positive else '>= 0'} in every layer, got {value}"
        )
    return values


def positive_variance(K, name: str = "K") -> float:
    """``K`` as a float, or a ValueError naming ``name`` unless it is a finite variance > 0.

    Not in the book: input validation (variances K of (4.8), (5.5)).
    """
    k = float(K)
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"{name} must be a finite variance > 0, got {K!r}")
    return k


def integer_at_least(value, name: str, low: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError unless it is an integer >= ``low``.

    Not in the book: input validation (ensemble sizes, chunk sizes, step counts, quadrature orders).
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)
