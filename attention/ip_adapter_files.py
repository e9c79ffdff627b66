"""Read IP-Adapter files safely and tell their variants apart from the keys.

Formats (the ones users share with IPAdapter_plus):
- .safetensors / .sft: flat keys `image_proj.*` and `ip_adapter.*` (`adapter_modules.*` in training
  checkpoints);
- legacy .bin / .pt / .pth / .ckpt: a torch pickle of {"image_proj": {...}, "ip_adapter": {...}},
  loaded only with torch.load(weights_only=True), so a file holding anything but plain tensors
  (code, arbitrary objects) is refused, never run.

Supported: SD1.5 and SDXL adapters with the base projection (ImageProjModel: ip-adapter_sd15,
ip-adapter_sd15_light, ip-adapter_sdxl_vit-h, ip-adapter_sdxl) or the plus projection (Resampler:
ip-adapter-plus(-face)_sd15/_sdxl_vit-h). FaceID (needs insightface), full-face (MLP projection)
and adapters for other model families are refused with a message saying so.
"""
from __future__ import annotations

import os
import pickle
import re

import torch

from .image_prompt import FAMILY_BY_CONTEXT, IPAdapter, ImageProjModel, Resampler

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
_LAYER_KEY = re.compile(r"^(\d+)\.to_([kv])_ip\.weight$")
SUPPORTED = ("ip-adapter_sd15, ip-adapter_sd15_light, ip-adapter-plus_sd15, ip-adapter-plus-face_sd15, "
             "ip-adapter_sdxl_vit-h, ip-adapter_sdxl, ip-adapter-plus_sdxl_vit-h, ip-adapter-plus-face_sdxl_vit-h")


class IPAdapterFileError(ValueError):
    """A file that is not a supported, safely loadable IP-Adapter; `fix` says what to do instead."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(problem)


def read_state_dict(path: str) -> dict:
    """Tensors of an IP-Adapter file: a flat or nested dict of plain tensors, read without running code."""
    if path.lower().endswith(SAFETENSORS_SUFFIXES):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:  # safetensors raises its own error types for damaged headers
            raise IPAdapterFileError(f"'{os.path.basename(path)}' is not a readable safetensors file ({error}).",
                                     "download the file again.") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if "Unsupported" in line or "global" in line.lower()]
        detail = f" ({lines[0].split('. ')[0][:160]})" if lines else ""  # not torch's advice to allow it
        raise IPAdapterFileError(
            f"'{os.path.basename(path)}' contains pickled objects that are not plain tensors{detail}, so it was "
            "refused: legacy .bin files are only loaded as weights, never run as code.",
            "use the .safetensors release of this IP-Adapter, or a .bin you trust converted to safetensors.") from None
    except Exception as error:  # not a torch file at all (truncated zip, text, ...)
        raise IPAdapterFileError(f"'{os.path.basename(path)}' could not be read as a PyTorch weights file ({error}).",
                                 "download the file again, preferably the .safetensors release.") from None


def split_state_dict(data) -> tuple[dict, dict]:
    """(image_proj, ip_adapter) sub-dicts from the nested (legacy .bin) or flat (safetensors) layout."""
    if not isinstance(data, dict):
        raise IPAdapterFileError("the file does not hold a dictionary of weights.", "load an IP-Adapter model file.")
    if isinstance(data.get("image_proj"), dict) and isinstance(data.get("ip_adapter"), dict):
        image_proj, ip_adapter = dict(data["image_proj"]), dict(data["ip_adapter"])
        rest = {k: v for k, v in data.items() if k not in ("image_proj", "ip_adapter")}
    else:
        image_proj, ip_adapter, rest = {}, {}, {}
        for key, value in data.items():
            prefix, _, name = key.partition(".")
            target = {"image_proj": image_proj, "ip_adapter": ip_adapter, "adapter_modules": ip_adapter}.get(prefix)
            (target if target is not None else rest)[name if target is not None else key] = value
    for part in (image_proj, ip_adapter, rest):
        for key, value in part.items():
            if not isinstance(value, torch.Tensor):
                raise IPAdapterFileError(f"entry '{key}' is a {type(value).__name__}, not a tensor.",
                                         "load an IP-Adapter weights file.")
    if not ip_adapter or not image_proj:
        raise IPAdapterFileError("the file has no 'image_proj' and 'ip_adapter' weights, so it is not an IP-Adapter.",
                                 "pick an IP-Adapter model (e.g. ip-adapter_sd15.safetensors).")
    return image_proj, ip_adapter


def detect_variant(image_proj: dict, ip_adapter: dict) -> str:
    """"SD1.5", "SD1.5 plus", "SDXL" or "SDXL plus"; IPAdapterFileError for anything else."""
    fix = f"use IPAdapter_plus for this adapter, or one AID supports: {SUPPORTED}."
    if any("lora" in key for key in ip_adapter) or any(key.startswith("perceiver_resampler") for key in image_proj):
        raise IPAdapterFileError("this is an IP-Adapter FaceID model, which needs insightface face embeddings; "
                                 "it is not supported.", fix)
    if "proj.0.weight" in image_proj:
        kind = "a FaceID model (needs insightface face embeddings)" if image_proj["proj.0.weight"].shape[1] == 512 \
            else "a full-face adapter (MLP projection)"
        raise IPAdapterFileError(f"this is {kind}; it is not supported.", fix)
    unknown = [key for key in ip_adapter if not _LAYER_KEY.match(key)]
    if unknown:
        raise IPAdapterFileError(f"unexpected adapter weight '{unknown[0]}': this IP-Adapter variant is not "
                                 "supported.", fix)
    if "latents" in image_proj and "proj_in.weight" in image_proj:
        expected = {"latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias", "norm_out.weight",
                    "norm_out.bias"}
        extra = [k for k in image_proj if k not in expected and not k.startswith("layers.")]
        if extra:
            raise IPAdapterFileError(f"its Resampler has weights AID does not know ('{extra[0]}'); this variant is "
                                     "not supported.", fix)
        projection, context = "plus", image_proj["proj_out.weight"].shape[0]
    elif {"proj.weight", "proj.bias", "norm.weight", "norm.bias"} == set(image_proj):
        projection, context = "base", image_proj["norm.weight"].shape[0]
    else:
        raise IPAdapterFileError(f"its image projection ('{sorted(image_proj)[0]}', ...) is of a kind AID does not "
                                 "support.", fix)
    layer_context = ip_adapter["1.to_k_ip.weight"].shape[1] if "1.to_k_ip.weight" in ip_adapter else None
    if context not in FAMILY_BY_CONTEXT:
        raise IPAdapterFileError(f"it is made for a model with {context}-wide text context; only SD1.5 (768) and "
                                 "SDXL (2048) adapters are supported.", fix)
    if layer_context not in (None, context):
        raise IPAdapterFileError(f"its image tokens are {context} wide but its layers take {layer_context}-wide "
                                 "tokens, so the file mixes two adapters.", "download the file again.")
    family = FAMILY_BY_CONTEXT[context]
    return family if projection == "base" else f"{family} plus"


def layer_weights(ip_adapter: dict) -> tuple:
    """((to_k_ip, to_v_ip), ...) ordered by the file's layer numbers 1, 3, 5, ..."""
    numbers = sorted({int(_LAYER_KEY.match(key).group(1)) for key in ip_adapter})
    if numbers != list(range(1, 2 * len(numbers), 2)):
        raise IPAdapterFileError(f"its layers are numbered {numbers[:4]}..., not 1, 3, 5, ...",
                                 "use an unmodified IP-Adapter release.")
    layers = []
    for number in numbers:
        try:
            layers.append((ip_adapter[f"{number}.to_k_ip.weight"], ip_adapter[f"{number}.to_v_ip.weight"]))
        except KeyError as missing:
            raise IPAdapterFileError(f"layer {number} has no {missing.args[0]}.", "download the file again.") from None
    return tuple(layers)


def load_ip_adapter(path: str) -> IPAdapter:
    """An IPAdapter (weights on the CPU, projection in float32) from a file; IPAdapterFileError when unusable."""
    image_proj, ip_adapter = split_state_dict(read_state_dict(path))
    variant = detect_variant(image_proj, ip_adapter)
    try:
        if variant.endswith("plus"):
            projection = Resampler.from_state_dict(image_proj)
            clip_input, clip_width = "penultimate_hidden_states", image_proj["proj_in.weight"].shape[1]
        else:
            projection = ImageProjModel.from_state_dict(image_proj)
            clip_input, clip_width = "image_embeds", image_proj["proj.weight"].shape[1]
    except (RuntimeError, KeyError, ValueError) as error:
        raise IPAdapterFileError(f"its {variant} image projection does not load ({str(error)[:300]}).",
                                 "download the file again.") from None
    layers = layer_weights(ip_adapter)
    return IPAdapter(variant=variant, image_proj=projection, layers=layers, clip_input=clip_input,
                     clip_width=int(clip_width), context_dim=int(layers[0][0].shape[1]), name=os.path.basename(path))
