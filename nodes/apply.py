"""Apply AID: patch a MODEL clone so a core sampler generates an interpolation sequence."""
from __future__ import annotations

from ..attention.install import UnsupportedModelError
from ..errors import AIDInputError
from ..samplers.sequence import patched_model
from .ipadapter import check_image_endpoints
from .widgets import fusion_input, image_endpoints_input, interpolation_inputs, interpolation_options

NODE_NAME = "Apply AID"


def patch_for_schedule(node, model, coefficients, options, image_endpoints=None):
    """patched_model with an unsupported model reported as the node's input error."""
    check_image_endpoints(node, image_endpoints, model)
    try:
        return patched_model(model, coefficients, options, node, image_endpoints)
    except UnsupportedModelError as error:
        raise AIDInputError(node, "model", str(error), "use an SD1.x, SD2.x or SDXL checkpoint.") from None


class ApplyAID:
    """MODEL -> MODEL with interpolated attention for a latent batch laid out by the schedule."""

    DESCRIPTION = ("Attention interpolation (AID) for the core samplers: returns a patched copy of the model (the "
                   "input model is not changed). Sample it with AID Latent (one latent per frame) and AID "
                   "Conditioning (one prompt row per frame) from the same schedule; frame 0 and the last frame "
                   "come out exactly as plain generations of A and B, with any sampler (stochastic ones share their "
                   "step noise across frames) and any core guider (only the sequence prompt's rows are "
                   "interpolated).")
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
            "optional": {**fusion_input(), **image_endpoints_input()},
        }

    def apply(self, model, schedule, mode, layers, start_percent, end_percent, fusion="concat", image_endpoints=None):
        options = interpolation_options(NODE_NAME, mode, layers, start_percent, end_percent, fusion)
        return (patch_for_schedule(NODE_NAME, model, schedule.coefficients, options, image_endpoints),)


NODE_CLASS_MAPPINGS = {"ApplyAID": ApplyAID}
NODE_DISPLAY_NAME_MAPPINGS = {"ApplyAID": NODE_NAME}
