"""Checks every node of the pack runs before its own code: sockets hold their type, FLOAT widgets are finite.

ComfyUI's API lets a prompt put any JSON value on a socket (`"schedule": 5`) and checks FLOAT
widgets only against min and max, which NaN passes. Without this, such input ends in an
AttributeError deep inside a node, or in NaN images. `guard_node_inputs` wraps a node class's
FUNCTION so these are refused as AIDInputError naming the node and the input, for every node
in the pack's mappings (nodes added later included).
"""
from __future__ import annotations

import functools
import math

import torch

from ..errors import AIDInputError

JSON_SCALARS = (bool, int, float, str, type(None))


def _is_conditioning(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], torch.Tensor)
        and isinstance(entry[1], dict) for entry in value)


def _pack_class(module: str, name: str):
    """A class of the pack, imported when first needed (the modules import torch-heavy code)."""
    from importlib import import_module

    return getattr(import_module(module, __package__), name)


def _instance_of(module: str, name: str):
    return lambda value: isinstance(value, _pack_class(module, name))


# socket type -> (check, what it should be, where it comes from)
SOCKETS = {
    "MODEL": (lambda v: all(hasattr(v, a) for a in ("model", "clone", "get_model_object")), "a MODEL",
              "Load Checkpoint's MODEL output"),
    "CLIP": (lambda v: hasattr(v, "tokenize") and hasattr(v, "encode_from_tokens"), "a CLIP",
             "Load Checkpoint's CLIP output"),
    "VAE": (lambda v: hasattr(v, "decode"), "a VAE", "Load Checkpoint's VAE output"),
    "CLIP_VISION": (lambda v: hasattr(v, "encode_image"), "a CLIP vision model", "Load CLIP Vision"),
    "CONDITIONING": (_is_conditioning, "a CONDITIONING", "a CLIP Text Encode output"),
    "IMAGE": (lambda v: isinstance(v, torch.Tensor), "an IMAGE", "an IMAGE output such as VAE Decode"),
    "LATENT": (lambda v: isinstance(v, dict) and isinstance(v.get("samples"), torch.Tensor), "a LATENT",
               "a LATENT output such as AID Sampler"),
    "NOISE": (lambda v: hasattr(v, "generate_noise"), "a NOISE", "AID Latent's noise output"),
    "AID_SCHEDULE": (_instance_of("..samplers.sequence.schedule", "InterpolationSchedule"), "an AID schedule", "AID Schedule"),
    "AID_GUIDANCE": (_instance_of("..samplers.sequence.conditioning", "Guidance"), "a PAID guidance", "PAID Guidance"),
    "AID_IPADAPTER": (_instance_of("..attention.image_prompt", "IPAdapter"), "an IP-Adapter",
                      "AID IP-Adapter Loader"),
    "AID_IMAGE_ENDPOINTS": (_instance_of("..attention.image_prompt", "ImageEndpoints"), "image endpoints",
                            "AID IP-Adapter Endpoints"),
    "AID_CLIP_SCORER": (_instance_of("..scoring.clip_scorer", "CLIPScorer"), "a CLIP scorer",
                        "AID CLIP Scorer Loader"),
    "AID_DISTANCES": (_instance_of("..scoring.metrics", "SequenceDistances"), "sequence distances",
                      "AID Sequence Report or AID Smooth Sampler"),
    "AID_INVERSION": (_instance_of("..samplers.editing.inversion", "Inversion"), "an inversion", "AID Invert Image"),
    "AID_SHARE": (_instance_of("..samplers.sequence.shares", "ShareSpec"), "a sequence share", "AID Sequence Share"),
    "AID_REGIONS": (_instance_of("..samplers.regions.layout", "RegionLayout"), "a region list",
                    "Spatial-Temporal Region, Typed Layout or Auto Layout"),
    "AID_REGION_WEIGHTS": (_instance_of("..samplers.regions.weights", "RegionWeights"), "region weights",
                           "Spatial-Temporal Weights or the weight optimiser"),
    "AID_KEYFRAMES": (_instance_of("..samplers.keyframes.plan", "Keyframes"), "keyframes",
                      "AID Keyframes or AID Keyframe"),
    "AID_IMAGE_KEYS": (_instance_of("..attention.image_prompt", "ImageKeys"), "image keys", "AID IP-Adapter Keys"),
    "AID_KEYFRAME_SCHEDULE": (_instance_of("..samplers.keyframes.plan", "Timeline"), "a keyframe schedule",
                              "AID Keyframe Sampler's schedule output"),
}


def _plain_data(value) -> bool:
    """True for what a JSON prompt can hold (numbers, strings, lists, dicts of them): never a real socket value."""
    if isinstance(value, JSON_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain_data(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_data(v) for k, v in value.items())
    return False


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


def check_socket(node: str, input_name: str, socket_type: str, value) -> None:
    """Refuse a socket value that is not of its declared type (unknown types: refuse plain JSON data).

    A socket taking several types ("AID_SCHEDULE,AID_KEYFRAME_SCHEDULE", as ComfyUI writes them) takes
    a value of any of them."""
    if "," in socket_type:
        kinds = [kind.strip() for kind in socket_type.split(",") if kind.strip()]
        known = [SOCKETS[kind] for kind in kinds if kind in SOCKETS]
        if len(known) == len(kinds) and not any(check(value) for check, _, _ in known):
            raise AIDInputError(node, input_name, f"got a {_describe(value)}, not {' or '.join(w for _, w, _ in known)}.",
                                f"connect {' or '.join(s for _, _, s in known)}.")
        if len(known) == len(kinds) or not _plain_data(value):
            return
    check, what, source = SOCKETS.get(socket_type, (lambda v: not _plain_data(v), f"a {socket_type}",
                                                     f"a {socket_type} output"))
    if not check(value):
        raise AIDInputError(node, input_name, f"got a {_describe(value)}, not {what}.", f"connect {source}.")


def check_finite(node: str, input_name: str, value) -> None:
    """Refuse NaN and infinite numbers in a FLOAT widget."""
    if isinstance(value, (int, float)) and not math.isfinite(value):
        raise AIDInputError(node, input_name, f"{value} is not a finite number.", "type a number.")


def _input_kinds(node_class) -> dict:
    """input name -> ('FLOAT' or a socket type, required?) from INPUT_TYPES; other widgets are left out."""
    declared = node_class.INPUT_TYPES()
    kinds = {}
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            kind = spec[0] if isinstance(spec, (list, tuple)) and spec else None
            if isinstance(kind, str) and kind not in ("INT", "STRING", "BOOLEAN", "COMBO", "*"):
                kinds[name] = (kind, section == "required")
    return kinds


def guard_node_inputs(node_class, node_name: str) -> None:
    """Wrap node_class.FUNCTION so its socket and FLOAT inputs are checked first (idempotent)."""
    original = getattr(node_class, node_class.FUNCTION)
    if getattr(original, "aid_input_guard", False):
        return
    kinds = {}

    @functools.wraps(original)
    def guarded(self, *args, **kwargs):
        if not kinds:
            kinds.update(_input_kinds(node_class) or {"": ("", False)})
        for name, value in kwargs.items():
            kind, required = kinds.get(name, (None, False))
            if kind == "FLOAT":
                check_finite(node_name, name, value)
            elif kind is not None and (value is not None or required):
                check_socket(node_name, name, kind, value)
        return original(self, *args, **kwargs)

    guarded.aid_input_guard = True
    setattr(node_class, node_class.FUNCTION, guarded)
