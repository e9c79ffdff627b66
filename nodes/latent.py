"""AID Latent: the empty latent batch of a sequence and its noise."""
from __future__ import annotations

import torch

from ..samplers.sequence.noise import SequenceNoise
from .validation import check_image_size

NODE_NAME = "AID Latent"
MAX_RESOLUTION = 16384


class AIDLatent:
    """F empty latents that share one noise under the core KSampler, and a two-seed NOISE."""

    DESCRIPTION = ("The latent batch of a sequence: one empty latent per frame of the schedule. Under the core "
                   "KSampler every frame gets the same initial noise (the KSampler's seed), so frame 0 matches a "
                   "plain one-image generation. The NOISE output is for SamplerCustomAdvanced: frame f starts from "
                   "slerp(noise of seed, noise of seed_b, t_f). Fits every supported model: like the core empty "
                   "latents, ComfyUI gives it the model's channels and layout when sampling starts (16 channels "
                   "for Flux, SD3 and Qwen-Image).")
    CATEGORY = "AID/advanced"
    FUNCTION = "build"
    RETURN_TYPES = ("LATENT", "NOISE")
    RETURN_NAMES = ("latent", "noise")
    OUTPUT_TOOLTIPS = ("Empty latents, one per frame, all mapped to the same noise (batch_index 0).",
                       "Per-frame noise for SamplerCustomAdvanced.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "Image width in pixels (a multiple of 8)."}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "Image height in pixels (a multiple of 8)."}),
            "schedule": ("AID_SCHEDULE", {"tooltip": "The sequence's schedule; sets the number of frames."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "NOISE output only: seed of endpoint A's noise."}),
            "seed_b": ("INT", {"default": -1, "min": -1, "max": 0xffffffffffffffff,
                               "tooltip": "NOISE output only: seed of endpoint B's noise; -1 uses seed (every frame "
                                          "starts from the same noise)."}),
        }}

    def build(self, width, height, schedule, seed, seed_b=-1):
        check_image_size(NODE_NAME, width, height)
        frames = schedule.frames
        samples = torch.zeros([frames, 4, height // 8, width // 8])
        latent = {"samples": samples, "batch_index": [0] * frames}
        noise = SequenceNoise(schedule.coefficients, seed, None if seed_b < 0 else seed_b, NODE_NAME)
        return (latent, noise)


NODE_CLASS_MAPPINGS = {"AIDLatent": AIDLatent}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDLatent": NODE_NAME}
