"""Time the Gaussian brackets of the order-1/n flows as matrix products against np.einsum.

The NTK, dNTK and ddNTK statistics flows (:mod:`pdltlib.ntk_fluctuations`,
:mod:`pdltlib.dntk_fluctuations`) average products of sigma and its derivatives over a product
quadrature rule on the two-input kernel K: about 3e5 nodes at the GELU critical point. A
four-point bracket <f_a g_b h_c k_d> summed by ``np.einsum("p,pa,pb,pc,pd->abcd", ...)`` runs a
five-operand loop over every node; pdltlib forms the per-node pairs f_a g_b and h_c k_d and takes
one weighted matrix product of them (``_gram``). The single-neuron order-1/n expectation
contracts the fourth Hermite tensor with V before the sum over nodes instead of materializing
it. Prints seconds per call, their ratio and the largest relative difference.

    python benchmarks/bench_brackets.py                 # tanh and GELU kernels of chapter ∞
    python benchmarks/bench_brackets.py --repeats 20
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    import pdltlib  # noqa: F401  (float64)
    from pdltlib.activations import get_activation
    from pdltlib.criticality import critical_point
    from pdltlib.ntk_fluctuations import (
        _gram,
        _hermite4_dot,
        _node_derivatives,
        _node_outer,
        _quadrature,
    )

    def timed(fn):
        fn()
        start = time.perf_counter()
        for _ in range(args.repeats):
            result = fn()
        return (time.perf_counter() - start) / args.repeats, result

    gelu = critical_point("gelu")
    kernels = {  # two inputs at the angle of chapter ∞, on each activation's fixed point
        "tanh": np.array([[1.4, -0.5], [-0.5, 1.1]]),
        "gelu": gelu.K_star * np.array([[1.0, -0.37], [-0.37, 1.0]]),
    }
    v = np.random.default_rng(0).normal(size=(2, 2, 2, 2))
    print(
        f"{'kernel':>6} {'nodes':>7} {'bracket':>9} {'einsum s':>9} {'pdltlib s':>10} {'ratio':>6}"
        "  max rel. diff"
    )
    ratios = []
    for name, k in kernels.items():
        z, w = _quadrature(get_activation(name), k)
        s, p = _node_derivatives(get_activation(name), z, 1)
        white = z @ np.linalg.inv(k)
        inv = np.linalg.inv(k)
        cases = {
            "four": (
                lambda s=s, p=p, w=w: np.einsum("p,pa,pb,pc,pd->abcd", w, s, s, p, p),
                lambda s=s, p=p, w=w: _gram(w, _node_outer(s, s), _node_outer(p, p)),
            ),
            "He4.V": (
                lambda white=white, inv=inv: np.einsum(
                    "pghkl,ghkl->p", _hermite4_einsum(white, inv), v
                ),
                lambda white=white, inv=inv: _hermite4_dot(white, inv, v),
            ),
        }
        for bracket, (plain, fast) in cases.items():
            t_plain, a = timed(plain)
            t_fast, b = timed(fast)
            diff = np.max(np.abs(a - b)) / np.max(np.abs(a))
            ratios.append(t_plain / t_fast)
            print(
                f"{name:>6} {w.size:>7} {bracket:>9} {t_plain:>9.4f} {t_fast:>10.4f} "
                f"{t_plain / t_fast:>6.1f}  {diff:.1e}"
            )
    print(
        f"speed-up of the matrix-product brackets over np.einsum (geometric mean): "
        f"{np.exp(np.mean(np.log(ratios))):.1f}x"
    )


def _hermite4_einsum(w, inv):
    """He_abcd(w) per node as a (P, 2, 2, 2, 2) array: the plain construction."""
    import numpy as np

    out = np.einsum("pa,pb,pc,pd->pabcd", w, w, w, w)
    for spec in ("ab,pc,pd", "ac,pb,pd", "ad,pb,pc", "bc,pa,pd", "bd,pa,pc", "cd,pa,pb"):
        out -= np.einsum(f"{spec}->pabcd", inv, w, w)
    for spec in ("ab,cd", "ac,bd", "ad,bc"):
        out += np.einsum(f"{spec}->abcd", inv, inv)[None]
    return out


if __name__ == "__main__":
    main()
