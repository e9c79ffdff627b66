"""AID Conditioning and PAID Guidance: per-frame prompts of a sequence."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.sequence.conditioning import BLENDS, Guidance, sequence_conditioning
from .validation import check_choice

CONDITIONING_NODE = "AID Conditioning"
GUIDANCE_NODE = "PAID Guidance"


def build_sequence_conditioning(node, positive_a, positive_b, schedule, blend, guidance):
    """sequence_conditioning with its ValueErrors turned into errors that name the node and input."""
    check_choice(node, "blend", blend, BLENDS)
    if guidance is not None:
        check_guidance_matches(node, guidance.conditioning, positive_a)
    try:
        return sequence_conditioning(positive_a, positive_b, schedule.coefficients, blend,
                                     guidance.conditioning if guidance is not None else None)
    except ValueError as error:
        input_name = "guidance" if guidance is not None and "guidance" in str(error) else "positive_b"
        raise AIDInputError(node, input_name, str(error),
                            "encode A, B (and the guidance) with the same checkpoint's CLIP, one prompt each.") from None


def check_guidance_matches(node, guidance, positive_a):
    """The guidance pairs entry by entry with A, from the same text encoder (else the error names 'guidance')."""
    fix = "encode the guidance like A and B: one CLIP Text Encode of the same checkpoint's CLIP."
    if len(guidance) != len(positive_a):
        raise AIDInputError(node, "guidance", f"it has {len(guidance)} conditioning entries and positive_a has "
                            f"{len(positive_a)}.", fix)
    for (context_g, _), (context_a, _) in zip(guidance, positive_a):
        if context_g.shape[-1] != context_a.shape[-1]:
            raise AIDInputError(node, "guidance", f"it is {context_g.shape[-1]} wide and positive_a "
                                f"{context_a.shape[-1]}: they come from different text encoders.", fix)


class AIDConditioning:
    """One CONDITIONING with a row per frame: A, then A-to-B blends (or the PAID guidance), then B."""

    DESCRIPTION = ("Per-frame prompts for a sequence: frame 0 gets A, the last frame B, and frame f between them "
                   "lerp(A, B, t_f) (or the guidance prompt when PAID Guidance is connected). Feed it to a core "
                   "KSampler together with Apply AID and AID Latent. On UNet checkpoints prompts of different "
                   "lengths are repeated to a common token count, which leaves each endpoint's attention unchanged; "
                   "diffusion transformers (Flux, SD3, Qwen-Image) need prompts of one length (AID Text Encode "
                   "(equal length) pads them), and sampling stops with a message otherwise.")
    CATEGORY = "AID/advanced"
    FUNCTION = "build"
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("positive",)
    OUTPUT_TOOLTIPS = ("Positive conditioning with one row per frame of the schedule.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive_a": ("CONDITIONING", {"tooltip": "Prompt of endpoint A (frame 0)."}),
                "positive_b": ("CONDITIONING", {"tooltip": "Prompt of endpoint B (the last frame)."}),
                "schedule": ("AID_SCHEDULE", {"tooltip": "Coefficients from AID Schedule."}),
                "blend": (list(BLENDS), {"default": "lerp",
                                         "tooltip": "How interior frames mix the prompt embeddings: lerp (the "
                                                    "paper) or slerp per token."}),
            },
            "optional": {
                "guidance": ("AID_GUIDANCE", {"tooltip": "PAID: interior frames use this prompt instead of the "
                                                         "A-to-B blend."}),
            },
        }

    def build(self, positive_a, positive_b, schedule, blend="lerp", guidance=None):
        return (build_sequence_conditioning(CONDITIONING_NODE, positive_a, positive_b, schedule, blend, guidance),)


class PAIDGuidance:
    """Wrap a guidance prompt for PAID: it becomes the own condition of every interior frame."""

    DESCRIPTION = ("PAID (prompt-guided interpolation): describe the path between A and B, e.g. 'a dog driving a "
                   "car' between 'a dog' and 'a car'. Interior frames are conditioned on this prompt and their "
                   "attention is still fused with the endpoints', so the endpoints stay exactly A and B. Connect "
                   "the output to AID Conditioning or AID Sampler.")
    CATEGORY = "AID/PAID"
    FUNCTION = "build"
    RETURN_TYPES = ("AID_GUIDANCE",)
    RETURN_NAMES = ("guidance",)
    OUTPUT_TOOLTIPS = ("Guidance for AID Conditioning / AID Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "conditioning": ("CONDITIONING", {"tooltip": "The guidance prompt, encoded with the same checkpoint's "
                                                         "CLIP as A and B (SDXL: its pooled output is used too)."}),
        }}

    def build(self, conditioning):
        if not isinstance(conditioning, list) or not conditioning:
            raise AIDInputError(GUIDANCE_NODE, "conditioning", "the conditioning is empty.",
                                "connect a CLIP Text Encode output.")
        return (Guidance(conditioning),)


NODE_CLASS_MAPPINGS = {"AIDConditioning": AIDConditioning, "PAIDGuidance": PAIDGuidance}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDConditioning": CONDITIONING_NODE, "PAIDGuidance": GUIDANCE_NODE}
