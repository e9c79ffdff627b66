"""AID IP-Adapter Loader and AID IP-Adapter Endpoints: image prompts as the endpoints of a sequence."""
from __future__ import annotations

import logging
import os

import torch

from ..attention.image_prompt import IMAGE_MODES, ImageEndpoints, ImagePromptMismatchError
from ..attention.ip_adapter_files import IPAdapterFileError, load_ip_adapter
from ..attention.install_dit import dit_family
from ..errors import AIDInputError
from .validation import check_choice

LOADER_NAME = "AID IP-Adapter Loader"
ENDPOINTS_NAME = "AID IP-Adapter Endpoints"
MODEL_FOLDER = "ipadapter"  # the folder IPAdapter_plus reads, so both packs see the same files


def register_model_folder() -> None:
    """Register models/ipadapter unless IPAdapter_plus (or a user's extra_model_paths) already did.

    Called on first use rather than at import, so loading the pack changes no host state; IPAdapter_plus
    registers the same folder at its import and keeps an entry it finds.
    """
    import folder_paths

    if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = (
            [os.path.join(folder_paths.models_dir, MODEL_FOLDER)], set(folder_paths.supported_pt_extensions))


def check_image_endpoints(node: str, image_endpoints, model) -> None:
    """Stop before sampling when the image endpoints' IP-Adapter does not fit the model."""
    if image_endpoints is None:
        return
    if not isinstance(image_endpoints, ImageEndpoints):
        raise AIDInputError(node, "image_endpoints", f"got a {type(image_endpoints).__name__}.",
                            f"connect the output of {ENDPOINTS_NAME}.")
    family = dit_family(model)
    if family is not None:
        raise AIDInputError(node, "image_endpoints", f"IP-Adapter image endpoints work on SD1.x and SDXL checkpoints, "
                            f"and this is a {family.name} model (its joint attention has no IP-Adapter layers).",
                            "disconnect image_endpoints, or use an SD1.x / SDXL checkpoint for image prompts.")
    try:
        image_endpoints.check_model(model.model.diffusion_model)
    except ImagePromptMismatchError as error:
        raise AIDInputError(node, "image_endpoints", str(error),
                            "load an IP-Adapter made for this checkpoint's family (SD1.5 adapters for SD1.x "
                            "checkpoints, SDXL adapters for SDXL ones).") from None


def encode_images(clip_vision, images: list, name: str) -> list:
    """CLIP-vision output `name` of each IMAGE batch, in one encoder call when the sizes match."""
    if len({tuple(image.shape[1:]) for image in images}) == 1:
        states = getattr(clip_vision.encode_image(torch.cat(images), crop=True), name)
        return list(states.split([image.shape[0] for image in images]))
    return [getattr(clip_vision.encode_image(image, crop=True), name) for image in images]


class AIDIPAdapterLoader:
    """Load an IP-Adapter file (SD1.5 / SDXL, base or plus) from models/ipadapter."""

    DESCRIPTION = ("Loads an IP-Adapter from ComfyUI's models/ipadapter folder (shared with IPAdapter_plus). "
                   "Supports SD1.5 and SDXL adapters, base (ip-adapter_sd15, ip-adapter_sdxl_vit-h) and plus "
                   "(ip-adapter-plus_*); the variant is detected from the weights. .safetensors is preferred; "
                   "legacy .bin files are read as plain weights only.")
    CATEGORY = "AID/IP-Adapter"
    FUNCTION = "load"
    RETURN_TYPES = ("AID_IPADAPTER",)
    RETURN_NAMES = ("ipadapter",)
    OUTPUT_TOOLTIPS = ("The IP-Adapter, for AID IP-Adapter Endpoints.",)

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        register_model_folder()
        return {"required": {"ipadapter_file": (folder_paths.get_filename_list(MODEL_FOLDER), {
            "tooltip": "An IP-Adapter file in models/ipadapter."})}}

    def load(self, ipadapter_file):
        import folder_paths

        register_model_folder()
        path = folder_paths.get_full_path(MODEL_FOLDER, ipadapter_file)
        if path is None:
            raise AIDInputError(LOADER_NAME, "ipadapter_file", f"'{ipadapter_file}' is not in models/{MODEL_FOLDER}.",
                                f"put the file in ComfyUI's models/{MODEL_FOLDER} folder and refresh.")
        try:
            adapter = load_ip_adapter(path)
        except IPAdapterFileError as error:
            problem = error.problem if ipadapter_file in error.problem else f"'{ipadapter_file}': {error.problem}"
            raise AIDInputError(LOADER_NAME, "ipadapter_file", problem, error.fix) from None
        logging.info("%s: %s is an %s IP-Adapter (%d cross-attention layers)", LOADER_NAME, ipadapter_file,
                     adapter.variant, len(adapter.layers))
        return (adapter,)


class AIDIPAdapterEndpoints:
    """Image prompts for the two endpoints of a sequence, for Apply AID or AID Sampler."""

    DESCRIPTION = ("Makes the image endpoints of an AID sequence with an IP-Adapter. morph: frame 0 shows image A, "
                   "the last frame image B, and the frames between interpolate the image attention like the text "
                   "attention. image-control: frame 0 is the text-only generation, the last frame uses image B, and "
                   "frame f gets t_f x weight of the image attention (a smooth dial for how much the image counts). "
                   "The text prompts still condition both endpoints.")
    CATEGORY = "AID/IP-Adapter"
    FUNCTION = "build"
    RETURN_TYPES = ("AID_IMAGE_ENDPOINTS",)
    RETURN_NAMES = ("image_endpoints",)
    OUTPUT_TOOLTIPS = ("Connect to the image_endpoints input of Apply AID or AID Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ipadapter": ("AID_IPADAPTER", {"tooltip": "From AID IP-Adapter Loader."}),
                "clip_vision": ("CLIP_VISION", {"tooltip": "From the core Load CLIP Vision node: ViT-H for the "
                                                           "SD1.5 and *_vit-h adapters, ViT-bigG for ip-adapter_sdxl."}),
                "image_b": ("IMAGE", {"tooltip": "The image of endpoint B (the last frame). Several images in a "
                                                 "batch are averaged."}),
                "mode": (list(IMAGE_MODES), {"default": IMAGE_MODES[0],
                                             "tooltip": "morph: image A -> image B. image-control: no image -> "
                                                        "image B, the image's weight growing with t."}),
                "weight": ("FLOAT", {"default": 1.0, "min": -1.0, "max": 5.0, "step": 0.05,
                                     "tooltip": "Scale of the image attention at the endpoints (IP-Adapter weight)."}),
            },
            "optional": {
                "image_a": ("IMAGE", {"tooltip": "The image of endpoint A (frame 0); morph only."}),
            },
        }

    def build(self, ipadapter, clip_vision, image_b, mode, weight, image_a=None):
        check_choice(ENDPOINTS_NAME, "mode", mode, IMAGE_MODES)
        if mode == "morph" and image_a is None:
            raise AIDInputError(ENDPOINTS_NAME, "image_a", "morph needs an image for endpoint A.",
                                "connect image_a, or choose mode image-control (no image at A).")
        if mode == "image-control" and image_a is not None:
            raise AIDInputError(ENDPOINTS_NAME, "image_a", "image-control has no image at endpoint A (frame 0 is "
                                "the text-only generation), so image_a would be ignored.",
                                "disconnect image_a, or choose mode morph.")
        try:
            states_a, states_b, uncond = ipadapter.endpoint_inputs(
                lambda images, name: encode_images(clip_vision, images, name), image_a, image_b)
        except ImagePromptMismatchError as error:
            raise AIDInputError(ENDPOINTS_NAME, "clip_vision", str(error),
                                "load the CLIP vision model the IP-Adapter was trained with.") from None
        return (ImageEndpoints(mode, float(weight), ipadapter, states_a, states_b, uncond),)


NODE_CLASS_MAPPINGS = {"AIDIPAdapterLoader": AIDIPAdapterLoader, "AIDIPAdapterEndpoints": AIDIPAdapterEndpoints}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDIPAdapterLoader": LOADER_NAME, "AIDIPAdapterEndpoints": ENDPOINTS_NAME}
