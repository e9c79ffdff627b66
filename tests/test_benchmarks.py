"""The benchmark scripts still run and print their tables (figures are not checked: no timed tests)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_cost_benchmark_runs_on_the_tiny_model():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "aid_cost.py"), "--model", "tiny", "--sizes", "64",
                           "--repeats", "1", "--layer-tokens", "256"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("64 ")]
    assert [row[1] for row in rows] == ["plain", "aid-concat", "aid-lse"] and rows[0][4] == "1.000"
    layer = {line.split()[0]: line.split() for line in done.stdout.splitlines()
             if line.startswith(("concat", "lse-"))}
    assert sorted(layer) == ["concat", "lse-chunked", "lse-fused", "lse-previous"] and layer["concat"][2] == "1.000"
    assert all(float(row[-1]) < 1e-4 for row in layer.values())  # every way computes the same attention


@pytest.mark.slow
def test_smooth_rows_benchmark_counts_match_the_arithmetic():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "smooth_rows.py"), "--frames", "5"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("dynamic", "auto beta"))]
    assert rows and all(row[-5] == row[-4] for row in rows)  # counted rows/step == arithmetic
