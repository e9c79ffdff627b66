"""Spatial-Temporal Weights: the weight of every object over the denoising schedule (AID_REGION_WEIGHTS)."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.regions.weights import (DEFAULT_WEIGHT, MAX_WEIGHT, RegionWeights, WeightCurve, WeightsError,
                                       parse_knots)
from .plotting import line_plot
from .regions import CATEGORY
from .ui import save_preview
from .validation import check_choice

WEIGHTS_NODE = "Spatial-Temporal Weights"
OFFICIAL_START = "official start (5/N)"
MODES = ("constant", "linear ramp", "knots", OFFICIAL_START)
PLOT_POINTS = 21


def weights_series(weights: RegionWeights, names=()) -> list[tuple[str, list, list]]:
    """(label, schedule percents, weights) of every curve (or optimised column), as the preview plots them."""
    if weights.table is not None:
        xs = list(weights.table_percents)
        return [(name, xs, weights.table[:, i].tolist()) for i, name in enumerate(weights.table_names)]
    xs = [s / (PLOT_POINTS - 1) for s in range(PLOT_POINTS)]
    share = max(len(names), 1) if weights.shared else 1
    label = f"each of {len(names)}" if weights.shared and names else "each (N = 1)" if weights.shared \
        else "default"
    series = [(label, xs, (weights.default.values(xs) / share).tolist())]
    series += [(name, xs, (curve.values(xs) / share).tolist()) for name, curve in weights.named]
    return series


def weights_plot(weights: RegionWeights, names=()) -> object:
    """The curves (or optimised values) over the schedule percent."""
    series = weights_series(weights, names)
    top = max([1.0] + [max(values) for _, _, values in series if values])
    return line_plot(series, title="region weight over the schedule", x_label="schedule percent", y_label="w",
                     size=(384, 240), y_range=(0.0, top))


def weights_from_widgets(mode, weight, start_weight, end_weight, knots, names=()) -> RegionWeights:
    """The node's weights from its widget values (also the editor's live curves); AIDInputError if they make none."""
    check_choice(WEIGHTS_NODE, "mode", mode, MODES)
    for name, value in (("weight", weight), ("start_weight", start_weight), ("end_weight", end_weight)):
        if not 0.0 <= value <= MAX_WEIGHT:
            raise AIDInputError(WEIGHTS_NODE, name, f"{value} is outside 0..{MAX_WEIGHT:g}.",
                                f"use a weight from 0 to {MAX_WEIGHT:g} (the convex mix takes 0..1).")
    if mode == OFFICIAL_START:
        weights = RegionWeights.official_start()
    elif mode == "constant":
        weights = RegionWeights(WeightCurve.constant(weight))
    elif mode == "linear ramp":
        weights = RegionWeights(WeightCurve.ramp(start_weight, end_weight))
    else:
        try:
            default, named = parse_knots(knots)
        except WeightsError as error:
            raise AIDInputError(WEIGHTS_NODE, "knots", str(error), error.fix) from None
        weights = RegionWeights(default or WeightCurve.constant(weight), named)
    unknown = [name for name, _ in weights.named if names and name not in names]
    if unknown:
        raise AIDInputError(WEIGHTS_NODE, "knots", f"no region is described as {', '.join(unknown)} (the regions "
                            f"are {', '.join(names)}).", "name a curve after a region's description.")
    return weights


class SpatialTemporalWeights:
    """The weight of each object at each step: constant, a linear ramp, or knots per object."""

    DESCRIPTION = ("How strongly each region's local prompt acts inside the region along the schedule (temporal "
                   "control), over the schedule percent as in start_percent / end_percent (0 = start of denoising, "
                   "1 = its end; a split run gets the weights of one full run). With the convex mix 0 = the full "
                   "prompt only and 1 = the local prompt only (0..1); with the official mix the weight scales an "
                   "additive push and may exceed 1 (sane range about 0..5). constant: one weight for the whole "
                   "schedule; linear ramp: from start_weight to end_weight; knots: piecewise-linear curves "
                   "'percent:weight', one default line and optional lines 'name = ...' for the region with that "
                   "description; official start: 5 / N for each of N regions, the paper code's start. Connect to "
                   "Apply Spatial-Temporal Attention or the sampler; the optimiser starts from these weights.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_REGION_WEIGHTS",)
    RETURN_NAMES = ("weights",)
    OUTPUT_TOOLTIPS = ("The weight schedule of the regions.",)

    @classmethod
    def INPUT_TYPES(cls):
        unit = {"min": 0.0, "max": MAX_WEIGHT, "step": 0.01}
        return {
            "required": {
                "mode": (list(MODES), {"default": "constant",
                                       "tooltip": "constant, linear ramp, knots (below), or official start: 5 / N for "
                                                  "each of N regions (the paper's code; for the official mix)."}),
                "weight": ("FLOAT", {"default": DEFAULT_WEIGHT, **unit,
                                     "tooltip": "constant: the weight of every region along the whole schedule "
                                                "(convex mix: 0..1, 0.5 = half and half; official mix: any, the "
                                                "paper's code starts at 5 / N)."}),
                "start_weight": ("FLOAT", {"default": 0.8, **unit,
                                           "tooltip": "linear ramp: weight at the start of the schedule."}),
                "end_weight": ("FLOAT", {"default": 0.2, **unit,
                                         "tooltip": "linear ramp: weight at the end of the schedule."}),
                "knots": ("STRING", {"multiline": True, "default": "0:0.8, 0.5:0.5, 1:0.2",
                                     "tooltip": "knots: 'percent:weight' pairs over the schedule percent (0 = start "
                                                "of denoising, 1 = end). One line without a name for every region; "
                                                "'name = 0:1, 1:0.3' for the region with that description. # starts "
                                                "a comment line."}),
            },
            "optional": {"regions": ("AID_REGIONS", {"tooltip": "Optional: the region list, to check the names "
                                                                "in the knots against it."})},
        }

    def build(self, mode, weight, start_weight, end_weight, knots, regions=None):
        names = regions.names if regions is not None else ()
        weights = weights_from_widgets(mode, weight, start_weight, end_weight, knots, names)
        ui = {"images": save_preview([weights_plot(weights, names)], "aid_region_weights"),
              "text": [weights.describe(names)]}
        return {"ui": ui, "result": (weights,)}


NODE_CLASS_MAPPINGS = {"AIDSpatialTemporalWeights": SpatialTemporalWeights}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSpatialTemporalWeights": WEIGHTS_NODE}
