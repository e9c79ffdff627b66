"""Spatial-Temporal Typed Layout and Auto Layout: region lists from text, local prompts encoded with the CLIP."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.regions.prompt_layout import LayoutTextError, format_layout, parse_layout_text, parse_prompt
from ..samplers.regions.layout import DEFAULT_CANVAS, Region, RegionLayout
from ..scoring.region_objective import local_text
from ..samplers.regions.layout import SHAPES
from .text_encode import MAX_PROMPT_CHARACTERS
from .regions import CATEGORY, MAX_SIZE, region_ui, regions_input, shape_input
from .validation import check_choice

TYPED_NODE = "Spatial-Temporal Typed Layout"
AUTO_NODE = "Spatial-Temporal Auto Layout"


def encode_text(clip, text: str):
    """CONDITIONING of `text`, as CLIP Text Encode makes it."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def _check_clip(node: str, clip) -> None:
    if clip is None:
        raise AIDInputError(node, "clip", "there is no CLIP (the checkpoint has no text encoder).",
                            "connect the CLIP output of Load Checkpoint.")


def _start(node: str, regions, canvas) -> RegionLayout:
    if regions is None:
        return RegionLayout(canvas=canvas)
    if not isinstance(regions, RegionLayout):
        raise AIDInputError(node, "regions", "this is not a region list.",
                            "connect the regions output of another Spatial-Temporal node.")
    return regions


def _check_length(node: str, input_name: str, text: str) -> None:
    """Refuse a text longer than any text encoder reads before it is parsed and encoded (the server fuzz
    test's 1 MB prompt kept Auto Layout encoding some 250,000 tokens, at up to 14 GB)."""
    if len(text) > MAX_PROMPT_CHARACTERS:
        raise AIDInputError(node, input_name, f"it is {len(text):,} characters long, over the "
                            f"{MAX_PROMPT_CHARACTERS:,} this node reads.", "shorten it (the text encoders read a few "
                            "hundred tokens at most).")


def layout_from_boxes(clip, placed, layout: RegionLayout, shape: str = "box", texts=None) -> RegionLayout:
    """`layout` with a region per (name, box), each with its local prompt encoded: texts[name] where given, else
    'a photo of <name>'."""
    for name, box in placed:
        text = (texts or {}).get(name) or local_text(name)
        layout = layout.with_region(Region(name, box=box, conditioning=encode_text(clip, text), shape=shape,
                                           local_text=text))
    return layout


def canvas_inputs() -> dict:
    return {
        "canvas_width": ("INT", {"default": DEFAULT_CANVAS[0], "min": 16, "max": MAX_SIZE, "step": 8,
                                 "tooltip": "Width of the image the layout is for (the preview's shape; boxes are "
                                            "fractions, so any image size works)."}),
        "canvas_height": ("INT", {"default": DEFAULT_CANVAS[1], "min": 16, "max": MAX_SIZE, "step": 8,
                                  "tooltip": "Height of that image."}),
    }


class SpatialTemporalTypedLayout:
    """A region list typed as text: one 'object: x, y, width, height' line per object."""

    DESCRIPTION = ("Type a layout: one line per object, 'name: x, y, width, height' in fractions of the image (0..1), "
                   "e.g. 'cat: 0.05, 0.2, 0.4, 0.6'. Every object gets the local prompt 'a photo of <name>', encoded "
                   "with the CLIP. Paste the layout text of Spatial-Temporal Auto Layout here to edit it.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_REGIONS",)
    RETURN_NAMES = ("regions",)
    OUTPUT_TOOLTIPS = ("The region list (appended to the connected one, if any).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "Encodes the local prompts ('a photo of <name>')."}),
                "layout": ("STRING", {"multiline": True,
                                      "default": "cat: 0.03, 0.2, 0.44, 0.6\ndog: 0.53, 0.2, 0.44, 0.6",
                                      "tooltip": "One object per line: 'name: x, y, width, height', fractions of the "
                                                 "image from its top-left corner. Lines starting with # are skipped."}),
            },
            "optional": {**regions_input(), **canvas_inputs(), **shape_input()},
        }

    def build(self, clip, layout, regions=None, canvas_width=DEFAULT_CANVAS[0], canvas_height=DEFAULT_CANVAS[1],
              shape="box"):
        _check_clip(TYPED_NODE, clip)
        check_choice(TYPED_NODE, "shape", shape, SHAPES)
        _check_length(TYPED_NODE, "layout", layout)
        try:
            placed = parse_layout_text(layout)
        except LayoutTextError as error:
            raise AIDInputError(TYPED_NODE, "layout", str(error),
                                "write each object as 'name: x, y, width, height' with fractions of the image, e.g. "
                                "'cat: 0.05, 0.2, 0.4, 0.6'.") from None
        if not placed:
            raise AIDInputError(TYPED_NODE, "layout", "there is no object line.",
                                "write one line per object, e.g. 'cat: 0.05, 0.2, 0.4, 0.6'.")
        result = layout_from_boxes(clip, placed, _start(TYPED_NODE, regions, (canvas_width, canvas_height)), shape)
        return {"ui": region_ui(result), "result": (result,)}


class SpatialTemporalAutoLayout:
    """Objects and boxes from the prompt's words (rules, not the paper's trained predictor)."""

    DESCRIPTION = ("Reads the objects of a prompt and where it puts them (left of, right of, above, below, on, under, "
                   "next to, between, on the left, at the top ...) and places a box per object by fixed rules; "
                   "objects joined by 'and' stand side by side. Anything it does not understand gives no region "
                   "rather than a wrong one (the text output says why): an object named without a spatial word "
                   "gets none. Each object gets the local prompt 'a photo of <object>' with the article the prompt "
                   "gave it ('a photo of a cat'). Outputs the full prompt's conditioning and the layout as editable text (for "
                   "Spatial-Temporal Typed Layout). The paper's trained layout predictor is not used: its weights "
                   "are not obtainable.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_REGIONS", "CONDITIONING", "STRING", "STRING")
    RETURN_NAMES = ("regions", "positive", "layout", "prompt")
    OUTPUT_TOOLTIPS = ("The placed objects (appended to the connected region list, if any).",
                       "The whole prompt encoded with the CLIP, for the sampler's positive input.",
                       "The layout as 'name: x, y, width, height' lines; edit it in Spatial-Temporal Typed Layout.",
                       "The prompt text, for the optimiser's prompt_text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "Encodes the prompt and the local prompts."}),
                "prompt": ("STRING", {"multiline": True, "default": "a photo of a cat to the left of a dog",
                                      "tooltip": "The full prompt; its spatial words place the objects."}),
            },
            "optional": {**regions_input(), **canvas_inputs(), **shape_input()},
        }

    def build(self, clip, prompt, regions=None, canvas_width=DEFAULT_CANVAS[0], canvas_height=DEFAULT_CANVAS[1],
              shape="box"):
        _check_clip(AUTO_NODE, clip)
        check_choice(AUTO_NODE, "shape", shape, SHAPES)
        if not prompt or not prompt.strip():
            raise AIDInputError(AUTO_NODE, "prompt", "the prompt is empty.", "write the prompt to lay out.")
        _check_length(AUTO_NODE, "prompt", prompt)
        parsed = parse_prompt(prompt)
        result = layout_from_boxes(clip, parsed.placed(), _start(AUTO_NODE, regions, (canvas_width, canvas_height)),
                                   shape, parsed.local_prompts())
        text = format_layout(parsed.placed())
        summary = "\n".join([text or "(no region)"] + [f"note: {note}" for note in parsed.notes])
        ui = region_ui(result, f"{len(parsed.placed())} of {len(parsed.objects)} objects placed")
        ui["text"] = [summary]
        return {"ui": ui, "result": (result, encode_text(clip, prompt), text, prompt)}


NODE_CLASS_MAPPINGS = {"AIDSpatialTemporalTypedLayout": SpatialTemporalTypedLayout,
                       "AIDSpatialTemporalAutoLayout": SpatialTemporalAutoLayout}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSpatialTemporalTypedLayout": TYPED_NODE,
                              "AIDSpatialTemporalAutoLayout": AUTO_NODE}
