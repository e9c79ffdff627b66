"""The Flux and SD3.5 example workflows, executed headless by ComfyUI's own engine with random stand-ins.

What runs as shipped: every node of the workflow, with the shipped model names swapped for the cached
random files in the real layouts (aid_harness/dit_models.py): the Flux diffusion model through
UNETLoader, the 16-channel VAE through VAELoader, the SD3.5-style checkpoint through
CheckpointLoaderSimple, a CLIP-L file. Sizes, steps and frames are cut down.

What is substituted, because those text encoders cannot be built (T5-XXL has 4.7B parameters, CLIP-G
0.7B, and ComfyUI's loaders build them at full size from fixed configs):
- Flux's DualCLIPLoader becomes the test-only node AIDTestDualCLIPLoader: the same core loading code
  (comfy.sd.load_clip, type flux, CLIP-L + T5 files) with a config override that makes T5 one block
  deep with a tiny feed-forward; its width stays 4096, so the real Flux tokenizer (T5 padded to 256
  tokens) and CLIPTextEncode / AID Text Encode make CONDITIONING of Flux's real shape [1, 256, 4096].
- SD3.5's TripleCLIPLoader becomes the core CLIPLoader with the CLIP-L file and type sd3: SD3 with
  CLIP-L only is a configuration ComfyUI supports (contexts [1, 77, 4096], pooled 2048).
"""
import json

import av
import pytest

from aid_harness import dit_models
from aid_harness.example_workflows import (CLIP_L, DIT_WORKFLOWS, FLUX_DIFFUSION_MODEL, FLUX_VAE, SD35_CHECKPOINT,
                                           T5XXL, WORKFLOWS_DIR)
from aid_harness.workflow_format import check_api_prompt, object_info_from_loaded_nodes, ui_to_api

pytestmark = pytest.mark.slow

TEST_SIZES = {"width": 64, "height": 64, "steps": 2, "frames": 3}
TEST_LOADER = "AIDTestDualCLIPLoader"


@pytest.fixture(scope="module")
def stand_ins(link_model):
    """Shipped model name -> the linked stand-in's name."""
    return {FLUX_DIFFUSION_MODEL: link_model("diffusion_models", dit_models.ensure_flux_diffusion_model()),
            FLUX_VAE: link_model("vae", dit_models.ensure_vae16()),
            SD35_CHECKPOINT: link_model("checkpoints", dit_models.ensure_sd35_checkpoint()),
            CLIP_L: link_model("text_encoders", dit_models.ensure_clip_l()),
            T5XXL: link_model("text_encoders", dit_models.ensure_tiny_t5())}


@pytest.fixture(scope="module")
def test_loader(comfy):
    """Register AIDTestDualCLIPLoader (core DualCLIPLoader with the small T5 config) for this module only."""
    import comfy.sd
    import folder_paths
    import nodes

    class AIDTestDualCLIPLoader(nodes.DualCLIPLoader):
        def load_clip(self, clip_name1, clip_name2, type, device="default"):
            paths = [folder_paths.get_full_path_or_raise("text_encoders", name) for name in (clip_name1, clip_name2)]
            clip_type = getattr(comfy.sd.CLIPType, type.upper())
            return (comfy.sd.load_clip(ckpt_paths=paths, embedding_directory=folder_paths.get_folder_paths("embeddings"),
                                       clip_type=clip_type,
                                       model_options={"t5xxl_model_config": dit_models.TINY_T5_CONFIG}),)

    nodes.NODE_CLASS_MAPPINGS[TEST_LOADER] = AIDTestDualCLIPLoader
    yield TEST_LOADER
    del nodes.NODE_CLASS_MAPPINGS[TEST_LOADER]


def prepare(prompt: dict, stand_ins: dict) -> dict:
    """The test's copy of a workflow's prompt: stand-in files, substituted text-encoder loaders, small sizes."""
    for node in prompt.values():
        inputs = node["inputs"]
        for name, value in inputs.items():
            if isinstance(value, str) and value in stand_ins:
                inputs[name] = stand_ins[value]
        for name, value in TEST_SIZES.items():
            if name in inputs and not isinstance(inputs[name], list):
                inputs[name] = value
        if node["class_type"] == "DualCLIPLoader":
            node["class_type"] = TEST_LOADER
        elif node["class_type"] == "TripleCLIPLoader":
            node["class_type"], node["inputs"] = "CLIPLoader", {"clip_name": inputs["clip_name1"], "type": "sd3"}
    return prompt


@pytest.mark.parametrize("name", sorted(DIT_WORKFLOWS))
def test_dit_workflow_runs_headless(name, runner, comfy_base, stand_ins, test_loader):
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    object_info = object_info_from_loaded_nodes()
    prompt = prepare(ui_to_api(workflow, object_info), stand_ins)
    assert check_api_prompt(prompt, object_info) == []
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": workflow}}).raise_for_error()
    clips = [f for f in result.output_files(comfy_base) if f.suffix in (".mp4", ".webm")]
    assert clips and clips[-1].is_file()
    with av.open(str(clips[-1])) as container:
        assert sum(1 for _ in container.decode(video=0)) >= TEST_SIZES["frames"]
