"""The diffusion-transformer families AID supports, and installing interpolated joint attention on a clone.

Each family is recognised by ComfyUI's model class (comfy/model_base.py) and described by what the
pack needs: its block types, whether its blocks write their own identity into transformer_options,
its context and pooled widths (for input checks) and how its text encoder pads prompts (for the
token-length rule of samplers/sequence/conditioning.py: joint attention is not invariant to repeated text
tokens, so prompts must have equal lengths).
"""
from __future__ import annotations

from dataclasses import dataclass

from .dit_blocks import install_block_identity, install_token_layout
from .joint_override import BLOCKS, OVERRIDE_KEY, JointAttentionOverride, JointTargets, warn_if_lse_is_chained
from .patch import LAYERS, InterpolationSettings


@dataclass(frozen=True)
class DitFamily:
    """One supported diffusion-transformer family."""

    name: str
    model_class: str  # comfy.model_base class name
    block_types: tuple[str, ...]  # "double" (joint blocks with two streams) and / or "single"
    writes_block_identity: bool  # False: a BlockIdentity wrapper per block provides it (SD3)
    text_encoder: str  # what makes its prompts, for messages
    padding: str  # how that encoder pads, for the token-length error
    padding_fix: str  # how to give prompts equal lengths

    def matches(self, base_model) -> bool:
        """True for a BaseModel of this family (the exact class: Flux2 and Chroma subclass Flux but differ)."""
        return type(base_model).__name__ == self.model_class

    def context_width(self, diffusion_model) -> int | None:
        """Width of the text context the transformer embeds."""
        for name in ("txt_in", "context_embedder"):
            layer = getattr(diffusion_model, name, None)
            if getattr(layer, "in_features", None) is not None:
                return int(layer.in_features)
        return None

    def pooled_width(self, diffusion_model) -> int | None:
        """Width of the pooled text vector the transformer embeds (None: it takes none)."""
        for name in ("vector_in", "y_embedder"):
            embedder = getattr(diffusion_model, name, None)
            if embedder is None:
                continue
            first = getattr(embedder, "in_layer", None) or getattr(embedder, "mlp", [None])[0]
            if getattr(first, "in_features", None) is not None:
                return int(first.in_features)
        return None

    def joint_blocks(self, diffusion_model) -> int:
        """Number of joint blocks (SD3's joint_blocks, Flux's double_blocks, Qwen-Image's transformer_blocks)."""
        for name in ("joint_blocks", "double_blocks", "transformer_blocks"):
            blocks = getattr(diffusion_model, name, None)
            if blocks is not None:
                return len(blocks)
        return 0


EQUAL_LENGTH_FIX = ("encode the prompts with 'AID Text Encode (equal length)', which pads them with the encoder's "
                    "own padding token to one length")
T5_TOKENIZER_FIX = ("or add core 'T5TokenizerOptions' (min_length {tokens} or more) after the text encoder loader, so "
                    "T5 pads every prompt to the same length")

FLUX = DitFamily(
    "Flux", "Flux", ("double", "single"), True, "CLIP-L + T5-XXL",
    "Flux's T5 encoder pads every prompt to 256 tokens and keeps a longer prompt at its own length",
    f"{EQUAL_LENGTH_FIX}, {T5_TOKENIZER_FIX}, or shorten the longer prompt to fit in 256 T5 tokens")
SD3 = DitFamily(
    "SD3", "SD3", ("double",), False, "CLIP-L/G + T5-XXL",
    "SD3's prompt is CLIP tokens (77 per chunk of 75) followed by T5 tokens (at least 77)",
    f"keep every prompt within one CLIP chunk (75 tokens) and {EQUAL_LENGTH_FIX}, {T5_TOKENIZER_FIX}")
QWEN_IMAGE = DitFamily(
    "Qwen-Image", "QwenImage", ("double",), True, "Qwen2.5-VL",
    "Qwen-Image's text encoder does not pad prompts", EQUAL_LENGTH_FIX)
FAMILIES = (FLUX, SD3, QWEN_IMAGE)


def dit_family(model) -> DitFamily | None:
    """The supported DiT family of a MODEL (ModelPatcher), or None."""
    base_model = getattr(model, "model", None)
    return next((family for family in FAMILIES if family.matches(base_model)), None)


def install_joint_interpolation(model, family: DitFamily, settings: InterpolationSettings,
                                layers: str = "self and cross", blocks: str = "all") -> JointAttentionOverride:
    """Install interpolated joint attention on `model` (a ModelPatcher clone of a `family` model).

    Sets the attention override (chained to one another pack set; an earlier AID override is replaced),
    the token-layout run wrapper and, where the family writes no block identity, a chained block wrapper
    per joint block. Blocks of a type the family lacks are refused (ValueError).
    """
    if layers not in LAYERS:
        raise ValueError(f"unknown layers '{layers}', expected one of {', '.join(LAYERS)}.")
    if blocks not in BLOCKS:
        raise ValueError(f"unknown blocks '{blocks}', expected one of {', '.join(BLOCKS)}.")
    if blocks != "all" and blocks not in family.block_types:
        raise ValueError(f"{family.name} models have only {' and '.join(family.block_types)} blocks, no "
                         f"{blocks} blocks.")
    options = model.model_options.setdefault("transformer_options", {})
    previous = options.get(OVERRIDE_KEY)
    if isinstance(previous, JointAttentionOverride):
        previous = previous.previous
    override = JointAttentionOverride(settings, JointTargets(layers, blocks), previous)
    options[OVERRIDE_KEY] = override
    warn_if_lse_is_chained(override)
    install_token_layout(model)
    if not family.writes_block_identity:
        install_block_identity(model, family.joint_blocks(model.model.diffusion_model))
    return override
