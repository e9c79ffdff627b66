"""Helpers shared by node classes: preview images for the UI and image tensor conversion."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def save_preview(images, prefix: str = "aid_preview") -> list[dict]:
    """Save PIL images into ComfyUI's temp folder and return the `ui["images"]` entries that show them."""
    import folder_paths

    temp_dir = folder_paths.get_temp_directory()
    suffix = "_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix + suffix, temp_dir)
    results = []
    for image in images:
        filename = f"{name}_{counter:05}_.png"
        image.save(os.path.join(folder, filename), compress_level=1)
        results.append({"filename": filename, "subfolder": subfolder, "type": "temp"})
        counter += 1
    return results


def pil_to_image_tensor(images) -> torch.Tensor:
    """PIL images of one size -> ComfyUI IMAGE [N, H, W, 3] float in 0..1."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays))
