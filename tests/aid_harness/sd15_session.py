"""A ComfyUI booted in this process with a random SD1.5 checkpoint loaded: what the benchmarks start from."""
from __future__ import annotations

import tempfile
from pathlib import Path


def boot_with_sd15(size: str = "tiny"):
    """Boot the host with the random SD1.5 checkpoint of `size` ("tiny" or "full") in a throw-away base.

    Returns (ComfyUI's nodes module, MODEL, CLIP, VAE, encode), encode(text) -> CONDITIONING.
    """
    from . import host, models

    root, _ = host.find_comfyui()
    models._bootstrap_comfy()  # building a checkpoint not cached yet needs comfy importable
    base = Path(tempfile.mkdtemp(prefix="aid-bench-"))
    host.make_base_directory(base, {"checkpoints": [models.ensure_sd15_checkpoint(size)]})
    nodes = host.boot_in_process(root, base)["nodes"]
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(models.sd15_checkpoint_name(size))[:3]
    return nodes, model, clip, vae, lambda text: nodes.CLIPTextEncode().encode(clip, text)[0]
