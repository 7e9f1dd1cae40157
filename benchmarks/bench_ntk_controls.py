"""Time the control-variate estimate of E[H_{-+} / H_{++}] against the plain ensemble mean.

Both estimate the mean trained linear model's prediction at a test input (chapter ∞) from
untrained networks: the plain mean of ``pdltlib.ntk.sample_ntk`` and
``pdltlib.stats.controlled_mean`` with the zero-mean controls of
``pdltlib.ntk_controls.sample_ntk_controls`` (coefficients from a pilot ensemble a quarter the
size). The figure of merit is the time to reach a given standard error: (variance ratio) x
(plain time / controlled time), compilation excluded (each sampler runs once before timing).

    python benchmarks/bench_ntk_controls.py                  # tanh, widths (3, 32, 32, 1)
    python benchmarks/bench_ntk_controls.py --width 48 --networks 16000
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--networks", type=int, default=8000)
    parser.add_argument("--order", type=int, default=32)
    args = parser.parse_args()

    import jax
    import numpy as np

    from pdltlib import stats
    from pdltlib.network import mlp
    from pdltlib.ntk import sample_ntk
    from pdltlib.ntk_controls import sample_ntk_controls

    L, n = args.depth, args.width
    config = mlp((3,) + (n,) * (L - 1) + (1,), "tanh", C_b=0.0, C_W=1.0,
                 lambda_b=3.0 / np.arange(1, L + 1), lambda_W=1.0)  # fmt: skip
    x = np.array([[1.5, 0.6, -0.9], [-0.6, 0.9, 1.2]])
    n_pilot = max(args.networks // 4, 64)
    chunk = min(1000, n_pilot)

    def plain(key, count):
        return sample_ntk(key, config, x, count, chunk_size=chunk, progress=False).ntk[L][:, 0, 0]

    def controlled(key, count):
        return sample_ntk_controls(key, config, x, count, order=args.order, chunk_size=chunk,
                                   progress=False)  # fmt: skip

    def ratio(h):
        return h[:, 1, 0] / h[:, 0, 0]

    plain(jax.random.PRNGKey(9), chunk)  # compile
    controlled(jax.random.PRNGKey(9), chunk)
    start = time.perf_counter()
    h = plain(jax.random.PRNGKey(0), args.networks)
    t_plain = time.perf_counter() - start
    start = time.perf_counter()
    main_ = controlled(jax.random.PRNGKey(0), args.networks)
    pilot = controlled(jax.random.PRNGKey(1), n_pilot)
    t_controlled = time.perf_counter() - start

    e_plain = stats.mean_estimate(ratio(h))
    e_ctrl = stats.controlled_mean(ratio(main_.ntk[:, 0, 0]), main_.features,
                                   ratio(pilot.ntk[:, 0, 0]), pilot.features)  # fmt: skip
    variance_ratio = float(e_plain.stderr / e_ctrl.stderr) ** 2
    print(f"tanh, widths {config.widths}, {args.networks} networks (+{n_pilot} pilot), "
          f"{len(main_.names)} controls, quadrature order {args.order}")  # fmt: skip
    print(f"plain mean      {e_plain}   {t_plain:.2f} s")
    print(f"with controls   {e_ctrl}   {t_controlled:.2f} s (pilot included)")
    print(
        f"variance ratio {variance_ratio:.1f}; speed-up of the controlled estimate at equal "
        f"error {variance_ratio * t_plain / t_controlled:.1f}x"
    )


if __name__ == "__main__":
    main()
