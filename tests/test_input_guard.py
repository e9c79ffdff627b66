"""Every node checks its sockets and FLOAT widgets before its own code runs (nodes/input_guard.py)."""
import math

import pytest
import torch

from aid_pack import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import PAIDGuidance
from aid_pack.nodes.input_guard import check_socket
from aid_pack.nodes.schedule import MAX_FRAMES, AIDSchedule
from aid_pack.nodes.video import output_file
from aid_pack.samplers.sequence.schedule import linear_coefficients, InterpolationSchedule


def test_every_node_of_the_pack_is_guarded():
    for name, node_class in NODE_CLASS_MAPPINGS.items():
        assert getattr(getattr(node_class, node_class.FUNCTION), "aid_input_guard", False), name


@pytest.mark.parametrize("value", [5, "text", [[1, 2], [3]], {"samples": [1]}, None])
def test_a_raw_json_value_on_a_socket_is_refused_by_name(value, sd15_tiny):
    schedule = InterpolationSchedule(linear_coefficients(3), "linear")
    with pytest.raises(AIDInputError, match=r"^Apply AID: input 'model': got a .* not a MODEL\. Fix: connect"):
        ApplyAID().apply(model=value, schedule=schedule, mode="fused outer", layers="self and cross",
                         start_percent=0.0, end_percent=0.5)
    with pytest.raises(AIDInputError, match=r"^Apply AID: input 'schedule': .* Fix: connect AID Schedule"):
        ApplyAID().apply(model=sd15_tiny[0], schedule=value, mode="fused outer", layers="self and cross",
                         start_percent=0.0, end_percent=0.5)


def test_a_conditioning_must_hold_tensor_and_options_pairs(prompts):
    with pytest.raises(AIDInputError, match="PAID Guidance: input 'conditioning'"):
        PAIDGuidance().build(conditioning=[[1, 2], [3]])
    assert PAIDGuidance().build(conditioning=prompts["a"])[0].conditioning is prompts["a"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_widgets_are_refused(value):
    with pytest.raises(AIDInputError, match=r"^AID Schedule: input 'alpha': .* is not a finite number"):
        AIDSchedule().build(frames=5, curve="beta", alpha=value, beta=2.0)


def test_unknown_socket_types_refuse_plain_json_but_take_objects():
    with pytest.raises(AIDInputError, match="input 'x'"):
        check_socket("Node", "x", "SOME_TYPE", {"a": [1, 2.0, "b"]})
    check_socket("Node", "x", "SOME_TYPE", object())
    check_socket("Node", "x", "IMAGE", torch.zeros(1, 8, 8, 3))


def test_a_custom_list_longer_than_the_frame_limit_is_refused():
    values = ", ".join(str(i / MAX_FRAMES) for i in range(MAX_FRAMES + 1))
    with pytest.raises(AIDInputError, match=r"^AID Schedule: input 'custom': the list has 1025 coefficients"):
        AIDSchedule().build(frames=3, curve="custom", alpha=1.0, beta=1.0, custom=values)


@pytest.mark.parametrize("prefix, problem", [("a\x00b", "NUL character"), ("x" * 300, "300 bytes long"),
                                             ("AID/" + "é" * 150 + "/clip", "300 bytes long")])
def test_file_name_prefixes_no_file_system_can_hold_are_refused(prefix, problem, comfy_base):
    with pytest.raises(AIDInputError, match=f"^AID Frames to Video: input 'filename_prefix': .*{problem}"):
        output_file("AID Frames to Video", prefix, "mp4")
