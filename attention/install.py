"""Find every transformer block a loaded UNet has and install interpolation patches on a model clone."""
from __future__ import annotations

from dataclasses import replace

from .patch import LAYERS, InterpolationPatch, InterpolationSettings


class UnsupportedModelError(ValueError):
    """The MODEL has no SD-style UNet transformer blocks (e.g. a DiT model)."""


def transformer_block_keys(diffusion_model) -> list[tuple[str, int, int]]:
    """(block name, block number, index in its SpatialTransformer) of every BasicTransformerBlock.

    Enumerated from the module itself, so SD1.x/SD2.x (16 blocks of depth 1), SDXL (70) and
    SSD-1B/Vega-style variants all get exactly the keys ComfyUI will look up. The middle block's
    key number is 0 whatever child holds the transformer.
    """
    groups = []
    for name in ("input_blocks", "output_blocks"):
        for number, block in enumerate(getattr(diffusion_model, name, None) or []):
            groups.append((name.split("_")[0], number, block))
    middle = getattr(diffusion_model, "middle_block", None)
    if middle is not None:
        groups.append(("middle", 0, middle))
    keys = []
    for block_name, number, block in groups:
        for module in block.modules():
            blocks = getattr(module, "transformer_blocks", None)
            if blocks is not None:
                keys.extend((block_name, number, index) for index in range(len(blocks)))
    return sorted(set(keys), key=lambda key: (("input", "middle", "output").index(key[0]), key[1], key[2]))


def existing_replace_patch(model_options: dict, attention_name: str, key: tuple):
    """The replace patch ComfyUI would call at `key` now: the 3-tuple entry, else the 2-tuple one."""
    replace = model_options.get("transformer_options", {}).get("patches_replace", {}).get(attention_name, {})
    return replace.get(key, replace.get(key[:2]))


def install_interpolation(model, settings: InterpolationSettings, layers: str = "self and cross",
                          image_branches: dict | None = None):
    """Install interpolation patches on `model` (a ModelPatcher clone) at every transformer block.

    `image_branches` maps a block key to an image-prompt branch for that layer's cross-attention
    (installed even when cross-attention is not interpolated). A patch another pack installed
    earlier at a key is chained to (called as the attention function), never dropped; an
    earlier AID patch is replaced. Returns the number of patched attention layers.
    """
    if layers not in LAYERS:
        raise ValueError(f"unknown layers '{layers}', expected one of {', '.join(LAYERS)}.")
    keys = transformer_block_keys(model.model.diffusion_model)
    if not keys:
        raise UnsupportedModelError("this model has no UNet transformer blocks (SD1.x, SD2.x and SDXL-family "
                                    "models have them).")
    targets = {"self and cross": ("attn1", "attn2"), "self only": ("attn1",), "cross only": ("attn2",)}[layers]
    count = 0
    for attention_name in ("attn1", "attn2"):
        branches = (image_branches or {}) if attention_name == "attn2" else {}
        interpolate_here = attention_name in targets
        _remove_interpolation(model, attention_name)
        setter = model.set_model_attn1_replace if attention_name == "attn1" else model.set_model_attn2_replace
        for key in keys:
            branch = branches.get(key)
            if not interpolate_here and branch is None:
                continue
            layer_settings = settings if interpolate_here else replace(settings, active=False)
            previous = existing_replace_patch(model.model_options, attention_name, key)
            setter(InterpolationPatch(layer_settings, previous, branch), *key)
            count += 1
    return count


def _remove_interpolation(model, attention_name: str) -> None:
    """Undo earlier AID patches on one attention kind, restoring what they chained to."""
    replace = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get(attention_name)
    if not replace:
        return
    for key, patch in list(replace.items()):
        if isinstance(patch, InterpolationPatch):
            if patch.previous is None:
                del replace[key]
            else:
                replace[key] = patch.previous
