"""AID Schedule: the interpolation coefficients of a sequence (AID_SCHEDULE)."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.sequence.schedule import CURVES, make_schedule
from .plotting import line_plot
from .ui import save_preview

NODE_NAME = "AID Schedule"
MAX_FRAMES = 1024  # the frames widget's max; a custom list may not go past it either


def schedule_from_widgets(frames, curve, alpha, beta, custom=""):
    """The node's schedule from its widget values (also the editor's live curve); AIDInputError if they do not make one."""
    if curve not in CURVES:
        raise AIDInputError(NODE_NAME, "curve", f"unknown curve '{curve}'.", f"choose one of {', '.join(CURVES)}.")
    if curve != "custom" and frames < 3:
        raise AIDInputError(NODE_NAME, "frames", f"{frames} is too few frames.",
                            "use at least 3 (two endpoints and one frame between them).")
    try:
        schedule = make_schedule(frames, curve, alpha, beta, custom)
    except ValueError as error:
        input_name = "custom" if curve == "custom" else ("alpha" if curve == "beta" else "frames")
        fix = ("write numbers from 0 to 1 in increasing order, e.g. '0, 0.3, 0.7, 1'." if curve == "custom"
               else "use gentler alpha and beta (closer to 1) or fewer frames.")
        raise AIDInputError(NODE_NAME, input_name, str(error), fix) from None
    if schedule.frames > MAX_FRAMES:
        raise AIDInputError(NODE_NAME, "custom", f"the list has {schedule.frames} coefficients, so "
                            f"{schedule.frames} frames, more than the {MAX_FRAMES} a sequence may have.",
                            f"use at most {MAX_FRAMES} values (long sequences: several schedules, or fewer "
                            "frames and video interpolation).")
    return schedule


class AIDSchedule:
    """Make the coefficients t_0 = 0 < ... < t_{F-1} = 1 that every AID node reads."""

    DESCRIPTION = ("Interpolation coefficients of an F-frame sequence, both endpoints included. "
                   "'beta' places frame f at the inverse Beta(alpha, beta) CDF of f/(F-1): alpha = beta > 1 packs "
                   "frames into the middle, where transitions tend to be abrupt; alpha != beta leans toward one end.")
    CATEGORY = "AID"
    FUNCTION = "build"
    RETURN_TYPES = ("AID_SCHEDULE",)
    RETURN_NAMES = ("schedule",)
    OUTPUT_TOOLTIPS = ("Coefficients for AID Conditioning, AID Latent, Apply AID and AID Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("INT", {"default": 7, "min": 3, "max": 1024,
                                   "tooltip": "Frames F of the sequence, the two endpoints included (ignored for 'custom')."}),
                "curve": (list(CURVES), {"default": "beta",
                                         "tooltip": "linear: even coefficients; beta: Beta(alpha, beta) inverse CDF; "
                                                    "custom: the list below."}),
                "alpha": ("FLOAT", {"default": 4.0, "min": 0.05, "max": 100.0, "step": 0.05,
                                    "tooltip": "Beta alpha. alpha > beta moves the middle frames toward endpoint B."}),
                "beta": ("FLOAT", {"default": 4.0, "min": 0.05, "max": 100.0, "step": 0.05,
                                   "tooltip": "Beta beta. alpha = beta = 1 is linear."}),
            },
            "optional": {
                "custom": ("STRING", {"default": "0, 0.25, 0.5, 0.75, 1", "multiline": True,
                                      "tooltip": "For curve 'custom': coefficients from 0 to 1, strictly increasing, "
                                                 "separated by commas or spaces. Their count sets F."}),
            },
        }

    def build(self, frames, curve, alpha, beta, custom=""):
        schedule = schedule_from_widgets(frames, curve, alpha, beta, custom)
        plot = line_plot([("t_f", list(range(schedule.frames)), list(schedule.coefficients))],
                         title=f"AID schedule: {schedule.describe()}", x_label="frame f",
                         y_label="t_f", size=(384, 240), y_range=(0.0, 1.0))
        return {"ui": {"images": save_preview([plot], "aid_schedule")}, "result": (schedule,)}


NODE_CLASS_MAPPINGS = {"AIDSchedule": AIDSchedule}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSchedule": NODE_NAME}
