"""Input checks shared by the AID nodes; each raises AIDInputError naming the node, the input and the fix."""
from __future__ import annotations

from ..attention.install_dit import dit_family
from ..errors import AIDInputError
from ..samplers.sequence.conditioning import TWO_ENDPOINT_PROMPTS, check_token_counts, token_counts

FAMILY_BY_WIDTH = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner", 4096: "T5-XXL (Flux, SD3)",
                   3584: "Qwen2.5-VL (Qwen-Image)"}


def model_context_width(model) -> int | None:
    """The text-context width the model expects (768 SD1.x, 1024 SD2.x, 2048 SDXL, 4096 Flux/SD3, 3584 Qwen-Image)."""
    family = dit_family(model)
    if family is not None:
        return family.context_width(model.model.diffusion_model)
    return model.model.model_config.unet_config.get("context_dim")


def _needs_pooled(model) -> str | None:
    """The family name when the model embeds a pooled text vector (ComfyUI fails without one), else None."""
    family = dit_family(model)
    if family is not None:
        return family.name if family.pooled_width(model.model.diffusion_model) else None
    return "SDXL-family" if getattr(model.model, "adm_channels", None) else None


def check_conditioning_for_model(node: str, input_name: str, conditioning, model) -> None:
    """Stop early when a CONDITIONING was encoded by another model family's text encoder."""
    if not isinstance(conditioning, list) or not conditioning:
        raise AIDInputError(node, input_name, "the conditioning is empty.", "connect a CLIP Text Encode output.")
    expected = model_context_width(model)
    pooled_family = _needs_pooled(model)
    for context, options in conditioning:
        width = int(context.shape[-1])
        if expected is not None and width != expected:
            raise AIDInputError(
                node, input_name,
                f"the prompt was encoded for a {FAMILY_BY_WIDTH.get(width, str(width) + '-wide')} model but the "
                f"model is {FAMILY_BY_WIDTH.get(expected, str(expected) + '-wide')}.",
                "encode the prompt with the text encoder that belongs to the model (for diffusion models loaded "
                "with Load Diffusion Model, the matching CLIP loader's output).")
        if pooled_family and "pooled_output" not in options:
            raise AIDInputError(node, input_name, f"this {pooled_family} model needs a pooled text output, and the "
                                "conditioning has none.", "encode the prompt with the model's own text encoder.")


def check_prompt_lengths(node: str, model, positive_a, positive_b, guidance=None) -> None:
    """On a diffusion transformer, the sequence's prompts must have equal token counts (entry by entry)."""
    prompts = [positive_a, positive_b] + ([guidance.conditioning] if guidance is not None else [])
    check_equal_token_counts(node, model, list(zip(TWO_ENDPOINT_PROMPTS, prompts)))


def check_equal_token_counts(node: str, model, prompts) -> None:
    """On a diffusion transformer, prompts [((input name, label), CONDITIONING), ...] of one token count.

    A UNet takes any counts (they are repeated to a common multiple)."""
    family = dit_family(model)
    if family is None:
        return
    names = tuple(name for name, _ in prompts)
    for counts in zip(*(token_counts(conditioning) for _, conditioning in prompts)):
        problem = check_token_counts(counts, family, names)
        if problem is not None:
            raise AIDInputError(node, *problem)


def check_percent_range(node: str, start_percent: float, end_percent: float) -> None:
    """start <= end, both in [0, 1]; start == end switches interpolation off."""
    for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
        if not 0.0 <= value <= 1.0:
            raise AIDInputError(node, name, f"{value} is outside 0..1.", "use a fraction of the schedule from 0 to 1.")
    if start_percent > end_percent:
        raise AIDInputError(node, "end_percent", f"end ({end_percent}) comes before start ({start_percent}).",
                            "set end_percent >= start_percent (equal values switch interpolation off).")


def check_choice(node: str, input_name: str, value, choices) -> None:
    """A combo value that is one of `choices` (ComfyUI checks V1 combos, but API callers can bypass the UI)."""
    if value not in choices:
        raise AIDInputError(node, input_name, f"'{value}' is not an option.", f"choose one of: {', '.join(choices)}.")


def check_image_size(node: str, width: int, height: int) -> None:
    """Width and height that map onto whole latent pixels (multiples of 8)."""
    for name, value in (("width", width), ("height", height)):
        if value % 8:
            raise AIDInputError(node, name, f"{value} is not a multiple of 8.",
                                f"use {value - value % 8} or {value - value % 8 + 8}.")


def check_frames_per_batch(node: str, max_frames_per_batch: int) -> None:
    """0 (one batch) or a chunk size with room for a frame between the two endpoints."""
    if 0 < max_frames_per_batch < 3:
        raise AIDInputError(node, "max_frames_per_batch", f"{max_frames_per_batch} leaves no room for a frame "
                            "between the two endpoints.", "use 0 (one batch) or at least 3.")
