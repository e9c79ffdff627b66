"""Regional interpolation: AID where a coefficient map says so, endpoint A elsewhere (attention/patch.py).

The map c(x) is the union of the regions' masks. In every interpolated attention layer a query pixel x
of a frame after A (B included) gets (1 - c(x)) Attn(q_x, K_A, V_A) + c(x) AID(q_x): inside the map the
frame travels from A to B as plain AID makes it, outside it keeps attending to A alone, at every step,
so the rest of the image holds. c = 1 everywhere is plain AID.
"""
from __future__ import annotations

from dataclasses import replace

from ..attention.install import rewrapped, split_outermost
from ..attention.patch import InterpolationPatch
from ..attention.regions import CoefficientMap, LayerMasks
from .region_layout import RegionLayout


class NoInterpolationError(ValueError):
    """The model carries no AID interpolation patch to restrict."""


def regional_interpolation_model(model, layout: RegionLayout):
    """A clone of an AID-patched `model` whose interpolation follows the layout's coefficient map."""
    clone = model.clone()
    coefficient_map = CoefficientMap(LayerMasks(layout.rasterise, layout.layer_masks))
    count = 0
    replace_patches = clone.model_options.get("transformer_options", {}).get("patches_replace", {})
    for name in ("attn1", "attn2"):
        patches = replace_patches.get(name, {})
        for key, patch in list(patches.items()):
            outer, inner = split_outermost(patch)
            if not isinstance(inner, InterpolationPatch):
                continue
            restricted = replace(inner, settings=replace(inner.settings, coefficient_map=coefficient_map))
            patches[key] = rewrapped(outer, restricted)
            count += 1
    if not count:
        raise NoInterpolationError("the model has no AID interpolation patch.")
    return clone
