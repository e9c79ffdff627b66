"""Cost of AID on Flux against plain sampling of the same batch (issue 12.6), concat and lse side by side.

Two measurements, each method in its own process (so peak memory is not hidden by what an earlier
run cached), interleaved per repeat:

1. sampling: Flux.1-dev at full width (3072, 24 heads of 128) and reduced depth (the cached diffusion
   model file with one double and one single block, loaded through UNETLoader; --double / --single
   build other depths in-process), F = 7 frames, cfg 1 (guidance distilled), euler, interpolation for
   the first half of the schedule. "plain" is the core KSampler on the same 7-row batch and per-frame
   CONDITIONING; "aid-concat" and "aid-lse" are AID Sampler (fused outer) with either fusion.
   CONDITIONING is 256 tokens x 4096 (T5's padding on Flux).
2. attention: one joint attention call of a Flux block at 1024 px (4096 image + 256 text tokens) for
   the same 7 rows, through the AID override and ComfyUI's attention backend, active (inside the
   window), against the plain call. At 1024 px attention is a large part of a block's work; at the
   small sizes a CPU can sample it is a few percent, so (1) alone would hide AID's cost.

Memory: the process's peak resident memory during the measured run above what it held just before
(VmHWM after resetting it through /proc/self/clear_refs), weights excluded. Linux only.

Run: `.venv/bin/python benchmarks/aid_dit_cost.py` (about 20 minutes on 2 CPU cores);
`--quick` uses 64 px, 16 text tokens and (unless given) a 1024-token attention for a smoke test;
`--parts sampling` or `--parts attention` runs one of the two measurements.
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

FRAMES, SEED, END_PERCENT = 7, 1, 0.5
METHODS = ("plain", "aid-concat", "aid-lse")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _measure(run) -> tuple[float, float]:
    """(seconds, peak extra MiB) of one call of run()."""
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    return seconds, max(_status_kib("VmHWM") - before, 0) / 1024


def _boot():
    import tempfile

    from aid_harness import host

    root, _ = host.find_comfyui()
    base = Path(tempfile.mkdtemp(prefix="aid-dit-bench-"))
    host.make_base_directory(base)
    return host.boot_in_process(root, base)


def _flux_model(host_, double: int, single: int):
    """Full-width Flux: the cached 1+1 file through UNETLoader, or random weights at another depth in-process."""
    import torch

    from aid_harness import dit_models, host, models

    if (double, single) == (1, 1):
        path = dit_models.ensure_flux_diffusion_model()
        host.make_base_directory(host_["base"], {"diffusion_models": [path]})
        return host_["nodes"].UNETLoader().load_unet(path.name, "default")[0]
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Flux(dict(dit_models.FLUX_FILE_CONFIG, depth=double, depth_single_blocks=single))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    models.randomize_module_(model.diffusion_model, salt="flux-bench")
    return comfy.model_patcher.ModelPatcher(model, comfy.model_management.get_torch_device(),
                                            comfy.model_management.unet_offload_device())


def sampling_worker(method: str, size: int, steps: int, text_tokens: int, double: int, single: int) -> dict:
    import torch

    host_ = _boot()
    nodes = host_["nodes"]
    from aid_harness.dit_models import dit_conditioning
    from aid_pack.nodes.conditioning import AIDConditioning
    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    with torch.inference_mode():
        model = _flux_model(host_, double, single)
        a, b, negative = (dit_conditioning("flux", seed, tokens=text_tokens, width=4096) for seed in (1, 2, 3))
        schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
        positive = AIDConditioning().build(a, b, schedule)[0]
        nodes.common_ksampler(model, SEED, 1, 1.0, "euler", "simple", a, negative,
                              {"samples": torch.zeros(1, 16, 2, 2)})  # warm-up: loads and initialises everything

        def run():
            if method == "plain":
                latent = {"samples": torch.zeros(FRAMES, 16, size // 8, size // 8), "batch_index": [0] * FRAMES}
                return nodes.common_ksampler(model, SEED, steps, 1.0, "euler", "simple", positive, negative, latent)
            return AIDSampler().sample(model, a, b, negative, schedule, size, size, SEED, steps, 1.0, "euler",
                                       "simple", "fused outer", "self and cross", 0.0, END_PERCENT, 0,
                                       fusion=method.split("-", 1)[1])

        seconds, mib = _measure(run)
    return {"seconds": seconds, "peak_extra_mib": mib}


def attention_worker(method: str, image_tokens: int, text_tokens: int) -> dict:
    """One Flux joint attention call (24 heads x 128) for 7 frames through ComfyUI's dispatch."""
    import torch

    _boot()
    from comfy.ldm.modules.attention import optimized_attention

    from aid_pack.attention.branches import POSITIVE_UUIDS
    from aid_pack.attention.joint_override import TEXT_TOKENS, JointAttentionOverride
    from aid_pack.attention.patch import InterpolationSettings
    from aid_pack.samplers.sequence.schedule import linear_coefficients

    tokens = image_tokens + text_tokens
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(FRAMES, 24, tokens, 128, generator=generator) for _ in range(3))
    options = {"uuids": ["positive"], POSITIVE_UUIDS: frozenset(["positive"]), "sigmas": torch.tensor([1.0]),
               "block_type": "double", "block_index": 0, TEXT_TOKENS: text_tokens}
    if method != "plain":
        settings = InterpolationSettings(tuple(linear_coefficients(FRAMES)), fusion=method.split("-", 1)[1])
        options["optimized_attention_override"] = JointAttentionOverride(settings)

    def run():
        return optimized_attention(q, k, v, 24, skip_reshape=True, transformer_options=options)

    with torch.inference_mode():
        optimized_attention(q[:1, :, :64], k[:1, :, :64], v[:1, :, :64], 24, skip_reshape=True)  # warm-up
        seconds, mib = _measure(run)
    return {"seconds": seconds, "peak_extra_mib": mib}


def _subprocess(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(title: str, results: dict) -> list[str]:
    plain = results["plain"]
    lines = [title, f"  {'method':<11} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}"]
    for method in METHODS:
        r = results[method]
        lines.append(f"  {method:<11} {r['seconds']:8.2f} {r['seconds'] / plain['seconds']:7.3f} "
                     f"{r['peak_extra_mib']:9.0f} {r['peak_extra_mib'] / max(plain['peak_extra_mib'], 1e-9):9.3f}")
    return lines


def _best(runs: list[dict]) -> dict:
    return {"seconds": min(r["seconds"] for r in runs), "peak_extra_mib": max(r["peak_extra_mib"] for r in runs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="sampling: image size in pixels")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--double", type=int, default=1, help="double blocks (1 with --single 1: the cached file)")
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--attention-image-tokens", type=int, default=4096, help="attention: 4096 = 1024 px")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting; the fastest time counts")
    parser.add_argument("--parts", nargs="+", choices=("sampling", "attention"), default=["sampling", "attention"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        kind, method, *numbers = options.worker
        worker = sampling_worker if kind == "sampling" else attention_worker
        print(json.dumps(worker(method, *map(int, numbers))))
        return 0
    if options.quick:
        options.size, options.text_tokens = 64, 16
        if options.attention_image_tokens == parser.get_default("attention_image_tokens"):
            options.attention_image_tokens = 1024
    import torch

    print(f"AID DiT cost benchmark: F={FRAMES}, Flux.1-dev full width (3072, 24 heads x 128), random weights, "
          f"cfg 1, fused outer, interpolation for the first {END_PERCENT:.0%} of the schedule; torch "
          f"{torch.__version__}, {os.cpu_count()} CPU threads, ComfyUI --cpu (its default CPU attention).")
    sampling = {method: [] for method in METHODS}
    attention = {method: [] for method in METHODS}
    for _ in range(options.repeats):
        for method in METHODS:  # interleaved, so drifting machine load hits every method alike
            if "sampling" in options.parts:
                sampling[method].append(_subprocess(["sampling", method, str(options.size), str(options.steps),
                                                     str(options.text_tokens), str(options.double),
                                                     str(options.single)]))
            if "attention" in options.parts:
                attention[method].append(_subprocess(["attention", method, str(options.attention_image_tokens),
                                                      str(options.text_tokens)]))
    lines = []
    if "sampling" in options.parts:
        lines += _table(f"sampling: {options.double} double + {options.single} single blocks, {options.size} px "
                        f"({(options.size // 16) ** 2} image + {options.text_tokens} text tokens), {options.steps} "
                        f"steps", {m: _best(r) for m, r in sampling.items()})
    if "attention" in options.parts:
        lines += _table(f"attention: one joint attention call, {options.attention_image_tokens} image + "
                        f"{options.text_tokens} text tokens, 7 rows, inside the window",
                        {m: _best(r) for m, r in attention.items()})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
