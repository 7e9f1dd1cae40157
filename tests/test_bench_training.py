"""The training benchmark runs (at toy sizes) and prints its ratio lines."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_training_benchmark_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--width=8", "--depth=2"]
        + ["--networks=4", "--steps=5"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "speed-up of ensemble training over the per-network loop" in out
    assert "peak MB" in out
    assert "1 compiled training program(s)" in out  # the second call reused the first's
