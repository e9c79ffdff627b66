"""Per-frame conditioning of a sequence: A at frame 0, B at frame F-1, and between them
lerp/slerp of A and B (AID) or a guidance prompt (PAID), algorithm.md sections 2 and 6.

A CONDITIONING is a list of [tensor [1, tokens, C], dict] entries; the result has one entry
per input entry whose tensor holds one row per frame, so ComfyUI gives frame f row f.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..attention.layout import FrameLayout
from .noise import slerp

BLENDS = ("lerp", "slerp")
SEQUENCE_MARKER = "aid_sequence"  # key of the SequenceMarker in a sequence CONDITIONING entry's dict
# Scalar size conditioning SDXL-family models embed next to the pooled output (CLIPTextEncodeSDXL sets them).
SIZE_KEYS = ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "aesthetic_score")


@dataclass(frozen=True)
class SequenceMarker:
    """What a sequence CONDITIONING entry is: one row per frame of this layout, made by AID nodes.

    ComfyUI copies the entry's dict into the guider's cond, so the samplers can recognise the sequence's
    own prompt rows wherever a guider puts them (samplers/branches.py) and check that the model and latent
    were made for the same schedule (samplers/sequence_run.py). `sizes` holds each key's SDXL size
    conditioning when they differ, so each frame can get its own (samplers/frame_sizes.py); `guidance`
    likewise each key's Flux guidance (samplers/frame_guidance.py). `token_counts` lets a DiT run refuse
    prompts of different lengths (check_token_counts).
    """

    layout: FrameLayout
    sizes: tuple[dict, ...] | None = None
    token_counts: tuple[int, ...] | None = None  # of A, B (and the guidance) before any repetition
    guidance: tuple | None = None  # each key's Flux guidance (None: not set) when they differ

    @property
    def coefficients(self) -> tuple[float, ...]:
        """The rows' coefficients within their segments (A -> B for a two-endpoint sequence)."""
        return self.layout.coefficients

    def select(self, frame_indices) -> "SequenceMarker":
        """The marker of a chunk holding only these frames."""
        return replace(self, layout=self.layout.select(frame_indices))


def repeat_tokens(context: torch.Tensor, tokens: int) -> torch.Tensor:
    """Repeat a context [B, T, C] along tokens to `tokens` (a multiple of T).

    Repeating a whole token sequence leaves softmax attention over it unchanged, so an endpoint
    conditioned on the repeated context is generated exactly as with the original.
    """
    if tokens % context.shape[1]:
        raise ValueError(f"{tokens} tokens is not a multiple of {context.shape[1]}.")
    return context.repeat(1, tokens // context.shape[1], 1)


def common_token_count(*counts: int) -> int:
    """The least common multiple of token counts (77 and 154 -> 154; 154 and 231 -> 462)."""
    result = 1
    for count in counts:
        result = result * count // math.gcd(result, count)
    return result


def blend(a: torch.Tensor, b: torch.Tensor, t: float, method: str) -> torch.Tensor:
    """lerp or slerp (per token vector, along the last dimension) of two same-shaped tensors."""
    if method == "lerp":
        return torch.lerp(a, b, t)
    if method == "slerp":
        return slerp(a, b, t, dim=-1)
    raise ValueError(f"unknown blend '{method}', expected one of {', '.join(BLENDS)}.")


def _frame_rows(a, b, guidance, coefficients, method):
    """Stack one row per frame: a, blend(a, b, t) or guidance, b."""
    rows = [a]
    for t in coefficients[1:-1]:
        rows.append(guidance if guidance is not None else blend(a, b, t, method))
    rows.append(b)
    return torch.cat(rows, dim=0)


def _single_row(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if tensor.shape[0] != 1:
        raise ValueError(f"{what} has a batch of {tensor.shape[0]}; one prompt per input is expected.")
    return tensor


def sequence_conditioning(cond_a, cond_b, coefficients, method: str = "lerp", guidance=None):
    """CONDITIONING with F rows per entry for the frames of `coefficients`.

    cond_a, cond_b (and the optional PAID `guidance`) are CONDITIONING lists with the same
    number of entries; entry i of each is paired. Token counts may differ: every context is
    repeated to their common multiple, which leaves UNet cross-attention unchanged (DiTs refuse
    different counts, see check_token_counts). SDXL's, Flux's and SD3's pooled_output follows the
    same rule as the context. Other keys of the dict come from A, plus a SequenceMarker under
    SEQUENCE_MARKER that says which frames the rows are (with A's and B's SDXL size conditioning
    and Flux guidance when they differ, and the token counts).
    """
    if len(cond_a) != len(cond_b) or (guidance is not None and len(guidance) != len(cond_a)):
        counts = [len(cond_a), len(cond_b)] + ([len(guidance)] if guidance is not None else [])
        raise ValueError(f"the conditionings have different numbers of entries ({counts}).")
    result = []
    for index, (entry_a, entry_b) in enumerate(zip(cond_a, cond_b)):
        entry_g = guidance[index] if guidance is not None else None
        contexts = [_single_row(entry_a[0], "positive A"), _single_row(entry_b[0], "positive B")]
        if entry_g is not None:
            contexts.append(_single_row(entry_g[0], "guidance"))
        widths = {c.shape[-1] for c in contexts}
        if len(widths) != 1:
            raise ValueError(f"the prompts come from different text encoders (widths {sorted(widths)}).")
        token_counts = tuple(int(c.shape[1]) for c in contexts)
        tokens = common_token_count(*token_counts)
        contexts = [repeat_tokens(c, tokens) for c in contexts]
        context_g = contexts[2] if entry_g is not None else None
        context = _frame_rows(contexts[0], contexts[1].to(contexts[0]), context_g, coefficients, method)
        options = dict(entry_a[1])
        sizes_a, sizes_b = _sizes(entry_a[1]), _sizes(entry_b[1])
        sizes = None if sizes_a == sizes_b else (sizes_a, sizes_b)
        guidance_a, guidance_b = entry_a[1].get("guidance"), entry_b[1].get("guidance")
        guidances = None if guidance_a == guidance_b else (guidance_a, guidance_b)
        options[SEQUENCE_MARKER] = SequenceMarker(FrameLayout.between(coefficients), sizes, token_counts, guidances)
        pooled_a, pooled_b = entry_a[1].get("pooled_output"), entry_b[1].get("pooled_output")
        if pooled_a is not None and pooled_b is not None:
            pooled_g = entry_g[1].get("pooled_output") if entry_g is not None else None
            if entry_g is not None and pooled_g is None:
                raise ValueError("the guidance prompt has no pooled output while A and B have one.")
            options["pooled_output"] = _frame_rows(pooled_a, pooled_b.to(pooled_a), pooled_g, coefficients, method)
        elif pooled_a is not None or pooled_b is not None:
            raise ValueError("only one of the prompts has a pooled output; encode both with the same CLIP.")
        result.append([context, options])
    return result


def token_counts(conditioning) -> tuple[int, ...]:
    """Token count of each entry's context."""
    return tuple(int(context.shape[1]) for context, _ in conditioning)


def check_token_counts(counts, family) -> tuple[str, str, str] | None:
    """(input name, problem, fix) when prompts (A, B[, guidance]) have different token counts on a DiT `family`.

    Joint attention is not invariant to repeated text tokens (repeated text keys outweigh the image
    keys), so on a diffusion transformer the prompts must already have equal lengths. `family` is an
    attention.install_dit.DitFamily; None (a UNet) accepts any counts.
    """
    if family is None or counts is None or len(set(counts)) <= 1:
        return None
    names = ("positive_a", "positive_b", "guidance")
    odd = next(index for index, count in enumerate(counts) if count != counts[0])
    listed = ", ".join(f"{label} {count}" for label, count in zip(("A", "B", "the guidance"), counts))
    problem = (f"the prompts have different token counts ({listed} tokens). Joint text+image attention of "
               f"{family.name} is not invariant to repeated text tokens, so AID cannot repeat them to a common "
               f"length as it does on UNets; {family.padding}.")
    return names[odd], problem, family.padding_fix.format(tokens=max(counts)) + "."


def _sizes(options: dict) -> dict:
    """The size conditioning keys an entry sets explicitly."""
    return {key: options[key] for key in SIZE_KEYS if key in options}


def select_frames(conditioning, frame_indices):
    """The rows of a per-frame CONDITIONING that belong to `frame_indices` (for chunked sampling)."""
    index = torch.tensor(frame_indices)
    selected = []
    for context, options in conditioning:
        options = dict(options)
        frames = context.shape[0]
        pooled = options.get("pooled_output")
        if pooled is not None and pooled.shape[0] == frames:
            options["pooled_output"] = pooled[index]
        if options.get(SEQUENCE_MARKER) is not None:
            options[SEQUENCE_MARKER] = options[SEQUENCE_MARKER].select(frame_indices)
        selected.append([context[index] if frames > 1 else context, options])
    return selected


def conditioning_width(conditioning) -> int:
    """Channel width of the contexts (768 SD1.x, 1024 SD2.x, 2048 SDXL)."""
    return int(conditioning[0][0].shape[-1])


class Guidance:
    """PAID guidance (AID_GUIDANCE): the prompt that conditions the interior frames (algorithm.md section 6)."""

    def __init__(self, conditioning):
        self.conditioning = conditioning
