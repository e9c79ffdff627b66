"""Cost of an AID sequence against plain sampling of the same batch (issue 3's targets).

Setting: F = 7 frames, full SD1.5 architecture with random weights, 10 steps of euler, cfg 7,
interpolation active for the first half of the schedule, at 128 and 256 px. "plain" is the
core KSampler on the same 7-row batch and conditioning; "aid" is AID Sampler (fused outer)
with fused attention by joined key sets (concat, the default) and by log-sum-exp merging.

Every measurement runs in its own process (model loaded, a small warm-up, then one run), so
peak memory is not hidden by memory an earlier run left cached. Memory is the process's peak
resident memory during the run above what it held just before (Linux VmHWM after resetting
it through /proc/self/clear_refs), i.e. the working memory of sampling, model weights excluded.
Ratios are printed side by side; targets: time <= 1.10x, memory <= 1.3x.

Run: `make benchmark` (or .venv/bin/python benchmarks/aid_cost.py --sizes 128 --repeats 1).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FRAMES, STEPS, CFG, SEED, END_PERCENT = 7, 10, 7.0, 1, 0.5
METHODS = ("plain", "aid-concat", "aid-lse")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def worker(size: int, method: str, model_size: str = "full") -> dict:
    """Load the model, warm up, run one measured sampling; return seconds and peak extra MiB."""
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    nodes, model, _, _, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.conditioning import AIDConditioning
    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.samplers.schedule import InterpolationSchedule, linear_coefficients

    a, b, negative = encode("a photo of a dog"), encode("a photo of a car"), encode("blurry")
    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    positive = AIDConditioning().build(a, b, schedule)[0]
    nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", a, negative,
                          {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything

    def run():
        if method == "plain":
            latent = {"samples": torch.zeros(FRAMES, 4, size // 8, size // 8), "batch_index": [0] * FRAMES}
            return nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", positive, negative, latent)
        return AIDSampler().sample(model, a, b, negative, schedule, size, size, SEED, STEPS, CFG, "euler", "normal",
                                   "fused outer", "self and cross", 0.0, END_PERCENT, 0,
                                   fusion=method.split("-", 1)[1])

    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return {"size": size, "method": method, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024}


def measure(size: int, method: str, model_size: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", str(size), method, "--model", model_size],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} at {size}px failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest time counts")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(worker(int(options.worker[0]), options.worker[1], options.model)))
        return 0
    import torch

    print(f"AID cost benchmark: F={FRAMES}, {options.model} SD1.5 architecture (random weights), {STEPS} steps euler, "
          f"cfg {CFG}, interpolation for the first {END_PERCENT:.0%} of the schedule; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU threads, ComfyUI --cpu (its default CPU attention).")
    rows = []
    for size in options.sizes:
        results = {}
        for _ in range(options.repeats):
            for method in METHODS:  # interleaved, so drifting machine load hits every method alike
                result = measure(size, method, options.model)
                best = results.get(method)
                results[method] = {"seconds": min(result["seconds"], best["seconds"]) if best else result["seconds"],
                                   "peak_extra_mib": max(result["peak_extra_mib"],
                                                         best["peak_extra_mib"]) if best else result["peak_extra_mib"]}
        plain = results["plain"]
        for method in METHODS:
            r = results[method]
            rows.append((size, method, r["seconds"], r["seconds"] / plain["seconds"], r["peak_extra_mib"],
                         r["peak_extra_mib"] / max(plain["peak_extra_mib"], 1e-9)))
    print(f"{'size':>5} {'method':<11} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}")
    for size, method, seconds, time_ratio, mib, memory_ratio in rows:
        print(f"{size:>5} {method:<11} {seconds:8.1f} {time_ratio:7.3f} {mib:9.0f} {memory_ratio:9.3f}")
    print("targets: time x <= 1.10, memory x <= 1.30 (aid-concat is the default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
