"""Widget definitions shared by several AID nodes, and the check that turns their values into options.

Apply AID, AID Sampler and AID Smooth Sampler take the same interpolated-attention inputs; they are
defined once here so their names, defaults and tooltips cannot drift apart.
"""
from __future__ import annotations

from ..attention.install import UnsupportedModelError
from ..attention.interpolation import DEFAULT_MODE, FUSION_STRATEGIES, MODES
from ..attention.joint_override import BLOCKS, DEFAULT_BLOCKS
from ..attention.patch import LAYERS
from ..attention.registry import SUPPORTED_MODELS, model_family
from ..errors import AIDInputError
from ..samplers.editing.morph import B_INPUT
from ..samplers.sequence.conditioning import BLENDS
from ..samplers.sequence.sampler import InterpolationOptions
from .validation import check_choice, check_percent_range

MAX_RESOLUTION = 16384


def interpolation_inputs() -> dict:
    """The widgets of interpolated attention, shared by Apply AID and AID Sampler."""
    return {
        "mode": (list(MODES), {"default": DEFAULT_MODE,
                               "tooltip": "fused outer (default, best fidelity): each frame attends to its own keys "
                                          "joined with A's and with B's, outputs mixed by t. fused inner: own keys "
                                          "joined with lerp(A, B) keys. outer / inner: without the frame's own keys."}),
        "layers": (list(LAYERS), {"default": LAYERS[0],
                                  "tooltip": "Which attention to interpolate: self-attention carries layout, "
                                             "cross-attention carries meaning. On diffusion transformers (joint "
                                             "attention) this picks the endpoints' keys: image tokens (self), text "
                                             "tokens (cross) or both."}),
        "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Start of interpolated attention, as a fraction of the denoising "
                                               "schedule."}),
        "end_percent": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "End of interpolated attention; later steps use plain attention. Equal "
                                             "to start switches it off (plain text-embedding interpolation)."}),
    }


def fusion_input() -> dict:
    """The optional widget choosing how fused attention is computed."""
    return {"fusion": (list(FUSION_STRATEGIES), {
        "default": "concat",
        "tooltip": "concat: one attention call over joined key sets, through ComfyUI's attention backend. lse: "
                   "separate calls merged by log-sum-exp (fewer operations; torch's fused kernel on CPU and CUDA, "
                   "else chunked plain torch, in bounded memory); where another pack's attention patch is "
                   "chained, lse joins key sets instead. Applies to the fused modes only: inner and outer "
                   "always join key sets (concat)."})}


def dit_blocks_input() -> dict:
    """The optional widget choosing the diffusion-transformer blocks to interpolate."""
    return {"dit_blocks": (list(BLOCKS), {
        "default": DEFAULT_BLOCKS,
        "tooltip": "Diffusion transformers only (Flux, SD3, Qwen-Image): which blocks get interpolated attention. "
                   "all (default): every block. double: the two-stream joint blocks (all blocks of SD3 and "
                   "Qwen-Image). single: Flux's single-stream blocks. UNet checkpoints ignore it."})}


def interpolation_options(node, mode, layers, start_percent, end_percent, fusion, dit_blocks=DEFAULT_BLOCKS,
                          model=None) -> InterpolationOptions:
    """Validate the shared widgets (dit_blocks against the model's blocks when given) and bundle them."""
    check_choice(node, "mode", mode, MODES)
    check_choice(node, "layers", layers, LAYERS)
    check_choice(node, "fusion", fusion, FUSION_STRATEGIES)
    check_choice(node, "dit_blocks", dit_blocks, BLOCKS)
    check_percent_range(node, start_percent, end_percent)
    if model is not None:
        family = supported_family(node, model)
        if family is not None and dit_blocks != "all" and dit_blocks not in family.block_types:
            raise AIDInputError(node, "dit_blocks", f"{family.name} models have only "
                                f"{' and '.join(family.block_types)} blocks.", "choose all or double.")
    return InterpolationOptions(mode, layers, start_percent, end_percent, fusion, dit_blocks)


def supported_family(node, model):
    """The model's DiT family (None for a UNet); an unsupported model is the node's input error."""
    try:
        return model_family(model)
    except UnsupportedModelError as error:
        raise AIDInputError(node, "model", str(error), f"use a supported model: {SUPPORTED_MODELS}.") from None


def image_endpoints_input() -> dict:
    """The optional socket for IP-Adapter image endpoints, shared by Apply AID and AID Sampler."""
    return {"image_endpoints": ("AID_IMAGE_ENDPOINTS", {
        "tooltip": "Optional image prompts from AID IP-Adapter Endpoints (image morphing or image-control)."})}


def share_input() -> dict:
    """The optional socket for a participant's share of a split sequence (AID Sequence Share)."""
    return {"share": ("AID_SHARE", {
        "tooltip": "Optional, to split one sequence across several GPUs or machines: from AID Sequence Share. This "
                   "participant samples only its share of the frames and outputs those, in order. Not connected: "
                   "the whole sequence."})}


def inversion_input() -> dict:
    """The optional socket of an inversion result, for AID Sampler."""
    return {"inversion": ("AID_INVERSION", {
        "tooltip": "Edit a real image: connect AID Invert Image. Frame 0 is then the inverted image exactly, endpoint "
                   "B (positive_b) and the frames between start from its inverted noise. The size comes from the "
                   "image (width and height are ignored); sampler euler or ddim with the inversion's steps and "
                   "scheduler; the seed does not matter."})}


def inversion_b_input() -> dict:
    """The optional socket of photo B's inversion (a morph of two photos), for AID Sampler; after its other inputs."""
    return {B_INPUT: ("AID_INVERSION", {
        "tooltip": "Morph two photos: connect a second AID Invert Image (photo B, the same size, model and schedule "
                   "as 'inversion'). The last frame is then photo B exactly, the frames between start from slerp of "
                   "both inverted noises; use each photo's source prompt as positive_a and positive_b."})}


def sequence_sampler_inputs() -> dict:
    """AID Sampler's inputs; AID Smooth Sampler and AID Keyframe Sampler take theirs from here too, so the
    names, defaults and tooltips they share cannot drift apart."""
    import comfy.samplers

    return {
        "required": {
            "model": ("MODEL", {"tooltip": "The model: SD1.x, SD2.x, SDXL, Flux, SD3.5 or Qwen-Image; it is "
                                           "not changed, the node samples a patched copy."}),
            "positive_a": ("CONDITIONING", {"tooltip": "Prompt of endpoint A (frame 0)."}),
            "positive_b": ("CONDITIONING", {"tooltip": "Prompt of endpoint B (the last frame)."}),
            "negative": ("CONDITIONING", {"tooltip": "Negative prompt, shared by every frame."}),
            "schedule": ("AID_SCHEDULE", {"tooltip": "Coefficients from AID Schedule; sets the frame count."}),
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "Width of every frame in pixels (a multiple of 8)."}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "Height of every frame in pixels (a multiple of 8)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "Seed of the noise every frame starts from (and of endpoint A)."}),
            "steps": ("INT", {"default": 25, "min": 1, "max": 10000,
                              "tooltip": "Denoising steps, as in KSampler; the whole sequence takes them together."}),
            "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale, as in KSampler: higher follows the "
                                         "prompts more closely, too high burns the image."}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {
                "tooltip": "Sampling algorithm, as in KSampler. Ancestral and SDE samplers work too: every "
                           "frame gets the same step noise."}),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {
                "tooltip": "Noise schedule over the steps, as in KSampler."}),
            **interpolation_inputs(),
            "max_frames_per_batch": ("INT", {"default": 0, "min": 0, "max": 4096,
                                             "tooltip": "0: all frames in one batch. Otherwise the sequence runs "
                                                        "in chunks of at most this many frames (>= 3), each "
                                                        "holding both endpoints again; lowers peak memory."}),
        },
        "optional": {
            "guidance": ("AID_GUIDANCE", {"tooltip": "PAID guidance: interior frames use this prompt."}),
            "seed_b": ("INT", {"default": -1, "min": -1, "max": 0xffffffffffffffff,
                               "tooltip": "Seed of endpoint B's noise; frames start from slerp of both. -1: "
                                          "same as seed."}),
            "blend": (list(BLENDS), {"default": "lerp", "tooltip": "How interior prompts mix A and B."}),
            **fusion_input(),
            **image_endpoints_input(),
            **inversion_input(),
            **share_input(),
            **dit_blocks_input(),
            **inversion_b_input(),
        },
    }
