"""AID Sequence Report: distances between neighbouring frames, smoothness, consistency, a plot and a JSON file."""
from __future__ import annotations

import json
from dataclasses import replace

from PIL import Image

from ..errors import AIDInputError, plural
from ..scoring.metrics import METRICS, lpips_unavailable_reason, make_frame_distance, measure_sequence
from ..video import write_text
from .plotting import line_plot
from .ui import pil_to_image_tensor, save_preview
from .video import check_image_batch, output_file

NODE_NAME = "AID Sequence Report"


class AIDSequenceReport:
    """Measure how even (smoothness) and how small (consistency) the steps of a sequence are."""

    DESCRIPTION = ("Measures the distance d_i between each frame and the next, then the paper's metrics: smoothness "
                   "= 1 - Gini(d) (1.0 = perfectly even steps) and consistency = mean(d) (lower = frames stay "
                   "closer). Shows a plot and saves a JSON report to the output folder. Distance: a pixel-space "
                   "perceptual proxy, CLIP-vision cosine distance when a CLIP vision model is connected, or LPIPS "
                   "when the lpips package and its weights are on disk (never downloaded).")
    CATEGORY = "AID/output"
    FUNCTION = "report"
    OUTPUT_NODE = True
    RETURN_TYPES = ("AID_DISTANCES", "IMAGE", "FLOAT", "FLOAT", "INT")
    RETURN_NAMES = ("distances", "plot", "smoothness", "consistency", "largest_step")
    OUTPUT_TOOLTIPS = (
        "The neighbour distances with their metric (and the schedule's coefficients), for other AID nodes.",
        "Distance per step and coefficient / cumulative distance per frame, as an image.",
        "1 - Gini of the distances: 1.0 when every step is the same size.",
        "Mean distance between neighbouring frames (lower is better; compare only within one metric).",
        "Index i of the largest step, between frame i and frame i + 1 (counting from 0).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The sequence, first to last frame, before any looping or holds."}),
                "metric": (list(METRICS), {"default": "auto",
                                           "tooltip": "auto: CLIP vision if connected, else LPIPS if installed "
                                                      "with its weights, else pixel. pixel: blurred colour + "
                                                      "structure (SSIM) difference, no model. clip-vision: cosine "
                                                      "distance of CLIP image embeddings. lpips: the paper's metric."}),
                "filename_prefix": ("STRING", {"default": "AID/report",
                                               "tooltip": "JSON report name inside ComfyUI's output folder."}),
            },
            "optional": {
                "schedule": ("AID_SCHEDULE,AID_KEYFRAME_SCHEDULE", {
                    "tooltip": "The schedule that made the frames (AID Schedule, or AID Keyframe Sampler's: each "
                               "frame's place along the keys): its coefficients are plotted and saved with the "
                               "distances."}),
                "clip_vision": ("CLIP_VISION", {"tooltip": "A CLIP vision model (Load CLIP Vision) for the "
                                                           "clip-vision metric."}),
                "distances": ("AID_DISTANCES", {"tooltip": "Distances already measured (e.g. by AID Smooth "
                                                           "Sampler): reported as they are, `metric` is not used."}),
            },
        }

    def report(self, frames, metric, filename_prefix, schedule=None, clip_vision=None, distances=None):
        check_image_batch(NODE_NAME, "frames", frames, minimum=2)
        if metric not in METRICS:
            raise AIDInputError(NODE_NAME, "metric", f"'{metric}' is not an option.",
                                f"choose one of: {', '.join(METRICS)}.")
        coefficients = None
        if schedule is not None:
            coefficients = tuple(schedule.coefficients)
            if len(coefficients) != frames.shape[0]:
                raise AIDInputError(NODE_NAME, "schedule", f"the schedule has {plural(len(coefficients), 'frame')} but "
                                    f"{plural(frames.shape[0], 'frame')} are connected.",
                                    "connect the schedule that made these frames, or disconnect it.")
        if metric == "clip-vision" and clip_vision is None:
            raise AIDInputError(NODE_NAME, "clip_vision", "the clip-vision metric needs a CLIP vision model.",
                                "connect Load CLIP Vision, or choose the 'pixel' metric.")
        lpips_problem = lpips_unavailable_reason() if metric == "lpips" else None
        if lpips_problem is not None:
            raise AIDInputError(NODE_NAME, "metric", f"LPIPS cannot run: {lpips_problem}",
                                "choose 'auto' or 'pixel', or make the files above available.")
        if distances is not None:
            if distances.frames != frames.shape[0]:
                raise AIDInputError(NODE_NAME, "distances", f"the distances are for {plural(distances.frames, 'frame')} but "
                                    f"{plural(frames.shape[0], 'frame')} are connected.",
                                    "connect the distances and frames of the same node, or disconnect distances.")
            measured = distances if coefficients is None else replace(distances, coefficients=coefficients)
        else:
            measured = measure_sequence(frames, make_frame_distance(metric, clip_vision), coefficients)

        plot = sequence_plot(measured)
        path, filename, subfolder = output_file(NODE_NAME, filename_prefix, "json")
        record = measured.to_dict()
        if schedule is not None:
            record["schedule"] = schedule.describe() if hasattr(schedule, "describe") else None
        write_text(path, json.dumps(record, indent=2) + "\n")

        step = measured.largest_step
        summary = (f"{measured.metric} distance, {plural(measured.frames, 'frame')}: smoothness {measured.smoothness:.4f}, "
                   f"consistency {measured.consistency:.4g}, largest step {step} -> {step + 1} "
                   f"({measured.distances[step]:.4g}). Report: {'/'.join(p for p in (subfolder, filename) if p)}")
        ui = {"images": save_preview([plot], "aid_report"), "text": [summary]}
        return {"ui": ui, "result": (measured, pil_to_image_tensor([plot]), measured.smoothness,
                                     measured.consistency, step)}


def sequence_plot(measured, width: int = 512, panel_height: int = 240) -> Image.Image:
    """Two panels: distance per step (with its mean), and coefficient / normalised cumulative distance per frame."""
    steps = list(range(len(measured.distances)))
    mean = measured.consistency
    top = line_plot([("d_i", steps, list(measured.distances)), ("mean", [steps[0], steps[-1]], [mean, mean])],
                    title=f"{measured.metric} distance per step: smoothness {measured.smoothness:.3f}, "
                          f"consistency {mean:.3g}",
                    x_label="step i (frame i -> i+1)", y_label="d_i", size=(width, panel_height),
                    y_range=(0.0, max(measured.distances) * 1.1 or 1.0))
    frame_index = list(range(measured.frames))
    total = sum(measured.distances)
    cumulative = [0.0]
    for distance in measured.distances:
        cumulative.append(cumulative[-1] + distance)
    last = measured.frames - 1
    progress = [c / total for c in cumulative] if total > 0 else [f / last for f in frame_index]
    reference = (("t_f", list(measured.coefficients)) if measured.coefficients is not None
                 else ("even steps", [f / last for f in frame_index]))
    bottom = line_plot([(reference[0], frame_index, reference[1]), ("cumulative d", frame_index, progress)],
                       title="coefficient and normalised cumulative distance per frame", x_label="frame f",
                       y_label="0..1", size=(width, panel_height), y_range=(0.0, 1.0))
    plot = Image.new("RGB", (width, 2 * panel_height), "white")
    plot.paste(top, (0, 0))
    plot.paste(bottom, (0, panel_height))
    return plot


NODE_CLASS_MAPPINGS = {"AIDSequenceReport": AIDSequenceReport}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSequenceReport": NODE_NAME}
