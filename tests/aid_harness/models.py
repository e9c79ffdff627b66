"""Seeded random-weight models in the real file layouts that ComfyUI's loaders detect.

No test machine can download weights, so every model the tests need is *built*: the
tensor names and shapes are those of the real releases (taken from ComfyUI's own modules,
instantiated on the ``meta`` device, or from the published key layouts), and the values
are drawn from a fixed seed.  Every machine therefore builds byte-identical files.

Files are cached under ``cache_dir()/models/<ComfyUI folder>/<file>`` (``cache_dir()`` =
``$AID_CACHE_DIR`` or ``<repo>/.cache``), built once, written atomically (temp file in the
same folder + ``os.replace``) and versioned in their names (``-v1``): change a builder ->
bump ``VERSION`` (or the file's own tag) so a new file is made instead of reusing a stale one.

Value recipe (comfyui-host.md 7.6): weights ~ N(0, 1/fan_in) with fan_in = prod(shape[1:]),
biases 0, 1-D/scalar params (norm scales, ...) 1; other multi-dimensional parameters
(learned queries, class embeddings) ~ N(0, 1/shape[-1]).  Each tensor gets its own
generator seeded from ``sha256(seed, salt, name)``, so values do not depend on the order
in which tensors are created.  fp16 storage (ComfyUI computes in fp32 on CPU).

This module imports ComfyUI lazily: it can be imported before ComfyUI is; the builders
expect ``comfy`` to be importable already (ComfyUI root on ``sys.path`` and
``comfy.cli_args.args.cpu = True`` set before ``comfy.model_management`` is imported).

CLI: ``python tests/aid_harness/models.py [--all | --list | NAME ...]`` builds the default
set (or the named models) and prints what it built or found.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION = "v1"
SEED = 20241017  # base seed of every random model; part of the per-tensor seed

# --------------------------------------------------------------------------------------
# cache locations and bookkeeping
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$AID_CACHE_DIR`` or ``<repo>/.cache``."""
    env = os.environ.get("AID_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"


def models_dir() -> Path:
    """``cache_dir()/models`` - laid out like ComfyUI's ``models/`` folder."""
    return cache_dir() / "models"


def model_path(folder: str, name: str) -> Path:
    """``models_dir()/<folder>/<name>`` (folder = ComfyUI model folder name)."""
    return models_dir() / folder / name


#: One record per ensure_* call in this process: dicts with keys
#: name, path, built (False = found in the cache), seconds, bytes.
BUILD_LOG: list[dict] = []


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _record(name: str, path: Path, built: bool, seconds: float) -> Path:
    BUILD_LOG.append(
        {"name": name, "path": path, "built": built, "seconds": seconds, "bytes": _size(path)}
    )
    return path


def _ensure_file(name: str, path: Path, write) -> Path:
    """Return ``path``; if absent, call ``write(tmp_path)`` and move the result into place."""
    if path.exists():
        return _record(name, path, False, 0.0)
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return _record(name, path, True, time.perf_counter() - t0)


def _ensure_dir(name: str, path: Path, write) -> Path:
    """Like ``_ensure_file`` for a folder: ``write(tmp_dir)`` then rename it into place."""
    if path.exists():
        return _record(name, path, False, 0.0)
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.exists():  # a concurrent builder that won the race is fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _record(name, path, True, time.perf_counter() - t0)


def _save_safetensors(sd: dict, path: str) -> None:
    from safetensors.torch import save_file

    # One metadata entry only: safetensors writes the metadata map in hash order, so
    # several entries would make the bytes differ from run to run.
    save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})


def _torch_save(obj, path: str) -> None:
    # Through a file object: given a path, torch.save names the zip's root folder after
    # the (random) temp file name, which would make every build's bytes different.
    with open(path, "wb") as fh:
        torch.save(obj, fh)


# --------------------------------------------------------------------------------------
# seeded random values
# --------------------------------------------------------------------------------------


def _tensor_seed(salt: str, name: str, seed: int = SEED) -> int:
    digest = hashlib.sha256(f"{seed}/{salt}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_tensor(name: str, shape, salt: str = "", dtype=torch.float16, seed: int = SEED) -> torch.Tensor:
    """The deterministic random value of parameter ``name`` (see module docstring)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return torch.ones((), dtype=dtype)
    if len(shape) == 1:
        fill = 0.0 if name.endswith("bias") else 1.0
        return torch.full(shape, fill, dtype=dtype)
    if name.endswith("weight"):
        fan_in = math.prod(shape[1:])
    else:  # learned queries, embeddings stored as bare parameters
        fan_in = shape[-1]
    gen = torch.Generator().manual_seed(_tensor_seed(salt, name, seed))
    out = torch.empty(shape, dtype=torch.float32).normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
    return out.to(dtype)


def random_state_dict(shapes, salt: str = "", dtype=torch.float16, seed: int = SEED) -> dict:
    """``{name: random_tensor(...)}`` for a ``{name: shape}`` dict or a (meta) state dict."""
    out = {}
    for name, shape in shapes.items():
        if isinstance(shape, torch.Tensor):
            if not shape.dtype.is_floating_point:
                raise ValueError(f"non-float tensor {name} ({shape.dtype}) needs explicit handling")
            shape = shape.shape
        out[name] = random_tensor(name, shape, salt=salt, dtype=dtype, seed=seed)
    return out


@torch.no_grad()
def randomize_module_(module: torch.nn.Module, salt: str = "", seed: int = SEED) -> torch.nn.Module:
    """Overwrite every *parameter* of ``module`` in place (buffers are left alone)."""
    for name, p in module.named_parameters():
        p.copy_(random_tensor(name, p.shape, salt=salt, dtype=torch.float32, seed=seed))
    return module


def _meta_shapes(module: torch.nn.Module) -> dict:
    return {k: v for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------
# 1. SD1.5 checkpoints
# --------------------------------------------------------------------------------------

_UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}

#: Real SD1.5 UNet (same values as ComfyUI's model_detection SD15 config).
SD15_UNET_FULL = {
    **_UNET_COMMON,
    "adm_in_channels": None,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
}

#: One-level SD1.5-detected UNet (~26M params): blocks input 1, middle 0, output 0 and 1.
SD15_UNET_TINY = {
    **_UNET_COMMON,
    "adm_in_channels": None,
    "model_channels": 320,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "channel_mult": [1],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1],
}

SD15_UNET_CONFIGS = {"tiny": SD15_UNET_TINY, "full": SD15_UNET_FULL}

#: SD/SDXL AutoencoderKL (ComfyUI sd.py default ddconfig).
VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}


def sd15_checkpoint_name(size: str = "tiny") -> str:
    """File name (relative to models/checkpoints) of ``ensure_sd15_checkpoint(size)``."""
    return f"aid-random-sd15-{size}-{VERSION}.safetensors"


def _meta_unet(unet_config: dict):
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(**unet_config, device="meta", operations=comfy.ops.disable_weight_init)


def build_sd15_state_dict(size: str = "tiny", dtype=torch.float16) -> dict:
    """The full checkpoint state dict (UNet + CLIP-L + VAE, ComfyUI/ldm key names)."""
    import comfy.model_detection
    import comfy.supported_models
    from comfy.ldm.models.autoencoder import AutoencoderKL

    cfg = dict(SD15_UNET_CONFIGS[size])
    mc = comfy.model_detection.model_config_from_unet_config(cfg)
    if type(mc) is not comfy.supported_models.SD15:
        raise RuntimeError(f"SD1.5 {size} config detected as {type(mc).__name__}, not SD15")

    unet = _meta_unet(mc.unet_config)
    sd = mc.process_unet_state_dict_for_saving(random_state_dict(_meta_shapes(unet), f"sd15-{size}/unet", dtype))
    del unet

    clip = mc.clip_target().clip(device="meta")
    clip_shapes = {k: v for k, v in clip.state_dict().items() if v.ndim > 0 or "logit_scale" not in k}
    clip_sd = random_state_dict(clip_shapes, "sd15/clip_l", dtype)  # shared by tiny and full
    sd.update(mc.process_clip_state_dict_for_saving(clip_sd))
    del clip

    with torch.device("meta"):
        vae = AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    sd.update(mc.process_vae_state_dict_for_saving(random_state_dict(_meta_shapes(vae), "sd15/vae", dtype)))
    return sd


def ensure_sd15_checkpoint(size: str = "tiny") -> Path:
    """SD1.5 checkpoint (UNet + CLIP-L + VAE) detected by CheckpointLoaderSimple as SD15.

    size "tiny": one UNet level at 320 channels (comfyui-host.md 7.6), ~465 MB;
    size "full": the real SD1.5 architecture, ~2.1 GB.  Returns the path under
    models/checkpoints; the checkpoint name for loaders is ``sd15_checkpoint_name(size)``.
    """
    if size not in SD15_UNET_CONFIGS:
        raise ValueError(f"size must be one of {sorted(SD15_UNET_CONFIGS)}")
    path = model_path("checkpoints", sd15_checkpoint_name(size))

    def write(tmp):
        _save_safetensors(build_sd15_state_dict(size), tmp)

    return _ensure_file(f"sd15-{size}", path, write)


# --------------------------------------------------------------------------------------
# 2. tiny SDXL (in-process)
# --------------------------------------------------------------------------------------

#: SDXL-family UNet with the real SDXL block numbering (input 4,5,7,8 / middle 0 /
#: output 0-5 carry transformers) but 64 base channels and depths 1/2:
#: input 4,5 depth 1 (2 heads), input 7,8 depth 2 (4 heads), middle depth 2,
#: output 0-2 depth 2, output 3-5 depth 1; context 2048, ADM 2816, linear proj_in.
TINY_SDXL_UNET = {
    **_UNET_COMMON,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "model_channels": 64,
    "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 0, 1, 1, 2, 2],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2],
    "transformer_depth_middle": 2,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
}

_TINY_SDXL_CACHE: dict = {}


def tiny_sdxl_unet_config() -> dict:
    """A copy of the tiny SDXL UNet config (before SDXL's extra config is merged in)."""
    return json.loads(json.dumps(TINY_SDXL_UNET))


def tiny_sdxl_model(dtype=torch.float32):
    """A fresh ModelPatcher around a random tiny SDXL-family model (``model_base.SDXL``).

    Built in-process through ``comfy.supported_models.SDXL(config)`` (no detection), fp32,
    ~30M UNet params; encode_adm maps pooled_output [B,1280] to y [B,2816].  Only the
    diffusion model's parameters are randomised (model_sampling buffers stay intact).
    Each call returns a new, independent model with identical weights.
    """
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    mc = comfy.supported_models.SDXL(tiny_sdxl_unet_config())
    mc.set_inference_dtype(dtype, None)
    model = mc.get_model({})
    key = str(dtype)
    if key not in _TINY_SDXL_CACHE:
        t0 = time.perf_counter()
        randomize_module_(model.diffusion_model, salt="tiny-sdxl/unet")
        _TINY_SDXL_CACHE[key] = {k: v.clone() for k, v in model.diffusion_model.state_dict().items()}
        BUILD_LOG.append({"name": "tiny-sdxl (in-process)", "path": None, "built": True,
                          "seconds": time.perf_counter() - t0, "bytes": 0})
    else:
        model.diffusion_model.load_state_dict(_TINY_SDXL_CACHE[key])
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def sdxl_conditioning(seed: int = 0, tokens: int = 77, batch: int = 1) -> list:
    """Hand-made SDXL CONDITIONING: ``[[randn(batch,tokens,2048), {"pooled_output": randn(batch,1280)}]]``."""
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, tokens, 2048, generator=gen)
    pooled = torch.randn(batch, 1280, generator=gen)
    return [[cond, {"pooled_output": pooled}]]


# --------------------------------------------------------------------------------------
# cross-attention layer enumeration (IP-Adapter numbering order)
# --------------------------------------------------------------------------------------


def unet_cross_attention_layers(unet) -> list[dict]:
    """Every cross-attention (attn2) layer of a ComfyUI UNetModel, in IP-Adapter order.

    ``unet`` is a UNetModel (any device, meta is fine) or a unet_config dict.  Order =
    diffusers' attention-processor order used by IP-Adapter files and IPAdapter_plus
    (comfyui-host.md 6.2): input blocks ascending, output blocks ascending, then middle;
    inside a block by transformer index.  Each entry: ``ip_key`` (the ``n`` of
    ``ip_adapter.{n}.to_k_ip.weight``, = 2*j+1), ``block`` ("input"/"middle"/"output"),
    ``number`` (key number; middle is 0), ``index`` (block_index), ``inner_dim``,
    ``context_dim``, ``heads``, ``dim_head``.
    """
    from comfy.ldm.modules.attention import SpatialTransformer

    if isinstance(unet, dict):
        unet = _meta_unet(unet)

    groups = [("input", i, b) for i, b in enumerate(unet.input_blocks)]
    groups += [("output", i, b) for i, b in enumerate(unet.output_blocks)]
    if unet.middle_block is not None:
        groups.append(("middle", 0, unet.middle_block))
    layers = []
    for block, number, mod in groups:
        for st in (m for m in mod.modules() if isinstance(m, SpatialTransformer)):
            for index, tb in enumerate(st.transformer_blocks):
                layers.append({
                    "ip_key": 2 * len(layers) + 1,
                    "block": block,
                    "number": number,
                    "index": index,
                    "inner_dim": tb.attn2.to_k.weight.shape[0],
                    "context_dim": tb.attn2.to_k.weight.shape[1],
                    "heads": tb.n_heads,
                    "dim_head": tb.d_head,
                })
    return layers


#: Inner dims of the tiny SDXL's 17 attn2 layers in IP-Adapter order: input 4,5 (1 x 128
#: each), 7,8 (2 x 256 each); output 0-2 (2 x 256 each), 3-5 (1 x 128 each); middle (2 x 256).
#: (tests check this against ``unet_cross_attention_layers`` of the real model)
TINY_SDXL_IP_LAYERS = [128] * 2 + [256] * 4 + [256] * 6 + [128] * 3 + [256] * 2


def tiny_sdxl_ipadapter_layers() -> list[int]:
    """Per-layer inner dims of ``tiny_sdxl_model()``'s 17 attn2 layers, in IP-Adapter order."""
    return list(TINY_SDXL_IP_LAYERS)


# --------------------------------------------------------------------------------------
# 3. CLIP vision ViT-H
# --------------------------------------------------------------------------------------

CLIP_VISION_VIT_H_NAME = f"aid-random-{VERSION}-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"


def _comfy_file(*parts) -> Path:
    import comfy.utils  # `comfy` is a namespace package: locate it through a module

    return Path(comfy.utils.__file__).resolve().parent.joinpath(*parts)


def ensure_clip_vision_vit_h() -> Path:
    """Random CLIP vision ViT-H/14 (HF key names ``vision_model.encoder.layers.N...``, 32
    layers, hidden 1280, projection 1024) under models/clip_vision, fp16, ~1.26 GB.

    The file name contains ``CLIP-ViT-H-14-laion2B-s32B-b79K`` so IPAdapter_plus' ViT-H
    preset regex finds it.  Names/shapes come from ComfyUI's ``CLIPVisionModelProjection``
    built from ``comfy/clip_vision_config_h.json`` (identical to transformers'
    CLIPVisionModelWithProjection names).
    """
    path = model_path("clip_vision", CLIP_VISION_VIT_H_NAME)

    def write(tmp):
        import comfy.clip_model
        import comfy.ops

        config = json.loads(_comfy_file("clip_vision_config_h.json").read_text())
        model = comfy.clip_model.CLIPVisionModelProjection(config, torch.float16, "meta", comfy.ops.manual_cast)
        _save_safetensors(random_state_dict(_meta_shapes(model), "clip-vision-vit-h"), tmp)

    return _ensure_file("clip-vision-vit-h", path, write)


# --------------------------------------------------------------------------------------
# 4. IP-Adapter files
# --------------------------------------------------------------------------------------

#: Inner dims of the 16 SD1.5 attn2 layers in IP-Adapter order:
#: input 1,2 (320), 4,5 (640), 7,8 (1280); output 3-5 (1280), 6-8 (640), 9-11 (320); middle.
SD15_IP_LAYERS = [320] * 2 + [640] * 2 + [1280] * 2 + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]
#: Inner dims of the 70 SDXL attn2 layers in IP-Adapter order:
#: input 4,5 (2 x 640 each), 7,8 (10 x 1280 each); output 0-2 (10 x 1280), 3-5 (2 x 640); middle (10 x 1280).
SDXL_IP_LAYERS = [640] * 4 + [1280] * 20 + [1280] * 30 + [640] * 6 + [1280] * 10

#: Per variant: UNet context dim, image projection kind and its sizes.
#: base ("ImageProjModel"): proj Linear(clip_dim -> tokens*context) + LayerNorm(context), 4 tokens,
#:   input = CLIP vision image_embeds (ViT-H: 1024).
#: plus ("Resampler"): 16 learned queries of width dim, depth 4, dim_head 64, heads 12 (SD1.5)
#:   / 20 (SDXL), ff_mult 4, input = penultimate hidden states (ViT-H: 1280), output = context.
IPADAPTER_VARIANTS = {
    "sd15": {"context_dim": 768, "proj": "linear", "clip_dim": 1024, "tokens": 4, "layers": SD15_IP_LAYERS},
    "sd15_plus": {"context_dim": 768, "proj": "resampler", "dim": 768, "heads": 12, "embed_dim": 1280,
                  "tokens": 16, "depth": 4, "dim_head": 64, "ff_mult": 4, "layers": SD15_IP_LAYERS},
    "sdxl": {"context_dim": 2048, "proj": "linear", "clip_dim": 1024, "tokens": 4, "layers": SDXL_IP_LAYERS},
    "sdxl_plus": {"context_dim": 2048, "proj": "resampler", "dim": 1280, "heads": 20, "embed_dim": 1280,
                  "tokens": 16, "depth": 4, "dim_head": 64, "ff_mult": 4, "layers": SDXL_IP_LAYERS},
}

_IPADAPTER_FILE_STEMS = {
    # official release names after the prefix, so IPAdapter_plus' preset regexes match
    "sd15": "ip-adapter_sd15",
    "sd15_plus": "ip-adapter-plus_sd15",
    "sdxl": "ip-adapter_sdxl_vit-h",
    "sdxl_plus": "ip-adapter-plus_sdxl_vit-h",
}


def ipadapter_shapes(variant: str = "sd15", layers=None) -> dict:
    """``{flat key: shape}`` of an IP-Adapter safetensors file (``image_proj.*``, ``ip_adapter.*``)."""
    v = IPADAPTER_VARIANTS[variant]
    ctx = v["context_dim"]
    shapes = {}
    if v["proj"] == "linear":
        shapes["image_proj.proj.weight"] = (v["tokens"] * ctx, v["clip_dim"])
        shapes["image_proj.proj.bias"] = (v["tokens"] * ctx,)
        shapes["image_proj.norm.weight"] = (ctx,)
        shapes["image_proj.norm.bias"] = (ctx,)
    else:
        dim, inner, ff = v["dim"], v["heads"] * v["dim_head"], v["dim"] * v["ff_mult"]
        shapes["image_proj.latents"] = (1, v["tokens"], dim)
        shapes["image_proj.proj_in.weight"] = (dim, v["embed_dim"])
        shapes["image_proj.proj_in.bias"] = (dim,)
        shapes["image_proj.proj_out.weight"] = (ctx, dim)
        shapes["image_proj.proj_out.bias"] = (ctx,)
        shapes["image_proj.norm_out.weight"] = (ctx,)
        shapes["image_proj.norm_out.bias"] = (ctx,)
        for i in range(v["depth"]):
            p = f"image_proj.layers.{i}"
            for norm in ("norm1", "norm2"):
                shapes[f"{p}.0.{norm}.weight"] = (dim,)
                shapes[f"{p}.0.{norm}.bias"] = (dim,)
            shapes[f"{p}.0.to_q.weight"] = (inner, dim)
            shapes[f"{p}.0.to_kv.weight"] = (2 * inner, dim)
            shapes[f"{p}.0.to_out.weight"] = (dim, inner)
            shapes[f"{p}.1.0.weight"] = (dim,)  # LayerNorm
            shapes[f"{p}.1.0.bias"] = (dim,)
            shapes[f"{p}.1.1.weight"] = (ff, dim)  # Linear, no bias
            shapes[f"{p}.1.3.weight"] = (dim, ff)  # Linear, no bias (index 2 = GELU)
    for j, inner_dim in enumerate(v["layers"] if layers is None else layers):
        n = 2 * j + 1
        shapes[f"ip_adapter.{n}.to_k_ip.weight"] = (int(inner_dim), ctx)
        shapes[f"ip_adapter.{n}.to_v_ip.weight"] = (int(inner_dim), ctx)
    return shapes


def ipadapter_name(variant: str = "sd15", layers=None) -> str:
    """File name (relative to models/ipadapter) of ``ensure_ipadapter(variant, layers)``."""
    base = _IPADAPTER_FILE_STEMS[variant]
    if layers is None or list(layers) == IPADAPTER_VARIANTS[variant]["layers"]:
        return f"aid-random-{VERSION}-{base}.safetensors"
    if variant.startswith("sdxl") and list(layers) == TINY_SDXL_IP_LAYERS:
        # deliberately NOT matching the official SDXL preset regexes
        return f"aid-random-{VERSION}-{base.replace('_sdxl', '_tiny-sdxl')}.safetensors"
    digest = hashlib.sha256(",".join(str(int(x)) for x in layers).encode()).hexdigest()[:10]
    return f"aid-random-{VERSION}-{base.replace('_', '_custom-' + digest + '_', 1)}.safetensors"


def build_ipadapter_state_dict(variant: str = "sd15", layers=None, dtype=torch.float16) -> dict:
    """Flat ``image_proj.*`` / ``ip_adapter.*`` state dict (fp16, seeded)."""
    return random_state_dict(ipadapter_shapes(variant, layers), f"ipadapter-{variant}", dtype)


def ensure_ipadapter(variant: str = "sd15", layers=None) -> Path:
    """IP-Adapter safetensors under models/ipadapter in the official flat key layout.

    variant: "sd15" | "sd15_plus" | "sdxl" | "sdxl_plus".  layers: per-layer inner dims in
    IP-Adapter numbering order (None = the real 16-layer SD1.5 / 70-layer SDXL layout; use
    ``tiny_sdxl_ipadapter_layers()`` for a file matching ``tiny_sdxl_model()``).
    """
    if variant not in IPADAPTER_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(IPADAPTER_VARIANTS)}")
    path = model_path("ipadapter", ipadapter_name(variant, layers))

    def write(tmp):
        _save_safetensors(build_ipadapter_state_dict(variant, layers), tmp)

    label = "ipadapter-" + variant.replace("_", "-")
    if layers is not None and list(layers) != IPADAPTER_VARIANTS[variant]["layers"]:
        if list(layers) == TINY_SDXL_IP_LAYERS:
            label = label.replace("sdxl", "tiny-sdxl")
        else:
            label += f"-{len(layers)}-layers"
    return _ensure_file(label, path, write)


def ensure_tiny_sdxl_ipadapter(plus: bool = False) -> Path:
    """IP-Adapter (SDXL ViT-H base or plus projection) whose 17 layers match ``tiny_sdxl_model()``."""
    return ensure_ipadapter("sdxl_plus" if plus else "sdxl", layers=tiny_sdxl_ipadapter_layers())


IPADAPTER_LEGACY_BIN_NAME = f"aid-random-{VERSION}-ip-adapter_sd15-legacy.bin"
MALICIOUS_BIN_NAME = f"aid-malicious-{VERSION}-ip-adapter.bin"
#: What the malicious pickle prints if (and only if) someone unpickles it unsafely.
MALICIOUS_MARKER = "AID-TEST: unsafe unpickling executed a pickled callable"


def ensure_ipadapter_bin() -> Path:
    """Legacy ``.bin`` of the SD1.5 base adapter: ``torch.save({"image_proj": {...},
    "ip_adapter": {...}})`` with plain tensors only; same values as ``ensure_ipadapter("sd15")``.
    """
    path = model_path("ipadapter", IPADAPTER_LEGACY_BIN_NAME)

    def write(tmp):
        sd = build_ipadapter_state_dict("sd15")
        nested = {"image_proj": {}, "ip_adapter": {}}
        for k, v in sd.items():
            top, rest = k.split(".", 1)
            nested[top][rest] = v
        _torch_save(nested, tmp)

    return _ensure_file("ipadapter-sd15-bin", path, write)


class _PickledCall:
    """Pickles as a call of ``print(MALICIOUS_MARKER)``: harmless, but any loader that
    unpickles it without ``weights_only=True`` runs it."""

    def __reduce__(self):
        import builtins

        return (builtins.print, (MALICIOUS_MARKER,))


def ensure_malicious_bin() -> Path:
    """A torch ``.bin`` shaped like a legacy IP-Adapter but holding a non-tensor object whose
    unpickling calls ``print`` (see ``MALICIOUS_MARKER``).  ``torch.load(..., weights_only=True)``
    must refuse it (``pickle.UnpicklingError``)."""
    path = model_path("ipadapter", MALICIOUS_BIN_NAME)

    def write(tmp):
        payload = {
            "image_proj": {"proj.weight": torch.zeros(4, 4)},
            "ip_adapter": {"1.to_k_ip.weight": torch.zeros(4, 4), "1.to_v_ip.weight": torch.zeros(4, 4)},
            "payload": _PickledCall(),
        }
        _torch_save(payload, tmp)

    return _ensure_file("malicious-bin", path, write)


# --------------------------------------------------------------------------------------
# 5. small transformers CLIPModel (HF folder)
# --------------------------------------------------------------------------------------

CLIP_MODEL_DIR_NAME = f"aid-random-clip-tiny-{VERSION}"

#: Small CLIPModel: both towers 2 layers x 64 wide, projection 64, CLIP-L vocabulary and
#: 77 positions (so the bundled SD1 tokenizer fits), 224 px images in 32 px patches.
CLIP_MODEL_CONFIG = {
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "projection_dim": 64,
        "hidden_act": "quick_gelu",
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
    },
    "vision_config": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 224,
        "patch_size": 32,
        "projection_dim": 64,
        "hidden_act": "quick_gelu",
    },
    "projection_dim": 64,
}

CLIP_PREPROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "CLIPImageProcessor",
    "processor_class": "CLIPProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def ensure_clip_model() -> Path:
    """Random small ``transformers.CLIPModel`` saved as an HF folder under models/clip/.

    Contents: config.json + model.safetensors (save_pretrained), the CLIP tokenizer files
    copied from ComfyUI's ``comfy/sd1_tokenizer/`` and a hand-written
    preprocessor_config.json, so ``CLIPModel/CLIPProcessor.from_pretrained(path,
    local_files_only=True)`` work offline.  Returns the folder.
    """
    path = model_path("clip", CLIP_MODEL_DIR_NAME)

    def write(tmp):
        import transformers

        config = transformers.CLIPConfig(**json.loads(json.dumps(CLIP_MODEL_CONFIG)))
        model = transformers.CLIPModel(config)
        randomize_module_(model, salt="clip-tiny")
        with torch.no_grad():
            model.logit_scale.fill_(config.logit_scale_init_value)
        model.eval()
        model.save_pretrained(tmp, safe_serialization=True)
        for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copyfile(_comfy_file("sd1_tokenizer", f), os.path.join(tmp, f))
        tok_cfg_path = os.path.join(tmp, "tokenizer_config.json")
        with open(tok_cfg_path) as fh:
            tok_cfg = json.load(fh)
        tok_cfg["model_max_length"] = 77
        tok_cfg["name_or_path"] = CLIP_MODEL_DIR_NAME
        tok_cfg.pop("special_tokens_map_file", None)
        with open(tok_cfg_path, "w") as fh:
            json.dump(tok_cfg, fh, indent=2)
        with open(os.path.join(tmp, "preprocessor_config.json"), "w") as fh:
            json.dump(CLIP_PREPROCESSOR_CONFIG, fh, indent=2)

    return _ensure_dir("clip-model", path, write)


# --------------------------------------------------------------------------------------
# registry, folder registration, CLI
# --------------------------------------------------------------------------------------

#: name -> zero-argument builder returning the path.
MODELS = {
    "sd15-tiny": lambda: ensure_sd15_checkpoint("tiny"),
    "sd15-full": lambda: ensure_sd15_checkpoint("full"),
    "clip-vision-vit-h": ensure_clip_vision_vit_h,
    "ipadapter-sd15": lambda: ensure_ipadapter("sd15"),
    "ipadapter-sd15-plus": lambda: ensure_ipadapter("sd15_plus"),
    "ipadapter-sdxl": lambda: ensure_ipadapter("sdxl"),
    "ipadapter-sdxl-plus": lambda: ensure_ipadapter("sdxl_plus"),
    "ipadapter-tiny-sdxl": lambda: ensure_tiny_sdxl_ipadapter(False),
    "ipadapter-tiny-sdxl-plus": lambda: ensure_tiny_sdxl_ipadapter(True),
    "ipadapter-sd15-bin": ensure_ipadapter_bin,
    "malicious-bin": ensure_malicious_bin,
    "clip-model": ensure_clip_model,
}

def _dit_builder(name: str):
    """A builder of aid_harness/dit_models.py (the diffusion-transformer stand-ins), imported when called."""
    def build():
        import importlib

        return importlib.import_module("aid_harness.dit_models").MODELS[name]()
    return build


MODELS.update({name: _dit_builder(name) for name in ("flux-d1s1", "sd35-medium-d2", "vae16", "clip_l", "t5-d4096-tiny")})


#: What the fast test suite needs (the CLI's default).  The large ones (sd15-full 2.1 GB,
#: ipadapter-sdxl 0.7 GB, ipadapter-sdxl-plus 0.85 GB) are built on demand by slow tests.
DEFAULT_MODELS = [
    "sd15-tiny",
    "clip-vision-vit-h",
    "ipadapter-sd15",
    "ipadapter-sd15-plus",
    "ipadapter-tiny-sdxl",
    "ipadapter-tiny-sdxl-plus",
    "ipadapter-sd15-bin",
    "malicious-bin",
    "clip-model",
]


def ensure_models(names=None) -> dict:
    """Build (or find) the named models (default ``DEFAULT_MODELS``); ``{name: path}``."""
    names = DEFAULT_MODELS if names is None else list(names)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    return {n: MODELS[n]() for n in names}


def register_model_folders() -> None:
    """Add ``models_dir()/<folder>`` to ComfyUI's folder_paths for the folders used here
    (checkpoints, clip_vision, ipadapter, clip), so the core loaders list our files.

    For ad-hoc scripts; the pytest host (conftest.py) links files into its own
    --base-directory instead (fixture ``link_model``)."""
    import folder_paths

    for folder in ("checkpoints", "clip_vision", "clip", "ipadapter"):
        d = str(models_dir() / folder)
        os.makedirs(d, exist_ok=True)
        if folder == "ipadapter" and "ipadapter" not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths["ipadapter"] = ([d], set(folder_paths.supported_pt_extensions))
        else:
            folder_paths.add_model_folder_path(folder, d)


def format_log(records=None) -> str:
    rows = []
    for r in BUILD_LOG if records is None else records:
        size = r["bytes"] / 1e6
        state = f"built in {r['seconds']:.1f}s" if r["built"] else "found"
        rows.append(f"{r['name']:<28} {state:<16} {size:9.1f} MB  {r['path'] or ''}")
    return "\n".join(rows)


def _bootstrap_comfy() -> None:
    """Make ``comfy`` importable for the CLI: the ComfyUI that aid_harness.host picks
    (COMFYUI_PATH, the enclosing ComfyUI, or the pinned one in the cache), on the CPU."""
    if "comfy" in sys.modules:
        return
    try:
        from aid_harness import host

        root, how = host.find_comfyui()
        if how.startswith("pinned"):
            host.provision_pinned_comfyui(root)
    except ImportError:  # host module unavailable: the pinned location
        root = Path(os.environ.get("COMFYUI_PATH") or cache_dir() / "ComfyUI")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the seeded random-weight test models (cached).")
    parser.add_argument("names", nargs="*", help=f"models to build (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--all", action="store_true", help="build every known model")
    parser.add_argument("--list", action="store_true", help="list the known models and exit")
    opts = parser.parse_args(argv)
    if opts.list:
        for n in MODELS:
            print(n + ("  (default)" if n in DEFAULT_MODELS else ""))
        return 0
    _bootstrap_comfy()
    names = list(MODELS) if opts.all else (opts.names or DEFAULT_MODELS)
    print(f"random models in {models_dir()}")
    for n in names:
        ensure_models([n])
        print(format_log(BUILD_LOG[-1:]), flush=True)
    return 0


if __name__ == "__main__":
    # Run as a script: keep this folder off sys.path (its module names could shadow
    # ComfyUI's top-level ones); put tests/ there instead.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))
    sys.exit(main())
