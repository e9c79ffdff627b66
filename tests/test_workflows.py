"""The example workflows: up to date with their descriptions, described models, fresh thumbnails,
executed headless by ComfyUI, and listed by ComfyUI's own template route."""
import json
import urllib.request

import av
import pytest
from PIL import Image

from aid_harness import host
from aid_harness.example_workflows import (DEFAULT_CHECKPOINT, MODEL_FILES, NOTE_TITLE, PEER_PACKS, WORKFLOWS,
                                           WORKFLOWS_DIR, build_workflow, images_named, models_named,
                                           prepare_test_inputs, shrink, use_stand_ins)
from aid_harness.runner import ServerRunner
from aid_harness.templates import GRID, TILE, prompt_digest, thumbnail_digest
from aid_harness.workflow_format import _is_combo, _spec_parts, check_api_prompt, object_info_from_loaded_nodes, ui_to_api

# Small stand-ins so a workflow runs on a CPU in seconds; everything else runs as shipped.
TEST_SIZES = {"width": 64, "height": 64, "steps": 3, "frames": 4, "iterations": 1, "candidates": 2}
STEMS = sorted(name[:-len(".json")] for name in WORKFLOWS)
# Workflows with other packs' nodes cannot be built or run in this host; tests/test_distributed.py checks
# them (description, thumbnail, run) on servers that load those packs.
IN_PROCESS = sorted(name for name in WORKFLOWS if name not in PEER_PACKS)
# Workflows that make one image (spatial-temporal control) end in Save Image; all others in a video.
IMAGE_WORKFLOWS = ("spacetime_",)


@pytest.fixture(scope="module")
def object_info(comfy):
    return object_info_from_loaded_nodes()


def shipped(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / name).read_text())


def shrink_for_test(prompt: dict, checkpoint: str, stand_ins: dict | None = None) -> dict:
    for node in prompt.values():
        if node["inputs"].get("ckpt_name") == DEFAULT_CHECKPOINT:  # other checkpoints (SD3.5) have own stand-ins
            node["inputs"]["ckpt_name"] = checkpoint
    use_stand_ins(prompt, stand_ins or {})
    shrink(prompt, TEST_SIZES)
    return prompt


def test_template_folder_holds_each_workflow_and_its_thumbnail_only():
    expected = {f"{stem}.{ext}" for stem in STEMS for ext in ("json", "jpg")}
    assert sorted(p.name for p in WORKFLOWS_DIR.iterdir()) == sorted(expected)


def test_workflows_folder_points_to_the_templates_and_holds_no_copy():
    """ComfyUI lists *.json of workflows/ too: a copy there would show every template twice."""
    folder = host.REPO / "workflows"
    assert not list(folder.glob("*.json"))
    assert "example_workflows" in (folder / "README.md").read_text()


@pytest.mark.parametrize("name", IN_PROCESS)
def test_workflow_file_matches_its_description(name, object_info):
    assert shipped(name) == json.loads(json.dumps(build_workflow(name, object_info)))


@pytest.mark.parametrize("name", IN_PROCESS)
def test_every_model_file_a_workflow_names_is_described(name, object_info):
    """A combo value the host cannot offer is a file the user must get: MODEL_FILES must say where."""
    workflow = shipped(name)
    prompt = ui_to_api(workflow, object_info)
    unknown = []
    for node in prompt.values():
        spec = {**object_info[node["class_type"]]["input"].get("required", {}),
                **object_info[node["class_type"]]["input"].get("optional", {})}
        for key, value in node["inputs"].items():
            if key not in spec or not isinstance(value, str):
                continue
            kind, options = _spec_parts(spec[key])
            offered = list(kind) if isinstance(kind, (list, tuple)) else list(options.get("options") or [])
            if _is_combo(kind) and value not in offered and value not in images_named(workflow):
                unknown.append(f"{node['class_type']}.{key} = {value}")
    undescribed = [entry for entry in unknown if entry.split(" = ", 1)[1] not in MODEL_FILES]
    assert undescribed == [], "describe these files in example_workflows.MODEL_FILES (folder, url, stand-in)"


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_note_names_each_model_its_folder_and_where_to_get_it(name):
    workflow = shipped(name)
    (note,) = [n for n in workflow["nodes"] if n.get("title") == NOTE_TITLE]
    assert note["type"] == "MarkdownNote"
    text = note["widgets_values"][0]
    named = models_named(workflow)
    assert named, "every example needs at least a checkpoint"
    for model in named:
        assert f"[{model}]({MODEL_FILES[model].url})" in text and f"models/{MODEL_FILES[model].folder}/" in text
    declared = [m for node in workflow["nodes"] for m in node.get("properties", {}).get("models", [])]
    assert sorted(m["name"] for m in declared) == sorted(m for m in named if MODEL_FILES[m].single_file)


@pytest.mark.parametrize("name", IN_PROCESS)
def test_thumbnail_is_a_small_jpeg_made_from_the_current_workflow(name, object_info):
    """`make templates` records the prompt it ran; a workflow changed since then needs a new thumbnail."""
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (TILE * GRID, TILE * GRID)
    assert path.stat().st_size < 64 * 1024
    assert thumbnail_digest(path) == prompt_digest(shipped(name), object_info), \
        f"{path.name} is stale: run `make templates WORKFLOW={name[:-5]}`"


def _diagram_of(prompt: dict):
    import numpy as np
    from thumbnails import diagram

    return np.asarray(diagram(prompt, "test"), dtype=np.int16)


@pytest.mark.parametrize("name, class_type, change", [
    ("aid_text_interpolation.json", "AIDSchedule", {"alpha": 1.0, "beta": 6.0}),
    ("aid_text_interpolation.json", "CLIPTextEncode", {"text": "a photo of a red bicycle"}),
    ("aid_keyframes.json", "AIDKeyframes", {"text": "0: a cat\n+3: a dog | hold 4\n+9: a bird"}),
    ("spacetime_layout.json", "AIDSpatialTemporalRegion", {"x": 0.4, "width": 0.2}),
    ("spacetime_auto_layout.json", "AIDSpatialTemporalAutoLayout", {"prompt": "a red apple above a blue vase"}),
], ids=["schedule", "prompt", "keyframes", "region", "auto-layout"])
def test_thumbnails_are_diagrams_drawn_from_the_workflows_own_parameters(name, class_type, change, object_info):
    """The card is a diagram of the workflow (issue 24): changing a parameter it shows changes the picture."""
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    with Image.open(path) as image:
        assert "(diagram)" in image.info["comment"].decode(), f"{path.name} should be a diagram"
    prompt = ui_to_api(shipped(name), object_info)
    before = _diagram_of(prompt)
    node = next(node for node in prompt.values() if node["class_type"] == class_type)
    node["inputs"].update(change)
    assert abs(_diagram_of(prompt) - before).sum() > 0, f"the {class_type} change is not drawn"


@pytest.mark.parametrize("name", IN_PROCESS)
def test_workflow_runs_headless(name, object_info, runner, sd15_tiny_name, comfy_base):
    workflow = shipped(name)
    prompt = shrink_for_test(ui_to_api(workflow, object_info), sd15_tiny_name, prepare_test_inputs(name, comfy_base))
    assert check_api_prompt(prompt, object_info_from_loaded_nodes()) == []  # with any stand-in loader it uses
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": workflow}}).raise_for_error()
    files = result.output_files(comfy_base)
    assert files and all(f.is_file() for f in files)
    if name.startswith(IMAGE_WORKFLOWS):
        assert [f for f in files if f.suffix == ".png" and "/temp/" not in str(f)], "the image is saved"
        return
    clips = [f for f in files if f.suffix in (".mp4", ".webm")]
    assert clips, "every example workflow ends in a video"
    with av.open(str(clips[-1])) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= TEST_SIZES["frames"]


def fetch(server, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        return response.headers.get("Content-Type", ""), response.read()


@pytest.mark.server
def test_template_route_lists_every_example_workflow_with_its_thumbnail(comfy, tmp_path):
    """What the editor's template browser asks a running ComfyUI: the list, each workflow, each thumbnail."""
    host.make_base_directory(tmp_path)
    with ServerRunner(comfy["root"], tmp_path) as server:
        listed = server.get("/workflow_templates")
        assert sorted(listed.get(host.PACK_FOLDER_NAME, [])) == STEMS, listed
        for stem in STEMS:
            kind, body = fetch(server, f"/api/workflow_templates/{host.PACK_FOLDER_NAME}/{stem}.json")
            assert json.loads(body) == shipped(stem + ".json")
            kind, body = fetch(server, f"/api/workflow_templates/{host.PACK_FOLDER_NAME}/{stem}.jpg")
            assert kind == "image/jpeg" and body == (WORKFLOWS_DIR / f"{stem}.jpg").read_bytes()
