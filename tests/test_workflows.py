"""The example workflows: up to date with their descriptions, described models, fresh thumbnails,
executed headless by ComfyUI, and listed by ComfyUI's own template route."""
import json
import urllib.request

import av
import pytest
from PIL import Image

from aid_harness import host
from aid_harness.example_workflows import (MODEL_FILES, NOTE_TITLE, WORKFLOWS, WORKFLOWS_DIR, build_workflow,
                                           images_named, models_named, prepare_test_inputs, shrink, use_stand_ins)
from aid_harness.runner import ServerRunner
from aid_harness.templates import GRID, TILE, prompt_digest, thumbnail_digest
from aid_harness.workflow_format import _is_combo, _spec_parts, check_api_prompt, object_info_from_loaded_nodes, ui_to_api

# Small stand-ins so a workflow runs on a CPU in seconds; everything else runs as shipped.
TEST_SIZES = {"width": 64, "height": 64, "steps": 3, "frames": 4}
STEMS = sorted(name[:-len(".json")] for name in WORKFLOWS)


@pytest.fixture(scope="module")
def object_info(comfy):
    return object_info_from_loaded_nodes()


def shipped(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / name).read_text())


def shrink_for_test(prompt: dict, checkpoint: str, stand_ins: dict | None = None) -> dict:
    for node in prompt.values():
        if "ckpt_name" in node["inputs"]:
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


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_file_matches_its_description(name, object_info):
    assert shipped(name) == json.loads(json.dumps(build_workflow(name, object_info)))


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
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


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_thumbnail_is_a_small_jpeg_made_from_the_current_workflow(name, object_info):
    """`make templates` records the prompt it ran; a workflow changed since then needs a new thumbnail."""
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (TILE * GRID, TILE * GRID)
    assert path.stat().st_size < 64 * 1024
    assert thumbnail_digest(path) == prompt_digest(shipped(name), object_info), \
        f"{path.name} is stale: run `make templates WORKFLOW={name[:-5]}`"


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_runs_headless(name, object_info, runner, sd15_tiny_name, comfy_base):
    workflow = shipped(name)
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
