"""The benchmark scripts run (at toy sizes) and print their ratio line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sampler_benchmark_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_samplers.py"), "--width=8", "--depth=2"]
        + ["--networks=16"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "speed-up of the Markov sampler over weight sampling" in out
    assert "peak MB" in out


def test_ddntk_benchmark_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ddntk.py"), "--width=3", "--depth=2"]
        + ["--networks=1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "speed-up of the nested-jvp ddNTKs over materialized derivatives" in out
    assert float(out.split("max relative difference ")[1].split()[0]) < 1e-12  # they agree


def test_ntk_controls_benchmark_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ntk_controls.py"), "--width=6"]
        + ["--networks=400", "--order=8"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "speed-up of the controlled estimate at equal error" in out
    assert float(out.split("variance ratio ")[1].split(";")[0]) > 1  # the controls help
