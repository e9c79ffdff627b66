"""The benchmark scripts still run and print their tables (figures are not checked: no timed tests)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_cost_benchmark_runs_on_the_tiny_model():
    # --before with no revision: this tree alone (the side-by-side run of an older revision doubles the time)
    done = subprocess.run([sys.executable, str(BENCHMARKS / "aid_cost.py"), "--model", "tiny", "--sizes", "64",
                           "--repeats", "1", "--layer-tokens", "256", "--before"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|") for line in done.stdout.splitlines() if line.strip().startswith("64 ")]
    assert [row[0].split()[1] for row in rows] == ["plain", "aid-concat", "aid-lse"]
    # one block of figures per version measured (here this tree alone), each against plain
    assert len(rows[0]) >= 2 and all(block.split()[-3] == "1.000" for block in rows[0][1:])
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


@pytest.mark.slow
@pytest.mark.server
def test_distributed_share_benchmark_counts_each_servers_rows():
    from aid_harness.distributed import distributed_snapshot

    if distributed_snapshot() is None:
        pytest.skip("no ComfyUI-Distributed snapshot")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "distributed_share.py"), "--frames", "5"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["5"]]
    assert rows == [["5", "5", "4", "3", "0.800", "1.25x"]]  # 3 interior frames: 2 + A + B, 1 + A + B


@pytest.mark.slow
def test_spacetime_cost_benchmark_runs_on_the_tiny_model():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "spacetime_cost.py"), "--model", "tiny", "--size", "64",
                           "--steps", "2", "--iterations", "1", "--candidates", "2", "--pairs", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("plain ", "fixed ", "official ", "search ", "gradient "))}
    assert sorted(rows) == ["fixed", "gradient", "official", "plain", "search"] and rows["plain"][2] == "1.000"
    assert "largest weight change" in " ".join(rows["gradient"])
    assert "in turn in one process" in done.stdout and "official time x" in done.stdout
