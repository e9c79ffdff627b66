"""Which installer puts interpolated attention on a MODEL: UNet replace patches or the DiT joint-attention override.

samplers/sequence/sampler.py asks this registry instead of knowing model families itself; a new family gets
its installer module and one entry here.
"""
from __future__ import annotations

from .install import UnsupportedModelError, install_interpolation, transformer_block_keys
from .install_dit import DitFamily, dit_family, install_joint_interpolation
from .patch import InterpolationSettings

SUPPORTED_MODELS = ("SD1.x, SD2.x and SDXL-family checkpoints (UNet), Flux.1 (dev, schnell, Kontext, Fill), "
                    "SD3 / SD3.5 and Qwen-Image")


def model_family(model) -> DitFamily | None:
    """The DiT family of a MODEL, None for a UNet; UnsupportedModelError for anything else."""
    family = dit_family(model)
    if family is not None:
        return family
    if transformer_block_keys(model.model.diffusion_model):
        return None
    raise UnsupportedModelError(f"this model ({type(model.model).__name__}) is not one AID can interpolate. "
                                f"Supported: {SUPPORTED_MODELS}.")


def install_for_model(model, settings: InterpolationSettings, layers: str = "self and cross", blocks: str = "all",
                      image_branches: dict | None = None) -> DitFamily | None:
    """Install interpolated attention on `model` (a ModelPatcher clone) the way its family needs it.

    Returns the DiT family (None for a UNet). `blocks` chooses DiT block types and does not apply to
    UNets; IP-Adapter `image_branches` exist for UNets only.
    """
    family = model_family(model)
    if family is None:
        install_interpolation(model, settings, layers, image_branches=image_branches)
        return None
    if image_branches:
        raise UnsupportedModelError(f"IP-Adapter image endpoints work on SD1.x and SDXL UNets, not on "
                                    f"{family.name}.")
    install_joint_interpolation(model, family, settings, layers, blocks)
    return family
