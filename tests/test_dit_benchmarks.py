"""The DiT benchmark scripts still run and print their tables (figures are not checked: no timed tests)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_flux_cost_benchmark_runs():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "aid_dit_cost.py"), "--quick", "--steps", "1",
                           "--attention-image-tokens", "256"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("  ") and "method" not in line]
    assert [row[0] for row in rows] == ["plain", "aid-concat", "aid-lse"] * 2 and rows[0][2] == "1.000"


@pytest.mark.slow
def test_block_choice_benchmark_runs():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "aid_dit_blocks.py"), "--pairs", "1", "--steps", "2",
                           "--size", "32", "--text-tokens", "4"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[-4:]}
    assert sorted(rows) == ["TEI", "all", "double", "single"] and float(rows["TEI"][0]) == 0.0
