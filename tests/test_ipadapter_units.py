"""IP-Adapter pieces on plain tensors and files: the image branch, the projections, safe loading, detection.

The generation-level checks (endpoints equal plain IP-Adapter generations) are in test_ipadapter.py.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from aid_harness import models as M
from aid_pack.attention.branches import POSITIVE_UUIDS
from aid_pack.attention.image_prompt import (ImageEndpoints, ImagePromptBranch, ImagePromptMismatchError,
                                             ImageProjModel, Resampler)
from aid_pack.attention.layout import FrameLayout
from aid_pack.attention.ip_adapter_files import (IPAdapterFileError, detect_variant, load_ip_adapter,
                                                 split_state_dict)
from aid_pack.attention.patch import InterpolationPatch, InterpolationSettings

HEADS, DIM, TOKENS = 2, 8, 3
COEFFICIENTS = (0.0, 0.25, 0.6, 1.0)
LAYOUT = FrameLayout.between(COEFFICIENTS)


def attention(q, k, v):
    """Softmax attention per head, the direct formula: [rows, L, heads*d] x [rows or 1, T, heads*d]."""
    split = lambda x: x.reshape(x.shape[0], x.shape[1], HEADS, DIM).transpose(1, 2)  # noqa: E731
    weights = (split(q) @ split(k).transpose(-1, -2) * DIM ** -0.5).softmax(-1)
    return (weights @ split(v)).transpose(1, 2).reshape(q.shape[0], q.shape[1], HEADS * DIM)


def options(chunks):
    """extra_options of a call whose chunks are positive where `chunks` is 0 (as the branch marker says)."""
    uuids = [f"entry-{c}" for c in range(len(chunks))]
    return {"n_heads": HEADS, "dim_head": DIM, "attn_precision": None, "cond_or_uncond": chunks,
            "sigmas": torch.tensor([5.0] * len(COEFFICIENTS)), "uuids": uuids,
            POSITIVE_UUIDS: frozenset(u for u, kind in zip(uuids, chunks) if kind == 0)}


def positive(chunks):
    """The image branch's per-chunk positive flags for `chunks` (0 = positive)."""
    return [kind == 0 for kind in chunks]


def token_sets(seed=0):
    """K/V of the image token sets a branch holds; the frames' own ("own") lerp A's and B's here."""
    g = torch.Generator().manual_seed(seed)
    sets = {name: (torch.randn(1, TOKENS, HEADS * DIM, generator=g), torch.randn(1, TOKENS, HEADS * DIM, generator=g))
            for name in ("a", "b", "uncond")}
    t = torch.tensor(COEFFICIENTS).reshape(-1, 1, 1)
    (k_a, v_a), (k_b, v_b) = sets["a"], sets["b"]
    sets["own"] = (torch.lerp(k_a, k_b, t), torch.lerp(v_a, v_b, t))
    return sets


def queries(chunks, seed=1):
    return torch.randn(chunks * len(COEFFICIENTS), 5, HEADS * DIM, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("interpolation_mode", ["fused outer", "fused inner"])
def test_morph_branch_rows(comfy, interpolation_mode):
    kv = token_sets()
    branch = ImagePromptBranch("morph", 0.7, interpolation_mode, kv)
    q = queries(2)
    out = branch(q, options([1, 0]), positive([1, 0]), LAYOUT, True)
    frames, t = len(COEFFICIENTS), torch.tensor(COEFFICIENTS)
    uncond, cond = out[:frames], out[frames:]
    assert torch.allclose(uncond, 0.7 * attention(q[:frames], *kv["uncond"]), atol=1e-5)
    qc = q[frames:]
    (k_a, v_a), (k_b, v_b) = kv["a"], kv["b"]
    assert torch.allclose(cond[0], 0.7 * attention(qc[:1], k_a, v_a)[0], atol=1e-5)
    assert torch.allclose(cond[-1], 0.7 * attention(qc[-1:], k_b, v_b)[0], atol=1e-5)
    for f in (1, 2):
        k_own, v_own = torch.lerp(k_a, k_b, t[f]), torch.lerp(v_a, v_b, t[f])
        q_f, tf = qc[f:f + 1], float(t[f])
        if interpolation_mode == "fused outer":  # (1 - t) Attn(Q, [own; A]) + t Attn(Q, [own; B])
            expected = ((1 - tf) * attention(q_f, torch.cat([k_own, k_a], 1), torch.cat([v_own, v_a], 1))
                        + tf * attention(q_f, torch.cat([k_own, k_b], 1), torch.cat([v_own, v_b], 1)))
        else:  # Attn(Q, [own; lerp(A, B, t)])
            expected = attention(q_f, torch.cat([k_own, torch.lerp(k_a, k_b, tf)], 1),
                                 torch.cat([v_own, torch.lerp(v_a, v_b, tf)], 1))
        assert torch.allclose(cond[f], 0.7 * expected[0], atol=1e-5)
    # outside the active range the interior frames attend to their own lerped tokens only
    plain = branch(q, options([1, 0]), positive([1, 0]), LAYOUT, False)[frames:]
    k_own, v_own = torch.lerp(k_a, k_b, t[2]), torch.lerp(v_a, v_b, t[2])
    assert torch.allclose(plain[2], 0.7 * attention(qc[2:3], k_own, v_own)[0], atol=1e-5)
    assert torch.allclose(plain[[0, -1]], cond[[0, -1]], atol=1e-6)


@pytest.mark.parametrize("chunks", [[1, 0], [0], [1, 0, 0]])
def test_image_control_branch_scales_image_b_by_t(comfy, chunks):
    kv = {name: value for name, value in token_sets().items() if name not in ("a", "own")}
    branch = ImagePromptBranch("image-control", 1.5, "fused outer", kv)
    q = queries(len(chunks))
    for interpolating in (True, False):
        out = branch(q, options(chunks), positive(chunks), LAYOUT, interpolating)
        frames = len(COEFFICIENTS)
        t = torch.tensor(COEFFICIENTS).reshape(-1, 1, 1)
        for c, kind in enumerate(chunks):
            rows = slice(c * frames, (c + 1) * frames)
            expected = 1.5 * t * attention(q[rows], *kv["b" if kind == 0 else "uncond"])
            assert torch.allclose(out[rows], expected, atol=1e-5)
            assert torch.equal(out[rows][0], torch.zeros_like(out[rows][0])), "frame 0 has no image term"


def test_branch_is_added_to_the_text_attention_in_the_patch(comfy):
    kv = token_sets()
    branch = ImagePromptBranch("morph", 1.0, "fused outer", kv)
    patch = InterpolationPatch(InterpolationSettings(COEFFICIENTS), image_branch=branch)
    q = queries(2)
    k = v = queries(2, seed=5)
    without = InterpolationPatch(InterpolationSettings(COEFFICIENTS))(q, k, v, options([1, 0]))
    got = patch(q, k, v, options([1, 0]))
    assert torch.allclose(got, without + branch(q, options([1, 0]), positive([1, 0]), LAYOUT, True), atol=1e-6)


def test_branch_moves_with_the_model_and_is_shared_by_clones(comfy):
    kv = token_sets()
    branch = ImagePromptBranch("morph", 1.0, "fused outer", kv)
    assert copy.deepcopy(branch) is branch
    half = branch.to(torch.float16)
    assert all(k.dtype == torch.float16 and v.dtype == torch.float16 for k, v in half.keys_values.values())
    assert branch.to(torch.int64) is branch
    on_cpu = InterpolationPatch(InterpolationSettings(COEFFICIENTS), image_branch=branch).to(torch.device("cpu"))
    assert all(k.device.type == "cpu" for k, _ in on_cpu.image_branch.keys_values.values())
    # fp16 values meet fp32 queries: cast per call
    q = queries(1)
    assert half(q, options([0]), positive([0]), LAYOUT, True).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# projections: the official key layouts load strictly and compute the published formulas
# ----------------------------------------------------------------------------------------------


def _layer_norm(x, w, prefix):
    return F.layer_norm(x, x.shape[-1:], w[prefix + ".weight"], w[prefix + ".bias"])


def direct_image_proj(w, embeds, tokens):
    """ImageProjModel: LayerNorm(reshape(Linear(embeds)))."""
    out = F.linear(embeds, w["proj.weight"], w["proj.bias"]).reshape(embeds.shape[0], tokens, -1)
    return _layer_norm(out, w, "norm")


def direct_resampler(w, states, dim_head=64):
    """Resampler: learned queries attend to [proj_in(states); queries] per layer, then feed-forward."""
    x = F.linear(states, w["proj_in.weight"], w["proj_in.bias"])
    lat = w["latents"].expand(states.shape[0], -1, -1)
    depth = len({k.split(".")[1] for k in w if k.startswith("layers.")})
    for i in range(depth):
        p = f"layers.{i}."
        features, lq = _layer_norm(x, w, p + "0.norm1"), _layer_norm(lat, w, p + "0.norm2")
        q = F.linear(lq, w[p + "0.to_q.weight"])
        k, v = F.linear(torch.cat([features, lq], 1), w[p + "0.to_kv.weight"]).chunk(2, -1)
        heads = q.shape[-1] // dim_head
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, dim_head).transpose(1, 2)  # noqa: E731
        att = ((split(q) @ split(k).transpose(-1, -2)) * dim_head ** -0.5).softmax(-1) @ split(v)
        lat = F.linear(att.transpose(1, 2).reshape(q.shape), w[p + "0.to_out.weight"]) + lat
        hidden = F.gelu(F.linear(_layer_norm(lat, w, p + "1.0"), w[p + "1.1.weight"]))
        lat = F.linear(hidden, w[p + "1.3.weight"]) + lat
    return _layer_norm(F.linear(lat, w["proj_out.weight"], w["proj_out.bias"]), w, "norm_out")


def _image_proj_weights(variant):
    sd = M.build_ipadapter_state_dict(variant, layers=[320], dtype=torch.float32)
    return {k[len("image_proj."):]: v for k, v in sd.items() if k.startswith("image_proj.")}


def test_projections_match_the_direct_formulas(comfy):
    w = _image_proj_weights("sd15")
    embeds = torch.randn(2, 1024)
    assert torch.allclose(ImageProjModel.from_state_dict(w)(embeds), direct_image_proj(w, embeds, 4), atol=1e-5)
    w = _image_proj_weights("sd15_plus")
    states = torch.randn(2, 257, 1280)
    with torch.no_grad():
        got = Resampler.from_state_dict(w)(states)
    assert got.shape == (2, 16, 768)
    assert torch.allclose(got, direct_resampler(w, states), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# files: variants, layouts, refusals
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, expected, layers, clip", [
    ("sd15", "SD1.5", 16, ("image_embeds", 1024)),
    ("sd15_plus", "SD1.5 plus", 16, ("penultimate_hidden_states", 1280)),
    ("tiny_sdxl", "SDXL", 17, ("image_embeds", 1024)),
    ("tiny_sdxl_plus", "SDXL plus", 17, ("penultimate_hidden_states", 1280)),
])
def test_loader_detects_variants(comfy, variant, expected, layers, clip):
    path = (M.ensure_tiny_sdxl_ipadapter(plus=variant.endswith("plus")) if variant.startswith("tiny")
            else M.ensure_ipadapter(variant))
    adapter = load_ip_adapter(str(path))
    assert adapter.variant == expected and len(adapter.layers) == layers
    assert (adapter.clip_input, adapter.clip_width) == clip
    assert adapter.context_dim == (2048 if "sdxl" in variant else 768)


def test_legacy_bin_is_read_as_plain_tensors(comfy):
    legacy = load_ip_adapter(str(M.ensure_ipadapter_bin()))
    safetensors = load_ip_adapter(str(M.ensure_ipadapter("sd15")))
    assert legacy.variant == "SD1.5" and len(legacy.layers) == 16
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(legacy.layers, safetensors.layers))


def test_malicious_bin_is_refused_without_running_it(comfy, capsys):
    with pytest.raises(IPAdapterFileError, match="contains pickled objects that are not plain tensors"):
        load_ip_adapter(str(M.ensure_malicious_bin()))
    assert M.MALICIOUS_MARKER not in capsys.readouterr().out


def _sd15_parts():
    image_proj, ip_adapter = split_state_dict(M.build_ipadapter_state_dict("sd15", layers=[320, 320]))
    return image_proj, ip_adapter


@pytest.mark.parametrize("change, message", [
    (lambda p, a: a.update({"1.to_q_lora.down.weight": torch.zeros(4, 4)}), "FaceID"),
    (lambda p, a: p.update({"perceiver_resampler.proj_in.weight": torch.zeros(4, 4)}), "FaceID"),
    (lambda p, a: (p.clear(), p.update({"proj.0.weight": torch.zeros(1024, 512), "proj.2.weight": torch.zeros(4, 4),
                                        "norm.weight": torch.zeros(768)})), "FaceID"),
    (lambda p, a: (p.clear(), p.update({"proj.0.weight": torch.zeros(1280, 1280), "proj.3.weight": torch.zeros(768)})),
     "full-face"),
    (lambda p, a: p.update({"norm.weight": torch.zeros(1024), "norm.bias": torch.zeros(1024),
                            "proj.weight": torch.zeros(4096, 1024)}), "1024-wide text context"),
])
def test_other_variants_are_not_supported(comfy, change, message):
    image_proj, ip_adapter = _sd15_parts()
    change(image_proj, ip_adapter)
    with pytest.raises(IPAdapterFileError, match=message) as error:
        detect_variant(image_proj, ip_adapter)
    assert "not supported" in str(error.value) or "only SD1.5" in str(error.value)
    assert "ip-adapter_sd15" in error.value.fix


def test_non_tensor_entries_and_non_adapters_are_refused(comfy):
    with pytest.raises(IPAdapterFileError, match="is a str, not a tensor"):
        split_state_dict({"image_proj": {"proj.weight": "x"}, "ip_adapter": {}})
    with pytest.raises(IPAdapterFileError, match="not an IP-Adapter"):
        split_state_dict({"model.diffusion_model.x": torch.zeros(1)})
    image_proj, ip_adapter = _sd15_parts()
    flat = {**{"image_proj." + k: v for k, v in image_proj.items()},
            **{"adapter_modules." + k: v for k, v in ip_adapter.items()}}
    assert split_state_dict(flat)[1].keys() == ip_adapter.keys()


def test_adapter_for_another_unet_is_reported(comfy, sd15_tiny):
    diffusion_model = sd15_tiny[0].model.diffusion_model
    tokens = torch.zeros(4, 768)
    full = load_ip_adapter(str(M.ensure_ipadapter("sd15")))
    with pytest.raises(ImagePromptMismatchError, match="has 16 cross-attention layers but the model has 4"):
        ImageEndpoints("image-control", 1.0, full, None, tokens, tokens).check_model(diffusion_model)
    sdxl = load_ip_adapter(str(M.ensure_tiny_sdxl_ipadapter()))
    with pytest.raises(ImagePromptMismatchError, match=r"is for SDXL \(2048-wide text context\) but the model is "
                                                       r"SD1\.5"):
        ImageEndpoints("image-control", 1.0, sdxl, None, torch.zeros(4, 2048), torch.zeros(4, 2048)).check_model(
            diffusion_model)


def test_ipadapter_folder_is_registered_without_overriding_others(comfy, comfy_base):
    import folder_paths
    from aid_pack.nodes.ipadapter import AIDIPAdapterLoader, register_model_folder

    AIDIPAdapterLoader.INPUT_TYPES()  # registers the folder on first use (not at import: test_host)
    paths, extensions = folder_paths.folder_names_and_paths["ipadapter"]
    assert str(comfy_base / "models" / "ipadapter") in paths and ".safetensors" in extensions and ".bin" in extensions
    saved = folder_paths.folder_names_and_paths["ipadapter"]
    try:  # a folder list set up earlier (IPAdapter_plus, extra_model_paths.yaml) is left as it is
        folder_paths.folder_names_and_paths["ipadapter"] = (["/elsewhere"], {".bin"})
        register_model_folder()
        assert folder_paths.folder_names_and_paths["ipadapter"] == (["/elsewhere"], {".bin"})
    finally:
        folder_paths.folder_names_and_paths["ipadapter"] = saved


def test_images_of_one_size_are_encoded_in_one_call(comfy):
    from aid_pack.nodes.ipadapter import encode_images

    class FakeClipVision:
        def __init__(self):
            self.batches = []

        def encode_image(self, image, crop=True):
            self.batches.append(image.shape[0])
            out = type("Output", (), {})()
            out.image_embeds = image.mean(dim=(1, 2, 3))[:, None].repeat(1, 4)
            return out

    same = [torch.full((2, 8, 8, 3), 0.5), torch.full((1, 8, 8, 3), 0.2)]
    clip_vision = FakeClipVision()
    states = encode_images(clip_vision, same, "image_embeds")
    assert clip_vision.batches == [3] and [s.shape[0] for s in states] == [2, 1]
    assert torch.allclose(states[1], torch.full((1, 4), 0.2))
    clip_vision = FakeClipVision()
    encode_images(clip_vision, [torch.zeros(1, 8, 8, 3), torch.zeros(1, 9, 8, 3)], "image_embeds")
    assert clip_vision.batches == [1, 1]
