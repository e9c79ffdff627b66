"""Spatial-Temporal Weights: the weight of every object over the denoising schedule (AID_REGION_WEIGHTS)."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.region_weights import DEFAULT_WEIGHT, RegionWeights, WeightCurve, WeightsError, parse_knots
from .plotting import line_plot
from .regions import CATEGORY
from .ui import save_preview
from .validation import check_choice

WEIGHTS_NODE = "Spatial-Temporal Weights"
MODES = ("constant", "linear ramp", "knots")
PLOT_STEPS = 21


def weights_plot(weights: RegionWeights, names=()) -> object:
    """The curves (or optimised values) over the schedule percent."""
    series = []
    if weights.table is not None:
        steps = weights.table.shape[0]
        xs = [s / max(steps - 1, 1) for s in range(steps)]
        series = [(name, xs, weights.table[:, i].tolist()) for i, name in enumerate(weights.table_names)]
    else:
        xs = [s / (PLOT_STEPS - 1) for s in range(PLOT_STEPS)]
        series.append(("default", xs, weights.default.values(PLOT_STEPS).tolist()))
        series += [(name, xs, curve.values(PLOT_STEPS).tolist()) for name, curve in weights.named]
    return line_plot(series, title="region weight over the schedule", x_label="schedule percent", y_label="w",
                     size=(384, 240), y_range=(0.0, 1.0))


class SpatialTemporalWeights:
    """The weight of each object at each step: constant, a linear ramp, or knots per object."""

    DESCRIPTION = ("How strongly each region's local prompt replaces the full prompt inside the region, step by step "
                   "(temporal control): 0 = the full prompt only, 1 = the local prompt only. constant: one weight "
                   "for every step; linear ramp: from start_weight at the first step to end_weight at the last; "
                   "knots: piecewise-linear curves 'percent:weight', one default line and optional lines "
                   "'name = ...' for the region with that description. Connect to Apply Spatial-Temporal Attention "
                   "or the sampler; the optimiser starts from these weights.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_REGION_WEIGHTS",)
    RETURN_NAMES = ("weights",)
    OUTPUT_TOOLTIPS = ("The weight schedule of the regions.",)

    @classmethod
    def INPUT_TYPES(cls):
        unit = {"min": 0.0, "max": 1.0, "step": 0.01}
        return {
            "required": {
                "mode": (list(MODES), {"default": "constant", "tooltip": "constant, linear ramp, or knots (below)."}),
                "weight": ("FLOAT", {"default": DEFAULT_WEIGHT, **unit,
                                     "tooltip": "constant: the weight of every region at every step (0.5 is the "
                                                "paper's starting value)."}),
                "start_weight": ("FLOAT", {"default": 0.8, **unit,
                                           "tooltip": "linear ramp: weight at the first step."}),
                "end_weight": ("FLOAT", {"default": 0.2, **unit, "tooltip": "linear ramp: weight at the last step."}),
                "knots": ("STRING", {"multiline": True, "default": "0:0.8, 0.5:0.5, 1:0.2",
                                     "tooltip": "knots: 'percent:weight' pairs, percent 0 = first step, 1 = last. One "
                                                "line without a name for every region; 'name = 0:1, 1:0.3' for the "
                                                "region with that description. # starts a comment line."}),
            },
            "optional": {"regions": ("AID_REGIONS", {"tooltip": "Optional: the region list, to check the names "
                                                                "in the knots against it."})},
        }

    def build(self, mode, weight, start_weight, end_weight, knots, regions=None):
        check_choice(WEIGHTS_NODE, "mode", mode, MODES)
        for name, value in (("weight", weight), ("start_weight", start_weight), ("end_weight", end_weight)):
            if not 0.0 <= value <= 1.0:
                raise AIDInputError(WEIGHTS_NODE, name, f"{value} is outside 0..1.", "use a weight from 0 to 1.")
        if mode == "constant":
            weights = RegionWeights(WeightCurve.constant(weight))
        elif mode == "linear ramp":
            weights = RegionWeights(WeightCurve.ramp(start_weight, end_weight))
        else:
            try:
                default, named = parse_knots(knots)
            except WeightsError as error:
                raise AIDInputError(WEIGHTS_NODE, "knots", str(error), error.fix) from None
            weights = RegionWeights(default or WeightCurve.constant(weight), named)
        names = regions.names if regions is not None else ()
        unknown = [name for name, _ in weights.named if names and name not in names]
        if unknown:
            raise AIDInputError(WEIGHTS_NODE, "knots", f"no region is described as {', '.join(unknown)} (the regions "
                                f"are {', '.join(names)}).", "name a curve after a region's description.")
        ui = {"images": save_preview([weights_plot(weights, names)], "aid_region_weights"),
              "text": [weights.describe(names)]}
        return {"ui": ui, "result": (weights,)}


NODE_CLASS_MAPPINGS = {"AIDSpatialTemporalWeights": SpatialTemporalWeights}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSpatialTemporalWeights": WEIGHTS_NODE}
