"""Kernels and four-point vertices of MLP preactivations (book chapter 4).

So far: the exact first-layer metric (4.8), one step of the kernel recursion (4.37)/(4.41),
and the second-layer four-point vertex (4.40), all for several inputs. Gaussian integrals are
done by quadrature in float64 (:mod:`pdltlib.gaussian`).
"""

from __future__ import annotations

import itertools

import numpy as np

from pdltlib.activations import Activation, get_activation
from pdltlib.gaussian import activation_expectation
from pdltlib.validation import covariance

__all__ = ["first_layer_kernel", "next_layer_kernel", "second_layer_four_point_vertex"]


def _kernel_matrix(K, name: str = "K") -> np.ndarray:
    return covariance(K, name)[0]


def _variances(C_b: float, C_W: float) -> tuple[float, float]:
    if not np.isfinite(C_b) or C_b < 0:
        raise ValueError(f"C_b must be >= 0, got {C_b}")
    if not np.isfinite(C_W) or C_W <= 0:
        raise ValueError(f"C_W must be > 0, got {C_W}")
    return float(C_b), float(C_W)


def first_layer_kernel(x, C_b: float, C_W: float) -> np.ndarray:
    """The first-layer metric G^(1)_{ab} = C_b + C_W (1/n_0) sum_j x_{j;a} x_{j;b}, eq. (4.8).

    ``x`` has shape (N_D, n_0). The first-layer preactivations are exactly Gaussian with this
    covariance at any width (eqs. 4.7, 4.10).
    """
    C_b, C_W = _variances(C_b, C_W)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N_D, n_0), got {x.shape}")
    return C_b + C_W * (x @ x.T) / x.shape[1]


def _sigma_moment(act: Activation, k: np.ndarray, alphas: tuple[int, ...], cache: dict) -> float:
    key = tuple(sorted(alphas))
    if key not in cache:
        cache[key] = activation_expectation(act, k, key)
    return cache[key]


def next_layer_kernel(activation: str | Activation, K, C_b: float, C_W: float) -> np.ndarray:
    """One step of the kernel recursion: C_b + C_W <sigma_a sigma_b>_K, eqs. (4.37), (4.41).

    Exact for the mean second-layer metric given a first-layer metric K = G^(1); the
    leading-order recursion for K^(l+1) from K^(l) in deeper layers (4.118).
    """
    C_b, C_W = _variances(C_b, C_W)
    k = _kernel_matrix(K)
    act = get_activation(activation)
    cache: dict = {}
    n = k.shape[0]
    out = np.empty((n, n))
    for a, b in itertools.combinations_with_replacement(range(n), 2):
        out[a, b] = out[b, a] = C_b + C_W * _sigma_moment(act, k, (a, b), cache)
    return out


def second_layer_four_point_vertex(activation: str | Activation, K1, C_W: float) -> np.ndarray:
    """The second-layer four-point vertex, eq. (4.40):

        V^(2)_{(a1 a2)(a3 a4)} = C_W^2 [<s_a1 s_a2 s_a3 s_a4>_K1 - <s_a1 s_a2>_K1 <s_a3 s_a4>_K1]

    with K1 = G^(1) the first-layer metric. Returned as an array of shape (N_D,)*4. It fixes the
    connected four-point correlator of the second layer exactly at any width n_1, eq. (4.43):
    E[z_{i;a1} z_{i;a2} z_{j;a3} z_{j;a4}]_connected = V^(2)_{(a1a2)(a3a4)} / n_1 for i != j.
    """
    _, C_W = _variances(0.0, C_W)
    k = _kernel_matrix(K1, "K1")
    act = get_activation(activation)
    cache: dict = {}
    n = k.shape[0]
    v = np.empty((n,) * 4)
    for idx in itertools.product(range(n), repeat=4):
        four = _sigma_moment(act, k, idx, cache)
        two = _sigma_moment(act, k, idx[:2], cache) * _sigma_moment(act, k, idx[2:], cache)
        v[idx] = C_W**2 * (four - two)
    return v
