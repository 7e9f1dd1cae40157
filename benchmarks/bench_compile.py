"""Compile and run times of the random-parameter program at XLA's default optimization level
(2) against the level pdltlib compiles it at (``pdltlib.network.FAST_COMPILE``), in one run.

Every sampler and training run draws its networks' parameters with one vmapped program per
architecture (:func:`pdltlib.network.init_ensemble`), so its compile time is paid once for every
architecture a chapter samples. Prints compile seconds, seconds per run, whether both levels
draw the same bits, and the ratios.

    python benchmarks/bench_compile.py                      # widths 16, 32, 48 at depth 3
    python benchmarks/bench_compile.py --widths 64 128 --depth 4 --networks 500
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from pdltlib.network import FAST_COMPILE, _init_vmapped

jax.config.update("jax_enable_x64", True)


def measure(options: dict, widths: tuple[int, ...], keys) -> tuple[float, float, list]:
    """(compile seconds, seconds per run, the parameters) of one compiled program."""
    c = jnp.ones(len(widths) - 1)
    start = time.perf_counter()
    program = jax.jit(
        _init_vmapped.__wrapped__, static_argnames=("widths", "dtype"), compiler_options=options
    )  # pdltlib's program, compiled with these options
    compiled = program.lower(keys, c, c, widths, jnp.dtype(jnp.float64)).compile()
    compile_s = time.perf_counter() - start
    params = jax.block_until_ready(compiled(keys, c, c))
    start = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(compiled(keys, c, c))
    return compile_s, (time.perf_counter() - start) / 5, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 48])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--networks", type=int, default=1000)
    args = parser.parse_args()
    keys = jax.random.split(jax.random.PRNGKey(0), args.networks)
    print(f"{'width':>6} {'level':>6} {'compile s':>10} {'run s':>8}  same bits")
    ratios = []
    for n in args.widths:
        widths = (3,) + (n,) * (args.depth - 1) + (1,)
        default = measure({}, widths, keys)
        fast = measure(FAST_COMPILE, widths, keys)
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                jax.tree_util.tree_leaves(default[2]),
                jax.tree_util.tree_leaves(fast[2]),
                strict=True,
            )
        )
        level = FAST_COMPILE["xla_backend_optimization_level"]
        print(f"{n:>6} {2:>6} {default[0]:>10.2f} {default[1]:>8.4f}")
        print(f"{n:>6} {level:>6} {fast[0]:>10.2f} {fast[1]:>8.4f}  {same}")
        ratios.append((default[0] / fast[0], default[1] / fast[1]))
    compile_ratio, run_ratio = np.exp(np.mean(np.log(ratios), axis=0))
    print(
        f"speed-up of FAST_COMPILE (geometric mean over widths): compile {compile_ratio:.2f}x, "
        f"run {run_ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
