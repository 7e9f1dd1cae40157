"""Time ensemble training (vmapped chunks, all steps in one compiled program) against a plain
per-network Python loop over a jitted single-network gradient step, in one run; and the reuse
of the compiled training program.

Both methods run the same number of full-batch gradient steps (fixed-steps mode) on the same
networks; each runs in its own subprocess so that its peak resident memory is its own, and
compilation is excluded by timing a second, identical call (the frozen NTK that sets the
stability bound is computed once, outside the timings). Prints seconds, network-steps per
second, peak memory and the speed ratio.

Compile reuse: in a fresh subprocess, a first call of ``train_ensemble`` (which compiles)
against a second one with another step size, stopping rule (tolerance and max_steps instead of
fixed steps) and checkpoint, which are traced and reuse the compiled program; prints both
times, the number of compiled training programs and their ratio.

    python benchmarks/bench_training.py                        # width 128, depth 2, 512 nets
    python benchmarks/bench_training.py --width 64 --networks 1000 --steps 500
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from functools import partial


def compile_reuse(width: int, depth: int, networks: int, steps: int, inputs: int) -> dict:
    import jax
    import numpy as np

    from pdltlib.network import mlp
    from pdltlib.prediction import frozen_ntk, stability_bound
    from pdltlib.training import _train_chunk, train_ensemble

    config = mlp((4,) + (width,) * (depth - 1) + (1,), "tanh", C_b=0.1, C_W=1.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(inputs, 4)), rng.normal(size=(inputs, 1))
    theta = frozen_ntk(config, x).Theta[-1]
    bound = stability_bound(theta)
    common = dict(models=("network",), keep_ntk=True, theta_train=theta, progress=False)
    times = []
    for kw in (
        dict(eta=0.5 * bound, steps=steps, checkpoints=(steps // 2,)),
        dict(eta=0.3 * bound, tolerance=1e-300, max_steps=steps + 1, checkpoints=(1,)),
    ):
        start = time.perf_counter()
        train_ensemble(jax.random.PRNGKey(0), config, x, y, networks, **common, **kw)
        times.append(time.perf_counter() - start)
    return {"first": times[0], "second": times[1], "programs": _train_chunk._cache_size()}


def run_one(method: str, width: int, depth: int, networks: int, steps: int, inputs: int) -> dict:
    import jax
    import numpy as np

    from pdltlib.network import init_params, mlp
    from pdltlib.ntk import _split_config, _step
    from pdltlib.prediction import frozen_ntk, stability_bound
    from pdltlib.training import train_ensemble

    config = mlp((4,) + (width,) * (depth - 1) + (1,), "tanh", C_b=0.1, C_W=1.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(inputs, 4)), rng.normal(size=(inputs, 1))
    theta = frozen_ntk(config, x).Theta[-1]  # computed once, outside the timings
    eta = 0.5 * stability_bound(theta)
    key = jax.random.PRNGKey(0)

    def ensemble() -> None:
        result = train_ensemble(
            key, config, x, y, networks, eta=eta, models=("network",), steps=steps,
            theta_train=theta, progress=False,
        )  # fmt: skip
        assert np.all(result.steps["network"] == steps)

    structure, hyper = _split_config(config)
    xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)

    def loop() -> None:
        for k in jax.random.split(key, networks):
            params = init_params(k, config)
            for _ in range(steps):
                params = _step(params, xj, yj, hyper, structure, eta)
            jax.block_until_ready(params)

    def once() -> float:
        start = time.perf_counter()
        (ensemble if method == "ensemble" else loop)()
        return time.perf_counter() - start

    once()  # compile
    seconds = once()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "seconds": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--networks", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--only", choices=["ensemble", "loop", "reuse"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = ("width", "depth", "networks", "steps", "inputs")
    if args.only:
        run = compile_reuse if args.only == "reuse" else partial(run_one, args.only)
        print(json.dumps(run(*(getattr(args, k) for k in sizes))))
        return
    results = {}
    for method in ("loop", "ensemble", "reuse"):
        cmd = [sys.executable, __file__, "--only", method] + [
            f"--{k}={getattr(args, k)}" for k in sizes
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
    print(
        f"{args.networks} tanh MLPs, width {args.width}, depth {args.depth}, {args.inputs} "
        f"training inputs, {args.steps} full-batch steps each (float64, compile excluded)"
    )
    print(f"{'method':<10}{'seconds':>10}{'network-steps/s':>18}{'peak MB':>10}")
    reuse = results.pop("reuse")
    for method, r in results.items():
        rate = args.networks * args.steps / r["seconds"]
        print(f"{method:<10}{r['seconds']:>10.3f}{rate:>18.0f}{r['peak_mb']:>10.0f}")
    ratio = results["loop"]["seconds"] / results["ensemble"]["seconds"]
    print(f"speed-up of ensemble training over the per-network loop: {ratio:.1f}x")
    print(
        f"compile reuse: first call (compiles) {reuse['first']:.3f} s; second call, other eta, "
        f"stopping rule and checkpoint, {reuse['second']:.3f} s; {reuse['programs']} compiled "
        f"training program(s); ratio {reuse['first'] / reuse['second']:.1f}x"
    )


if __name__ == "__main__":
    main()
