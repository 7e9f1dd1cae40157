"""Time the ddNTKs by nested jvps against materialized parameter derivatives, in one run.

Both compute the two ddNTKs (book eqs. ∞.5, ∞.7) of the output layer of the same small networks,
jitted: ``pdltlib.ddntk.empirical_ddntk`` (nested forward-mode products along the tangents
u = lambda grad z and Hessian-vector products; no parameter-sized matrix is formed), and the
plain approach, which materializes the parameter Hessian Hess z (``jax.hessian``) and third
derivative D^3 z (``jax.jacfwd`` of it) of every output and contracts them with the tangents:

    ddIH_{i0 i1 i2 i3}  = D^3 z_{i0} [u_{i1}, u_{i2}, u_{i3}],
    ddIIH_{i1 i2 i3 i4} = (Hess z_{i1} u_{i3}) . lambda . (Hess z_{i2} u_{i4}).

Compilation is excluded by timing repeated calls; the two results are compared to make sure
they agree.

    python benchmarks/bench_ddntk.py                      # widths (2, 8, 8, 2), 2 inputs
    python benchmarks/bench_ddntk.py --width 12 --networks 2
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--outputs", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--networks", type=int, default=4)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    import pdltlib  # noqa: F401  (float64)
    from pdltlib.ddntk import empirical_ddntk
    from pdltlib.network import forward, init_params, mlp

    widths = (2,) + (args.width,) * (args.depth - 1) + (args.outputs,)
    config = mlp(widths, "tanh", C_b=0.1, C_W=1.5, lambda_b=0.5, lambda_W=1.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(args.inputs, 2)))
    nets = [init_params(k, config) for k in jax.random.split(jax.random.PRNGKey(0), args.networks)]

    @jax.jit
    def materialized(params):
        theta, unravel = ravel_pytree(params)
        rates = ravel_pytree(
            [
                {"W": jnp.full_like(p["W"], config.lambda_W[l] / config.widths[l]),
                 "b": jnp.full_like(p["b"], config.lambda_b[l])}
                for l, p in enumerate(params)
            ]
        )[0]  # fmt: skip

        def z(t):  # outputs as [i, d], flat
            return forward(unravel(t), x, config.activation)[-1].T.reshape(-1)

        jac = jax.jacrev(z)(theta)  # (n_L N_D, P)
        hess = jax.hessian(z)(theta)  # (n_L N_D, P, P)
        third = jax.jacfwd(jax.hessian(z))(theta)  # (n_L N_D, P, P, P)
        u = jac * rates  # tangents lambda grad z
        ddih = jnp.einsum("apqr,bp,cq,dr->abcd", third, u, u, u)
        v = jnp.einsum("apq,cq->acp", hess, u)  # Hess z_a u_c
        ddiih = jnp.einsum("acp,bdp->abcd", v * rates, v)
        shape = (args.outputs, args.inputs) * 4
        order = (0, 2, 4, 6, 1, 3, 5, 7)  # [(i d)...] -> [i0..i3, d0..d3]
        return ddih.reshape(shape).transpose(order), ddiih.reshape(shape).transpose(order)

    def run_jvps():
        return [jax.block_until_ready(empirical_ddntk(p, x, config)) for p in nets]

    def run_materialized():
        return [jax.block_until_ready(materialized(p)) for p in nets]

    def best(run) -> tuple[float, list]:
        out = run()  # compile
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        return min(times), out

    t_jvp, d_jvp = best(run_jvps)
    t_mat, d_mat = best(run_materialized)
    err = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
        for pair_a, pair_b in zip(d_jvp, d_mat, strict=True)
        for a, b in zip(pair_a, pair_b, strict=True)
    )
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    print(
        f"ddNTKs (ddIH, ddIIH) of {args.networks} tanh MLPs, widths {widths} ({n_params} "
        f"parameters), {args.inputs} inputs (float64, compile excluded); max relative "
        f"difference {err:.1e}"
    )
    print(f"{'method':<28}{'seconds':>10}{'networks/s':>14}")
    for name, t in (("nested jvps (pdltlib)", t_jvp), ("materialized Hess, D^3 z", t_mat)):
        print(f"{name:<28}{t:>10.4f}{args.networks / t:>14.1f}")
    print(f"speed-up of the nested-jvp ddNTKs over materialized derivatives: {t_mat / t_jvp:.1f}x")


if __name__ == "__main__":
    main()
