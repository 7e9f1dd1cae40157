"""Time the exact Markov sampler against weight sampling, side by side, in one run.

Each method runs in its own subprocess (so its peak resident memory is its own); compilation
is excluded by timing a second, identical call. Prints seconds, networks per second, peak
memory and the speed ratio.

    python benchmarks/bench_samplers.py                       # n=512, depth 16, 2 inputs
    python benchmarks/bench_samplers.py --width 128 --depth 8 --networks 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(method: str, width: int, depth: int, networks: int, inputs: int) -> dict:
    import jax
    import numpy as np

    from pdltlib.network import mlp
    from pdltlib.sampling import sample_preactivations

    config = mlp((width,) * (depth + 1), "tanh", C_b=0.0, C_W=1.0)
    x = np.random.default_rng(0).normal(size=(inputs, width))

    def once(seed: int) -> float:
        start = time.perf_counter()
        z = sample_preactivations(jax.random.PRNGKey(seed), config, x, networks, method=method)
        z[depth].sum()  # results are NumPy arrays: the work is done
        return time.perf_counter() - start

    once(0)  # compile
    seconds = min(once(1), once(2))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "seconds": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--networks", type=int, default=256)
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--only", choices=["markov", "weights"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.width, args.depth, args.networks, args.inputs)))
        return
    results = {}
    for method in ("weights", "markov"):
        cmd = [sys.executable, __file__, "--only", method] + [
            f"--{k}={getattr(args, k)}" for k in ("width", "depth", "networks", "inputs")
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
    print(
        f"ensemble of {args.networks} tanh MLPs, width {args.width}, depth {args.depth}, "
        f"{args.inputs} inputs (float64, compile excluded)"
    )
    print(f"{'method':<10}{'seconds':>10}{'networks/s':>14}{'peak MB':>10}")
    for method, r in results.items():
        rate = args.networks / r["seconds"]
        print(f"{method:<10}{r['seconds']:>10.3f}{rate:>14.1f}{r['peak_mb']:>10.0f}")
    ratio = results["weights"]["seconds"] / results["markov"]["seconds"]
    print(f"speed-up of the Markov sampler over weight sampling: {ratio:.1f}x")


if __name__ == "__main__":
    main()
