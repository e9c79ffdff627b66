"""UI workflow -> API prompt conversion (aid_harness.workflow_format).

The core case converts a hand-written UI workflow (tests/data/workflow_format_core.json) and
compares it with an API prompt written by hand from the frontend's rules; the smaller cases
pin single rules on synthetic node definitions, and the error cases check the messages.
Node definitions come from the ComfyUI booted by conftest.py (core nodes plus this pack).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import random
from pathlib import Path

import pytest

from aid_harness import workflow_format as wf

DATA = Path(__file__).resolve().parent / "data"
CORE_WORKFLOW = DATA / "workflow_format_core.json"

# Written by hand from the rules, not generated (see the module docstring of workflow_format):
EXPECTED_CORE_PROMPT = {
    "1": {
        "inputs": {"ckpt_name": "sd15_tiny.safetensors"},
        "class_type": "CheckpointLoaderSimple",
        "_meta": {"title": "Load Checkpoint"},
    },
    # dynamicPrompts: the // comment is stripped (the space before it stays), {cat|cat} picks one.
    "2": {
        "inputs": {"text": "a photo of a cat ", "clip": ["1", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "Positive"},
    },
    "3": {
        "inputs": {"text": "blurry", "clip": ["1", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    # New-style widget sockets (all unlinked) change nothing.
    "4": {
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
        "class_type": "EmptyLatentImage",
        "_meta": {"title": "Empty Latent Image"},
    },
    # seed: the PrimitiveNode's 1234 replaces the node's own 7; "fixed" is not sent.
    "5": {
        "inputs": {
            "seed": 1234, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0,
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
        },
        "class_type": "KSampler",
        "_meta": {"title": "KSampler"},
    },
    # samples: the bypassed KSampler 14 outputs LATENT; its slot 0 is MODEL, so its first LATENT
    # input (latent_image, linked from 5) is used.  vae: through Reroute 6 to the checkpoint.
    "7": {
        "inputs": {"samples": ["5", 0], "vae": ["1", 2]},
        "class_type": "VAEDecode",
        "_meta": {"title": "VAE Decode"},
    },
    # filename_prefix: %EmptyLatentImage.width% found by the "Node name for S&R" property.
    "8": {
        "inputs": {"filename_prefix": "aid_512", "images": ["7", 0]},
        "class_type": "SaveImage",
        "_meta": {"title": "Save result"},
    },
    # The upload button's "image" is not sent.
    "13": {
        "inputs": {"image": "example.png"},
        "class_type": "LoadImage",
        "_meta": {"title": "Load Image"},
    },
    "15": {
        "inputs": {"images": ["13", 0]},
        "class_type": "PreviewImage",
        "_meta": {"title": "Preview Image"},
    },
    # Not sent: 6 Reroute, 9 muted SaveImage, 10 PrimitiveNode, 11 Note, 14 bypassed KSampler.
}


@pytest.fixture(scope="module")
def object_info(comfy):
    return wf.object_info_from_loaded_nodes()


def _node(workflow: dict, node_id: int) -> dict:
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


# ----------------------------------------------------------------------------- core case


def test_core_workflow_matches_hand_written_prompt(object_info):
    prompt = wf.ui_file_to_api(CORE_WORKFLOW, object_info)
    assert prompt == EXPECTED_CORE_PROMPT


def test_hand_written_prompt_only_uses_known_classes_and_inputs(object_info):
    assert wf.check_api_prompt(EXPECTED_CORE_PROMPT, object_info) == []
    for entry in EXPECTED_CORE_PROMPT.values():
        info = object_info[entry["class_type"]]
        declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        assert set(entry["inputs"]) <= set(declared), entry


def test_conversion_does_not_modify_the_workflow(object_info):
    workflow = wf.load_ui_workflow(CORE_WORKFLOW)
    before = copy.deepcopy(workflow)
    wf.ui_to_api(workflow, object_info)
    assert workflow == before


def test_partial_execution_keeps_only_the_queued_outputs_and_their_inputs(object_info):
    prompt = wf.ui_file_to_api(CORE_WORKFLOW, object_info, queue_node_ids=[15])
    assert set(prompt) == {"13", "15"}


# ----------------------------------------------------------------------------- single rules


def _fake_info(inputs: dict, outputs=("INT",), name="Fake", order=None) -> dict:
    info = {
        "input": inputs,
        "output": list(outputs),
        "name": name,
        "display_name": name,
    }
    if order is not None:
        info["input_order"] = order
    return {name: info}


def test_control_widget_follows_the_option_then_the_seed_names():
    info = _fake_info({
        "required": {
            "seed": ["INT", {}],                                       # name -> control
            "noise_seed": ["INT", {"control_after_generate": False}],  # explicit False wins
            "count": ["INT", {"control_after_generate": True}],
            "strength": ["FLOAT", {"control_after_generate": True}],   # FLOAT never
            "mode": [["a", "b"], {"control_after_generate": True}],    # combo: control + filter
            "flag": ["BOOLEAN", {}],
        },
    })
    assert wf.widgets_values_layout("Fake", info) == [
        "seed", "control_after_generate", "noise_seed", "count", "control_after_generate",
        "strength", "mode", "control_after_generate", "control_filter_list", "flag",
    ]


def test_force_input_and_default_input_make_sockets():
    info = _fake_info({
        "required": {"a": ["INT", {"forceInput": True}], "b": ["INT", {"defaultInput": True}], "img": ["IMAGE"]},
        "optional": {"c": ["STRING", {"defaultInput": True}], "d": ["COMBO", {"options": ["x", "y"]}]},
    })
    assert wf.widgets_values_layout("Fake", info) == ["b", "d"]


def test_input_order_wins_over_dict_order():
    info = _fake_info(
        {"required": {"b": ["INT", {}], "a": ["INT", {}]}, "optional": {"c": ["INT", {}]}},
        order={"required": ["a", "b"], "optional": ["c"]},
    )
    assert wf.widgets_values_layout("Fake", info) == ["a", "b", "c"]


def test_upload_widgets_of_core_loaders(object_info):
    assert wf.widgets_values_layout("LoadImage", object_info) == ["image", "upload"]
    assert wf.widgets_values_layout("LoadImageMask", object_info) == ["image", "channel", "upload"]
    assert wf.widgets_values_layout("LoadImageOutput", object_info) == [
        "image", "Auto-refresh after generation", "refresh", "upload"]


def test_load_image_output_is_annotated_and_sends_its_refresh_button(object_info):
    workflow = {"nodes": [{"id": 1, "type": "LoadImageOutput", "mode": 0, "outputs": [],
                           "widgets_values": ["ComfyUI_00001_.png", False, "refresh", "image"]}],
                "links": []}
    assert wf.ui_to_api(workflow, object_info)["1"]["inputs"] == {
        "image": "ComfyUI_00001_.png [output]", "refresh": "refresh"}


def int_into_width(mode: int) -> dict:
    """A PrimitiveInt (in the given mode) linked into EmptyLatentImage's width widget."""
    return {
        "nodes": [
            {"id": 1, "type": "PrimitiveInt", "mode": mode, "widgets_values": [640, "fixed"],
             "outputs": [{"name": "INT", "type": "INT", "links": [1]}]},
            {"id": 2, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [512, 512, 1],
             "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]},
        ],
        "links": [[1, 1, 0, 2, 0, "INT"]],
    }


def test_muted_origin_removes_the_input_even_over_a_widget_value(object_info):
    workflow = int_into_width(mode=2)
    prompt = wf.ui_to_api(workflow, object_info)
    assert prompt == {"2": {"inputs": {"height": 512, "batch_size": 1}, "class_type": "EmptyLatentImage",
                            "_meta": {"title": "Empty Latent Image"}}}


def test_linked_widget_input_takes_the_link(object_info):
    workflow = int_into_width(mode=0)
    prompt = wf.ui_to_api(workflow, object_info)
    assert prompt["2"]["inputs"] == {"width": ["1", 0], "height": 512, "batch_size": 1}
    assert prompt["1"] == {"inputs": {"value": 640}, "class_type": "PrimitiveInt", "_meta": {"title": "Int"}}


def test_old_workflows_with_values_for_force_input_inputs_are_migrated():
    info = _fake_info({"required": {"x": ["INT", {"forceInput": True}], "y": ["INT", {}]}})
    workflow = {"nodes": [{"id": 1, "type": "Fake", "mode": 0, "widgets_values": [3, 4]}], "links": []}
    assert wf.ui_to_api(workflow, info)["1"]["inputs"] == {"y": 4}


def test_list_values_are_wrapped_and_dynamic_prompts_choose_with_the_rng():
    info = _fake_info({"required": {
        "names": ["COMBO", {"options": ["a", "b"], "multi_select": True}],
        "text": ["STRING", {"dynamicPrompts": True}],
    }})
    workflow = {"nodes": [{"id": 1, "type": "Fake", "mode": 0, "widgets_values": [["a", "b"], "{x|y|z} \\{kept\\}"]}],
                "links": []}
    inputs = wf.ui_to_api(workflow, info, rng=random.Random(0))["1"]["inputs"]
    assert inputs["names"] == {"__value__": ["a", "b"]}
    assert inputs["text"] in {"x {kept}", "y {kept}", "z {kept}"}


def test_date_replacement_in_filename_prefix(object_info):
    workflow = {"nodes": [{"id": 1, "type": "SaveImage", "mode": 0, "widgets_values": ["run_%date:yyyy-MM-dd_hh%"],
                           "inputs": [{"name": "images", "type": "IMAGE", "link": None}]}],
                "links": []}
    prompt = wf.ui_to_api(workflow, object_info, now=dt.datetime(2025, 3, 4, 5, 6, 7))
    assert prompt["1"]["inputs"] == {"filename_prefix": "run_2025-03-04_05"}


# ----------------------------------------------------------------------------- errors


def test_unknown_node_type_names_node_and_type(object_info):
    workflow = wf.load_ui_workflow(CORE_WORKFLOW)
    _node(workflow, 3)["type"] = "NoSuchNode"
    with pytest.raises(ValueError, match=r"node 3 \(NoSuchNode\).*unknown node type"):
        wf.ui_to_api(workflow, object_info)


def test_unknown_node_type_is_fine_when_muted(object_info):
    workflow = wf.load_ui_workflow(CORE_WORKFLOW)
    _node(workflow, 9)["type"] = "NoSuchNode"
    assert wf.ui_to_api(workflow, object_info) == EXPECTED_CORE_PROMPT


def test_widgets_values_of_wrong_length(object_info):
    workflow = wf.load_ui_workflow(CORE_WORKFLOW)
    _node(workflow, 5)["widgets_values"] = [7, 20, 8.0, "euler", "normal", 1.0]  # no "fixed"
    with pytest.raises(wf.WorkflowFormatError, match=r"node 5 \(KSampler\).*6 values, expected 7"):
        wf.ui_to_api(workflow, object_info)
    # strict=False behaves like the frontend: values by position, the rest default.
    lenient = wf.ui_to_api(workflow, object_info, strict=False)
    assert lenient["5"]["inputs"]["steps"] == 8.0


def test_not_a_ui_workflow(tmp_path, object_info):
    api_file = tmp_path / "api.json"
    api_file.write_text(json.dumps(EXPECTED_CORE_PROMPT))
    with pytest.raises(wf.WorkflowFormatError, match="API-format prompt"):
        wf.load_ui_workflow(api_file)
    with pytest.raises(wf.WorkflowFormatError, match="not a UI workflow"):
        wf.ui_to_api(EXPECTED_CORE_PROMPT, object_info)


def test_missing_link_is_reported(object_info):
    workflow = wf.load_ui_workflow(CORE_WORKFLOW)
    workflow["links"] = [link for link in workflow["links"] if link[0] != 12]
    with pytest.raises(wf.WorkflowFormatError, match=r"node 8 \(SaveImage\).*missing link 12"):
        wf.ui_to_api(workflow, object_info)
