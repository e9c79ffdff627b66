"""UNet rows per explored frame of the smooth searches (AID Smooth Sampler), against the reference.

The reference makes every explored frame in its own run of three images [A, f, B] and sends the
positive and negative branches as separate UNet calls: 6 UNet rows per step for each explored
frame. Here each search round samples its new frames together in one batch with both endpoints,
cond and uncond batched: a round of k new frames costs 2 (k + 2) rows per step.

Rows are counted by a spy on the UNet (a model_function_wrapper recording the batch of every call)
while the real searches run on the random tiny SD1.5 checkpoint (64 px, few steps: the row count
does not depend on size or weights), and checked against the arithmetic 2 * sum of batch sizes.
"Explored frames" are the interior frames a search made (the two endpoints are not counted; the
reference re-makes them in every run too).

Run: .venv/bin/python benchmarks/smooth_rows.py [--frames 7] [--steps 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

REFERENCE_ROWS = 6  # [A, f, B] x (positive, negative) per explored frame and step
CFG, SEED, SIZE = 5.0, 1, 64


def cases(frames: int):
    """(label, method, keyword arguments) of the searches to measure."""
    return [
        ("dynamic, 16 explored, 1/round", "dynamic selection", dict(exploration_frames=16, frames_per_round=1)),
        ("dynamic, 16 explored, 4/round", "dynamic selection", dict(exploration_frames=16, frames_per_round=4)),
        ("dynamic, 24 explored, 4/round", "dynamic selection", dict(exploration_frames=24, frames_per_round=4)),
        ("dynamic, 24 explored, 8/round", "dynamic selection", dict(exploration_frames=24, frames_per_round=8)),
        ("auto beta, 6 trials, 1/round", "auto beta", dict(max_trials=6, frames_per_round=frames - 2)),
        ("auto beta, 6 trials, 2/round", "auto beta", dict(max_trials=6, frames_per_round=2 * (frames - 2))),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=7, help="frames F of the result")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (rows are reported per step)")
    options = parser.parse_args(argv)

    import torch

    from aid_harness.sd15_session import boot_with_sd15
    from aid_harness.unet_rows import counting_model

    nodes, model, clip, vae, encode = boot_with_sd15("tiny")
    from aid_pack.scoring.metrics import PixelDistance
    from aid_pack.samplers.sequence.sampler import SequenceRequest
    from aid_pack.samplers.smooth.selection import auto_beta, dynamic_selection
    from aid_pack.samplers.smooth.sampling import DiffusionFrames, unet_rows_per_step

    a, b, negative = encode("a photo of a dog"), encode("a photo of a car"), encode("blurry")

    print(f"UNet rows per explored frame and step: F={options.frames}, {options.steps} steps euler, cfg {CFG} "
          f"(cond and uncond batched), tiny random SD1.5 at {SIZE} px, pixel distance. Reference: "
          f"{REFERENCE_ROWS} rows per explored frame and step.")
    header = (f"{'search':<31} {'rounds':>6} {'explored':>8} {'rows/step':>9} {'arith.':>6} {'rows/frame':>10} "
              f"{'reference':>9} {'x ref':>6}")
    print(header)
    for label, method, settings in cases(options.frames):
        counted_model, counter = counting_model(model)
        latent = torch.zeros(3, 4, SIZE // 8, SIZE // 8)
        request = SequenceRequest(positive=[], negative=negative, coefficients=(0.0, 0.5, 1.0), latent=latent,
                                  noise=latent, seed=SEED, seed_b=None, steps=options.steps, cfg=CFG,
                                  sampler_name="euler", scheduler="normal")
        source = DiffusionFrames(counted_model, vae, request, a, b)
        if method == "dynamic selection":
            result = dynamic_selection(source, PixelDistance(), options.frames, **settings)
        else:
            result = auto_beta(source, PixelDistance(), options.frames, target_smoothness=1.0, **settings)
        explored = len(result.explored) - 2
        rows_per_step = counter.rows / options.steps
        arithmetic = unet_rows_per_step(source.batch_frames, CFG)
        if rows_per_step != arithmetic:
            raise SystemExit(f"{label}: counted {rows_per_step} rows per step, the arithmetic says {arithmetic}")
        per_frame = rows_per_step / explored
        print(f"{label:<31} {result.rounds:>6} {explored:>8} {rows_per_step:>9.0f} {arithmetic:>6} {per_frame:>10.2f} "
              f"{REFERENCE_ROWS:>9} {per_frame / REFERENCE_ROWS:>6.2f}")
    print("rows/frame = counted rows per step / explored interior frames = 2 + 4 * rounds / explored.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
