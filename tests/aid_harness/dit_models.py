"""Random-weight diffusion transformers (Flux, SD3/SD3.5, Qwen-Image) and their stand-in files.

In-process: ComfyUI's own model classes at tiny widths (``tiny_dit_model(family)``), built through
``comfy.supported_models`` like ``models.tiny_sdxl_model``; the CONDITIONING the tests give them is
built at each model's context width (``dit_conditioning``), since the real text encoders (T5-XXL,
CLIP-G, Qwen2.5-VL) are far too big to build.

Files in the real key layouts the core loaders detect (cached like every model in models.py):
- a Flux.1-dev diffusion model for UNETLoader (``ensure_flux_diffusion_model``). Detection fixes 24
  heads of 128 channels (comfy/model_detection.py), so it is full width (3072) with one double and
  one single block; depth, channels and context width are read from the shapes.
- an SD3.5-medium-style checkpoint for CheckpointLoaderSimple (``ensure_sd35_checkpoint``): MMDiT
  detection reads everything from shapes (width = 64 x depth), so it is 2 blocks deep, 128 wide, with
  SD3.5's image-only attention in block 0, plus the 16-channel VAE.
- the 16-channel VAE (Flux ``ae.safetensors`` layout) for VAELoader, a CLIP-L text encoder file, and a
  T5 file whose depth and feed-forward width are tiny (its model width stays 4096, the width Flux and
  SD3 read); the T5 file only loads with the matching config override (``TINY_T5_CONFIG``), which the
  test-only loader node of the DiT workflow tests passes (the real T5-XXL has 4.7B parameters).
"""
from __future__ import annotations

import time

import torch

from . import models

VERSION = "v1"

# ---------------------------------------------------------------------------------------------
# tiny in-process models
# ---------------------------------------------------------------------------------------------

CONTEXT_WIDTH = 64  # text context width of the tiny in-process models

#: Flux.1-dev layout (guidance embedding, CLIP-L pooled 768) at width 64: 2 heads of 32, 2 double + 2 single.
TINY_FLUX = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16,
             "vec_in_dim": 768, "context_in_dim": CONTEXT_WIDTH, "hidden_size": 64, "mlp_ratio": 4.0,
             "num_heads": 2, "depth": 2, "depth_single_blocks": 2, "axes_dim": [8, 12, 12], "theta": 10000,
             "patch_size": 2, "qkv_bias": True}
#: SD3.5-medium layout (RMS qk-norm, an image-only attention in block 0, pooled CLIP-L+G 2048) at depth 2.
TINY_SD3 = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
            "pos_embed_scaling_factor": None, "adm_in_channels": 2048,
            "context_embedder_config": {"target": "torch.nn.Linear",
                                        "params": {"in_features": CONTEXT_WIDTH, "out_features": 128}},
            "num_patches": 256, "pos_embed_max_size": 16, "qk_norm": "rms", "x_block_self_attn_layers": [0]}
#: Qwen-Image layout at width 64: 2 heads of 32, 2 blocks.
TINY_QWEN_IMAGE = {"image_model": "qwen_image", "in_channels": 64, "out_channels": 16, "num_layers": 2,
                   "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": CONTEXT_WIDTH,
                   "axes_dims_rope": (8, 12, 12)}

TINY_CONFIGS = {"flux": ("Flux", TINY_FLUX), "sd3": ("SD3", TINY_SD3), "qwen_image": ("QwenImage", TINY_QWEN_IMAGE)}
POOLED_WIDTH = {"flux": 768, "sd3": 2048, "qwen_image": None}
_TINY_CACHE: dict = {}


@torch.no_grad()
def _randomize(diffusion_model, salt: str) -> None:
    models.randomize_module_(diffusion_model, salt=salt)
    for name, buffer in diffusion_model.named_buffers():  # SD3's position table is an uninitialised buffer
        if name.endswith("pos_embed"):
            buffer.copy_(models.random_tensor(name, buffer.shape, salt=salt, dtype=torch.float32))


def tiny_dit_model(family: str, dtype=torch.float32):
    """A fresh ModelPatcher around a random tiny `family` model ("flux", "sd3", "qwen_image").

    Built in-process through comfy.supported_models (no detection); each call returns a new model with
    identical weights. Only the transformer's parameters (and SD3's position table) are random.
    """
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    class_name, config = TINY_CONFIGS[family]
    model_config = getattr(comfy.supported_models, class_name)(dict(config))
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    key = (family, str(dtype))
    if key not in _TINY_CACHE:
        started = time.perf_counter()
        _randomize(model.diffusion_model, f"tiny-{family}")
        _TINY_CACHE[key] = {k: v.clone() for k, v in model.diffusion_model.state_dict().items()}
        models.BUILD_LOG.append({"name": f"tiny-{family} (in-process)", "path": None, "built": True,
                                 "seconds": time.perf_counter() - started, "bytes": 0})
    else:
        model.diffusion_model.load_state_dict(_TINY_CACHE[key])
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def dit_conditioning(family: str, seed: int = 0, tokens: int = 8, width: int = CONTEXT_WIDTH, **options) -> list:
    """Hand-made CONDITIONING for a `family` model: a context [1, tokens, width] and the pooled vector it needs."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(1, tokens, width, generator=generator)
    extra = dict(options)
    pooled = POOLED_WIDTH[family]
    if pooled is not None:
        extra["pooled_output"] = torch.randn(1, pooled, generator=generator)
    return [[context, extra]]


# ---------------------------------------------------------------------------------------------
# files in the real layouts
# ---------------------------------------------------------------------------------------------

#: What comfy/model_detection.py reads for Flux at the smallest depth (width fixed by 24 heads x 128).
FLUX_FILE_CONFIG = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16,
                    "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0,
                    "num_heads": 24, "depth": 1, "depth_single_blocks": 1, "axes_dim": [16, 56, 56],
                    "theta": 10000, "patch_size": 2, "qkv_bias": True}
#: SD3.5-medium layout at depth 2 (128 wide): image-only attention in block 0, 4096-wide T5 context.
SD35_FILE_CONFIG = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
                    "pos_embed_scaling_factor": None, "adm_in_channels": 2048,
                    "context_embedder_config": {"target": "torch.nn.Linear",
                                                "params": {"in_features": 4096, "out_features": 128}},
                    "num_patches": 256, "pos_embed_max_size": 16, "qk_norm": "rms", "x_block_self_attn_layers": [0]}
#: The 16-channel AutoencoderKL of Flux and SD3 (comfy/sd.py VAE, ddconfig with z_channels 16).
VAE16_DDCONFIG = dict(models.VAE_DDCONFIG, z_channels=16)
#: T5 with the model width Flux and SD3 read (4096) but one block and a tiny feed-forward, for model_options
#: {"t5xxl_model_config": TINY_T5_CONFIG} (comfy/sd1_clip.py SDClipModel merges it into T5-XXL's config).
TINY_T5_CONFIG = {"num_layers": 1, "d_ff": 32, "num_heads": 2}


def flux_diffusion_model_name() -> str:
    return f"aid-random-flux1-dev-d1s1-{VERSION}.safetensors"


def sd35_checkpoint_name() -> str:
    return f"aid-random-sd35-medium-d2-{VERSION}.safetensors"


def vae16_name() -> str:
    return f"aid-random-vae16-{VERSION}.safetensors"


def clip_l_name() -> str:
    return f"aid-random-clip_l-{VERSION}.safetensors"


def tiny_t5_name() -> str:
    return f"aid-random-t5-d4096-tiny-{VERSION}.safetensors"


def _meta_state_shapes(module) -> dict:
    return {name: tensor for name, tensor in module.state_dict().items()}


def flux_state_dict(dtype=torch.float16) -> dict:
    """Flux diffusion-model keys (no prefix, as the released flux1-dev.safetensors) with seeded random values."""
    import comfy.ops
    from comfy.ldm.flux.model import Flux

    config = {k: v for k, v in FLUX_FILE_CONFIG.items() if k != "image_model"}
    with torch.device("meta"):
        module = Flux(**config, operations=comfy.ops.disable_weight_init)
    return models.random_state_dict(_meta_state_shapes(module), "flux-d1s1", dtype)


def _vae16_module():
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    with torch.device("meta"):
        return AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": VAE16_DDCONFIG},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": VAE16_DDCONFIG})


def vae16_state_dict(dtype=torch.float16) -> dict:
    """Keys of Flux's ae.safetensors (encoder.*, decoder.*; no quant convs) with seeded random values."""
    return models.random_state_dict(_meta_state_shapes(_vae16_module()), "vae16", dtype)


def ensure_flux_diffusion_model():
    """Flux.1-dev diffusion model (1 double + 1 single block, full width) under models/diffusion_models."""
    path = models.model_path("diffusion_models", flux_diffusion_model_name())
    return models._ensure_file("flux-d1s1", path, lambda tmp: models._save_safetensors(flux_state_dict(), tmp))


def ensure_vae16():
    """16-channel VAE in Flux's ae.safetensors layout under models/vae (~84M parameters)."""
    path = models.model_path("vae", vae16_name())
    return models._ensure_file("vae16", path, lambda tmp: models._save_safetensors(vae16_state_dict(), tmp))


def ensure_sd35_checkpoint():
    """SD3.5-medium-style checkpoint (model.diffusion_model.* + first_stage_model.*) under models/checkpoints."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    path = models.model_path("checkpoints", sd35_checkpoint_name())

    def write(tmp):
        with torch.device("meta"):
            module = OpenAISignatureMMDITWrapper(**SD35_FILE_CONFIG, operations=comfy.ops.disable_weight_init)
        shapes = _meta_state_shapes(module)
        state = {f"model.diffusion_model.{k}": v for k, v in models.random_state_dict(shapes, "sd35-d2").items()}
        state.update({f"first_stage_model.{k}": v for k, v in vae16_state_dict().items()})
        models._save_safetensors(state, tmp)

    return models._ensure_file("sd35-medium-d2", path, write)


def ensure_clip_l():
    """CLIP-L text encoder (text_model.* keys, as clip_l.safetensors) under models/text_encoders."""
    path = models.model_path("text_encoders", clip_l_name())

    def write(tmp):
        from comfy import sd1_clip

        clip = sd1_clip.SDClipModel(device="meta")
        shapes = {k: v for k, v in clip.transformer.state_dict().items() if v.ndim > 0 or "logit_scale" not in k}
        models._save_safetensors(models.random_state_dict(shapes, "clip_l"), tmp)

    return models._ensure_file("clip_l", path, write)


def ensure_tiny_t5():
    """A T5 encoder file at width 4096 with TINY_T5_CONFIG's depth (loads only with that config override)."""
    path = models.model_path("text_encoders", tiny_t5_name())

    def write(tmp):
        import comfy.text_encoders.sd3_clip as sd3_clip

        t5 = sd3_clip.T5XXLModel(device="meta", model_options={"t5xxl_model_config": TINY_T5_CONFIG})
        models._save_safetensors(models.random_state_dict(t5.transformer.state_dict(), "t5-tiny"), tmp)

    return models._ensure_file("t5-d4096-tiny", path, write)


MODELS = {
    "flux-d1s1": ensure_flux_diffusion_model,
    "sd35-medium-d2": ensure_sd35_checkpoint,
    "vae16": ensure_vae16,
    "clip_l": ensure_clip_l,
    "t5-d4096-tiny": ensure_tiny_t5,
}


def register_stand_in_dual_clip_loader(name: str) -> None:
    """Register `name` in the host: core DualCLIPLoader loading T5 with TINY_T5_CONFIG (so the tiny T5 loads).

    Only runs with random stand-ins use it (example_workflows.use_stand_in_text_encoders); registering
    twice is a no-op.
    """
    import comfy.sd
    import folder_paths
    import nodes

    if name in nodes.NODE_CLASS_MAPPINGS:
        return

    class StandInDualCLIPLoader(nodes.DualCLIPLoader):
        def load_clip(self, clip_name1, clip_name2, type, device="default"):
            paths = [folder_paths.get_full_path_or_raise("text_encoders", n) for n in (clip_name1, clip_name2)]
            clip_type = getattr(comfy.sd.CLIPType, type.upper())
            return (comfy.sd.load_clip(ckpt_paths=paths, embedding_directory=folder_paths.get_folder_paths("embeddings"),
                                       clip_type=clip_type, model_options={"t5xxl_model_config": TINY_T5_CONFIG}),)

    nodes.NODE_CLASS_MAPPINGS[name] = StandInDualCLIPLoader
