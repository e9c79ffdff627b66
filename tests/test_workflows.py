"""The example workflows: up to date with their descriptions, and executed headless by ComfyUI."""
import json

import av
import pytest

from aid_harness.example_workflows import DIT_WORKFLOWS, WORKFLOWS, WORKFLOWS_DIR, prepare_test_inputs
from aid_harness.workflow_format import check_api_prompt, object_info_from_loaded_nodes, ui_to_api

# Small stand-ins so a workflow runs on a CPU in seconds; everything else runs as shipped.
TEST_SIZES = {"width": 64, "height": 64, "steps": 3, "frames": 4}


@pytest.fixture(scope="module")
def object_info(comfy):
    return object_info_from_loaded_nodes()


def shrink_for_test(prompt: dict, checkpoint: str, stand_ins: dict | None = None) -> dict:
    for node in prompt.values():
        inputs = node["inputs"]
        if "ckpt_name" in inputs:
            inputs["ckpt_name"] = checkpoint
        for name, value in inputs.items():  # shipped model names -> the test host's random stand-ins
            if isinstance(value, str) and value in (stand_ins or {}):
                inputs[name] = stand_ins[value]
        for name, value in TEST_SIZES.items():
            if name in inputs and not isinstance(inputs[name], list):
                inputs[name] = value
    return prompt


def test_every_shipped_workflow_is_described():
    assert sorted(p.name for p in WORKFLOWS_DIR.glob("*.json")) == sorted(WORKFLOWS)


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_file_matches_its_description(name, object_info):
    assert json.loads((WORKFLOWS_DIR / name).read_text()) == json.loads(json.dumps(WORKFLOWS[name](object_info)))


@pytest.mark.parametrize("name", sorted(set(WORKFLOWS) - set(DIT_WORKFLOWS)))  # DiTs: test_dit_workflows.py
def test_workflow_runs_headless(name, object_info, runner, sd15_tiny_name, comfy_base):
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    prompt = shrink_for_test(ui_to_api(workflow, object_info), sd15_tiny_name, prepare_test_inputs(name, comfy_base))
    assert check_api_prompt(prompt, object_info) == []
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": workflow}}).raise_for_error()
    files = result.output_files(comfy_base)
    assert files and all(f.is_file() for f in files)
    clips = [f for f in files if f.suffix in (".mp4", ".webm")]
    assert clips, "every example workflow ends in a video"
    with av.open(str(clips[-1])) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= TEST_SIZES["frames"]
