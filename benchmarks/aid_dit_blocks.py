"""Which Flux blocks to interpolate by default: all, double or single (issue 12.1), measured.

A random-weight Flux at Flux.1's proportions of blocks (1 double : 2 single; real Flux has 19 : 38) and
head size (128), 512 wide, makes F = 7 frames between two random prompts with each `dit_blocks`
choice, and with plain text-embedding interpolation (TEI, the patch switched off). Measured on the
final latents with the pack's metrics (scoring/metrics.py) over L2 distances between frames:
- change vs TEI: mean over interior frames of |x_f - tei_f| / |tei_f| (how much interpolated
  attention does, 0 = nothing);
- smoothness: 1 - Gini of the neighbour distances (1 = even steps), and consistency: their mean
  relative to the endpoints' distance (lower = frames closer together);
- seconds per sequence.
Random weights cannot show what a trained Flux draws; the numbers show how strongly each choice acts
on the sequence and how evenly, which is what the default must get right. Averaged over --pairs
prompt pairs. Run: `.venv/bin/python benchmarks/aid_dit_blocks.py` (a few minutes).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

CONFIG = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
          "context_in_dim": 64, "hidden_size": 512, "mlp_ratio": 4.0, "num_heads": 4, "depth": 3,
          "depth_single_blocks": 6, "axes_dim": [16, 56, 56], "theta": 10000, "patch_size": 2, "qkv_bias": True}
CHOICES = ("all", "double", "single")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--text-tokens", type=int, default=32)
    options = parser.parse_args(argv)

    import torch

    from aid_harness import host, models
    from aid_harness.dit_models import dit_conditioning

    root, _ = host.find_comfyui()
    base = Path(tempfile.mkdtemp(prefix="aid-dit-blocks-"))
    host.make_base_directory(base)
    host.boot_in_process(root, base)
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.scoring.metrics import consistency, smoothness
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    config = comfy.supported_models.Flux(dict(CONFIG))
    config.set_inference_dtype(torch.float32, None)
    base_model = config.get_model({})
    models.randomize_module_(base_model.diffusion_model, salt="flux-blocks-bench")
    model = comfy.model_patcher.ModelPatcher(base_model, comfy.model_management.get_torch_device(),
                                             comfy.model_management.unet_offload_device())
    schedule = InterpolationSchedule(tuple(linear_coefficients(7)), "linear")

    def sequence(a, b, blocks, active=True):
        started = time.perf_counter()
        frames = AIDSampler().sample(model, a, b, a, schedule, options.size, options.size, 1, options.steps, 1.0,
                                     "euler", "simple", "fused outer", "self and cross", 0.0,
                                     0.5 if active else 0.0, 0, dit_blocks=blocks)[0]["samples"]
        return frames.flatten(1), time.perf_counter() - started

    rows = {choice: {"change": [], "smoothness": [], "consistency": [], "seconds": []} for choice in CHOICES + ("TEI",)}
    with torch.inference_mode():
        for pair in range(options.pairs):
            a = dit_conditioning("flux", 10 + 2 * pair, tokens=options.text_tokens)
            b = dit_conditioning("flux", 11 + 2 * pair, tokens=options.text_tokens)
            tei, seconds = sequence(a, b, "all", active=False)
            results = {"TEI": (tei, seconds)}
            results.update({choice: sequence(a, b, choice) for choice in CHOICES})
            span = float((tei[-1] - tei[0]).norm())
            for name, (frames, seconds) in results.items():
                steps = [float((frames[i + 1] - frames[i]).norm()) for i in range(6)]
                change = statistics.mean(float((frames[f] - tei[f]).norm() / tei[f].norm()) for f in range(1, 6))
                rows[name]["change"].append(change)
                rows[name]["smoothness"].append(smoothness(steps))
                rows[name]["consistency"].append(consistency(steps) / span)
                rows[name]["seconds"].append(seconds)
    print(f"Flux block choice: random Flux {CONFIG['depth']} double + {CONFIG['depth_single_blocks']} single blocks, "
          f"width {CONFIG['hidden_size']}, F=7, {options.steps} steps euler, cfg 1, fused outer, first 50%, "
          f"{options.size} px, {options.text_tokens} text tokens, mean of {options.pairs} prompt pairs")
    print(f"{'dit_blocks':<10} {'change vs TEI':>13} {'smoothness':>11} {'consistency':>12} {'seconds':>8}")
    for name, values in rows.items():
        print(f"{name:<10} {statistics.mean(values['change']):13.3f} {statistics.mean(values['smoothness']):11.3f} "
              f"{statistics.mean(values['consistency']):12.3f} {statistics.mean(values['seconds']):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
