"""Flux guidance per frame: each endpoint keeps its own, interior frames interpolate it.

Flux dev embeds a guidance value (FluxGuidance writes it into the CONDITIONING; ComfyUI uses 3.5
when none is set) next to the timestep. ComfyUI makes it once per conditioning entry, so every row
of a sequence entry would carry A's. When A and B set different values, the sequence entry's
`guidance` is rebuilt per frame: A's at frame 0, B's at the last frame, lerped by t_f between.
A value set on the sequence CONDITIONING afterwards (FluxGuidance after AID Conditioning) wins.
"""
from __future__ import annotations

import torch

from .conditioning import SEQUENCE_MARKER

FLUX_DEFAULT_GUIDANCE = 3.5  # comfy/model_base.py Flux.extra_conds: kwargs.get("guidance", 3.5)


def frame_guidance(guidance_a, guidance_b, coefficients) -> torch.Tensor:
    """Guidance [F] of the frames: A's, lerps, B's (None takes ComfyUI's default)."""
    a = FLUX_DEFAULT_GUIDANCE if guidance_a is None else float(guidance_a)
    b = FLUX_DEFAULT_GUIDANCE if guidance_b is None else float(guidance_b)
    values = [a if t == 0.0 else b if t == 1.0 else (1.0 - t) * a + t * b for t in coefficients]
    return torch.tensor(values, dtype=torch.float32)


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
    if entry.get("guidance") != marker.guidance[0]:
        return entry
    updated = dict(entry)
    values = frame_guidance(*marker.guidance, marker.coefficients)
    updated["model_conds"] = dict(model_conds, guidance=comfy.conds.CONDRegular(values))
    return updated
