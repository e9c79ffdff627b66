"""Spatial-Temporal Region: add one object (its local prompt and where it goes) to a region list."""
from __future__ import annotations

import torch

from ..errors import AIDInputError
from ..samplers.regions.layout import DEFAULT_CANVAS, SHAPES, Region, RegionLayout
from .region_preview import layout_preview
from .ui import save_preview
from .validation import check_choice

REGION_NODE = "Spatial-Temporal Region"
CATEGORY = "AID/spatial-temporal"
UNITS = ("fractions", "pixels")
MAX_SIZE = 16384
MAX_DESCRIPTION = 200  # characters; CLIP reads 77 tokens of 'a photo of <description>'


def shape_input() -> dict:
    """The optional widget choosing boxes or the paper code's discs."""
    return {"shape": (list(SHAPES), {"default": "box", "tooltip": (
        "box: the box as given. disc: the paper code's region, a disc of radius 0.2 of the image side around the "
        "box's centre (drawn at every layer's own grid; its crop for the optimiser is the 0.4 x 0.4 square around "
        "the centre). A mask keeps its own shape.")})}


def regions_input(tooltip: str = "Regions to add to (from another region or layout node); leave empty to start "
                                 "a new list.") -> dict:
    """The optional socket for an existing region list."""
    return {"regions": ("AID_REGIONS", {"tooltip": tooltip})}


def region_ui(layout: RegionLayout, title: str = "") -> dict:
    """The node's UI: the layout preview."""
    return {"images": save_preview([layout_preview(layout, title)], "aid_regions")}


def check_local_prompt(node: str, input_name: str, conditioning) -> None:
    """A CONDITIONING with exactly one entry of one row (one local prompt)."""
    if not isinstance(conditioning, list) or not conditioning:
        raise AIDInputError(node, input_name, "the conditioning is empty.", "connect a CLIP Text Encode output.")
    if len(conditioning) != 1 or conditioning[0][0].shape[0] != 1:
        raise AIDInputError(node, input_name, f"it holds {len(conditioning)} prompt entries of "
                            f"{conditioning[0][0].shape[0]} row(s); a region takes one local prompt.",
                            "encode one prompt with CLIP Text Encode (not a combined or batched conditioning).")


def refuse_diffusion_transformers(node: str, model, what: str, instead: str) -> None:
    """Region features mix UNet cross-attention; on a DiT (joint text+image attention) refuse by name.

    `what` is the feature ("spatial-temporal regions"), `instead` the rest of the fix after "use an
    SD1.x, SD2.x or SDXL checkpoint"."""
    from ..attention.install_dit import dit_family

    family = dit_family(model)
    if family is not None:
        raise AIDInputError(node, "model", f"this is a {family.name} model: {what} work on the cross-attention "
                            f"layers of SD1.x, SD2.x and SDXL UNets, and {family.name} has joint text+image "
                            f"attention instead.", f"use an SD1.x, SD2.x or SDXL checkpoint{instead}.")


def check_layout_for_model(node: str, layout, model=None, need_prompts: bool = True) -> None:
    """A non-empty region list whose regions have local prompts of the model's text width."""
    from .validation import FAMILY_BY_WIDTH, model_context_width

    if model is not None:
        refuse_diffusion_transformers(node, model, "spatial-temporal regions",
                                      "; on this model, core Conditioning (Set Mask) gives prompts per region")
    if not isinstance(layout, RegionLayout) or not layout.regions:
        raise AIDInputError(node, "regions", "the region list is empty.",
                            "connect Spatial-Temporal Region, Typed Layout or Auto Layout.")
    expected = model_context_width(model) if model is not None else None
    for index, region in enumerate(layout.regions):
        if region.area() <= 0:
            raise AIDInputError(node, "regions", f"region {index + 1} ('{region.name}') covers no part of the image.",
                                "give it a box inside the image (or a mask with white pixels).")
        if not need_prompts:
            continue
        if region.conditioning is None:
            raise AIDInputError(node, "regions", f"region {index + 1} ('{region.name}') has no local prompt.",
                                "connect a CLIP Text Encode to its local_prompt input.")
        width = int(region.conditioning[0][0].shape[-1])
        if expected is not None and width != expected:
            raise AIDInputError(node, "regions", f"the local prompt of region {index + 1} ('{region.name}') was "
                                f"encoded for a {FAMILY_BY_WIDTH.get(width, str(width) + '-wide')} model, the model "
                                f"is {FAMILY_BY_WIDTH.get(expected, str(expected) + '-wide')}.",
                                "encode the local prompts with the CLIP of the same checkpoint as the model.")


def box_from_inputs(node: str, units: str, x: float, y: float, width: float, height: float,
                    canvas: tuple[int, int]) -> tuple[float, float, float, float]:
    """(x, y, width, height) as fractions of the image, from fractions or from pixels of the canvas."""
    check_choice(node, "units", units, UNITS)
    values = {"x": x, "y": y, "width": width, "height": height}
    if units == "pixels":
        canvas_w, canvas_h = canvas
        values = {"x": x / canvas_w, "y": y / canvas_h, "width": width / canvas_w, "height": height / canvas_h}
    for name in ("width", "height"):
        if values[name] <= 0:
            raise AIDInputError(node, name, "the box has no size.", f"give the box a positive {name}.")
    outside_x = values["x"] >= 1 or values["x"] + values["width"] <= 0
    if outside_x or values["y"] >= 1 or values["y"] + values["height"] <= 0:
        where = "the canvas" if units == "pixels" else "the image (0..1)"
        raise AIDInputError(node, "x", f"the box ({x}, {y}, {width}, {height} {units}) lies outside {where}.",
                            "move it into the image: x and y are its top-left corner.")
    return values["x"], values["y"], values["width"], values["height"]


class SpatialTemporalRegion:
    """Adds an object to a region list: a local prompt and a box (or mask) where the object goes."""

    DESCRIPTION = ("One object of a spatial-temporal layout: inside its region, cross-attention mixes the full "
                   "prompt's attention with the attention to this local prompt (e.g. 'a photo of a red cup'), by "
                   "the object's weight at each step. Give the region as a box (fractions of the image, or pixels "
                   "of the canvas) or as a MASK (stretched over the whole image); chain nodes to add more objects. "
                   "The preview shows the layout with the objects' names.")
    CATEGORY = CATEGORY
    FUNCTION = "add"
    RETURN_TYPES = ("AID_REGIONS",)
    RETURN_NAMES = ("regions",)
    OUTPUT_TOOLTIPS = ("The region list with this object appended.",)

    @classmethod
    def INPUT_TYPES(cls):
        position = {"min": -MAX_SIZE, "max": MAX_SIZE, "step": 0.01}
        size = {"min": 0.0, "max": MAX_SIZE, "step": 0.01}
        return {
            "required": {
                "description": ("STRING", {"default": "a red cup",
                                           "tooltip": "What the object is, in a few words: its label in the preview, "
                                                      "and the text its crop is scored against when weights are "
                                                      "optimised ('a photo of <description>'). Name curves of the "
                                                      "weight schedule after it."}),
                "units": (list(UNITS), {"default": "fractions",
                                        "tooltip": "fractions: x, y, width, height are parts of the image (0..1), so "
                                                   "the layout fits any image size. pixels: they are pixels of the "
                                                   "canvas size below (like ConditioningSetArea)."}),
                "x": ("FLOAT", {"default": 0.0, **position, "tooltip": "Left edge of the box."}),
                "y": ("FLOAT", {"default": 0.0, **position, "tooltip": "Top edge of the box."}),
                "width": ("FLOAT", {"default": 0.5, **size, "tooltip": "Width of the box."}),
                "height": ("FLOAT", {"default": 1.0, **size, "tooltip": "Height of the box."}),
            },
            "optional": {
                "local_prompt": ("CONDITIONING", {"tooltip": "The object's own prompt, e.g. CLIP Text Encode of "
                                                             "'a photo of a red cup' (needed for spatial control; "
                                                             "regions for AID Regional Interpolation need none)."}),
                "mask": ("MASK", {"tooltip": "Optional: the region as a mask over the whole image (white = the "
                                             "object); replaces the box. Grey values give a partial region."}),
                **regions_input(),
                "canvas_width": ("INT", {"default": DEFAULT_CANVAS[0], "min": 16, "max": MAX_SIZE, "step": 8,
                                         "tooltip": "Width of the image the layout is drawn for: pixel boxes are "
                                                    "relative to it, and the preview has its shape. A region list "
                                                    "keeps the canvas of its first region."}),
                "canvas_height": ("INT", {"default": DEFAULT_CANVAS[1], "min": 16, "max": MAX_SIZE, "step": 8,
                                          "tooltip": "Height of that image."}),
                **shape_input(),
            },
        }

    def add(self, description, units, x, y, width, height, local_prompt=None, mask=None, regions=None,
            canvas_width=DEFAULT_CANVAS[0], canvas_height=DEFAULT_CANVAS[1], shape="box"):
        name = " ".join(str(description).split())
        if not name:
            raise AIDInputError(REGION_NODE, "description", "the description is empty.",
                                "name the object in a few words, e.g. 'a red cup'.")
        if len(name) > MAX_DESCRIPTION:
            raise AIDInputError(REGION_NODE, "description", f"the description has {len(name)} characters; CLIP reads "
                                f"'a photo of <description>' up to 77 tokens.",
                                f"name the object in a few words (at most {MAX_DESCRIPTION} characters).")
        check_choice(REGION_NODE, "shape", shape, SHAPES)
        if local_prompt is not None:
            check_local_prompt(REGION_NODE, "local_prompt", local_prompt)
        layout = regions if regions is not None else RegionLayout(canvas=(int(canvas_width), int(canvas_height)))
        if not isinstance(layout, RegionLayout):
            raise AIDInputError(REGION_NODE, "regions", "this is not a region list.",
                                "connect the regions output of another Spatial-Temporal node.")
        region_mask, box = None, None
        if mask is not None:
            region_mask = _single_mask(mask)
        else:
            box = box_from_inputs(REGION_NODE, units, x, y, width, height, layout.canvas)
        region = Region(name, box=box, mask=region_mask, conditioning=local_prompt, shape=shape)
        if region.area() <= 0:
            raise AIDInputError(REGION_NODE, "mask", "the mask is black everywhere.",
                                "paint the object's area white (or use the box).")
        layout = layout.with_region(region)
        return {"ui": region_ui(layout), "result": (layout,)}


def _single_mask(mask) -> torch.Tensor:
    """MASK [B, H, W] or [H, W] -> [H, W] float in 0..1 (the first of a batch)."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise AIDInputError(REGION_NODE, "mask", "expected a MASK [height, width].", "connect a MASK output.")
    mask = mask if mask.ndim == 2 else mask[0]
    return mask.float().clamp(0.0, 1.0).cpu()


NODE_CLASS_MAPPINGS = {"AIDSpatialTemporalRegion": SpatialTemporalRegion}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSpatialTemporalRegion": REGION_NODE}
