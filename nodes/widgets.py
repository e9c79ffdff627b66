"""Widget definitions shared by several AID nodes, and the check that turns their values into options.

Apply AID, AID Sampler and AID Smooth Sampler take the same interpolated-attention inputs; they are
defined once here so their names, defaults and tooltips cannot drift apart.
"""
from __future__ import annotations

from ..attention.interpolation import DEFAULT_MODE, FUSION_STRATEGIES, MODES
from ..attention.patch import LAYERS
from ..samplers.sequence import InterpolationOptions
from .validation import check_choice, check_percent_range


def interpolation_inputs() -> dict:
    """The widgets of interpolated attention, shared by Apply AID and AID Sampler."""
    return {
        "mode": (list(MODES), {"default": DEFAULT_MODE,
                               "tooltip": "fused outer (default, best fidelity): each frame attends to its own keys "
                                          "joined with A's and with B's, outputs mixed by t. fused inner: own keys "
                                          "joined with lerp(A, B) keys. outer / inner: without the frame's own keys."}),
        "layers": (list(LAYERS), {"default": LAYERS[0],
                                  "tooltip": "Which attention to interpolate: self-attention carries layout, "
                                             "cross-attention carries meaning."}),
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
                   "chained, lse joins key sets instead."})}


def interpolation_options(node, mode, layers, start_percent, end_percent, fusion) -> InterpolationOptions:
    """Validate the shared widgets and bundle them."""
    check_choice(node, "mode", mode, MODES)
    check_choice(node, "layers", layers, LAYERS)
    check_choice(node, "fusion", fusion, FUSION_STRATEGIES)
    check_percent_range(node, start_percent, end_percent)
    return InterpolationOptions(mode, layers, start_percent, end_percent, fusion)


def image_endpoints_input() -> dict:
    """The optional socket for IP-Adapter image endpoints, shared by Apply AID and AID Sampler."""
    return {"image_endpoints": ("AID_IMAGE_ENDPOINTS", {
        "tooltip": "Optional image prompts from AID IP-Adapter Endpoints (image morphing or image-control)."})}
