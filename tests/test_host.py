"""The pack inside a real ComfyUI: loads cleanly, lists its nodes, has no import side effects, serves a run."""
import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from aid_harness import host
from aid_harness.runner import ServerRunner


def pack_node_ids():
    import aid_pack

    return set(aid_pack.NODE_CLASS_MAPPINGS)


@pytest.mark.server
def test_quick_test_for_ci_loads_the_pack_without_import_failure(comfy, tmp_path):
    host.make_base_directory(tmp_path)
    done = subprocess.run([sys.executable, "main.py", "--cpu", "--quick-test-for-ci", "--base-directory",
                           str(tmp_path), "--disable-api-nodes"], cwd=comfy["root"], capture_output=True, text=True,
                          timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    # Lines about the pack name its custom_nodes path; the clone's own folder may carry the same name
    # (ComfyUI's core lines about comfy_extras in .cache/ComfyUI must not count as the pack's).
    pack_path = str(tmp_path / "custom_nodes" / host.PACK_FOLDER_NAME)
    pack_lines = [line for line in log.splitlines() if pack_path in line]
    assert pack_lines, "the start-up log does not mention the pack"
    assert not [line for line in pack_lines if "IMPORT FAILED" in line or "Cannot import" in line], log[-3000:]


def text_to_image_prompt(checkpoint: str) -> dict:
    """A plain text-to-image graph of core nodes, in API format."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse at dusk"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": 3, "steps": 2, "cfg": 6.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "smoke/plain"}},
    }


@pytest.mark.server
def test_server_lists_the_nodes_and_runs_a_core_text_to_image_workflow(comfy, tmp_path):
    from aid_harness import models

    checkpoint = models.ensure_sd15_checkpoint("tiny")
    host.make_base_directory(tmp_path, {"checkpoints": [checkpoint]})
    with ServerRunner(comfy["root"], tmp_path) as server:
        info = server.get("/object_info")
        assert pack_node_ids() <= set(info)
        for node_id in pack_node_ids():
            assert info[node_id]["category"].startswith("AID"), node_id
            assert info[node_id]["description"], node_id
            assert info[node_id]["display_name"] != node_id, node_id
        result = server.run(text_to_image_prompt(checkpoint.name)).raise_for_error()
        process = server.process
    assert process.poll() is not None, "the runner must stop the server it started"
    (image_path,) = result.output_files(tmp_path)
    with Image.open(image_path) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    assert "prompt" in Image.open(image_path).info


def test_in_process_runner_runs_the_same_workflow(runner, sd15_tiny_name, comfy_base):
    result = runner.run(text_to_image_prompt(sd15_tiny_name)).raise_for_error()
    (image_path,) = result.output_files(comfy_base)
    assert Image.open(image_path).size == (64, 64)


def test_invalid_prompt_comes_back_as_an_error_not_an_exception(runner):
    result = runner.run({"1": {"class_type": "AIDSchedule", "inputs": {"frames": 5}}})
    assert not result.success and result.error


def test_importing_the_pack_has_no_side_effects(comfy):
    """Loaded into a fresh ComfyUI: no new model folders, no patched modules, no optional dependencies."""
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(comfy['root'])!r})
        from comfy.cli_args import args
        args.cpu = True
        import utils.extra_config, folder_paths, comfy.model_management, nodes
        import comfy.ldm.modules.attention as attention
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        folders = json.dumps(folder_paths.folder_names_and_paths, default=sorted, sort_keys=True)
        attention_fn = attention.optimized_attention
        modules = set(sys.modules)
        before = set(nodes.NODE_CLASS_MAPPINGS)
        ok = asyncio.run(nodes.load_custom_node({str(host.REPO)!r}, before, module_parent="custom_nodes"))
        new_modules = set(sys.modules) - modules
        print(json.dumps({{
            "ok": ok,
            "folders_changed": json.dumps(folder_paths.folder_names_and_paths, default=sorted,
                                          sort_keys=True) != folders,
            "attention_changed": attention.optimized_attention is not attention_fn,
            "core_nodes_kept": before <= set(nodes.NODE_CLASS_MAPPINGS),
            "optional": sorted(m for m in new_modules if m.split(".")[0] in ("lpips", "transformers", "av",
                                                                             "matplotlib", "cv2")),
        }}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"ok": True, "folders_changed": False, "attention_changed": False, "core_nodes_kept": True,
                      "optional": []}, done.stderr[-2000:]
