"""AID Text Encode (equal length): the sequence's prompts encoded to one token count, for diffusion transformers."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.sequence.conditioning import Guidance
from ..samplers.sequence.prompt_lengths import PromptLengthError, encode_equal_length

NODE_NAME = "AID Text Encode (equal length)"
#: Longest prompt accepted, in characters: far past any encoder's useful length (CLIP reads 75 tokens per
#: chunk, Flux's T5 pads to 256), short of text that would keep the encoder busy for minutes (1 MB of text
#: is some 250,000 tokens, thousands of CLIP chunks).
MAX_PROMPT_CHARACTERS = 20_000


class AIDTextEncodeEqualLength:
    """Encode prompt A, prompt B (and a PAID guidance) padded by the text encoder to one token count."""

    DESCRIPTION = ("Encodes the prompts of a sequence so they all have the same number of tokens, padded with the "
                   "text encoder's own padding (as it pads any short prompt). Diffusion transformers (Flux, SD3, "
                   "Qwen-Image) need this when prompts differ in length: their joint attention changes when a "
                   "prompt is repeated to a common length, which is what AID does on UNet checkpoints. Qwen-Image's "
                   "encoder never pads, so use this node there; on Flux it matters for prompts over 256 T5 tokens. "
                   "Each output is what CLIP Text Encode gives for that prompt with the padding added.")
    CATEGORY = "AID"
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "AID_GUIDANCE")
    RETURN_NAMES = ("positive_a", "positive_b", "guidance")
    OUTPUT_TOOLTIPS = ("Prompt A, padded to the common length.", "Prompt B, padded to the common length.",
                       "PAID guidance from guidance_text, padded too (None when guidance_text is empty).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The text encoder of the model (e.g. Dual CLIP Loader for Flux)."}),
                "text_a": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                      "tooltip": "Prompt of endpoint A (frame 0)."}),
                "text_b": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                      "tooltip": "Prompt of endpoint B (the last frame)."}),
            },
            "optional": {
                "guidance_text": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                             "tooltip": "PAID guidance prompt for the frames between; empty: none."}),
            },
        }

    def encode(self, clip, text_a, text_b, guidance_text=""):
        if clip is None:
            raise AIDInputError(NODE_NAME, "clip", "no text encoder is connected (the checkpoint has none).",
                                "connect the CLIP output of a CLIP loader for this model.")
        for name, text in (("text_a", text_a), ("text_b", text_b), ("guidance_text", guidance_text)):
            if len(text) > MAX_PROMPT_CHARACTERS:
                raise AIDInputError(NODE_NAME, name, f"the prompt is {len(text):,} characters long, over the "
                                    f"{MAX_PROMPT_CHARACTERS:,} this node encodes.", "shorten the prompt (the "
                                    "text encoders read a few hundred tokens at most).")
        texts = [text_a, text_b] + ([guidance_text] if guidance_text.strip() else [])
        try:
            encoded = encode_equal_length(clip, texts)
        except PromptLengthError as error:
            raise AIDInputError(NODE_NAME, "text_b", f"{error}", "shorten the longer prompt to at most 75 tokens "
                                "per CLIP encoder (one chunk), or make both prompts span the same number of "
                                "chunks.") from None
        guidance = Guidance(encoded[2]) if len(encoded) > 2 else None
        return (encoded[0], encoded[1], guidance)


NODE_CLASS_MAPPINGS = {"AIDTextEncodeEqualLength": AIDTextEncodeEqualLength}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDTextEncodeEqualLength": NODE_NAME}
