"""Find every transformer block a loaded UNet has and install interpolation patches on a model clone."""
from __future__ import annotations

import logging
from dataclasses import replace

from .patch import LAYERS, InterpolationPatch, InterpolationSettings


class UnsupportedModelError(ValueError):
    """The MODEL is none of the families AID can interpolate (attention/registry.py lists them)."""


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


def install_keys(keys, attention_name: str, replace_patches: dict) -> list[tuple[tuple, tuple | None]]:
    """(key to install at, the layer's 3-tuple key or None) for one attention kind of a UNet's blocks.

    ComfyUI looks a layer up by its 3-tuple key, then by its block's 2-tuple key. Patches go on the
    keys other packs use, so they find AID's patch instead of hiding it or being hidden:
    - attn2: IPAdapter_plus uses 2-tuple keys on SD1.x/SD2.x (every block holds one layer) and
      3-tuple keys on SDXL-family UNets, and calls .add() on the patch it finds; an IP-Adapter image
      branch is per layer anyway;
    - attn1: 2-tuple keys (PAG perturbs the middle block through ("middle", 0)); one patch serves
      every layer of a block.
    A layer where another pack already put a 3-tuple patch gets a 3-tuple key (chained to it), since
    that patch would hide a 2-tuple one. The layer key is None for a 2-tuple key covering several layers.
    """
    depth = {}
    for block_name, number, _ in keys:
        depth[(block_name, number)] = depth.get((block_name, number), 0) + 1
    one_layer_blocks = all(count == 1 for count in depth.values())
    chosen, blocks_done = [], set()
    for block_name, number, index in keys:
        key, block = (block_name, number, index), (block_name, number)
        if (attention_name == "attn2" and not one_layer_blocks) or key in replace_patches:
            chosen.append((key, key))
        elif block not in blocks_done:
            chosen.append((block, key if depth[block] == 1 else None))
            blocks_done.add(block)
    return chosen


def install_interpolation(model, settings: InterpolationSettings, layers: str = "self and cross",
                          image_branches: dict | None = None):
    """Install interpolation patches on `model` (a ModelPatcher clone) at every transformer block.

    `image_branches` maps a block key to an image-prompt branch for that layer's cross-attention
    (installed even when cross-attention is not interpolated). A patch another pack installed
    earlier at a key is chained to (called as the attention function), never dropped; an
    earlier AID patch is replaced. A patch that declares `stays_outermost` (region attention) keeps
    its place: the AID patch is put inside it, chained to what it chained to, via its
    `with_previous(patch)`. Returns the number of patched attention layers.
    """
    if layers not in LAYERS:
        raise ValueError(f"unknown layers '{layers}', expected one of {', '.join(LAYERS)}.")
    keys = transformer_block_keys(model.model.diffusion_model)
    if not keys:
        raise UnsupportedModelError("this model has no UNet transformer blocks (SD1.x, SD2.x and SDXL-family "
                                    "models have them).")
    targets = {"self and cross": ("attn1", "attn2"), "self only": ("attn1",), "cross only": ("attn2",)}[layers]
    count, chained = 0, 0
    for attention_name in ("attn1", "attn2"):
        branches = (image_branches or {}) if attention_name == "attn2" else {}
        interpolate_here = attention_name in targets
        _remove_interpolation(model, attention_name)
        if not interpolate_here and not branches:
            continue
        replace_patches = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get(
            attention_name, {})
        setter = model.set_model_attn1_replace if attention_name == "attn1" else model.set_model_attn2_replace
        layer_settings = settings if interpolate_here else replace(settings, active=False)
        for key, layer in install_keys(keys, attention_name, replace_patches):
            # region attention stays outside: AID goes inside it (see _remove_interpolation)
            outer, previous = split_outermost(existing_replace_patch(model.model_options, attention_name, key))
            patch = InterpolationPatch(layer_settings, previous, branches.get(layer))
            setter(rewrapped(outer, patch), *key)
            chained += previous is not None
        count += len(keys)
    if chained and settings.fusion == "lse" and settings.active:
        logging.warning("%s: fusion 'lse' cannot see inside another pack's attention patch; the %d patched "
                        "layers chained to one join key sets (concat) instead.", settings.node_name, chained)
    return count


def coefficient_map_of(model):
    """The coefficient map of regional interpolation (attention/regions.py CoefficientMap) that an AID patch on
    `model` carries, else None."""
    replace_patches = model.model_options.get("transformer_options", {}).get("patches_replace", {})
    for attention_name in ("attn1", "attn2"):
        for patch in replace_patches.get(attention_name, {}).values():
            _, inner = split_outermost(patch)
            if isinstance(inner, InterpolationPatch) and inner.settings.coefficient_map is not None:
                return inner.settings.coefficient_map
    return None


def split_outermost(patch):
    """(the patch that must stay outermost, or None; what goes inside it): region attention wraps AID's patch."""
    if getattr(patch, "stays_outermost", False):
        return patch, patch.previous
    return None, patch


def rewrapped(outer, inner):
    """`inner` back inside the outermost patch split_outermost took off (as is when there was none)."""
    return outer.with_previous(inner) if outer is not None else inner


def _remove_interpolation(model, attention_name: str) -> None:
    """Undo earlier AID patches on one attention kind, restoring what they chained to."""
    replace = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get(attention_name)
    if not replace:
        return
    for key, patch in list(replace.items()):
        if getattr(patch, "stays_outermost", False) and isinstance(patch.previous, InterpolationPatch):
            # a patch that must stay outermost (region attention, attention/region_patch.py) around an AID patch:
            # AID calls what it chains to with joined key sets, which that patch cannot split by token ranges
            replace[key] = patch.with_previous(patch.previous.previous)
        elif isinstance(patch, InterpolationPatch):
            if patch.previous is None:
                del replace[key]
            else:
                replace[key] = patch.previous
