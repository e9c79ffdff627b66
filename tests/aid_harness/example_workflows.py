"""The example workflows shipped in workflows/, described in code.

`python tests/aid_harness/example_workflows.py` (inside the test host) rewrites the JSON files;
tests/test_workflows.py checks the files match these descriptions and runs each one headless.
"""
from __future__ import annotations

import json
from pathlib import Path

from .workflow_builder import UIWorkflow

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"
DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"


def _checkpoint_and_prompts(flow: UIWorkflow, prompt_a: str, prompt_b: str, negative: str):
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    text_a = flow.add("CLIPTextEncode", {"text": prompt_a}, pos=(380, 0), size=(400, 130), title="Prompt A")
    text_b = flow.add("CLIPTextEncode", {"text": prompt_b}, pos=(380, 170), size=(400, 130), title="Prompt B")
    negative_node = flow.add("CLIPTextEncode", {"text": negative}, pos=(380, 340), size=(400, 130),
                             title="Negative prompt")
    for node in (text_a, text_b, negative_node):
        flow.link(ckpt, "CLIP", node, "clip")
    return ckpt, text_a, text_b, negative_node


def _decode_and_save(flow: UIWorkflow, ckpt, latent_source, x: int, prefix: str = "AID/interpolation"):
    """VAE Decode, then AID Frames to Video: every example ends in a playable clip."""
    decode = flow.add("VAEDecode", pos=(x, 160), size=(220, 50))
    flow.link(latent_source, 0, decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    video = flow.add("AIDFramesToVideo", {"filename_prefix": prefix, "format": "mp4 (h264)", "fps": 8.0,
                                          "loop": "ping-pong (no repeated ends)", "hold_first": 2, "hold_last": 2},
                     pos=(x + 260, 160), size=(420, 520))
    flow.link(decode, "IMAGE", video, "images")
    return decode


def aid_text_interpolation(object_info: dict) -> dict:
    """Two prompts -> AID Schedule, AID Conditioning, AID Latent, Apply AID -> core KSampler -> frames."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a corgi sitting on a sofa, soft light", "a photo of a tabby cat sitting on a sofa, soft light",
        "blurry, low quality, watermark, text")
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 360),
                        size=(330, 330))
    conditioning = flow.add("AIDConditioning", pos=(840, 0), size=(300, 120))
    flow.link(text_a, 0, conditioning, "positive_a")
    flow.link(text_b, 0, conditioning, "positive_b")
    flow.link(schedule, 0, conditioning, "schedule")
    latent = flow.add("AIDLatent", {"width": 512, "height": 512, "seed": 0, "seed_b": -1}, pos=(840, 400),
                      size=(300, 180))
    flow.link(schedule, 0, latent, "schedule")
    apply = flow.add("ApplyAID", pos=(840, 160), size=(300, 200))
    flow.link(ckpt, "MODEL", apply, "model")
    flow.link(schedule, 0, apply, "schedule")
    sampler = flow.add("KSampler", {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                    "scheduler": "normal", "denoise": 1.0}, pos=(1180, 160), size=(320, 270))
    flow.link(apply, 0, sampler, "model")
    flow.link(conditioning, 0, sampler, "positive")
    flow.link(negative, 0, sampler, "negative")
    flow.link(latent, "latent", sampler, "latent_image")
    _decode_and_save(flow, ckpt, sampler, 1540)
    return flow.to_json()


WORKFLOWS = {
    "aid_text_interpolation.json": aid_text_interpolation,
}


def write_workflows(object_info: dict, folder: Path = WORKFLOWS_DIR) -> list[Path]:
    """(Re)write every example workflow file; returns their paths."""
    paths = []
    for name, build in WORKFLOWS.items():
        path = folder / name
        path.write_text(json.dumps(build(object_info), indent=2) + "\n")
        paths.append(path)
    return paths
