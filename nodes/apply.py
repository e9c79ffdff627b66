"""Apply AID: patch a MODEL clone so a core sampler generates an interpolation sequence."""
from __future__ import annotations

from ..attention.joint_override import DEFAULT_BLOCKS
from ..samplers.sequence.sampler import patched_model
from .ipadapter import check_image_endpoints
from .widgets import (dit_blocks_input, fusion_input, image_endpoints_input, interpolation_inputs,
                      interpolation_options)

NODE_NAME = "Apply AID"


def patch_for_schedule(node, model, coefficients, options, image_endpoints=None):
    """patched_model once the image endpoints suit the model (interpolation_options has checked its family)."""
    check_image_endpoints(node, image_endpoints, model)
    return patched_model(model, coefficients, options, node, image_endpoints)


class ApplyAID:
    """MODEL -> MODEL with interpolated attention for a latent batch laid out by the schedule."""

    DESCRIPTION = ("Attention interpolation (AID) for the core samplers: returns a patched copy of the model (the "
                   "input model is not changed). Sample it with AID Latent (one latent per frame) and AID "
                   "Conditioning (one prompt row per frame) from the same schedule; frame 0 and the last frame "
                   "come out exactly as plain generations of A and B, with any sampler (stochastic ones share their "
                   "step noise across frames) and any core guider (only the sequence prompt's rows are "
                   "interpolated). Works on SD1.x, SD2.x and SDXL checkpoints and on the Flux.1, SD3 / SD3.5 and "
                   "Qwen-Image diffusion transformers (joint text+image attention).")
    CATEGORY = "AID/advanced"
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with interpolated attention between the first and last frame of each batch.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": ("MODEL", {"tooltip": "The checkpoint's model; the node returns a patched copy "
                                                          "and leaves this one unchanged."}),
                         "schedule": ("AID_SCHEDULE", {"tooltip": "The same schedule as the latent and prompts."}),
                         **interpolation_inputs()},
            "optional": {**fusion_input(), **image_endpoints_input(), **dit_blocks_input()},
        }

    def apply(self, model, schedule, mode, layers, start_percent, end_percent, fusion="concat", image_endpoints=None,
              dit_blocks=DEFAULT_BLOCKS):
        options = interpolation_options(NODE_NAME, mode, layers, start_percent, end_percent, fusion, dit_blocks, model)
        return (patch_for_schedule(NODE_NAME, model, schedule.coefficients, options, image_endpoints),)


NODE_CLASS_MAPPINGS = {"ApplyAID": ApplyAID}
NODE_DISPLAY_NAME_MAPPINGS = {"ApplyAID": NODE_NAME}
