"""The seeded random-weight models of aid_harness.models, checked through ComfyUI's real loaders.

Each artefact must be detected as the model it imitates (checkpoint -> SD15, CLIP vision ->
ViT-H, IP-Adapter files -> the official key layouts) and must produce finite outputs.  The
host is the in-process ComfyUI booted by conftest.py (fixtures ``comfy`` and ``link_model``).
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aid_harness import models as M

TESTS_DIR = Path(__file__).resolve().parent


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _split_ipadapter(sd: dict) -> tuple[dict, dict]:
    """Flat safetensors keys -> (image_proj, ip_adapter), as IP-Adapter loaders do."""
    image_proj = {k[len("image_proj."):]: v for k, v in sd.items() if k.startswith("image_proj.")}
    ip_adapter = {k[len("ip_adapter."):]: v for k, v in sd.items() if k.startswith("ip_adapter.")}
    assert len(image_proj) + len(ip_adapter) == len(sd)
    return image_proj, ip_adapter


# ----------------------------------------------------------------------------------------------
# own re-implementations of the two image projections, with the attribute names of the
# published modules, so strict state-dict loading proves the key layout
# ----------------------------------------------------------------------------------------------


class _LinearProjection(torch.nn.Module):
    """IP-Adapter base projection: one Linear to tokens*context, reshaped, LayerNorm."""

    def __init__(self, clip_dim: int, context_dim: int, tokens: int):
        super().__init__()
        self.tokens, self.context_dim = tokens, context_dim
        self.proj = torch.nn.Linear(clip_dim, tokens * context_dim)
        self.norm = torch.nn.LayerNorm(context_dim)

    def forward(self, embeds):
        return self.norm(self.proj(embeds).view(embeds.shape[0], self.tokens, self.context_dim))


class _PerceiverBlockAttention(torch.nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.to_q = torch.nn.Linear(dim, inner, bias=False)
        self.to_kv = torch.nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = torch.nn.Linear(inner, dim, bias=False)

    def forward(self, features, queries):
        features, queries = self.norm1(features), self.norm2(queries)
        q = self.to_q(queries)
        k, v = self.to_kv(torch.cat([features, queries], dim=1)).chunk(2, dim=-1)
        b = q.shape[0]
        split = lambda t: t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, queries.shape[1], -1))


class _Resampler(torch.nn.Module):
    """IP-Adapter plus projection: learned queries cross-attending to projected CLIP states."""

    def __init__(self, dim, depth, dim_head, heads, queries, embed_dim, out_dim, ff_mult):
        super().__init__()
        self.latents = torch.nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_in = torch.nn.Linear(embed_dim, dim)
        self.proj_out = torch.nn.Linear(dim, out_dim)
        self.norm_out = torch.nn.LayerNorm(out_dim)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleList([
                _PerceiverBlockAttention(dim, heads, dim_head),
                torch.nn.Sequential(
                    torch.nn.LayerNorm(dim),
                    torch.nn.Linear(dim, dim * ff_mult, bias=False),
                    torch.nn.GELU(),
                    torch.nn.Linear(dim * ff_mult, dim, bias=False),
                ),
            ])
            for _ in range(depth)
        )

    def forward(self, states):
        x = self.proj_in(states)
        lat = self.latents.expand(states.shape[0], -1, -1)
        for attn, ff in self.layers:
            lat = attn(x, lat) + lat
            lat = ff(lat) + lat
        return self.norm_out(self.proj_out(lat))


def _projection_for(variant: str) -> torch.nn.Module:
    v = M.IPADAPTER_VARIANTS[variant]
    if v["proj"] == "linear":
        return _LinearProjection(v["clip_dim"], v["context_dim"], v["tokens"])
    return _Resampler(v["dim"], v["depth"], v["dim_head"], v["heads"], v["tokens"], v["embed_dim"],
                      v["context_dim"], v["ff_mult"])


# ----------------------------------------------------------------------------------------------
# value recipe, cache behaviour, CLI
# ----------------------------------------------------------------------------------------------


def test_random_tensor_recipe():
    w = M.random_tensor("a.weight", (512, 256, 3, 3), dtype=torch.float32)
    assert abs(w.std().item() - 1 / (256 * 9) ** 0.5) < 2e-3
    assert torch.equal(w, M.random_tensor("a.weight", (512, 256, 3, 3), dtype=torch.float32))
    assert not torch.equal(w, M.random_tensor("b.weight", (512, 256, 3, 3), dtype=torch.float32))
    assert not torch.equal(w, M.random_tensor("a.weight", (512, 256, 3, 3), salt="x", dtype=torch.float32))
    assert torch.all(M.random_tensor("n.bias", (8,)) == 0)
    assert torch.all(M.random_tensor("n.weight", (8,)) == 1)
    assert M.random_tensor("logit_scale", ()).item() == 1
    q = M.random_tensor("latents", (1, 16, 768), dtype=torch.float32)
    assert abs(q.std().item() - 768 ** -0.5) < 3e-3
    assert M.random_tensor("a.weight", (4, 4)).dtype == torch.float16


def test_build_is_cached_atomic_and_reproducible(tmp_path, monkeypatch):
    sums = []
    for run in ("a", "b"):
        monkeypatch.setenv("AID_CACHE_DIR", str(tmp_path / run))
        assert M.cache_dir() == (tmp_path / run).resolve()
        path = M.ensure_ipadapter("sd15")
        assert path == tmp_path / run / "models" / "ipadapter" / M.ipadapter_name("sd15")
        assert M.BUILD_LOG[-1]["built"] and M.BUILD_LOG[-1]["path"] == path
        mtime = path.stat().st_mtime_ns
        assert M.ensure_ipadapter("sd15") == path  # second call: found, untouched
        assert not M.BUILD_LOG[-1]["built"] and path.stat().st_mtime_ns == mtime
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left
        assert path.stat().st_mode & 0o777 == 0o644
        sums.append(path.read_bytes())
    assert sums[0] == sums[1], "two builds of the same model must be byte-identical"

    # an interrupted build leaves neither the file nor its temp file behind
    target = tmp_path / "c" / "models" / "x" / "broken.safetensors"

    def failing_writer(tmp):
        Path(tmp).write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        M._ensure_file("broken", target, failing_writer)
    assert list(target.parent.iterdir()) == []


def test_ensure_models_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("AID_CACHE_DIR", str(tmp_path))
    assert set(M.DEFAULT_MODELS) <= set(M.MODELS)
    paths = M.ensure_models(["malicious-bin", "ipadapter-sd15-bin"])
    assert paths["malicious-bin"] == tmp_path / "models" / "ipadapter" / M.MALICIOUS_BIN_NAME
    assert all(p.is_file() for p in paths.values())
    with pytest.raises(KeyError):
        M.ensure_models(["no-such-model"])


def test_cli_builds_into_the_cache(tmp_path):
    env = dict(os.environ, AID_CACHE_DIR=str(tmp_path))
    script = TESTS_DIR / "aid_harness" / "models.py"
    listed = subprocess.run([sys.executable, str(script), "--list"], env=env, capture_output=True, text=True,
                            check=True).stdout.split()
    assert "sd15-tiny" in listed and "clip-model" in listed
    run = subprocess.run([sys.executable, str(script), "malicious-bin"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "malicious-bin" in run.stdout and "built in" in run.stdout
    assert (tmp_path / "models" / "ipadapter" / M.MALICIOUS_BIN_NAME).is_file()


# ----------------------------------------------------------------------------------------------
# 1. SD1.5 checkpoints
# ----------------------------------------------------------------------------------------------


def _check_sd15_checkpoint(comfy, name: str, latent_hw: int):
    import comfy.model_base as model_base
    import comfy.sample as comfy_sample
    import comfy.supported_models as supported_models

    nodes = comfy["nodes"]
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]
    assert type(model.model.model_config) is supported_models.SD15
    assert type(model.model) is model_base.BaseModel
    assert clip is not None and vae is not None
    unet_config = model.model.model_config.unet_config
    assert unet_config["context_dim"] == 768 and unet_config["model_channels"] == 320
    assert not unet_config["use_linear_in_transformer"] and unet_config.get("adm_in_channels") is None

    pos = nodes.CLIPTextEncode().encode(clip, "a watercolour painting of a lighthouse")[0]
    neg = nodes.CLIPTextEncode().encode(clip, "")[0]
    assert pos[0][0].shape == (1, 77, 768) and _finite(pos[0][0])

    latent = torch.zeros(1, 4, latent_hw, latent_hw)
    noise = comfy_sample.prepare_noise(latent, 0)
    out = comfy_sample.sample(model, noise, 1, 7.0, "euler", "normal", pos, neg, latent, seed=0, disable_pbar=True)
    assert out.shape == latent.shape and _finite(out)

    # a few steps on a small latent, then decode
    small = torch.zeros(2, 4, 8, 8)
    out = comfy_sample.sample(model, comfy_sample.prepare_noise(small, 1), 3, 5.0, "euler", "normal", pos, neg,
                              small, seed=1, disable_pbar=True)
    assert _finite(out)
    image = vae.decode(out)
    assert image.shape == (2, 64, 64, 3) and _finite(image)
    return model


def test_sd15_tiny_checkpoint(comfy, link_model):
    from safetensors import safe_open

    path = M.ensure_sd15_checkpoint("tiny")
    assert path.parent.name == "checkpoints" and path.name == "aid-random-sd15-tiny-v1.safetensors"
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert {f.get_slice(k).get_dtype() for k in keys} == {"F16"}
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in keys}
    assert prefixes == {"model.diffusion_model", "cond_stage_model.transformer", "first_stage_model.encoder",
                        "first_stage_model.decoder", "first_stage_model.quant_conv",
                        "first_stage_model.post_quant_conv"}
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in keys

    name = link_model("checkpoints", path)
    model = _check_sd15_checkpoint(comfy, name, latent_hw=64)
    layers = M.unet_cross_attention_layers(model.model.diffusion_model)
    assert [(x["block"], x["number"]) for x in layers] == [("input", 1), ("output", 0), ("output", 1), ("middle", 0)]


@pytest.mark.slow
def test_sd15_full_checkpoint(comfy, link_model):
    name = link_model("checkpoints", M.ensure_sd15_checkpoint("full"))
    model = _check_sd15_checkpoint(comfy, name, latent_hw=8)
    assert model.model.model_config.unet_config["channel_mult"] == [1, 2, 4, 4]
    layers = M.unet_cross_attention_layers(model.model.diffusion_model)
    assert [x["inner_dim"] for x in layers] == M.SD15_IP_LAYERS


# ----------------------------------------------------------------------------------------------
# 2. tiny SDXL
# ----------------------------------------------------------------------------------------------


def test_tiny_sdxl_model_samples(comfy):
    import comfy.model_base as model_base
    import comfy.sample as comfy_sample

    patcher = M.tiny_sdxl_model()
    model = patcher.model
    assert type(model) is model_base.SDXL
    n_params = sum(p.numel() for p in model.diffusion_model.parameters())
    assert 10e6 < n_params < 80e6
    assert next(model.diffusion_model.parameters()).dtype == torch.float32
    assert torch.equal(M.tiny_sdxl_model().model.diffusion_model.out[2].weight, model.diffusion_model.out[2].weight)

    layers = M.unet_cross_attention_layers(model.diffusion_model)
    assert [x["inner_dim"] for x in layers] == M.tiny_sdxl_ipadapter_layers() == M.TINY_SDXL_IP_LAYERS
    assert {x["context_dim"] for x in layers} == {2048}
    assert ("input", 7, 1) in {(x["block"], x["number"], x["index"]) for x in layers}

    cond = M.sdxl_conditioning(1)
    assert cond[0][0].shape == (1, 77, 2048) and cond[0][1]["pooled_output"].shape == (1, 1280)
    assert M.sdxl_conditioning(3, tokens=154, batch=2)[0][0].shape == (2, 154, 2048)
    y = model.encode_adm(pooled_output=cond[0][1]["pooled_output"], width=128, height=128)
    assert y.shape == (1, 2816)

    # a 3-tuple attn2 replace key with block_index 1 must fire
    seen = []

    def replace(q, k, v, extra_options):
        seen.append((extra_options["block"], extra_options["block_index"], tuple(k.shape)))
        from comfy.ldm.modules.attention import optimized_attention

        return optimized_attention(q, k, v, extra_options["n_heads"])

    patched = patcher.clone()
    patched.set_model_attn2_replace(replace, "input", 7, 1)
    latent = torch.zeros(2, 4, 16, 16)
    out = comfy_sample.sample(patched, comfy_sample.prepare_noise(latent, 0), 2, 5.0, "euler", "normal",
                              M.sdxl_conditioning(1), M.sdxl_conditioning(2), latent, seed=0, disable_pbar=True)
    assert out.shape == latent.shape and _finite(out)
    assert seen and all(s[:2] == (("input", 7), 1) for s in seen)
    assert seen[0][2][-1] == 256


# ----------------------------------------------------------------------------------------------
# 3. CLIP vision ViT-H
# ----------------------------------------------------------------------------------------------


def test_clip_vision_vit_h(comfy, link_model):
    import comfy.utils as comfy_utils
    import transformers
    from safetensors import safe_open

    path = M.ensure_clip_vision_vit_h()
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    assert "vision_model.encoder.layers.31.layer_norm1.weight" in keys
    assert "vision_model.encoder.layers.32.layer_norm1.weight" not in keys
    # the same names as transformers' CLIPVisionModelWithProjection (the published file layout)
    config = json.loads((Path(M._comfy_file("clip_vision_config_h.json"))).read_text())
    with torch.device("meta"):
        hf = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**config))
    assert keys == set(hf.state_dict().keys()) - {"vision_model.embeddings.position_ids"}

    name = link_model("clip_vision", path)
    clip_vision = comfy["nodes"].CLIPVisionLoader().load_clip(name)[0]
    sd = clip_vision.model.state_dict()
    assert sd["vision_model.embeddings.position_embedding.weight"].shape == (257, 1280)
    assert clip_vision.image_size == 224

    image = torch.rand(2, 300, 400, 3, generator=torch.Generator().manual_seed(0))
    out = comfy["nodes"].CLIPVisionEncode().encode(clip_vision, image, "center")[0]
    assert out.image_embeds.shape == (2, 1024)
    assert out.penultimate_hidden_states.shape == (2, 257, 1280)
    assert out.last_hidden_state.shape == (2, 257, 1280)
    for t in (out.image_embeds, out.penultimate_hidden_states, out.last_hidden_state):
        assert _finite(t)
    assert not torch.allclose(out.image_embeds[0], out.image_embeds[1])

    # the embeddings feed the SD1.5 IP-Adapter projections
    sd15 = M.ensure_ipadapter("sd15")
    image_proj, _ = _split_ipadapter(comfy_utils.load_torch_file(str(sd15), safe_load=True))
    proj = _projection_for("sd15")
    proj.load_state_dict({k: v.float() for k, v in image_proj.items()})
    tokens = proj(out.image_embeds.float())
    assert tokens.shape == (2, 4, 768) and _finite(tokens)


# ----------------------------------------------------------------------------------------------
# 4. IP-Adapter files
# ----------------------------------------------------------------------------------------------

# variant, layers, expected (#image_proj keys, #ip_adapter keys), context dim
_IPADAPTER_CASES = {
    "sd15": ("sd15", None, (4, 32), 768),
    "sd15_plus": ("sd15_plus", None, (51, 32), 768),
    "tiny_sdxl": ("sdxl", M.TINY_SDXL_IP_LAYERS, (4, 34), 2048),
    "tiny_sdxl_plus": ("sdxl_plus", M.TINY_SDXL_IP_LAYERS, (51, 34), 2048),
    "sdxl": ("sdxl", None, (4, 140), 2048),
    "sdxl_plus": ("sdxl_plus", None, (51, 140), 2048),
}


def _check_ipadapter(case: str):
    import comfy.utils as comfy_utils

    variant, layers, (n_proj, n_ip), context_dim = _IPADAPTER_CASES[case]
    path = M.ensure_ipadapter(variant, layers)
    assert path.parent.name == "ipadapter" and path.name == M.ipadapter_name(variant, layers)
    sd = comfy_utils.load_torch_file(str(path), safe_load=True)
    assert {k: tuple(v.shape) for k, v in sd.items()} == M.ipadapter_shapes(variant, layers)
    assert {v.dtype for v in sd.values()} == {torch.float16}
    image_proj, ip_adapter = _split_ipadapter(sd)
    assert (len(image_proj), len(ip_adapter)) == (n_proj, n_ip)

    dims = M.IPADAPTER_VARIANTS[variant]["layers"] if layers is None else layers
    assert len(dims) * 2 == n_ip
    for j, inner in enumerate(dims):
        for kv in ("k", "v"):
            assert ip_adapter[f"{2 * j + 1}.to_{kv}_ip.weight"].shape == (inner, context_dim)
    # how IPAdapter_plus tells the variants apart
    assert (ip_adapter["1.to_k_ip.weight"].shape[1] == 2048) == variant.startswith("sdxl")
    assert ("latents" in image_proj) == variant.endswith("plus")
    if not variant.endswith("plus"):
        assert image_proj["proj.weight"].shape == (4 * context_dim, 1024)

    proj = _projection_for(variant)
    proj.load_state_dict({k: v.float() for k, v in image_proj.items()}, strict=True)
    v = M.IPADAPTER_VARIANTS[variant]
    x = torch.randn(2, 257, v["embed_dim"]) if v["proj"] == "resampler" else torch.randn(2, v["clip_dim"])
    with torch.no_grad():
        tokens = proj(x)
        assert tokens.shape == (2, v["tokens"], context_dim) and _finite(tokens)
        k = torch.nn.functional.linear(tokens, ip_adapter["1.to_k_ip.weight"].float())
        assert k.shape == (2, v["tokens"], dims[0]) and _finite(k)
    return path


@pytest.mark.parametrize("case", ["sd15", "sd15_plus", "tiny_sdxl", "tiny_sdxl_plus"])
def test_ipadapter_files(comfy, case):
    _check_ipadapter(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sdxl", "sdxl_plus"])
def test_ipadapter_files_real_sdxl_layout(comfy, case):
    import comfy.utils as comfy_utils

    path = _check_ipadapter(case)
    sd = comfy_utils.load_torch_file(str(path), safe_load=True)
    assert sd["ip_adapter.1.to_k_ip.weight"].shape == (640, 2048)
    assert sd["ip_adapter.101.to_k_ip.weight"].shape == (1280, 2048)
    assert sd["ip_adapter.139.to_v_ip.weight"].shape == (1280, 2048)


def test_ipadapter_layer_orders_match_the_unets(comfy):
    import comfy.supported_models as supported_models

    assert len(M.SD15_IP_LAYERS) == 16 and len(M.SDXL_IP_LAYERS) == 70
    layers = M.unet_cross_attention_layers(M.SD15_UNET_FULL)
    assert [x["inner_dim"] for x in layers] == M.SD15_IP_LAYERS
    assert [(x["block"], x["number"]) for x in layers][:7] == [("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("output", 3)]
    assert layers[-1]["block"] == "middle" and [x["ip_key"] for x in layers] == list(range(1, 32, 2))

    sdxl = supported_models.SDXL({
        **M._UNET_COMMON, "num_classes": "sequential", "adm_in_channels": 2816, "model_channels": 320,
        "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
        "use_linear_in_transformer": True, "context_dim": 2048,
    })
    layers = M.unet_cross_attention_layers(sdxl.unet_config)
    assert [x["inner_dim"] for x in layers] == M.SDXL_IP_LAYERS
    assert [x["ip_key"] for x in layers][-1] == 139


def test_ipadapter_names_match_ipadapter_plus_presets():
    import re

    assert re.search(r"ip.adapter.sd15\.(safetensors|bin)$", M.ipadapter_name("sd15"), re.I)
    assert re.search(r"ip.adapter.plus.sd15\.(safetensors|bin)$", M.ipadapter_name("sd15_plus"), re.I)
    assert re.search(r"ip.adapter.sdxl.vit.h\.(safetensors|bin)$", M.ipadapter_name("sdxl"), re.I)
    assert re.search(r"plus.sdxl.vit.h\.(safetensors|bin)$", M.ipadapter_name("sdxl_plus"), re.I)
    assert re.search(r"ViT.H.14.*s32B.b79K", M.CLIP_VISION_VIT_H_NAME, re.I)
    # the tiny-SDXL files and the legacy .bin must not shadow the real-layout files in preset lookups
    for other in (M.ipadapter_name("sdxl", M.TINY_SDXL_IP_LAYERS), M.ipadapter_name("sdxl_plus", M.TINY_SDXL_IP_LAYERS),
                  M.IPADAPTER_LEGACY_BIN_NAME, M.MALICIOUS_BIN_NAME):
        for pattern in (r"ip.adapter.sd15\.", r"ip.adapter.plus.sd15\.", r"ip.adapter.sdxl.vit.h\.", r"plus.sdxl.vit.h\."):
            assert not re.search(pattern, other, re.I), (pattern, other)
    custom = M.ipadapter_name("sd15", [320] * 3)
    assert custom != M.ipadapter_name("sd15") and custom != M.ipadapter_name("sd15", [640] * 3)


def test_legacy_bin_matches_safetensors(comfy):
    import comfy.utils as comfy_utils

    legacy = comfy_utils.load_torch_file(str(M.ensure_ipadapter_bin()), safe_load=True)
    assert set(legacy) == {"image_proj", "ip_adapter"}
    flat = comfy_utils.load_torch_file(str(M.ensure_ipadapter("sd15")), safe_load=True)
    image_proj, ip_adapter = _split_ipadapter(flat)
    assert legacy["image_proj"].keys() == image_proj.keys() and legacy["ip_adapter"].keys() == ip_adapter.keys()
    assert all(torch.equal(legacy["image_proj"][k], v) for k, v in image_proj.items())
    assert all(torch.equal(legacy["ip_adapter"][k], v) for k, v in ip_adapter.items())


def test_malicious_bin_is_refused_by_weights_only_loading(comfy, capsys):
    import comfy.utils as comfy_utils

    path = M.ensure_malicious_bin()
    with pytest.raises(pickle.UnpicklingError):
        comfy_utils.load_torch_file(str(path), safe_load=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert M.MALICIOUS_MARKER not in capsys.readouterr().out
    # proof that the file really carries a callable: unsafe loading runs it (a harmless print)
    loaded = torch.load(path, weights_only=False)
    assert loaded["payload"] is None and M.MALICIOUS_MARKER in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# 5. transformers CLIPModel folder
# ----------------------------------------------------------------------------------------------

_SCORE_SCRIPT = r"""
import json, sys, torch, transformers
from PIL import Image
path = sys.argv[1]
model = transformers.CLIPModel.from_pretrained(path, local_files_only=True).eval()
processor = transformers.CLIPProcessor.from_pretrained(path, local_files_only=True)
images = [Image.new("RGB", (300, 200), (255, 0, 0)), Image.new("RGB", (64, 96), (0, 0, 255))]
texts = ["a red square", "a blue square", "a photograph of a cat"]
inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
with torch.no_grad():
    out = model(**inputs)
print(json.dumps({
    "logits": out.logits_per_image.tolist(),
    "image_embeds": list(out.image_embeds.shape),
    "text_embeds": list(out.text_embeds.shape),
    "pixel_values": list(inputs["pixel_values"].shape),
    "first_ids": inputs["input_ids"][0].tolist(),
}))
"""


def test_clip_model_loads_offline(tmp_path):
    path = M.ensure_clip_model()
    assert path.parent.name == "clip"
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
              "special_tokens_map.json", "preprocessor_config.json"):
        assert (path / f).is_file(), f
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    run = subprocess.run([sys.executable, "-c", _SCORE_SCRIPT, str(path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    logits = torch.tensor(result["logits"])
    assert logits.shape == (2, 3) and _finite(logits)
    assert result["image_embeds"] == [2, 64] and result["text_embeds"] == [3, 64]
    assert result["pixel_values"] == [2, 3, 224, 224]
    assert result["first_ids"][0] == 49406 and 49407 in result["first_ids"]
