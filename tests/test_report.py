"""AID Sequence Report: exact metrics on constructed sequences, outputs, JSON file, errors, a headless run."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from aid_pack.errors import AIDInputError
from aid_pack.nodes import report as report_module
from aid_pack.nodes.report import AIDSequenceReport
from aid_pack.scoring.metrics import SequenceDistances
from aid_pack.samplers.sequence.schedule import make_schedule


class AngleClipVision:
    """Stand-in CLIP_VISION: a flat frame of grey value v embeds as the unit vector at angle 360 * v degrees."""

    def encode_image(self, image, crop=True):
        angle = image.mean(dim=(1, 2, 3)).double() * 2 * math.pi
        return {"image_embeds": torch.stack([angle.cos(), angle.sin()], dim=-1)}


def flat_frames(values, size=16):
    return torch.stack([torch.full((size, size, 3), float(v)) for v in values])


def run(frames, **overrides):
    inputs = dict(frames=frames, metric="pixel", filename_prefix="aid_test/report")
    inputs.update(overrides)
    return AIDSequenceReport().report(**inputs)


def saved_json(comfy_base, result):
    name = result["ui"]["text"][0].rsplit("Report: ", 1)[1]
    return json.loads((comfy_base / "output" / name).read_text())


def test_equal_steps_give_smoothness_one_and_all_outputs(comfy_base):
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 40, 40, 3, generator=generator)
    result = run(torch.cat([a, b, a, b, a]))
    distances, plot, smoothness, consistency, largest_step = result["result"]
    assert isinstance(distances, SequenceDistances) and distances.metric == "pixel"
    assert len(distances.distances) == 4 and len(set(distances.distances)) == 1
    assert smoothness == 1.0 and consistency == distances.distances[0] and largest_step == 0
    assert isinstance(smoothness, float) and isinstance(largest_step, int)
    assert plot.shape == (1, 480, 512, 3) and plot.dtype == torch.float32
    (preview,) = result["ui"]["images"]
    assert preview["type"] == "temp" and (comfy_base / "temp" / preview["subfolder"] / preview["filename"]).is_file()
    record = saved_json(comfy_base, result)
    assert record["smoothness"] == 1.0 and record["frames"] == 5 and record["metric"] == "pixel"
    assert record["distances"] == list(distances.distances) and record["coefficients"] is None
    assert "smoothness 1.0000" in result["ui"]["text"][0]


def test_hand_computed_gini_through_the_node(comfy_base):
    # angles 0, 60, 150, 270 degrees: cosine distances 1 - cos(60), 1 - cos(90), 1 - cos(120) = 0.5, 1.0, 1.5
    frames = flat_frames([0.0, 60 / 360, 150 / 360, 270 / 360])
    result = run(frames, metric="clip-vision", clip_vision=AngleClipVision())
    distances, _, smoothness, consistency, largest_step = result["result"]
    assert distances.distances == pytest.approx((0.5, 1.0, 1.5), abs=1e-6)
    # Gini = sum_ij |d_i - d_j| / (2 n^2 mean) = 4 / (2 * 9 * 1) = 2 / 9
    assert smoothness == pytest.approx(7 / 9, abs=1e-6)
    assert consistency == pytest.approx(1.0, abs=1e-6) and largest_step == 2
    assert distances.metric == "clip-vision"


def test_auto_uses_a_connected_clip_vision_model(comfy_base):
    result = run(flat_frames([0.0, 0.25, 0.5]), metric="auto", clip_vision=AngleClipVision())
    assert result["result"][0].metric == "clip-vision" and result["result"][2] == pytest.approx(1.0)


def test_schedule_coefficients_are_kept_and_saved(comfy_base):
    schedule = make_schedule(4, "beta", 2.0, 2.0)
    result = run(flat_frames([0.0, 0.1, 0.5, 0.6]), schedule=schedule)
    distances = result["result"][0]
    assert distances.coefficients == schedule.coefficients
    record = saved_json(comfy_base, result)
    assert record["coefficients"] == list(schedule.coefficients) and record["schedule"] == schedule.describe()
    assert record["largest_step"]["from_frame"] == 1 and record["largest_step"]["to_frame"] == 2


def test_json_reports_get_new_names(comfy_base):
    first = run(flat_frames([0.0, 1.0]))["ui"]["text"][0].rsplit("Report: ", 1)[1]
    second = run(flat_frames([0.0, 1.0]))["ui"]["text"][0].rsplit("Report: ", 1)[1]
    assert first != second and all((comfy_base / "output" / n).is_file() for n in (first, second))
    assert not [p for p in os.listdir(comfy_base / "output" / "aid_test") if p.endswith(".partial")]


@pytest.mark.parametrize("overrides, input_name", [
    (dict(frames=torch.zeros(1, 8, 8, 3)), "frames"),
    (dict(frames=torch.zeros(3, 8, 8)), "frames"),
    (dict(schedule=make_schedule(5, "linear")), "schedule"),
    (dict(metric="clip-vision"), "clip_vision"),
    (dict(metric="euclid"), "metric"),
    (dict(filename_prefix="../../evil/report"), "filename_prefix"),
])
def test_bad_input_errors_name_node_input_and_fix(comfy_base, overrides, input_name):
    inputs = dict(frames=flat_frames([0.0, 0.5, 1.0]))
    inputs.update(overrides)
    with pytest.raises(AIDInputError) as error:
        run(**inputs)
    assert str(error.value).startswith(f"AID Sequence Report: input '{input_name}'") and "Fix:" in str(error.value)


def test_lpips_without_local_files_is_a_clear_error(comfy_base, monkeypatch):
    monkeypatch.setattr(report_module, "lpips_unavailable_reason", lambda: "the lpips package is not installed.")
    with pytest.raises(AIDInputError, match="input 'metric': LPIPS cannot run: the lpips package is not installed"):
        run(flat_frames([0.0, 1.0]), metric="lpips")


def test_node_is_registered_with_typed_outputs(comfy):
    assert comfy["nodes"].NODE_CLASS_MAPPINGS["AIDSequenceReport"] is AIDSequenceReport
    assert AIDSequenceReport.RETURN_TYPES == ("AID_DISTANCES", "IMAGE", "FLOAT", "FLOAT", "INT")
    assert len(AIDSequenceReport.OUTPUT_TOOLTIPS) == len(AIDSequenceReport.RETURN_TYPES)
    optional = AIDSequenceReport.INPUT_TYPES()["optional"]
    assert "AID_SCHEDULE" in optional["schedule"][0].split(",") and optional["clip_vision"][0] == "CLIP_VISION"


def test_headless_prompt_reports_a_scheduled_sequence(runner, comfy_base):
    def empty(color):
        return {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": color}}

    prompt = {
        "1": empty(0x000000), "2": empty(0x404040), "3": empty(0xFFFFFF),
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}},
        "6": {"class_type": "AIDSchedule", "inputs": {"frames": 3, "curve": "linear", "alpha": 1.0, "beta": 1.0}},
        "7": {"class_type": "AIDSequenceReport",
              "inputs": {"frames": ["5", 0], "metric": "pixel", "filename_prefix": "aid_test/headless_report",
                         "schedule": ["6", 0]}},
        "8": {"class_type": "AIDFramesToVideo",
              "inputs": {"images": ["7", 1], "filename_prefix": "aid_test/plot", "format": "webp", "fps": 1.0,
                         "loop": "forward", "hold_first": 0, "hold_last": 0, "reverse": False, "odd_size": "pad",
                         "crf": 19, "webp_quality": 80}},
    }
    result = runner.run(prompt).raise_for_error()
    ui = result.outputs["7"]
    assert ui["images"][0]["type"] == "temp" and "pixel distance, 3 frames" in ui["text"][0]
    record = json.loads((comfy_base / "output" / ui["text"][0].rsplit("Report: ", 1)[1]).read_text())
    assert record["coefficients"] == [0.0, 0.5, 1.0] and record["largest_step"]["index"] == 1
    assert len(record["distances"]) == 2 and record["distances"][1] > record["distances"][0]
    assert "8" in result.outputs  # the plot IMAGE output feeds an ordinary IMAGE input


def test_connected_distances_are_reported_as_measured(comfy_base):
    given = SequenceDistances((0.1, 0.3, 0.2), "clip-vision", (0.0, 0.2, 0.7, 1.0))
    result = run(flat_frames([0, 0.3, 0.6, 0.9]), distances=given)
    measured, _, smoothness, consistency, largest_step = result["result"]
    assert measured == given and largest_step == 1
    assert smoothness == pytest.approx(1 - (0.2 + 0.1 + 0.1) * 2 / (2 * 9 * 0.2))
    assert saved_json(comfy_base, result)["metric"] == "clip-vision"
    with pytest.raises(AIDInputError, match="AID Sequence Report: input 'distances'"):
        run(flat_frames([0, 0.5, 1.0]), distances=given)
