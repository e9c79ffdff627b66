"""SDXL size conditioning per frame: each endpoint keeps its own, interior frames interpolate it.

SDXL-family models embed width, height, crops and target size (the refiner: an aesthetic score)
next to the pooled text vector in `y`; ComfyUI computes `y` once per conditioning entry from that
entry's scalar keys, so every row of a sequence entry would carry A's sizes. When A and B set
different sizes (CLIPTextEncodeSDXL), the sequence entry's `y` is rebuilt per frame with the model's
own encode_adm: frame 0 with A's sizes, the last frame with B's, and frame f with the sizes lerped
by t_f (then embedded); in a keyframe sequence, each key's and a frame's two keys'. Missing keys take the values ComfyUI would give them (the latent size x 8,
crops 0, target = size, aesthetic score 6).
"""
from __future__ import annotations

import torch

from .conditioning import SEQUENCE_MARKER

_NOT_PASSED = ("model_conds", "uuid", "cross_attn", SEQUENCE_MARKER, "pooled_output")


def resolved_sizes(sizes: dict, width: int, height: int) -> dict:
    """An endpoint's size keys with ComfyUI's defaults filled in."""
    resolved = {"width": width, "height": height, "crop_w": 0, "crop_h": 0}
    resolved.update({key: value for key, value in sizes.items() if key in resolved})
    resolved["target_width"] = sizes.get("target_width", resolved["width"])
    resolved["target_height"] = sizes.get("target_height", resolved["height"])
    resolved["aesthetic_score"] = sizes.get("aesthetic_score", 6.0)
    return resolved


def frame_sizes(sizes_a: dict, sizes_b: dict, t: float) -> dict:
    """Sizes of a frame at coefficient t between two keys: the first's at 0, the second's at 1, lerped between."""
    if t == 0.0:
        return dict(sizes_a)
    if t == 1.0:
        return dict(sizes_b)
    return {key: (1.0 - t) * float(sizes_a[key]) + t * float(sizes_b[key]) for key in sizes_a}


def apply_frame_sizes(model, entry: dict, prompt_type: str, noise: torch.Tensor) -> dict:
    """A copy of a processed sequence cond `entry` whose `y` has each frame's own size conditioning.

    `model` is the sampling run's BaseModel (its encode_adm makes `y`), `noise` the run's initial
    noise [F, C, h, w]. Entries without differing endpoint sizes are returned unchanged.
    """
    import comfy.conds

    marker = entry.get(SEQUENCE_MARKER)
    encode_adm = getattr(model, "encode_adm", None)
    pooled = entry.get("pooled_output")
    if marker is None or marker.sizes is None or encode_adm is None or pooled is None:
        return entry
    height, width = noise.shape[2] * 8, noise.shape[3] * 8
    key_sizes = [resolved_sizes(sizes, width, height) for sizes in marker.sizes]
    base = {key: value for key, value in entry.items() if key not in _NOT_PASSED}
    base.setdefault("prompt_type", prompt_type)
    rows = []
    for frame, (key_a, key_b, t) in enumerate(marker.layout.rows):
        sizes = frame_sizes(key_sizes[key_a], key_sizes[key_b], t)
        params = dict(base, **sizes, device=noise.device, noise=noise[frame:frame + 1])
        params["pooled_output"] = pooled[frame:frame + 1]
        rows.append(encode_adm(**params))
    updated = dict(entry)
    updated["model_conds"] = dict(entry["model_conds"], y=comfy.conds.CONDRegular(torch.cat(rows)))
    return updated
