"""The benchmark scripts run (at toy sizes) and print their ratio line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(script: str, *args: str) -> str:
    """The standard output of ``benchmarks/<script>`` run with ``args`` (fails if it fails)."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def test_sampler_benchmark_prints_a_ratio():
    out = run_benchmark("bench_samplers.py", "--width=8", "--depth=2", "--networks=16")
    assert "speed-up of the Markov sampler over weight sampling" in out
    assert "peak MB" in out


def test_ddntk_benchmark_prints_a_ratio():
    out = run_benchmark("bench_ddntk.py", "--width=3", "--depth=2", "--networks=1")
    assert "speed-up of the nested-jvp ddNTKs over materialized derivatives" in out
    assert float(out.split("max relative difference ")[1].split()[0]) < 1e-12  # they agree


def test_ntk_controls_benchmark_prints_a_ratio():
    out = run_benchmark("bench_ntk_controls.py", "--width=6", "--networks=400", "--order=8")
    assert "speed-up of the controlled estimate at equal error" in out
    assert float(out.split("variance ratio ")[1].split(";")[0]) > 1  # the controls help


def test_compile_benchmark_prints_a_ratio():
    out = run_benchmark("bench_compile.py", "--widths=4", "--depth=2", "--networks=10")
    assert "speed-up of FAST_COMPILE" in out
    assert out.count("True") == 1  # both levels draw the same bits


def test_training_benchmark_prints_a_ratio():
    out = run_benchmark("bench_training.py", "--width=8", "--depth=2", "--networks=4", "--steps=5")
    assert "speed-up of ensemble training over the per-network loop" in out
    assert "peak MB" in out
    assert "1 compiled training program(s)" in out  # the second call reused the first's


def test_brackets_benchmark_prints_a_ratio():
    out = run_benchmark("bench_brackets.py", "--repeats=1")
    assert "speed-up of the matrix-product brackets over np.einsum" in out
    diffs = [
        float(line.split()[-1]) for line in out.splitlines() if line.strip()[:4] in ("tanh", "gelu")
    ]
    assert len(diffs) == 4 and max(diffs) < 1e-12  # both sum the same products
