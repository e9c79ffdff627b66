"""A small fingerprint of a MODEL: enough to tell that a recording was made with another model.

An inversion trajectory only fits the model it was recorded with (samplers/editing/inversion.py). The
fingerprint holds the model family and prediction type, a checksum of a few of its base weights
(read from the patcher's backup where weights are patched in place, so loaded and unloaded states
agree) and a digest of its weight patches (LoRAs and their strengths). AID's own attention patches
are not weight patches, so a model and its Apply AID clone have the same fingerprint.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

SAMPLED_WEIGHTS = 8  # base weight tensors checksummed, evenly spaced over the diffusion model's parameters
VALUES_PER_WEIGHT = 4096


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the model a trajectory was recorded with."""

    family: str  # e.g. "BaseModel (EPS)"
    weights: str  # checksum of sampled base weights
    weight_patches: str  # digest of the weight patches ("" without any)

    def difference(self, other: "ModelFingerprint") -> str | None:
        """How `other` differs from this one, in words; None when they match."""
        if self.family != other.family:
            return f"it was recorded with a {self.family} model and this model is {other.family}"
        if self.weights != other.weights:
            return "it was recorded with another checkpoint (the model weights differ)"
        if self.weight_patches != other.weight_patches:
            return ("it was recorded with other weight patches (a LoRA or model merge added, removed or at another "
                    "strength)")
        return None


def model_fingerprint(model) -> ModelFingerprint:
    """The fingerprint of a ComfyUI ModelPatcher."""
    base = model.model
    model_type = getattr(getattr(base, "model_type", None), "name", "?")
    return ModelFingerprint(family=f"{type(base).__name__} ({model_type})", weights=_weights_checksum(model),
                            weight_patches=_patches_digest(getattr(model, "patches", {})))


def _weights_checksum(model) -> str:
    import torch

    named = [(name, tensor) for name, tensor in model.model.named_parameters() if name.startswith("diffusion_model.")]
    if not named:
        return f"object {id(model.model)}"
    picks = sorted({round(i * (len(named) - 1) / max(SAMPLED_WEIGHTS - 1, 1)) for i in range(SAMPLED_WEIGHTS)})
    backup = getattr(model, "backup", {}) or {}
    digest = hashlib.sha1()
    try:
        for index in picks:
            name, tensor = named[index]
            if name in backup:  # patched in place while loaded: the original weight is kept here
                tensor = backup[name].weight
            flat = tensor.detach().reshape(-1)
            stride = max(1, flat.numel() // VALUES_PER_WEIGHT)
            values = flat[::stride][:VALUES_PER_WEIGHT].to("cpu", torch.float64)
            digest.update(f"{name}:{tuple(tensor.shape)}:{float(values.sum()):.9e}:{float(values.abs().sum()):.9e}"
                          .encode())
    except (RuntimeError, TypeError, NotImplementedError):  # quantised or custom weight types: fall back to identity
        return f"object {id(model.model)}"
    return digest.hexdigest()[:16]


def _patches_digest(patches: dict) -> str:
    if not patches:
        return ""
    digest = hashlib.sha1()
    for key in sorted(patches):
        strengths = []
        for patch in patches[key]:
            if isinstance(patch, (tuple, list)) and len(patch) >= 3:
                strengths.append(f"{float(patch[0]):.6g}/{float(patch[2]):.6g}")
        digest.update(f"{key}:{','.join(strengths)};".encode())
    return digest.hexdigest()[:16]
