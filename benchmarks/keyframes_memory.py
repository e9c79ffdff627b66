"""Peak memory of keyframe sequences against their length: one batch for every frame, or bounded runs.

Setting: a closed loop through 4 keys (prompts of 77, 154, 77 and 231 tokens, keys at 0, 25%, 50%, 75%),
F = 10, 20, 40, 80 frames, AID Keyframe Sampler with max_frames_per_batch 0 (every row in one batch)
and 8 (runs of at most 8 rows, keys included), random-weight SD1.5 (the tiny test architecture by
default), euler, cfg 7, interpolation for the first half of the schedule.

Every measurement runs in its own process (model loaded, a warm-up, then one run), so peak memory is
not hidden by what an earlier run left cached. Memory is the process's peak resident memory during
the run above what it held just before (Linux VmHWM after resetting it through /proc/self/clear_refs):
the working memory of sampling, model weights excluded. Unchunked memory grows with F; chunked memory
stays near the cost of one 8-row run (plus the F output latents).

Run: .venv/bin/python benchmarks/keyframes_memory.py [--frames 10 20 40 80] [--size 128] [--model tiny]
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

STEPS, CFG, SEED, END_PERCENT, CHUNK = 3, 7.0, 1, 0.5, 8
PROMPTS = ("a photo of a dog on grass", ", ".join(["a small brown dog running on green summer grass"] * 10),
           "a photo of a cat on a sofa", ", ".join(["a red sports car parked in front of an old stone house"] * 14))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def worker(frames: int, max_rows: int, size: int, model_size: str) -> dict:
    """Load the model, warm up, sample one F-frame loop; return seconds, runs and peak extra MiB."""
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    nodes, model, clip, _, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.keyframes import AIDKeyframes, AIDKeyframeSampler
    from aid_pack.samplers.keyframes.plan import plan_keyframes, resolve_timeline

    text = "\n".join(f"{place}: {prompt}" for place, prompt in zip(("0", "25%", "50%", "75%"), PROMPTS))
    keys = AIDKeyframes().build(clip, text)[0]
    negative = encode("blurry")
    plan = plan_keyframes(resolve_timeline(keys, frames, True), max_rows)
    nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", keys.keys[0].conditioning, negative,
                          {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    started = time.perf_counter()
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        AIDKeyframeSampler().sample(model, keys, negative, size, size, SEED, STEPS, CFG, "euler", "normal", frames,
                                    True, "fused outer", "self and cross", 0.0, END_PERCENT, max_rows)
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return {"frames": frames, "max_rows": max_rows, "rows": plan.layout.frames, "runs": len(plan.runs),
            "largest_run": plan.max_rows, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024}


def measure(frames: int, max_rows: int, size: int, model_size: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", str(frames), str(max_rows), "--size", str(size),
                           "--model", model_size], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{frames} frames, max rows {max_rows} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--model", choices=("full", "tiny"), default="tiny",
                        help="SD1.5 architecture: the tiny test model (default) or the full one")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMES", "MAX_ROWS"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(worker(int(options.worker[0]), int(options.worker[1]), options.size, options.model)))
        return 0
    import torch

    print(f"Keyframe memory benchmark: closed loop through 4 keys, {options.model} SD1.5 architecture (random "
          f"weights), {options.size} px, {STEPS} steps euler, cfg {CFG}; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU threads, ComfyUI --cpu.")
    print(f"{'frames':>6} {'rows':>5} | {'one batch: MiB':>14} {'s':>6} | {'chunked: runs':>13} {'max rows':>8} "
          f"{'MiB':>6} {'s':>6} | {'memory x':>8}")
    for frames in options.frames:  # one batch and chunked side by side, so drifting load hits both alike
        whole = measure(frames, 0, options.size, options.model)
        chunked = measure(frames, CHUNK, options.size, options.model)
        ratio = chunked["peak_extra_mib"] / max(whole["peak_extra_mib"], 1e-9)
        print(f"{frames:>6} {whole['rows']:>5} | {whole['peak_extra_mib']:>14.0f} {whole['seconds']:>6.1f} | "
              f"{chunked['runs']:>13} {chunked['largest_run']:>8} {chunked['peak_extra_mib']:>6.0f} "
              f"{chunked['seconds']:>6.1f} | {ratio:>8.3f}", flush=True)
    print(f"chunked = max_frames_per_batch {CHUNK}; memory x = chunked peak / one-batch peak.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
