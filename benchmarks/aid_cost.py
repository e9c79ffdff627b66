"""Cost of an AID sequence against plain sampling of the same batch (issue 3's targets).

Setting: F = 7 frames, full SD1.5 architecture with random weights, 10 steps of euler, cfg 7,
interpolation active for the first half of the schedule, at 128, 256 and 512 px. At 512 px (a
64 x 64 latent) a step takes many minutes on a 2-core CPU, so that size runs 1 step, which is
interpolated: its row is the cost of an interpolated step, the worst case. "plain" is the core
KSampler on the same 7-row batch and conditioning; "aid" is AID Sampler (fused outer) with
fused attention by joined key sets (concat, the default) and by log-sum-exp merging (lse).

A second table measures one self-attention layer alone at SD1.5's largest level of a 512 px
image (4096 tokens, 8 heads of 40) for the interior rows of a 14-frame sequence (12 rows):
concat through ComfyUI's attention against lse as it was (scores of every row for 1024
queries at a time), lse chunked with a byte budget, and lse through torch's fused kernel.

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
STEPS_BY_SIZE = {512: 1}  # one (interpolated) step where a step takes many minutes on a shared 2-core CPU
METHODS = ("plain", "aid-concat", "aid-lse")
LAYER_ROWS, LAYER_TOKENS, LAYER_HEADS, LAYER_DIM_HEAD = 12, 4096, 8, 40
LAYER_METHODS = ("concat", "lse-previous", "lse-chunked", "lse-fused")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int:
    """Reset the peak-RSS mark (Linux >= 4.0) and return the resident KiB now."""
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    return before


def previous_attention_with_lse(q, k, v, heads: int, query_chunk: int = 1024):
    """The lse attention before issue 10 (commit 92f3e12), kept verbatim to measure against.

    Holds [rows, heads, query_chunk, Lk] float32 scores and as much again in probabilities.
    """
    import torch

    rows, q_tokens, channels = q.shape
    d = channels // heads
    scale = d ** -0.5
    qh = q.reshape(rows, q_tokens, heads, d).transpose(1, 2)
    kh = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    vh = v.reshape(v.shape[0], v.shape[1], heads, d).transpose(1, 2)
    outs, lses = [], []
    for start in range(0, q_tokens, query_chunk):
        scores = torch.matmul(qh[:, :, start:start + query_chunk].float() * scale, kh.float().transpose(-1, -2))
        lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - lse.unsqueeze(-1))
        outs.append(torch.matmul(probs, vh.float()))
        lses.append(lse)
    out = torch.cat(outs, dim=2).transpose(1, 2).reshape(rows, q_tokens, channels).to(q.dtype)
    return out, torch.cat(lses, dim=2)


def layer_worker(method: str, tokens: int = LAYER_TOKENS) -> dict:
    """One fused-outer self-attention layer (12 interior rows x `tokens`): seconds and peak extra MiB."""
    import tempfile

    import torch

    from aid_harness import host

    root, _ = host.find_comfyui()
    host.boot_in_process(root, host.make_base_directory(Path(tempfile.mkdtemp(prefix="aid-bench-layer-"))))
    import comfy.ldm.modules.attention as comfy_attention

    from aid_pack.attention import interpolation

    generator = torch.Generator().manual_seed(SEED)
    channels = LAYER_HEADS * LAYER_DIM_HEAD

    def tensor(batch):
        return torch.randn(batch, tokens, channels, generator=generator)

    q, k, v = tensor(LAYER_ROWS), tensor(LAYER_ROWS), tensor(LAYER_ROWS)
    k_a, v_a, k_b, v_b = tensor(1), tensor(1), tensor(1), tensor(1)
    t = torch.linspace(0, 1, LAYER_ROWS + 2)[1:-1]
    lse_functions = {
        "lse-previous": lambda q_, k_, v_: previous_attention_with_lse(q_, k_, v_, LAYER_HEADS),
        "lse-chunked": lambda q_, k_, v_: interpolation.attention_with_lse(q_, k_, v_, LAYER_HEADS,
                                                                           use_fused_kernel=False),
        "lse-fused": lambda q_, k_, v_: interpolation.attention_with_lse(q_, k_, v_, LAYER_HEADS),
    }

    def run():
        if method == "concat":
            attention = lambda q_, k_, v_: comfy_attention.optimized_attention(q_, k_, v_, LAYER_HEADS)  # noqa: E731
            return interpolation.fused_outer(q, k, v, k_a, v_a, k_b, v_b, t, attention)
        return interpolation.fused_outer_lse(q, k, v, k_a, v_a, k_b, v_b, t, lse_functions[method], LAYER_HEADS)

    with torch.inference_mode():
        reference = interpolation.fused_outer(q, k, v, k_a, v_a, k_b, v_b, t,
                                              lambda q_, k_, v_: comfy_attention.optimized_attention(
                                                  q_, k_, v_, LAYER_HEADS))
        run()  # warm-up
        before = _reset_peak()
        started = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - started
        peak = _status_kib("VmHWM")
        error = float((out - reference).abs().max())
    return {"method": method, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024,
            "max_abs_difference": error, "attention": comfy_attention.optimized_attention.__name__}


def worker(size: int, method: str, model_size: str = "full") -> dict:
    """Load the model, warm up, run one measured sampling; return seconds and peak extra MiB."""
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    nodes, model, _, _, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.conditioning import AIDConditioning
    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    a, b, negative = encode("a photo of a dog"), encode("a photo of a car"), encode("blurry")
    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    positive = AIDConditioning().build(a, b, schedule)[0]
    nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", a, negative,
                          {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything

    steps = STEPS_BY_SIZE.get(size, STEPS)

    def run():
        if method == "plain":
            latent = {"samples": torch.zeros(FRAMES, 4, size // 8, size // 8), "batch_index": [0] * FRAMES}
            return nodes.common_ksampler(model, SEED, steps, CFG, "euler", "normal", positive, negative, latent)
        return AIDSampler().sample(model, a, b, negative, schedule, size, size, SEED, steps, CFG, "euler", "normal",
                                   "fused outer", "self and cross", 0.0, END_PERCENT, 0,
                                   fusion=method.split("-", 1)[1])

    before = _reset_peak()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return {"size": size, "method": method, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024,
            "steps": steps}


def _in_subprocess(*arguments: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(size: int, method: str, model_size: str) -> dict:
    return _in_subprocess("--worker", str(size), method, "--model", model_size)


def layer_table(tokens: int = LAYER_TOKENS) -> list[str]:
    """The one-layer table: every method in its own process, ratios against concat."""
    results = {method: _in_subprocess("--layer-worker", method, "--layer-tokens", str(tokens))
               for method in LAYER_METHODS}
    concat = results["concat"]
    lines = [f"One fused-outer self-attention layer: {LAYER_ROWS} interior rows x {tokens} tokens, "
             f"{LAYER_HEADS} heads of {LAYER_DIM_HEAD} (concat through ComfyUI's {concat['attention']}):",
             f"{'method':<13} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9} {'max |diff|':>11}"]
    for method in LAYER_METHODS:
        r = results[method]
        lines.append(f"{method:<13} {r['seconds']:8.2f} {r['seconds'] / concat['seconds']:7.3f} "
                     f"{r['peak_extra_mib']:9.0f} {r['peak_extra_mib'] / max(concat['peak_extra_mib'], 1e-9):9.3f} "
                     f"{r['max_abs_difference']:11.2e}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest time counts")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--no-layer", action="store_true", help="skip the one-layer table")
    parser.add_argument("--layer-tokens", type=int, default=LAYER_TOKENS, help="tokens of the one-layer table")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--layer-worker", metavar="METHOD", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(worker(int(options.worker[0]), options.worker[1], options.model)))
        return 0
    if options.layer_worker:
        print(json.dumps(layer_worker(options.layer_worker, options.layer_tokens)))
        return 0
    import torch

    print(f"AID cost benchmark: F={FRAMES}, {options.model} SD1.5 architecture (random weights), {STEPS} steps euler "
          f"({', '.join(f'{size} px: {steps}' for size, steps in STEPS_BY_SIZE.items())}), "
          f"cfg {CFG}, interpolation for the first {END_PERCENT:.0%} of the schedule; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU threads, ComfyUI --cpu (its default CPU attention).", flush=True)
    if not options.no_layer:
        print("\n".join(layer_table(options.layer_tokens)), flush=True)
    print("Whole sequences (AID Sampler against the core KSampler on the same batch):")
    print(f"{'size':>5} {'method':<11} {'steps':>5} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}",
          flush=True)
    for size in options.sizes:  # each size's rows as soon as they are measured
        results = {}
        for _ in range(options.repeats):
            for method in METHODS:  # interleaved, so drifting machine load hits every method alike
                result = measure(size, method, options.model)
                best = results.get(method, result)
                results[method] = {"steps": result["steps"], "seconds": min(result["seconds"], best["seconds"]),
                                   "peak_extra_mib": max(result["peak_extra_mib"], best["peak_extra_mib"])}
        plain = results["plain"]
        for method in METHODS:
            r = results[method]
            print(f"{size:>5} {method:<11} {r['steps']:>5} {r['seconds']:8.1f} {r['seconds'] / plain['seconds']:7.3f} "
                  f"{r['peak_extra_mib']:9.0f} {r['peak_extra_mib'] / max(plain['peak_extra_mib'], 1e-9):9.3f}",
                  flush=True)
    print("targets: time x <= 1.10, memory x <= 1.30 (aid-concat is the default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
