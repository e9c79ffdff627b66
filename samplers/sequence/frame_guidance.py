"""Flux guidance per frame: each endpoint keeps its own, interior frames interpolate it.

Flux dev embeds a guidance value (FluxGuidance writes it into the CONDITIONING; ComfyUI uses 3.5
when none is set) next to the timestep. ComfyUI makes it once per conditioning entry, so every row
of a sequence entry would carry A's. When A and B set different values, the sequence entry's
`guidance` is rebuilt per frame: A's at frame 0, B's at the last frame, lerped by t_f between (in a
keyframe layout, each key's on its rows and a frame's two keys' lerped).
A value set on the sequence CONDITIONING afterwards (FluxGuidance after AID Conditioning) wins, even
A's own value: the sequence entry marks the value it carries (KeyGuidance).
"""
from __future__ import annotations

import torch

from .conditioning import SEQUENCE_MARKER, KeyGuidance

FLUX_DEFAULT_GUIDANCE = 3.5  # comfy/model_base.py Flux.extra_conds: kwargs.get("guidance", 3.5)


def frame_guidance(key_guidance, layout) -> torch.Tensor:
    """Guidance [F] of the frames of `layout` (attention/layout.py): each key's own value on its rows, the
    lerp of a frame's two keys' values between (None takes ComfyUI's default)."""
    values = [FLUX_DEFAULT_GUIDANCE if g is None else float(g) for g in key_guidance]
    rows = [values[a] if t == 0.0 else values[b] if t == 1.0 else (1.0 - t) * values[a] + t * values[b]
            for a, b, t in layout.rows]
    return torch.tensor(rows, dtype=torch.float32)


def apply_frame_guidance(entry: dict) -> dict:
    """A copy of a processed sequence cond `entry` whose `guidance` has each frame's own value.

    Entries of models without a guidance input, without differing endpoint values, or whose guidance
    was set again after AID Conditioning are returned unchanged.
    """
    import comfy.conds

    marker = entry.get(SEQUENCE_MARKER)
    model_conds = entry.get("model_conds", {})
    if marker is None or marker.guidance is None or "guidance" not in model_conds:
        return entry
    if not _carried_from_the_keys(entry.get("guidance")):
        return entry
    updated = dict(entry)
    values = frame_guidance(marker.guidance, marker.layout)
    updated["model_conds"] = dict(model_conds, guidance=comfy.conds.CONDRegular(values))
    return updated


def _carried_from_the_keys(guidance) -> bool:
    return guidance is None or isinstance(guidance, KeyGuidance)
