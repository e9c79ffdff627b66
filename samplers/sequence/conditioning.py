"""Per-frame conditioning of a sequence: A at frame 0, B at frame F-1, and between them
lerp/slerp of A and B (AID) or a guidance prompt (PAID), docs/how-it-works.md

A CONDITIONING is a list of [tensor [1, tokens, C], dict] entries; the result has one entry
per input entry whose tensor holds one row per frame, so ComfyUI gives frame f row f.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ...attention.layout import FrameLayout
from .noise import slerp

BLENDS = ("lerp", "slerp")
SEQUENCE_MARKER = "aid_sequence"  # key of the SequenceMarker in a sequence CONDITIONING entry's dict
# Scalar size conditioning SDXL-family models embed next to the pooled output (CLIPTextEncodeSDXL sets them).
SIZE_KEYS = ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "aesthetic_score")


@dataclass(frozen=True)
class SequenceMarker:
    """What a sequence CONDITIONING entry is: one row per frame of this layout, made by AID nodes.

    ComfyUI copies the entry's dict into the guider's cond, so the samplers can recognise the sequence's
    own prompt rows wherever a guider puts them (samplers/sequence/branches.py) and check that the model and latent
    were made for the same schedule (samplers/sequence/run.py). `sizes` holds each key's SDXL size
    conditioning when they differ, so each frame can get its own (samplers/sequence/frame_sizes.py); `guidance`
    likewise each key's Flux guidance (samplers/sequence/frame_guidance.py). `token_counts` lets a DiT run refuse
    prompts of different lengths (check_token_counts).
    """

    layout: FrameLayout
    sizes: tuple[dict, ...] | None = None
    token_counts: tuple[int, ...] | None = None  # of A, B (and the guidance) before any repetition
    guidance: tuple | None = None  # each key's Flux guidance (None: not set) when they differ
    token_names: tuple[str, ...] | None = None  # what errors call each token count (None: A, B, the guidance)

    @property
    def coefficients(self) -> tuple[float, ...]:
        """The rows' coefficients within their segments (A -> B for a two-endpoint sequence)."""
        return self.layout.coefficients

    def select(self, frame_indices) -> "SequenceMarker":
        """The marker of a chunk holding only these frames."""
        return replace(self, layout=self.layout.select(frame_indices))


class KeyGuidance(float):
    """The Flux guidance a sequence CONDITIONING entry carries from its first key. A FluxGuidance applied
    afterwards writes a plain float, even of the same value, so samplers/sequence/frame_guidance.py tells
    the two apart by type."""


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


def _single_row(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if tensor.shape[0] != 1:
        raise ValueError(f"{what} has a batch of {tensor.shape[0]}; one prompt per input is expected.")
    return tensor


def _row_tensors(values: dict, guided: dict, layout: FrameLayout, method: str) -> torch.Tensor:
    """One row per layout row from per-key tensors [1, ...]: a key row gets its key's, an interior row
    (a, b, t) the guidance of its segment if there is one, else blend(key a, key b, t)."""
    rows = []
    for a, b, t in layout.rows:
        if t == 0.0:
            rows.append(values[a])
        elif t == 1.0:
            rows.append(values[b])
        elif (a, b) in guided:
            rows.append(guided[(a, b)])
        else:
            rows.append(blend(values[a], values[b], t, method))
    return torch.cat(rows, dim=0)


def layout_keys(layout: FrameLayout) -> list[int]:
    """The keys a layout's rows use (a key row's key, an interior row's two keys), in order."""
    used = set()
    for a, b, t in layout.rows:
        used.update((a,) if t == 0.0 else (b,) if t == 1.0 else (a, b))
    return sorted(used)


def keyframe_conditioning(keys, layout: FrameLayout, method: str = "lerp", guidance: dict | None = None,
                          names=None, name_counts: bool = True):
    """CONDITIONING with one row per row of `layout` (attention/layout.py), for keys K_0, K_1, ... .

    `keys[k]` is key k's CONDITIONING; all have the same number of entries and entry i of each is paired.
    A key row gets its key's prompt; an interior row between keys a and b gets blend(K_a, K_b, t) (AID) or,
    when `guidance` maps (a, b) to a CONDITIONING, that PAID guidance prompt. Only the keys (and guidance)
    the layout uses are read, and their contexts are repeated to the LCM of their token counts, so a run
    pays only for the prompt lengths it holds. SDXL's pooled output follows the same rule. The other keys
    of each entry's dict come from key 0, plus a SequenceMarker (every key's SDXL sizes when they differ).
    `names[k]` names key k in errors, and in the marker's token_names unless `name_counts` is False (then
    the run's errors speak of A, B and the guidance, as AID Conditioning's inputs).
    """
    guidance = dict(guidance or {})
    names = list(names) if names is not None else [f"key {k}" for k in range(len(keys))]
    counts = [len(conditioning) for conditioning in keys] + [len(g) for g in guidance.values()]
    if len(set(counts)) != 1:
        raise ValueError(f"the conditionings have different numbers of entries ({counts}).")
    used = layout_keys(layout)
    guided_segments = sorted({(a, b) for a, b, t in layout.rows if 0.0 < t < 1.0 and (a, b) in guidance})
    single_guide = len(guidance) == 1 and len(keys) == 2

    def guide_name(segment):
        return "guidance" if single_guide else f"guidance of {names[segment[0]]} -> {names[segment[1]]}"

    result = []
    for index in range(counts[0]):
        contexts = {k: _single_row(keys[k][index][0], names[k]) for k in used}
        contexts.update({segment: _single_row(guidance[segment][index][0], guide_name(segment))
                         for segment in guided_segments})
        widths = {c.shape[-1] for c in contexts.values()}
        if len(widths) != 1:
            raise ValueError(f"the prompts come from different text encoders (widths {sorted(widths)}).")
        tokens = common_token_count(*(int(c.shape[1]) for c in contexts.values()))
        like = contexts[used[0]]
        contexts = {n: repeat_tokens(c, tokens).to(like) for n, c in contexts.items()}
        context = _row_tensors({k: contexts[k] for k in used}, {s: contexts[s] for s in guided_segments}, layout,
                               method)
        options = dict(keys[0][index][1])
        if options.get("guidance") is not None:
            options["guidance"] = KeyGuidance(options["guidance"])
        sizes = tuple(_sizes(conditioning[index][1]) for conditioning in keys)
        guidances = tuple(conditioning[index][1].get("guidance") for conditioning in keys)
        token_counts = tuple(int(conditioning[index][0].shape[1]) for conditioning in keys)
        token_counts += tuple(int(guidance[segment][index][0].shape[1]) for segment in guided_segments)
        token_names = tuple(names) + tuple(guide_name(segment) for segment in guided_segments)
        options[SEQUENCE_MARKER] = SequenceMarker(layout, None if all(s == sizes[0] for s in sizes) else sizes,
                                                  token_counts, None if len(set(guidances)) == 1 else guidances,
                                                  token_names if name_counts else None)
        has_pooled = [conditioning[index][1].get("pooled_output") is not None for conditioning in keys]
        if all(has_pooled):
            pooled = {k: keys[k][index][1]["pooled_output"] for k in used}
            guided_pooled = {}
            for segment in guided_segments:
                guided_pooled[segment] = guidance[segment][index][1].get("pooled_output")
                if guided_pooled[segment] is None:
                    raise ValueError(f"the {guide_name(segment)} prompt has no pooled output while the keys have "
                                     "one." if not single_guide else
                                     "the guidance prompt has no pooled output while A and B have one.")
            like = pooled[used[0]]
            options["pooled_output"] = _row_tensors({k: p.to(like) for k, p in pooled.items()},
                                                    {s: p.to(like) for s, p in guided_pooled.items()}, layout, method)
        elif any(has_pooled):
            raise ValueError("only some of the prompts have a pooled output; encode them all with the same CLIP.")
        result.append([context, options])
    return result


def sequence_conditioning(cond_a, cond_b, coefficients, method: str = "lerp", guidance=None):
    """CONDITIONING with F rows per entry for the frames of `coefficients`.

    cond_a, cond_b (and the optional PAID `guidance`) are CONDITIONING lists with the same
    number of entries; entry i of each is paired. Token counts may differ: every context is
    repeated to their common multiple, which leaves UNet cross-attention unchanged (DiTs refuse
    different counts, see check_token_counts). SDXL's, Flux's and SD3's pooled_output follows the
    same rule as the context. Other keys of the dict come from A, plus a SequenceMarker under
    SEQUENCE_MARKER that says which frames the rows are (with A's and B's SDXL size conditioning
    and Flux guidance when they differ, and the token counts).
    This is keyframe_conditioning of the two keys A and B over FrameLayout.between(coefficients).
    """
    return keyframe_conditioning([cond_a, cond_b], FrameLayout.between(coefficients), method,
                                 {(0, 1): guidance} if guidance is not None else None,
                                 names=("positive A", "positive B"), name_counts=False)


def token_counts(conditioning) -> tuple[int, ...]:
    """Token count of each entry's context."""
    return tuple(int(context.shape[1]) for context, _ in conditioning)


TWO_ENDPOINT_PROMPTS = (("positive_a", "A"), ("positive_b", "B"), ("guidance", "the guidance"))


def check_token_counts(counts, family, prompts=TWO_ENDPOINT_PROMPTS) -> tuple[str, str, str] | None:
    """(input name, problem, fix) when prompts have different token counts on a DiT `family`.

    `prompts` holds (input name, label) per count: A, B and the guidance of AID Conditioning by default,
    the keys of a keyframe run otherwise. Joint attention is not invariant to repeated text tokens
    (repeated text keys outweigh the image keys), so on a diffusion transformer the prompts must already
    have equal lengths. `family` is an attention.install_dit.DitFamily; None (a UNet) accepts any counts.
    """
    if family is None or counts is None or len(set(counts)) <= 1:
        return None
    if len(prompts) < len(counts):
        raise ValueError(f"{len(counts)} token counts but {len(prompts)} prompt names.")
    odd = next(index for index, count in enumerate(counts) if count != counts[0])
    listed = ", ".join(f"{label} {count}" for (_, label), count in zip(prompts, counts))
    problem = (f"the prompts have different token counts ({listed} tokens). Joint text+image attention of "
               f"{family.name} is not invariant to repeated text tokens, so AID cannot repeat them to a common "
               f"length as it does on UNets; {family.padding}.")
    return prompts[odd][0], problem, family.padding_fix.format(tokens=max(counts)) + "."


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
    """PAID guidance (AID_GUIDANCE): the prompt that conditions the interior frames (docs/how-it-works.md)."""

    def __init__(self, conditioning):
        self.conditioning = conditioning
