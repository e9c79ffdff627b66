"""The example workflows shipped in example_workflows/, described in code, and the models they name.

Each builder makes one UI-format workflow; WORKFLOWS registers it under its file name. build_workflow
adds what every shipped workflow carries (a note naming its models and where to get them, and the
download links the editor offers for missing files), derived from MODEL_FILES: register a workflow
and describe any new model file there, then run `make templates` (tests/aid_harness/templates.py)
to write the JSON file and its thumbnail. tests/test_workflows.py checks the files match these
descriptions, runs each one headless and lists them through ComfyUI's template route.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .workflow_builder import UIWorkflow

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "example_workflows"
# The SD1.5 file ComfyUI's own templates link to, so many users already have it.
DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"


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


def _core_sampler_path(flow: UIWorkflow, ckpt, positive_a, positive_b, negative, schedule, guidance=None,
                       image_endpoints=None):
    """AID Conditioning + AID Latent + Apply AID driving the core KSampler; returns the KSampler."""
    conditioning = flow.add("AIDConditioning", pos=(840, 0), size=(300, 140))
    flow.link(positive_a, 0, conditioning, "positive_a")
    flow.link(positive_b, 0, conditioning, "positive_b")
    flow.link(schedule, 0, conditioning, "schedule")
    if guidance is not None:
        flow.link(guidance, 0, conditioning, "guidance")
    apply = flow.add("ApplyAID", pos=(840, 180), size=(300, 300))
    flow.link(ckpt, "MODEL", apply, "model")
    flow.link(schedule, 0, apply, "schedule")
    if image_endpoints is not None:
        flow.link(image_endpoints, 0, apply, "image_endpoints")
    latent = flow.add("AIDLatent", {"width": 512, "height": 512, "seed": 0, "seed_b": -1}, pos=(840, 720),
                      size=(300, 180))
    flow.link(schedule, 0, latent, "schedule")
    sampler = flow.add("KSampler", {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                    "scheduler": "normal", "denoise": 1.0}, pos=(1180, 160), size=(320, 270))
    flow.link(apply, 0, sampler, "model")
    flow.link(conditioning, 0, sampler, "positive")
    flow.link(negative, 0, sampler, "negative")
    flow.link(latent, "latent", sampler, "latent_image")
    return sampler


def aid_text_interpolation(object_info: dict) -> dict:
    """Two prompts -> AID Schedule, AID Conditioning, AID Latent, Apply AID -> core KSampler -> frames."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a corgi sitting on a sofa, soft light", "a photo of a tabby cat sitting on a sofa, soft light",
        "blurry, low quality, watermark, text")
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 360),
                        size=(330, 330))
    sampler = _core_sampler_path(flow, ckpt, text_a, text_b, negative, schedule)
    _decode_and_save(flow, ckpt, sampler, 1540)
    return flow.to_json()


def aid_smooth_interpolation(object_info: dict) -> dict:
    """Two prompts -> AID Smooth Sampler (dynamic selection): frames with even steps, a clip and their report."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a watercolor painting of a lighthouse on a cliff, morning", "a photo of a lighthouse on a cliff at "
        "night, stars", "blurry, low quality, watermark, text")
    smooth = flow.add("AIDSmoothSampler", {"frames": 7, "method": "dynamic selection", "exploration_frames": 24,
                                           "frames_per_round": 4, "metric": "auto", "width": 512, "height": 512,
                                           "seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                           "scheduler": "normal"}, pos=(840, 0), size=(340, 820))
    flow.link(ckpt, "MODEL", smooth, "model")
    flow.link(ckpt, "VAE", smooth, "vae")
    flow.link(text_a, 0, smooth, "positive_a")
    flow.link(text_b, 0, smooth, "positive_b")
    flow.link(negative, 0, smooth, "negative")
    _decode_and_save(flow, ckpt, smooth, 1220, prefix="AID/smooth")
    report = flow.add("AIDSequenceReport", {"metric": "auto", "filename_prefix": "AID/smooth_report"},
                      pos=(1220, 720), size=(420, 560))
    flow.link(smooth, "images", report, "frames")
    flow.link(smooth, "schedule", report, "schedule")
    flow.link(smooth, "distances", report, "distances")
    return flow.to_json()


CLIP_VISION_VIT_H = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"


def _image_prompt_models(flow: UIWorkflow, ipadapter_file: str, y: int):
    """Core Load CLIP Vision and AID IP-Adapter Loader, stacked at height y."""
    clip_vision = flow.add("CLIPVisionLoader", {"clip_name": CLIP_VISION_VIT_H}, pos=(0, y), size=(330, 60))
    ipadapter = flow.add("AIDIPAdapterLoader", {"ipadapter_file": ipadapter_file}, pos=(0, y + 100), size=(330, 60))
    return clip_vision, ipadapter


def _endpoints(flow: UIWorkflow, clip_vision, ipadapter, mode: str, weight: float, image_b, image_a=None):
    endpoints = flow.add("AIDIPAdapterEndpoints", {"mode": mode, "weight": weight}, pos=(840, 520), size=(300, 150))
    flow.link(ipadapter, 0, endpoints, "ipadapter")
    flow.link(clip_vision, 0, endpoints, "clip_vision")
    flow.link(image_b, "IMAGE", endpoints, "image_b")
    if image_a is not None:
        flow.link(image_a, "IMAGE", endpoints, "image_a")
    return endpoints


def _checkpoint_and_shared_prompt(flow: UIWorkflow, prompt: str):
    """Checkpoint, one prompt for both endpoints and a negative prompt (the image-prompt workflows)."""
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    positive = flow.add("CLIPTextEncode", {"text": prompt}, pos=(380, 0), size=(400, 130),
                        title="Prompt (both endpoints)")
    negative = flow.add("CLIPTextEncode", {"text": "blurry, low quality, watermark, text"}, pos=(380, 170),
                        size=(400, 130), title="Negative prompt")
    for node in (positive, negative):
        flow.link(ckpt, "CLIP", node, "clip")
    return ckpt, positive, negative


def ipadapter_morph(object_info: dict) -> dict:
    """Two images -> AID IP-Adapter Endpoints (morph) -> AID Sampler: image A morphs into image B."""
    flow = UIWorkflow(object_info)
    ckpt, positive, negative = _checkpoint_and_shared_prompt(flow, "a high quality photo, detailed, soft light")
    clip_vision, ipadapter = _image_prompt_models(flow, "ip-adapter-plus_sd15.safetensors", 320)
    image_a = flow.add("LoadImage", {"image": "image_a.png"}, pos=(380, 340), size=(200, 320), title="Image A")
    image_b = flow.add("LoadImage", {"image": "image_b.png"}, pos=(600, 340), size=(200, 320), title="Image B")
    endpoints = _endpoints(flow, clip_vision, ipadapter, "morph", 0.8, image_b, image_a)
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 560),
                        size=(330, 330))
    sampler = flow.add("AIDSampler", {"width": 512, "height": 512, "seed": 42, "steps": 25, "cfg": 7.0,
                                      "sampler_name": "euler", "scheduler": "normal"}, pos=(1180, 160),
                       size=(340, 560))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(positive, 0, sampler, "positive_a")
    flow.link(positive, 0, sampler, "positive_b")
    flow.link(negative, 0, sampler, "negative")
    flow.link(schedule, 0, sampler, "schedule")
    flow.link(endpoints, 0, sampler, "image_endpoints")
    _decode_and_save(flow, ckpt, sampler, 1560, prefix="AID/ipadapter_morph")
    return flow.to_json()


def ipadapter_image_control(object_info: dict) -> dict:
    """One image as a dial: text-only at frame 0, the image at full weight at the last frame (Apply AID path)."""
    flow = UIWorkflow(object_info)
    ckpt, positive, negative = _checkpoint_and_shared_prompt(flow, "a cosy living room, evening light, photo")
    clip_vision, ipadapter = _image_prompt_models(flow, "ip-adapter_sd15.safetensors", 320)
    image = flow.add("LoadImage", {"image": "image_b.png"}, pos=(380, 340), size=(300, 320),
                     title="Image (endpoint B)")
    endpoints = _endpoints(flow, clip_vision, ipadapter, "image-control", 1.0, image)
    schedule = flow.add("AIDSchedule", {"frames": 6, "curve": "linear"}, pos=(0, 560), size=(330, 330))
    sampler = _core_sampler_path(flow, ckpt, positive, positive, negative, schedule, image_endpoints=endpoints)
    _decode_and_save(flow, ckpt, sampler, 1540, prefix="AID/ipadapter_image_control")
    return flow.to_json()


CLIP_SCORER_MODEL = "clip-vit-large-patch14"  # a transformers CLIPModel folder in models/clip_scoring


def _guidance(flow: UIWorkflow, ckpt, text: str, y: int):
    """The PAID guidance prompt: CLIP Text Encode -> PAID Guidance."""
    prompt = flow.add("CLIPTextEncode", {"text": text}, pos=(380, y), size=(400, 130), title="Guidance prompt (PAID)")
    flow.link(ckpt, "CLIP", prompt, "clip")
    guidance = flow.add("PAIDGuidance", pos=(840, y), size=(300, 60))
    flow.link(prompt, 0, guidance, "conditioning")
    return guidance


def paid_guided_interpolation(object_info: dict) -> dict:
    """PAID on the core KSampler path: a guidance prompt sets the interior frames' own condition."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a watercolor painting of a mountain lake at dawn, pine trees",
        "a watercolor painting of a snowy mountain lake at night, pine trees", "blurry, low quality, watermark, text")
    guidance = _guidance(flow, ckpt, "a watercolor painting of a mountain lake at sunset, autumn trees", 510)
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 360),
                        size=(330, 330))
    sampler = _core_sampler_path(flow, ckpt, text_a, text_b, negative, schedule, guidance=guidance)
    _decode_and_save(flow, ckpt, sampler, 1540, prefix="AID/paid_guided")
    return flow.to_json()


def paid_compositional_generation(object_info: dict) -> dict:
    """'a dog' to 'a car' guided by 'a dog driving a car' (AID Sampler); AID Best Frame keeps the best composition."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a dog", "a photo of a car", "blurry, low quality, watermark, text")
    guidance = _guidance(flow, ckpt, "a photo of a dog driving a car", 510)
    schedule = flow.add("AIDSchedule", {"frames": 9, "curve": "linear"}, pos=(0, 360), size=(330, 330))
    sampler = flow.add("AIDSampler", {"width": 512, "height": 512, "seed": 42, "steps": 25, "cfg": 7.0,
                                      "sampler_name": "euler", "scheduler": "normal"}, pos=(1180, 160),
                       size=(340, 600))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(text_a, 0, sampler, "positive_a")
    flow.link(text_b, 0, sampler, "positive_b")
    flow.link(negative, 0, sampler, "negative")
    flow.link(schedule, 0, sampler, "schedule")
    flow.link(guidance, 0, sampler, "guidance")
    decode = _decode_and_save(flow, ckpt, sampler, 1560, prefix="AID/paid_compositional")
    scorer = flow.add("AIDCLIPScorerLoader", {"model_name": CLIP_SCORER_MODEL}, pos=(1560, 720), size=(330, 60),
                      title="CLIP scorer (models/clip_scoring)")
    best = flow.add("AIDBestFrame", {"text": "a photo of a dog driving a car", "exclude_endpoints": True},
                    pos=(2260, 160), size=(400, 520))
    flow.link(decode, "IMAGE", best, "frames")
    flow.link(scorer, 0, best, "scorer")
    save = flow.add("SaveImage", {"filename_prefix": "AID/paid_best_frame"}, pos=(2700, 160), size=(400, 440),
                    title="Best frame")
    flow.link(best, "best_frame", save, "images")
    return flow.to_json()


def aid_image_editing(object_info: dict) -> dict:
    """A photo -> AID Invert Image -> AID Sampler from its prompt to the edit prompt: the edit strength as a clip,
    and one image at a chosen strength (a [0, s, 1] schedule gives exactly the frame at s)."""
    flow = UIWorkflow(object_info)
    ckpt, source, edit, negative = _checkpoint_and_prompts(
        flow, "a photo of a wooden cabin by a lake, summer, green trees",
        "a photo of a wooden cabin by a lake in winter, snow, frozen lake", "blurry, low quality, watermark, text")
    source.title, edit.title = "Source prompt (what the photo shows)", "Edit prompt"
    photo = flow.add("LoadImage", {"image": "photo.png"}, pos=(0, 520), size=(330, 360),
                     title="Photo to edit (sides: multiples of 8)")
    invert = flow.add("AIDInvertImage", {"steps": 25, "cfg": 1.0, "scheduler": "normal", "denoise": 1.0,
                                         "refine_steps": 0}, pos=(840, 0), size=(320, 300))
    flow.link(ckpt, "MODEL", invert, "model")
    flow.link(source, 0, invert, "positive")
    flow.link(negative, 0, invert, "negative")
    flow.link(photo, "IMAGE", invert, "image")
    flow.link(ckpt, "VAE", invert, "vae")
    samplers = []
    for y, schedule_widgets, title in ((0, {"frames": 7, "curve": "linear"}, "Edit sequence: strength 0 to 1"),
                                       (620, {"curve": "custom", "custom": "0, 0.35, 1"},
                                        "One image: strength 0.35 (the middle value)")):
        schedule = flow.add("AIDSchedule", schedule_widgets, pos=(840, 340 + y // 2), size=(320, 260), title=title)
        sampler = flow.add("AIDSampler", {"width": 512, "height": 512, "seed": 0, "steps": 25, "cfg": 7.0,
                                          "sampler_name": "euler", "scheduler": "normal"}, pos=(1200, y),
                           size=(340, 580))
        flow.link(ckpt, "MODEL", sampler, "model")
        flow.link(source, 0, sampler, "positive_a")
        flow.link(edit, 0, sampler, "positive_b")
        flow.link(negative, 0, sampler, "negative")
        flow.link(schedule, 0, sampler, "schedule")
        flow.link(invert, "inversion", sampler, "inversion")
        samplers.append(sampler)
    _decode_and_save(flow, ckpt, samplers[0], 1580, prefix="AID/image_editing")
    pick = flow.add("LatentFromBatch", {"batch_index": 1, "length": 1}, pos=(1580, 720), size=(240, 80),
                    title="The edited frame")
    flow.link(samplers[1], 0, pick, "samples")
    decode = flow.add("VAEDecode", pos=(1860, 720), size=(220, 50))
    flow.link(pick, 0, decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    save = flow.add("SaveImage", {"filename_prefix": "AID/image_edit"}, pos=(2120, 720), size=(400, 440),
                    title="Edited image")
    flow.link(decode, "IMAGE", save, "images")
    return flow.to_json()
def aid_photo_morph(object_info: dict) -> dict:
    """Two photos -> two AID Invert Image -> AID Sampler (inversion + inversion_b): a morph whose first frame is
    photo A and last frame photo B exactly, as a clip."""
    flow = UIWorkflow(object_info)
    ckpt, source_a, source_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a wooden cabin by a lake, summer, green trees",
        "a photo of a stone lighthouse on a rocky coast, cloudy sky", "blurry, low quality, watermark, text")
    source_a.title, source_b.title = "Prompt of photo A (what it shows)", "Prompt of photo B (what it shows)"
    inversions = []
    for y, which, image_name in ((0, "A", "photo_a.png"), (620, "B", "photo_b.png")):
        photo = flow.add("LoadImage", {"image": image_name}, pos=(0, 520 + y // 2 + (y and 40)), size=(330, 360),
                         title=f"Photo {which} (both one size, sides multiples of 8)")
        invert = flow.add("AIDInvertImage", {"steps": 25, "cfg": 1.0, "scheduler": "normal", "denoise": 1.0,
                                             "refine_steps": 0}, pos=(840, y // 2 + (y and 40)), size=(320, 300),
                          title=f"AID Invert Image (photo {which})")
        flow.link(ckpt, "MODEL", invert, "model")
        flow.link(source_a if which == "A" else source_b, 0, invert, "positive")
        flow.link(negative, 0, invert, "negative")
        flow.link(photo, "IMAGE", invert, "image")
        flow.link(ckpt, "VAE", invert, "vae")
        inversions.append(invert)
    schedule = flow.add("AIDSchedule", {"frames": 9, "curve": "linear"}, pos=(840, 700), size=(320, 260))
    sampler = flow.add("AIDSampler", {"width": 512, "height": 512, "seed": 0, "steps": 25, "cfg": 7.0,
                                      "sampler_name": "euler", "scheduler": "normal"}, pos=(1200, 0),
                       size=(340, 620))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(source_a, 0, sampler, "positive_a")
    flow.link(source_b, 0, sampler, "positive_b")
    flow.link(negative, 0, sampler, "negative")
    flow.link(schedule, 0, sampler, "schedule")
    flow.link(inversions[0], "inversion", sampler, "inversion")
    flow.link(inversions[1], "inversion", sampler, "inversion_b")
    _decode_and_save(flow, ckpt, sampler, 1580, prefix="AID/photo_morph")
    return flow.to_json()


DISTRIBUTED_NOTE_TITLE = "Run it on several GPUs (ComfyUI-Distributed)"
DISTRIBUTED_NOTE = """## One sequence, several GPUs

Needs [ComfyUI-Distributed](https://github.com/robertvoy/ComfyUI-Distributed) on the master and on every worker,
and the same checkpoint on each of them.

1. Enable your workers in the Distributed panel.
2. **AID Sequence Share**: set `share_count` to the number of participants: the master plus the enabled workers.
3. **Distributed Value** gives each participant its share: the master uses the default `0`; give the workers
   `1`, `2`, ... in order.
4. Queue as usual. Each participant samples its part of the frames (plus the two endpoints), Distributed
   Collector gathers them on the master in order, and the video is made there.

The frames equal a run on one GPU. The split is fixed: a worker that is offline leaves its frames out, so keep
`share_count` equal to the participants that run."""


def aid_distributed(object_info: dict) -> dict:
    """A long sequence split across GPUs: Distributed Value -> AID Sequence Share -> AID Sampler -> VAE Decode ->
    Distributed Collector -> AID Frames to Video (ComfyUI-Distributed's nodes, this pack's sampler)."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a forest in spring, fresh green leaves, morning light",
        "a photo of the same forest in winter, snow on the branches", "blurry, low quality, watermark, text")
    schedule = flow.add("AIDSchedule", {"frames": 48, "curve": "linear"}, pos=(0, 360), size=(330, 330))
    participant = flow.add("DistributedValue", {"default_value": "0", "worker_values": '{"_type": "INT", "1": "1"}'},
                           pos=(380, 520), size=(400, 130), title="Participant (master 0, workers 1, 2, ...)")
    share = flow.add("AIDSequenceShare", {"share_count": 2}, pos=(840, 520), size=(300, 110))
    flow.link(participant, 0, share, "share_index")
    sampler = flow.add("AIDSampler", {"width": 512, "height": 512, "seed": 42, "steps": 25, "cfg": 7.0,
                                      "sampler_name": "euler", "scheduler": "normal"}, pos=(1180, 160),
                       size=(340, 600))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(text_a, 0, sampler, "positive_a")
    flow.link(text_b, 0, sampler, "positive_b")
    flow.link(negative, 0, sampler, "negative")
    flow.link(schedule, 0, sampler, "schedule")
    flow.link(share, 0, sampler, "share")
    decode = flow.add("VAEDecode", pos=(1560, 160), size=(220, 50))
    flow.link(sampler, 0, decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    collector = flow.add("DistributedCollector", {"load_balance": False}, pos=(1820, 160), size=(260, 80))
    flow.link(decode, "IMAGE", collector, "images")
    video = flow.add("AIDFramesToVideo", {"filename_prefix": "AID/distributed", "format": "mp4 (h264)", "fps": 12.0,
                                          "loop": "forward", "hold_first": 2, "hold_last": 2},
                     pos=(2120, 160), size=(420, 520))
    flow.link(collector, "images", video, "images")
    return add_note(flow.to_json(), DISTRIBUTED_NOTE_TITLE, DISTRIBUTED_NOTE, (380, 700))


def add_note(workflow: dict, title: str, text: str, pos) -> dict:
    """Add a MarkdownNote (an editor-only node) to a UI workflow, in place."""
    node_id = workflow["last_node_id"] + 1
    workflow["nodes"].append({
        "id": node_id, "type": "MarkdownNote", "pos": list(pos), "size": [760, 90 + 22 * text.count("\n")],
        "flags": {}, "order": len(workflow["nodes"]), "mode": 0, "inputs": [], "outputs": [], "properties": {},
        "widgets_values": [text], "title": title, "color": "#232", "bgcolor": "#353"})
    workflow["last_node_id"] = node_id
    return workflow


WORKFLOWS = {
    "aid_text_interpolation.json": aid_text_interpolation,
    "aid_smooth_interpolation.json": aid_smooth_interpolation,
    "ipadapter_morph.json": ipadapter_morph,
    "ipadapter_image_control.json": ipadapter_image_control,
    "paid_guided_interpolation.json": paid_guided_interpolation,
    "paid_compositional_generation.json": paid_compositional_generation,
    "aid_image_editing.json": aid_image_editing,
    "aid_photo_morph.json": aid_photo_morph,
    "aid_distributed.json": aid_distributed,
}

# Other packs a workflow needs besides this one and ComfyUI's core: it runs only on servers with them loaded
# (tests/aid_harness/distributed.py), never in the in-process host.
PEER_PACKS = {"aid_distributed.json": ("ComfyUI-Distributed",)}


# ---------------------------------------------------------------------------------------------
# The model files the shipped workflows name: where they go, where to get them, their stand-ins
# ---------------------------------------------------------------------------------------------


def _tiny_sd15_ipadapter(variant: str):
    """An IP-Adapter file with the tiny random SD1.5's layer count (the real one has 16 layers)."""
    from . import models

    layers = [layer["inner_dim"] for layer in models.unet_cross_attention_layers(models.SD15_UNET_TINY)]
    return models.ensure_ipadapter(variant, layers=layers)


def _random_sd15():
    from . import models

    return models.ensure_sd15_checkpoint("tiny")


def _random_clip_vision():
    from . import models

    return models.ensure_clip_vision_vit_h()


def _random_clip_model():
    from . import models

    return models.ensure_clip_model()


@dataclass(frozen=True)
class ModelFile:
    """A model a shipped workflow names: its ComfyUI models/ folder, what it is, where to get it, and the
    random-weight stand-in (a builder in models.py) that tests, thumbnails and the demo use instead."""

    folder: str
    title: str
    url: str
    stand_in: Callable[[], Path]
    how: str = ""  # extra steps (rename, which files of a folder model)
    single_file: bool = True  # False: a folder (the editor's download links take single files only)


MODEL_FILES = {
    DEFAULT_CHECKPOINT: ModelFile(
        "checkpoints", "Stable Diffusion 1.5; any SD1.5 checkpoint works, pick it in Load Checkpoint",
        "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
        "v1-5-pruned-emaonly-fp16.safetensors?download=true", _random_sd15),
    CLIP_VISION_VIT_H: ModelFile(
        "clip_vision", "CLIP vision ViT-H/14, the image encoder of the SD1.5 IP-Adapters",
        "https://huggingface.co/h94/IP-Adapter/resolve/main/models/image_encoder/model.safetensors",
        _random_clip_vision, how="download model.safetensors and rename it to " + CLIP_VISION_VIT_H),
    "ip-adapter_sd15.safetensors": ModelFile(
        "ipadapter", "IP-Adapter SD1.5 (base projection)",
        "https://huggingface.co/h94/IP-Adapter/resolve/main/models/ip-adapter_sd15.safetensors",
        lambda: _tiny_sd15_ipadapter("sd15")),
    "ip-adapter-plus_sd15.safetensors": ModelFile(
        "ipadapter", "IP-Adapter plus SD1.5",
        "https://huggingface.co/h94/IP-Adapter/resolve/main/models/ip-adapter-plus_sd15.safetensors",
        lambda: _tiny_sd15_ipadapter("sd15_plus")),
    CLIP_SCORER_MODEL: ModelFile(
        "clip_scoring", "CLIP ViT-L/14 with both towers, for AID Best Frame",
        "https://huggingface.co/openai/clip-vit-large-patch14", _random_clip_model,
        how="a folder: put config.json, model.safetensors, vocab.json, merges.txt, tokenizer.json and "
            "preprocessor_config.json into models/clip_scoring/" + CLIP_SCORER_MODEL + "/",
        single_file=False),
}


def models_named(workflow: dict) -> list[str]:
    """The MODEL_FILES entries a UI-format workflow names in its widgets, in node order, each once."""
    names = []
    for node in workflow["nodes"]:
        values = node.get("widgets_values") or []
        for value in values.values() if isinstance(values, dict) else values:
            if isinstance(value, str) and value in MODEL_FILES and value not in names:
                names.append(value)
    return names


def images_named(workflow: dict) -> list[str]:
    """The file names the workflow's Load Image nodes ask for (the user picks their own)."""
    return [node["widgets_values"][0] for node in workflow["nodes"] if node["type"] == "LoadImage"]


def prepare_stand_ins(workflow: dict, base: Path) -> dict[str, str]:
    """Make a workflow runnable in the host at `base`: shipped model name -> the random stand-in's name.

    Builds (or finds) only the stand-ins of the models the workflow names, links each into
    base/models/<folder>, and writes a small seeded image to base/input for each Load Image.
    """
    import numpy as np
    from PIL import Image

    from . import host

    stand_ins = {}
    for name in models_named(workflow):
        model = MODEL_FILES[name]
        path = model.stand_in()
        host.make_base_directory(base, {model.folder: [path]})
        stand_ins[name] = path.name
    host.make_base_directory(base)
    for image in images_named(workflow):
        seed = int.from_bytes(hashlib.sha256(image.encode()).digest()[:4], "little")
        pixels = np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(base / "input" / image)
    return stand_ins


def prepare_test_inputs(name: str, base: Path) -> dict[str, str]:
    """prepare_stand_ins for the shipped workflow file `name`."""
    return prepare_stand_ins(json.loads((WORKFLOWS_DIR / name).read_text()), base)


def use_stand_ins(prompt: dict, stand_ins: dict[str, str]) -> dict:
    """Replace shipped model names in an API-format prompt by their stand-ins (in place; returned)."""
    for node in prompt.values():
        for key, value in node["inputs"].items():
            if isinstance(value, str) and value in stand_ins:
                node["inputs"][key] = stand_ins[value]
    use_stand_in_text_encoders(prompt, stand_ins)
    return prompt


def shrink(prompt: dict, sizes: dict) -> list[tuple[str, object, object]]:
    """Set the widget inputs named in `sizes` (width, height, steps, ...) on every node that has them.

    Returns (input, old value, new value) for each input that changed, once per distinct change.
    """
    changes = []
    for node in prompt.values():
        for key, value in sizes.items():
            old = node["inputs"].get(key)
            if old is not None and not isinstance(old, list) and old != value:
                node["inputs"][key] = value
                if (key, old, value) not in changes:
                    changes.append((key, old, value))
    return changes


# ---------------------------------------------------------------------------------------------
# What every shipped workflow carries, and the files
# ---------------------------------------------------------------------------------------------

NOTE_TITLE = "Models for this workflow"


def model_note(workflow: dict) -> str:
    """The Markdown of a workflow's note: each model it names, its folder and where to get it."""
    lines = ["## Models", ""]
    by_folder: dict[str, list[str]] = {}
    for name in models_named(workflow):
        by_folder.setdefault(MODEL_FILES[name].folder, []).append(name)
    for folder, names in by_folder.items():
        lines.append(f"**models/{folder}/**")
        for name in names:
            model = MODEL_FILES[name]
            how = f" ({model.how})" if model.how else ""
            lines.append(f"- [{name}]({model.url}): {model.title}{how}")
        lines.append("")
    lines.append("Put each file into that folder of your ComfyUI, then press R to refresh the lists.")
    images = images_named(workflow)
    if images:
        lines += ["", "**Images**: pick your own in the Load Image node" + ("s" if len(images) > 1 else "") + "."]
    prefixes = [str(node["widgets_values"][0]) for node in workflow["nodes"]
                if node["type"] in ("AIDFramesToVideo", "SaveImage")]
    if prefixes:
        lines += ["", "Results go to ComfyUI's output folder: " + ", ".join(f"`{p}_*`" for p in prefixes) + "."]
    return "\n".join(lines)


def add_model_note(workflow: dict) -> dict:
    """Add the note and each loader's download link (`properties.models`, read by the editor) in place."""
    for node in workflow["nodes"]:
        declared = [{"name": value, "url": MODEL_FILES[value].url, "directory": MODEL_FILES[value].folder}
                    for value in node.get("widgets_values") or [] if isinstance(value, str)
                    and value in MODEL_FILES and MODEL_FILES[value].single_file]
        if declared:
            node.setdefault("properties", {})["models"] = declared
    text = model_note(workflow)
    left = min(node["pos"][0] for node in workflow["nodes"])
    top = min(node["pos"][1] for node in workflow["nodes"])
    node_id = workflow["last_node_id"] + 1
    workflow["nodes"].append({
        "id": node_id, "type": "MarkdownNote", "pos": [left - 480, top], "size": [440, 90 + 24 * text.count("\n")],
        "flags": {}, "order": len(workflow["nodes"]), "mode": 0, "inputs": [], "outputs": [], "properties": {},
        "widgets_values": [text], "title": NOTE_TITLE, "color": "#432", "bgcolor": "#653"})
    workflow["last_node_id"] = node_id
    return workflow


def build_workflow(name: str, object_info: dict) -> dict:
    """The shipped form of a registered workflow: its builder's graph plus the model note."""
    return add_model_note(WORKFLOWS[name](object_info))


def write_workflows(object_info: dict, folder: Path = WORKFLOWS_DIR, names=None) -> list[Path]:
    """(Re)write the example workflow files (all registered ones, or `names`); returns their paths."""
    paths = []
    for name in names or WORKFLOWS:
        path = folder / name
        path.write_text(json.dumps(build_workflow(name, object_info), indent=2) + "\n")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# spatial-temporal attention control (issue 11)
# ----------------------------------------------------------------------------------------------


def _save_image(flow: UIWorkflow, ckpt, latent_source, x: int, prefix: str):
    """VAE Decode, then Save Image: the spatial-temporal examples make one image."""
    decode = flow.add("VAEDecode", pos=(x, 160), size=(220, 50))
    flow.link(latent_source, 0, decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    save = flow.add("SaveImage", {"filename_prefix": prefix}, pos=(x + 260, 160), size=(400, 440))
    flow.link(decode, "IMAGE", save, "images")
    return decode


def _clip_scorer(flow: UIWorkflow, y: int):
    return flow.add("AIDCLIPScorerLoader", {"model_name": CLIP_SCORER_MODEL}, pos=(0, y), size=(330, 60),
                    title="CLIP scorer (models/clip_scoring)")


def spacetime_layout(object_info: dict) -> dict:
    """Two objects in regions, weights optimised by gradient (the paper), then Apply + the core KSampler; below it
    the same layout with the paper code's own mix at its start weights (mix official, 5 / N)."""
    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    prompt = flow.add("PrimitiveStringMultiline", {"value": "a photo of a cat to the left of a dog, in a garden"},
                      pos=(0, 320), size=(330, 120), title="Prompt (text)")
    positive = flow.add("CLIPTextEncode", pos=(380, 0), size=(400, 100), title="Prompt")
    negative = flow.add("CLIPTextEncode", {"text": "blurry, low quality, watermark, text"}, pos=(380, 140),
                        size=(400, 100), title="Negative prompt")
    cat_prompt = flow.add("CLIPTextEncode", {"text": "a photo of a cat"}, pos=(380, 280), size=(400, 100),
                          title="Local prompt: cat")
    dog_prompt = flow.add("CLIPTextEncode", {"text": "a photo of a dog"}, pos=(380, 420), size=(400, 100),
                          title="Local prompt: dog")
    flow.link(prompt, 0, positive, "text")
    for node in (positive, negative, cat_prompt, dog_prompt):
        flow.link(ckpt, "CLIP", node, "clip")
    cat = flow.add("AIDSpatialTemporalRegion", {"description": "cat", "units": "fractions", "x": 0.03, "y": 0.15,
                                                "width": 0.44, "height": 0.7}, pos=(840, 0), size=(320, 520))
    flow.link(cat_prompt, 0, cat, "local_prompt")
    dog = flow.add("AIDSpatialTemporalRegion", {"description": "dog", "units": "fractions", "x": 0.53, "y": 0.15,
                                                "width": 0.44, "height": 0.7}, pos=(1200, 0), size=(320, 520))
    flow.link(dog_prompt, 0, dog, "local_prompt")
    flow.link(cat, 0, dog, "regions")
    start = flow.add("AIDSpatialTemporalWeights", {"mode": "constant", "weight": 0.5}, pos=(840, 560),
                     size=(320, 420), title="Starting weights")
    latent = flow.add("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1}, pos=(380, 560),
                      size=(300, 110))
    scorer = _clip_scorer(flow, 480)
    optimiser = flow.add("AIDSpatialTemporalWeightOptimiser", {
        "seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "method": "gradient",
        "iterations": 3, "learning_rate": 0.005, "candidates": 4}, pos=(1560, 0), size=(380, 700))
    for source, output, name in ((ckpt, "MODEL", "model"), (positive, 0, "positive"), (negative, 0, "negative"),
                                 (dog, 0, "regions"), (latent, 0, "latent_image"), (ckpt, "VAE", "vae"),
                                 (scorer, 0, "scorer"), (prompt, 0, "prompt_text"), (start, 0, "weights")):
        flow.link(source, output, optimiser, name)
    apply = flow.add("AIDApplySpatialTemporalAttention", pos=(1980, 0), size=(320, 80))
    flow.link(ckpt, "MODEL", apply, "model")
    flow.link(dog, 0, apply, "regions")
    flow.link(optimiser, "weights", apply, "weights")
    sampler = flow.add("KSampler", {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                    "scheduler": "normal", "denoise": 1.0}, pos=(1980, 160), size=(320, 270),
                       title="KSampler (same seed and settings as the optimiser)")
    flow.link(apply, 0, sampler, "model")
    flow.link(positive, 0, sampler, "positive")
    flow.link(negative, 0, sampler, "negative")
    flow.link(latent, 0, sampler, "latent_image")
    _save_image(flow, ckpt, sampler, 2340, "AID/spacetime_layout")
    official_start = flow.add("AIDSpatialTemporalWeights", {"mode": "official start (5/N)"}, pos=(1560, 760),
                              size=(320, 420), title="The paper code's start: 5 / N")
    official = flow.add("AIDApplySpatialTemporalAttention", {"mix": "official"}, pos=(1980, 760), size=(320, 100),
                        title="Apply Spatial-Temporal Attention (the paper code's mix)")
    flow.link(ckpt, "MODEL", official, "model")
    flow.link(dog, 0, official, "regions")
    flow.link(official_start, 0, official, "weights")
    official_sampler = flow.add("KSampler", {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                             "scheduler": "normal", "denoise": 1.0}, pos=(1980, 900),
                                size=(320, 270), title="KSampler (official mix)")
    flow.link(official, 0, official_sampler, "model")
    flow.link(positive, 0, official_sampler, "positive")
    flow.link(negative, 0, official_sampler, "negative")
    flow.link(latent, 0, official_sampler, "latent_image")
    decode = flow.add("VAEDecode", pos=(2340, 900), size=(220, 50))
    flow.link(official_sampler, 0, decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    save = flow.add("SaveImage", {"filename_prefix": "AID/spacetime_layout_official"}, pos=(2600, 900),
                    size=(400, 440))
    flow.link(decode, "IMAGE", save, "images")
    return flow.to_json()


def spacetime_auto_layout(object_info: dict) -> dict:
    """A layout read from the prompt's words, weights found by the batched search, in the one-box sampler."""
    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    layout = flow.add("AIDSpatialTemporalAutoLayout", {
        "prompt": "a photo of a red apple to the left of a blue vase, a wooden table below the vase"},
        pos=(380, 0), size=(420, 560))
    flow.link(ckpt, "CLIP", layout, "clip")
    negative = flow.add("CLIPTextEncode", {"text": "blurry, low quality, watermark, text"}, pos=(380, 600),
                        size=(400, 100), title="Negative prompt")
    flow.link(ckpt, "CLIP", negative, "clip")
    latent = flow.add("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1}, pos=(0, 320),
                      size=(300, 110))
    scorer = _clip_scorer(flow, 480)
    sampler = flow.add("AIDSpatialTemporalSampler", {
        "seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "method": "search",
        "iterations": 3, "learning_rate": 0.005, "candidates": 4, "denoise": 1.0}, pos=(860, 0), size=(380, 760))
    for source, output, name in ((ckpt, "MODEL", "model"), (layout, "positive", "positive"), (negative, 0, "negative"),
                                 (layout, "regions", "regions"), (latent, 0, "latent_image"), (ckpt, "VAE", "vae"),
                                 (scorer, 0, "scorer"), (layout, "prompt", "prompt_text")):
        flow.link(source, output, sampler, name)
    _save_image(flow, ckpt, sampler, 1280, "AID/spacetime_auto_layout")
    return flow.to_json()


def aid_regional_interpolation(object_info: dict) -> dict:
    """AID between two prompts where only a region travels from A to B (AID Regional Interpolation), to a video."""
    flow = UIWorkflow(object_info)
    ckpt, text_a, text_b, negative = _checkpoint_and_prompts(
        flow, "a photo of a cat sitting on a green sofa in a bright living room",
        "a photo of a dog sitting on a green sofa in a bright living room", "blurry, low quality, watermark, text")
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "linear"}, pos=(0, 360), size=(330, 330))
    region = flow.add("AIDSpatialTemporalRegion", {"description": "the animal", "units": "fractions", "x": 0.2,
                                                   "y": 0.15, "width": 0.6, "height": 0.7}, pos=(380, 510),
                      size=(320, 520), title="Region that travels from A to B")
    conditioning = flow.add("AIDConditioning", pos=(840, 0), size=(300, 140))
    flow.link(text_a, 0, conditioning, "positive_a")
    flow.link(text_b, 0, conditioning, "positive_b")
    flow.link(schedule, 0, conditioning, "schedule")
    apply = flow.add("ApplyAID", pos=(840, 180), size=(300, 300))
    flow.link(ckpt, "MODEL", apply, "model")
    flow.link(schedule, 0, apply, "schedule")
    regional = flow.add("AIDRegionalInterpolation", pos=(840, 520), size=(300, 80))
    flow.link(apply, 0, regional, "model")
    flow.link(region, 0, regional, "regions")
    latent = flow.add("AIDLatent", {"width": 512, "height": 512, "seed": 0, "seed_b": -1}, pos=(840, 720),
                      size=(300, 180))
    flow.link(schedule, 0, latent, "schedule")
    sampler = flow.add("KSampler", {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                    "scheduler": "normal", "denoise": 1.0}, pos=(1180, 160), size=(320, 270))
    flow.link(regional, 0, sampler, "model")
    flow.link(conditioning, 0, sampler, "positive")
    flow.link(negative, 0, sampler, "negative")
    flow.link(latent, "latent", sampler, "latent_image")
    _decode_and_save(flow, ckpt, sampler, 1540, prefix="AID/regional_interpolation")
    return flow.to_json()


WORKFLOWS.update({
    "spacetime_layout.json": spacetime_layout,
    "spacetime_auto_layout.json": spacetime_auto_layout,
    "aid_regional_interpolation.json": aid_regional_interpolation,
})
# diffusion transformers (issue 12)
# ----------------------------------------------------------------------------------------------

FLUX_DIFFUSION_MODEL = "flux1-dev.safetensors"
FLUX_VAE = "ae.safetensors"
CLIP_L = "clip_l.safetensors"
CLIP_G = "clip_g.safetensors"
T5XXL = "t5xxl_fp16.safetensors"
SD35_CHECKPOINT = "sd3.5_medium.safetensors"


def aid_flux_interpolation(object_info: dict) -> dict:
    """Flux.1-dev: Load Diffusion Model + Dual CLIP Loader, prompts of one length, Apply AID -> KSampler at cfg 1."""
    flow = UIWorkflow(object_info)
    unet = flow.add("UNETLoader", {"unet_name": FLUX_DIFFUSION_MODEL, "weight_dtype": "default"}, pos=(0, 0),
                    size=(330, 90))
    clip = flow.add("DualCLIPLoader", {"clip_name1": CLIP_L, "clip_name2": T5XXL, "type": "flux"}, pos=(0, 130),
                    size=(330, 130))
    vae = flow.add("VAELoader", {"vae_name": FLUX_VAE}, pos=(0, 300), size=(330, 60))
    prompts = flow.add("AIDTextEncodeEqualLength", {
        "text_a": "a photo of a red fox sitting in a snowy forest, morning light",
        "text_b": "a photo of a white owl sitting in a snowy forest, morning light"}, pos=(380, 0), size=(400, 330))
    flow.link(clip, "CLIP", prompts, "clip")
    negative = flow.add("CLIPTextEncode", {"text": ""}, pos=(380, 380), size=(400, 100),
                        title="Negative (unused at cfg 1)")
    flow.link(clip, "CLIP", negative, "clip")
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 420),
                        size=(330, 330))
    conditioning = flow.add("AIDConditioning", pos=(840, 0), size=(300, 140))
    flow.link(prompts, "positive_a", conditioning, "positive_a")
    flow.link(prompts, "positive_b", conditioning, "positive_b")
    flow.link(schedule, 0, conditioning, "schedule")
    guidance = flow.add("FluxGuidance", {"guidance": 3.5}, pos=(840, 180), size=(300, 60))
    flow.link(conditioning, 0, guidance, "conditioning")
    apply = flow.add("ApplyAID", pos=(840, 280), size=(300, 330))
    flow.link(unet, "MODEL", apply, "model")
    flow.link(schedule, 0, apply, "schedule")
    latent = flow.add("AIDLatent", {"width": 1024, "height": 1024, "seed": 0, "seed_b": -1}, pos=(840, 650),
                      size=(300, 180))
    flow.link(schedule, 0, latent, "schedule")
    sampler = flow.add("KSampler", {"seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
                                    "scheduler": "simple", "denoise": 1.0}, pos=(1180, 160), size=(320, 270))
    flow.link(apply, 0, sampler, "model")
    flow.link(guidance, 0, sampler, "positive")
    flow.link(negative, 0, sampler, "negative")
    flow.link(latent, "latent", sampler, "latent_image")
    _decode_with_vae(flow, vae, sampler, 1540, "AID/flux_interpolation")
    return flow.to_json()


def aid_sd35_interpolation(object_info: dict) -> dict:
    """SD3.5: the checkpoint's model and VAE, Triple CLIP Loader, AID Sampler with CFG."""
    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": SD35_CHECKPOINT}, pos=(0, 0), size=(330, 100))
    clip = flow.add("TripleCLIPLoader", {"clip_name1": CLIP_L, "clip_name2": CLIP_G, "clip_name3": T5XXL},
                    pos=(0, 140), size=(330, 130))
    texts = {"Prompt A": "a watercolor painting of a lighthouse on a cliff, morning",
             "Prompt B": "a watercolor painting of a windmill on a hill, evening",
             "Negative prompt": "blurry, low quality, watermark, text"}
    encoded = {}
    for row, (title, text) in enumerate(texts.items()):
        encoded[title] = flow.add("CLIPTextEncode", {"text": text}, pos=(380, 170 * row), size=(400, 130), title=title)
        flow.link(clip, "CLIP", encoded[title], "clip")
    schedule = flow.add("AIDSchedule", {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0}, pos=(0, 320),
                        size=(330, 330))
    sampler = flow.add("AIDSampler", {"width": 1024, "height": 1024, "seed": 42, "steps": 28, "cfg": 4.5,
                                      "sampler_name": "euler", "scheduler": "sgm_uniform"}, pos=(840, 0),
                       size=(340, 640))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(encoded["Prompt A"], 0, sampler, "positive_a")
    flow.link(encoded["Prompt B"], 0, sampler, "positive_b")
    flow.link(encoded["Negative prompt"], 0, sampler, "negative")
    flow.link(schedule, 0, sampler, "schedule")
    _decode_with_vae(flow, ckpt, sampler, 1220, "AID/sd35_interpolation", vae_output="VAE")
    return flow.to_json()


def _decode_with_vae(flow: UIWorkflow, vae_source, latent_source, x: int, prefix: str, vae_output=0):
    """VAE Decode with the VAE of `vae_source`, then AID Frames to Video."""
    decode = flow.add("VAEDecode", pos=(x, 160), size=(220, 50))
    flow.link(latent_source, 0, decode, "samples")
    flow.link(vae_source, vae_output, decode, "vae")
    video = flow.add("AIDFramesToVideo", {"filename_prefix": prefix, "format": "mp4 (h264)", "fps": 8.0,
                                          "loop": "ping-pong (no repeated ends)", "hold_first": 2, "hold_last": 2},
                     pos=(x + 260, 160), size=(420, 520))
    flow.link(decode, "IMAGE", video, "images")
    return decode


# ---------------------------------------------------------------------------------------------
# keyframe sequences (issue 14)
# ---------------------------------------------------------------------------------------------

KEYFRAME_TEXT = ("0: a red fox sitting in a snowy forest, winter morning, photo | hold 3 | ease in-out\n"
                 "+12: a white owl perched on a snowy branch, winter, photo | hold 3 | ease in-out\n"
                 "+12: a grey wolf in deep snow under the northern lights, photo | hold 3 | ease beta(3, 3)\n"
                 "+12: a black cat on a frosty stone wall at night, moonlight, photo | hold 3")
IMAGE_KEYFRAME_TEXT = "0: a high quality photo, detailed, soft light | hold 2\n+8:\n+8: | hold 2"


def _keyframe_sampler(flow: UIWorkflow, ckpt, keyframes, negative, loop: bool, image_keys=None):
    sampler = flow.add("AIDKeyframeSampler", {"width": 512, "height": 512, "seed": 42, "steps": 25, "cfg": 7.0,
                                              "sampler_name": "euler", "scheduler": "normal", "total_frames": 0,
                                              "loop": loop, "max_frames_per_batch": 16}, pos=(1180, 160),
                       size=(340, 640))
    flow.link(ckpt, "MODEL", sampler, "model")
    flow.link(keyframes, 0, sampler, "keyframes")
    flow.link(negative, 0, sampler, "negative")
    if image_keys is not None:
        flow.link(image_keys, 0, sampler, "image_keys")
    return sampler


def _keyframe_video(flow: UIWorkflow, ckpt, sampler, prefix: str, loop: str):
    """VAE Decode and AID Frames to Video ('forward' plays a closed loop seamlessly)."""
    decode = flow.add("VAEDecode", pos=(1560, 160), size=(220, 50))
    flow.link(sampler, "latent", decode, "samples")
    flow.link(ckpt, "VAE", decode, "vae")
    video = flow.add("AIDFramesToVideo", {"filename_prefix": prefix, "format": "mp4 (h264)", "fps": 8.0,
                                          "loop": loop}, pos=(1820, 160), size=(420, 520))
    flow.link(decode, "IMAGE", video, "images")
    return decode


WORKFLOWS.update({
    "aid_flux_interpolation.json": aid_flux_interpolation,
    "aid_sd35_interpolation.json": aid_sd35_interpolation,
})


def _dit_stand_in(name: str):
    from . import dit_models

    return getattr(dit_models, name)()


MODEL_FILES.update({
    FLUX_DIFFUSION_MODEL: ModelFile(
        "diffusion_models", "FLUX.1 [dev] diffusion model (gated: accept the licence on Hugging Face first); "
        "flux1-schnell.safetensors works too (set steps 4)",
        "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors",
        lambda: _dit_stand_in("ensure_flux_diffusion_model")),
    FLUX_VAE: ModelFile(
        "vae", "FLUX.1 autoencoder (16 channels)",
        "https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/main/ae.safetensors",
        lambda: _dit_stand_in("ensure_vae16")),
    CLIP_L: ModelFile(
        "text_encoders", "CLIP-L text encoder of Flux and SD3",
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
        lambda: _dit_stand_in("ensure_clip_l")),
    T5XXL: ModelFile(
        "text_encoders", "T5-XXL text encoder of Flux and SD3 (t5xxl_fp8_e4m3fn.safetensors needs less memory)",
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        lambda: _dit_stand_in("ensure_tiny_t5")),
    CLIP_G: ModelFile(
        "text_encoders", "CLIP-G text encoder of SD3 / SD3.5",
        "https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/text_encoders/clip_g.safetensors",
        # no random CLIP-G can be built small (ComfyUI builds it at 0.7B from a fixed config): the stand-in
        # runs drop it (use_stand_in_text_encoders), so the CLIP-L stand-in only fills its widget
        lambda: _dit_stand_in("ensure_clip_l")),
    SD35_CHECKPOINT: ModelFile(
        "checkpoints", "Stable Diffusion 3.5 Medium (gated: accept the licence on Hugging Face first); SD3.5 "
        "Large works too",
        "https://huggingface.co/stabilityai/stable-diffusion-3.5-medium/resolve/main/sd3.5_medium.safetensors",
        lambda: _dit_stand_in("ensure_sd35_checkpoint")),
})

#: The test-only loader that replaces DualCLIPLoader in stand-in runs (aid_harness/dit_models.py).
STAND_IN_DUAL_CLIP_LOADER = "AIDTestDualCLIPLoader"


def use_stand_in_text_encoders(prompt: dict, stand_ins: dict[str, str]) -> dict:
    """Swap the text-encoder loaders of a prompt that now names DiT stand-ins for ones that can load them.

    T5-XXL (4.7B parameters) and CLIP-G (0.7B) cannot be built small through the core loaders, which
    take their sizes from fixed configs:
    - DualCLIPLoader (Flux: CLIP-L + T5) becomes AIDTestDualCLIPLoader: the same core loading code
      (comfy.sd.load_clip) with a config override that makes T5 one block deep; its width stays 4096,
      so Flux's real tokenizer (T5 padded to 256) gives CONDITIONING of Flux's real shape [1, 256, 4096];
    - TripleCLIPLoader (SD3: CLIP-L, CLIP-G, T5) becomes the core CLIPLoader with the CLIP-L file and
      type sd3, a configuration ComfyUI supports (contexts [1, 77, 4096], pooled 2048).
    Loaders that name no stand-in are left alone (in place; returned).
    """
    from . import dit_models

    stand_in_names = set(stand_ins.values())
    for node in prompt.values():
        inputs = node["inputs"]
        if not any(isinstance(v, str) and v in stand_in_names for v in inputs.values()):
            continue
        if node["class_type"] == "DualCLIPLoader":
            dit_models.register_stand_in_dual_clip_loader(STAND_IN_DUAL_CLIP_LOADER)
            node["class_type"] = STAND_IN_DUAL_CLIP_LOADER
        elif node["class_type"] == "TripleCLIPLoader":
            node["class_type"], node["inputs"] = "CLIPLoader", {"clip_name": inputs["clip_name1"], "type": "sd3"}
    return prompt
def aid_keyframes(object_info: dict) -> dict:
    """Four keys with holds and per-segment easing in a closed loop -> AID Keyframe Sampler -> a looping video."""
    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    keyframes = flow.add("AIDKeyframes", {"text": KEYFRAME_TEXT, "pre_text": "", "app_text": "highly detailed"},
                         pos=(380, 0), size=(680, 260), title="Keyframes (one line per key)")
    negative = flow.add("CLIPTextEncode", {"text": "blurry, low quality, watermark, text"}, pos=(380, 320),
                        size=(400, 130), title="Negative prompt")
    for node in (keyframes, negative):
        flow.link(ckpt, "CLIP", node, "clip")
    sampler = _keyframe_sampler(flow, ckpt, keyframes, negative, loop=True)
    decode = _keyframe_video(flow, ckpt, sampler, "AID/keyframes", "forward")
    report = flow.add("AIDSequenceReport", {"metric": "auto", "filename_prefix": "AID/keyframes_report"},
                      pos=(1820, 720), size=(420, 560))
    flow.link(decode, "IMAGE", report, "frames")
    flow.link(sampler, "schedule", report, "schedule")
    return flow.to_json()


def aid_image_keyframes(object_info: dict) -> dict:
    """Three images as keys through IP-Adapter: the picture morphs from the first to the second to the third."""
    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": DEFAULT_CHECKPOINT}, pos=(0, 160), size=(330, 100))
    keyframes = flow.add("AIDKeyframes", {"text": IMAGE_KEYFRAME_TEXT}, pos=(380, 0), size=(420, 200),
                         title="Keyframes (an empty prompt repeats the one before)")
    negative = flow.add("CLIPTextEncode", {"text": "blurry, low quality, watermark, text"}, pos=(380, 240),
                        size=(400, 130), title="Negative prompt")
    for node in (keyframes, negative):
        flow.link(ckpt, "CLIP", node, "clip")
    clip_vision, ipadapter = _image_prompt_models(flow, "ip-adapter-plus_sd15.safetensors", 320)
    loads = [flow.add("LoadImage", {"image": f"image_{name}.png"}, pos=(380 + 210 * i, 420), size=(200, 320),
                      title=f"Image {i + 1} (key {i + 1})") for i, name in enumerate("abc")]
    batch = flow.add("ImageBatch", pos=(380, 780), size=(200, 50))
    flow.link(loads[0], "IMAGE", batch, "image1")
    flow.link(loads[1], "IMAGE", batch, "image2")
    batch_all = flow.add("ImageBatch", pos=(600, 780), size=(200, 50))
    flow.link(batch, 0, batch_all, "image1")
    flow.link(loads[2], "IMAGE", batch_all, "image2")
    image_keys = flow.add("AIDIPAdapterKeys", {"weight": 0.8}, pos=(840, 520), size=(300, 130))
    flow.link(ipadapter, 0, image_keys, "ipadapter")
    flow.link(clip_vision, 0, image_keys, "clip_vision")
    flow.link(batch_all, 0, image_keys, "images")
    sampler = _keyframe_sampler(flow, ckpt, keyframes, negative, loop=False, image_keys=image_keys)
    _keyframe_video(flow, ckpt, sampler, "AID/image_keyframes", "ping-pong (no repeated ends)")
    return flow.to_json()


WORKFLOWS["aid_keyframes.json"] = aid_keyframes
WORKFLOWS["aid_image_keyframes.json"] = aid_image_keyframes
