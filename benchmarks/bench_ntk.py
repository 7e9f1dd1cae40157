"""Time the layer-sum NTK (activations x backward signals) against J Lambda J^T, in one run.

Both compute the output NTK H^(L)_{i1i2;a1a2} (book eq. 8.5 with the learning rates 8.6) of the
same ensemble of networks, vmapped over networks and jitted: ``pdltlib.ntk.sample_ntk`` (no
parameter Jacobian), and the plain approach, ``jax.jacobian`` of z^(L) with respect to all
parameters contracted with the diagonal learning-rate tensor. Compilation is excluded by
timing repeated calls; the two results are compared to make sure they agree.

    python benchmarks/bench_ntk.py                       # n=256, depth 4, 4 outputs, 4 inputs
    python benchmarks/bench_ntk.py --width 512 --networks 64
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--outputs", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--networks", type=int, default=32)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    import pdltlib  # noqa: F401  (float64)
    from pdltlib.network import forward, init_params, mlp
    from pdltlib.ntk import sample_ntk

    widths = (args.width,) * args.depth + (args.outputs,)
    config = mlp(widths, "tanh", C_b=0.1, C_W=1.5, lambda_b=0.5, lambda_W=1.0)
    x = np.random.default_rng(0).normal(size=(args.inputs, args.width))

    def jacobian_ntk(key):
        params = init_params(key, config)
        jac = jax.jacobian(lambda p: forward(p, x, config.activation)[-1])(params)
        h = 0.0
        for layer in range(config.depth):
            j_b = jac[layer]["b"]
            j_w = jac[layer]["W"].reshape(*j_b.shape[:2], -1)
            h = h + config.lambda_b[layer] * jnp.einsum("aim,bjm->ijab", j_b, j_b)
            h = h + config.lambda_W[layer] / config.widths[layer] * jnp.einsum(
                "aim,bjm->ijab", j_w, j_w
            )
        return h

    plain = jax.jit(jax.vmap(jacobian_ntk))
    keys = jax.random.split(jax.random.PRNGKey(0), args.networks)

    def run_layer_sum() -> np.ndarray:
        return sample_ntk(
            jax.random.PRNGKey(0),
            config,
            x,
            args.networks,
            chunk_size=args.networks,
            progress=False,
        ).ntk[config.depth]

    def run_jacobian() -> np.ndarray:
        return np.asarray(plain(keys))

    def best(run) -> tuple[float, np.ndarray]:
        out = run()  # compile
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        return min(times), out

    t_sum, h_sum = best(run_layer_sum)
    t_jac, h_jac = best(run_jacobian)
    err = np.abs(h_sum - h_jac).max() / np.abs(h_jac).max()
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    print(
        f"output NTK of {args.networks} tanh MLPs, widths {widths} ({n_params} parameters), "
        f"{args.inputs} inputs (float64, compile excluded); max relative difference {err:.1e}"
    )
    print(f"{'method':<22}{'seconds':>10}{'networks/s':>14}")
    for name, t in (("layer sum (pdltlib)", t_sum), ("jacobian J Lambda J^T", t_jac)):
        print(f"{name:<22}{t:>10.3f}{args.networks / t:>14.1f}")
    print(f"speed-up of the layer-sum NTK over the Jacobian contraction: {t_jac / t_sum:.1f}x")


if __name__ == "__main__":
    main()
