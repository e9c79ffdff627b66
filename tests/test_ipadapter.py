"""IP-Adapter endpoints on the real host (issue 6 acceptance), with random weights in the official layouts.

References are built by the test itself: a plain clone of the model with a replace patch that
computes, by the direct formula, text attention + weight * Attn(Q, K_img, V_img) with the image
tokens of the published projections (test_ipadapter_units.direct_image_proj / direct_resampler)
and the uncond tokens IP-Adapter uses on the negative branch; sampled with the core KSampler.
The tiny SD1.5 has 4 cross-attention layers, so its adapters are built with 4 layers
(`ensure_ipadapter(variant, layers=...)`), in the real key layout.
"""
import pytest
import torch
from safetensors.torch import load_file

from aid_harness import models as M
from aid_pack.attention.image_prompt import ImageEndpoints
from aid_pack.attention.patch import InterpolationPatch
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.ipadapter import AIDIPAdapterEndpoints, AIDIPAdapterLoader
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients
from aid_harness.compare import close
from test_ipadapter_units import direct_image_proj, direct_resampler

SIZE, STEPS, CFG, SEED, WEIGHT = 64, 3, 5.0, 11, 0.8

def direct_attention(q, k, v, heads):
    """softmax(Q K^T / sqrt(d)) V per head on [rows, L, heads*d]."""
    d = q.shape[-1] // heads
    split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, d).transpose(1, 2)  # noqa: E731
    weights = (split(q) @ split(k).transpose(-1, -2) * d ** -0.5).softmax(-1)
    return (weights @ split(v)).transpose(1, 2).reshape(q.shape)


def reference_model(model, adapter_path, cond_tokens, uncond_tokens, weight, previous=None):
    """A clone whose every attn2 is text attention (or `previous[(block, number)]`) + the decoupled image term."""
    sd = {k: v.float() for k, v in load_file(str(adapter_path)).items()}
    clone = model.clone()
    for layer in M.unet_cross_attention_layers(model.model.diffusion_model):
        w_k, w_v = sd[f"ip_adapter.{layer['ip_key']}.to_k_ip.weight"], sd[f"ip_adapter.{layer['ip_key']}.to_v_ip.weight"]
        text_patch = (previous or {}).get((layer["block"], layer["number"]))

        def patch(q, k, v, extra_options, w_k=w_k, w_v=w_v, text_patch=text_patch):
            heads = extra_options["n_heads"]
            text = text_patch(q, k, v, extra_options) if text_patch else direct_attention(q, k, v, heads)
            chunks = extra_options["cond_or_uncond"]
            rows = q.shape[0] // len(chunks)
            image = []
            for c, kind in enumerate(chunks):
                tokens = cond_tokens if kind == 0 else uncond_tokens
                k_img = (tokens @ w_k.T)[None].expand(rows, -1, -1)
                v_img = (tokens @ w_v.T)[None].expand(rows, -1, -1)
                image.append(direct_attention(q[c * rows:(c + 1) * rows], k_img, v_img, heads))
            return text + weight * torch.cat(image)

        clone.set_model_attn2_replace(patch, layer["block"], layer["number"], layer["index"])
    return clone


def image_proj_weights(path):
    return {k[len("image_proj."):]: v.float() for k, v in load_file(str(path)).items() if k.startswith("image_proj.")}


# ----------------------------------------------------------------------------------------------
# fixtures: the ViT-H is big (1.26 GB, a few seconds per image on a CPU): load and encode once
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip_vision(comfy, link_model):
    name = link_model("clip_vision", M.ensure_clip_vision_vit_h())
    return comfy["nodes"].CLIPVisionLoader().load_clip(name)[0]


@pytest.fixture(scope="module")
def images():
    """Images A and B (64 px, different structure) and a black image, [1, H, W, 3] each."""
    g = torch.Generator().manual_seed(3)
    ramp = torch.linspace(0, 1, SIZE)
    a = torch.stack([ramp[None, :].expand(SIZE, SIZE), ramp[:, None].expand(SIZE, SIZE),
                     torch.rand(SIZE, SIZE, generator=g)], dim=-1)[None]
    b = torch.rand(1, SIZE, SIZE, 3, generator=g)
    return {"a": a, "b": b, "black": torch.zeros(1, SIZE, SIZE, 3)}


@pytest.fixture(scope="module")
def clip_states(comfy, clip_vision, images):
    """Core CLIPVisionEncode of A, B and black: {name: (image_embeds [1, 1024], penultimate [1, 257, 1280])}."""
    out = comfy["nodes"].CLIPVisionEncode().encode(clip_vision, torch.cat([images[n] for n in ("a", "b", "black")]),
                                                   "center")[0]
    return {name: (out.image_embeds[i:i + 1].float(), out.penultimate_hidden_states[i:i + 1].float())
            for i, name in enumerate(("a", "b", "black"))}


@pytest.fixture(scope="module")
def tiny_adapter(sd15_tiny, link_model):
    """variant -> (file name in models/ipadapter, path) of an adapter matching the tiny SD1.5's 4 layers."""
    dims = [x["inner_dim"] for x in M.unet_cross_attention_layers(sd15_tiny[0].model.diffusion_model)]

    def get(variant):
        path = M.ensure_ipadapter(variant, layers=dims)
        return link_model("ipadapter", path), path

    return get


def reference_tokens(variant, path, clip_states):
    """{a, b, uncond} image tokens by the direct projection formulas."""
    w = image_proj_weights(path)
    if variant == "sd15":
        project = lambda embeds: direct_image_proj(w, embeds, 4)[0]  # noqa: E731
        return {"a": project(clip_states["a"][0]), "b": project(clip_states["b"][0]),
                "uncond": project(torch.zeros_like(clip_states["a"][0]))}
    return {name: direct_resampler(w, clip_states[source][1])[0]
            for name, source in (("a", "a"), ("b", "b"), ("uncond", "black"))}


@pytest.fixture(scope="module")
def prompts(sd15_tiny, encode):
    clip = sd15_tiny[1]
    return {"a": encode(clip, "a portrait photo of a woman"), "b": encode(clip, "a portrait photo of a man"),
            "neg": encode(clip, "blurry, low quality")}


@pytest.fixture(scope="module")
def ksample(comfy, sd15_tiny, prompts):
    def run(positive, model=None, latent=None):
        latent = latent if latent is not None else {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
        return comfy["nodes"].common_ksampler(model or sd15_tiny[0], SEED, STEPS, CFG, "euler", "normal", positive,
                                              prompts["neg"], latent)[0]["samples"]
    return run


def schedule(frames):
    return InterpolationSchedule(tuple(linear_coefficients(frames)), "custom")


def aid_sample(model, prompts, frames, image_endpoints, positive_b=None):
    return AIDSampler().sample(
        model=model, positive_a=prompts["a"], positive_b=positive_b or prompts["b"], negative=prompts["neg"],
        schedule=schedule(frames), width=SIZE, height=SIZE, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler",
        scheduler="normal", mode="fused outer", layers="self and cross", start_percent=0.0, end_percent=0.5,
        max_frames_per_batch=0, image_endpoints=image_endpoints)[0]["samples"]


def endpoints_node(tiny_adapter, clip_vision, images, variant, mode, weight=WEIGHT):
    adapter = AIDIPAdapterLoader().load(tiny_adapter(variant)[0])[0]
    image_a = images["a"] if mode == "morph" else None
    return AIDIPAdapterEndpoints().build(adapter, clip_vision, images["b"], mode, weight, image_a=image_a)[0]


# ----------------------------------------------------------------------------------------------
# morph
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def morph_base(sd15_tiny, prompts, tiny_adapter, clip_vision, images):
    endpoints = endpoints_node(tiny_adapter, clip_vision, images, "sd15", "morph")
    return endpoints, aid_sample(sd15_tiny[0], prompts, 4, endpoints)


@pytest.mark.parametrize("variant", ["sd15", "sd15_plus"])
def test_morph_endpoints_equal_plain_ip_adapter_generations(variant, sd15_tiny, prompts, ksample, tiny_adapter,
                                                            clip_vision, images, clip_states, morph_base):
    if variant == "sd15":
        endpoints, frames = morph_base
    else:
        endpoints = endpoints_node(tiny_adapter, clip_vision, images, variant, "morph")
        frames = aid_sample(sd15_tiny[0], prompts, 3, endpoints)
    tokens = reference_tokens(variant, tiny_adapter(variant)[1], clip_states)
    for name in ("a", "b", "uncond"):
        expected = tokens[name]
        got = {"a": endpoints.tokens_a, "b": endpoints.tokens_b, "uncond": endpoints.tokens_uncond}[name]
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3), name
    for end, index in (("a", 0), ("b", -1)):
        reference = reference_model(sd15_tiny[0], tiny_adapter(variant)[1], tokens[end], tokens["uncond"], WEIGHT)
        assert close(frames[index], ksample(prompts[end], model=reference)[0]), end
    # the image term is really there: without it the endpoint is another picture
    assert not close(frames[0], ksample(prompts["a"])[0], rel=1e-2)


def test_morph_interior_frames_are_finite_and_new(morph_base):
    frames = morph_base[1]
    assert torch.isfinite(frames).all()
    for f in (1, 2):
        assert not close(frames[f], frames[0], rel=1e-2) and not close(frames[f], frames[-1], rel=1e-2)
    assert not close(frames[1], frames[2], rel=1e-2)


@pytest.mark.parametrize("variant", ["sd15", "sd15_plus"])
def test_morph_interior_image_prompt_projects_the_interpolated_clip_embeddings(variant, tiny_adapter, clip_vision,
                                                                               images, clip_states):
    """As the reference: frame f's own image tokens = projection(lerp(CLIP embeds A, B, t_f)), not a lerp of tokens.

    The projection is nonlinear (LayerNorm; the plus Resampler), so the two differ; the size of the
    difference on these random weights is printed for the README.
    """
    endpoints = endpoints_node(tiny_adapter, clip_vision, images, variant, "morph")
    w = image_proj_weights(tiny_adapter(variant)[1])
    coefficients = (0.0, 0.25, 0.5, 1.0)
    own = endpoints.frame_tokens(coefficients)
    source = 0 if variant == "sd15" else 1
    for f, t in enumerate(coefficients):
        mixed = torch.lerp(clip_states["a"][source], clip_states["b"][source], t)
        expected = direct_image_proj(w, mixed, 4)[0] if variant == "sd15" else direct_resampler(w, mixed)[0]
        assert torch.allclose(own[f], expected, atol=1e-4, rtol=1e-3), f
    lerped_tokens = torch.lerp(endpoints.tokens_a, endpoints.tokens_b, 0.5)
    difference = float((own[2] - lerped_tokens).norm() / lerped_tokens.norm())
    print(f"\n{variant}: relative difference of projecting the t=0.5 embeddings vs lerping tokens: {difference:.3f}")
    assert difference > 1e-3, "the projection is nonlinear, so the reference's order matters"


def test_morph_with_the_same_image_at_both_ends_is_text_interpolation_plus_that_image(
        sd15_tiny, prompts, ksample, tiny_adapter, clip_states, morph_base):
    """With A's image at both ends every frame's image tokens are A's: endpoint B is prompt B with image A."""
    endpoints = morph_base[0]
    same = ImageEndpoints("morph", WEIGHT, endpoints.adapter, endpoints.states_a, endpoints.states_a,
                          endpoints.states_uncond)
    frames = aid_sample(sd15_tiny[0], prompts, 3, same)
    tokens = reference_tokens("sd15", tiny_adapter("sd15")[1], clip_states)
    reference = reference_model(sd15_tiny[0], tiny_adapter("sd15")[1], tokens["a"], tokens["uncond"], WEIGHT)
    assert close(frames[-1], ksample(prompts["b"], model=reference)[0])


# ----------------------------------------------------------------------------------------------
# image-control, through Apply AID and the core KSampler (the shipped workflow's path)
# ----------------------------------------------------------------------------------------------


def test_image_control_runs_from_text_only_to_full_image_weight(sd15_tiny, prompts, ksample, tiny_adapter,
                                                                clip_vision, images, clip_states):
    endpoints = endpoints_node(tiny_adapter, clip_vision, images, "sd15", "image-control", weight=1.0)
    assert endpoints.tokens_a is None
    sched = schedule(4)
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5,
                             image_endpoints=endpoints)[0]
    prompt = prompts["a"]
    positive = AIDConditioning().build(prompt, prompt, sched)[0]
    frames = ksample(positive, model=model, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    assert close(frames[0], ksample(prompt)[0]), "frame 0 is the text-only generation"
    tokens = reference_tokens("sd15", tiny_adapter("sd15")[1], clip_states)
    reference = reference_model(sd15_tiny[0], tiny_adapter("sd15")[1], tokens["b"], tokens["uncond"], 1.0)
    assert close(frames[-1], ksample(prompt, model=reference)[0]), "the last frame has image B at full weight"
    assert torch.isfinite(frames).all()
    for f in (1, 2):
        assert not close(frames[f], frames[0], rel=1e-2) and not close(frames[f], frames[-1], rel=1e-2)
    assert not close(frames[1], frames[2], rel=1e-2)


# ----------------------------------------------------------------------------------------------
# coexistence with IPAdapter_plus-style patches
# ----------------------------------------------------------------------------------------------


class ForeignImagePatch:
    """Stand-in for IPAdapter_plus' attn2 replace: text attention + 0.5 * attention over its own fixed tokens.

    Like IPAdapter_plus' patch object it is deep-copied by every ModelPatcher.clone(), so calls are counted on
    the class.
    """

    calls = 0

    def __call__(self, q, k, v, extra_options):
        type(self).calls += 1
        heads, width = extra_options["n_heads"], q.shape[-1]
        g = torch.Generator().manual_seed(width)
        extra_k, extra_v = torch.randn(1, 4, width, generator=g), torch.randn(1, 4, width, generator=g)
        rows = q.shape[0]
        return (direct_attention(q, k, v, heads)
                + 0.5 * direct_attention(q, extra_k.expand(rows, -1, -1), extra_v.expand(rows, -1, -1), heads))


def test_ipadapter_plus_patch_is_chained_not_dropped(sd15_tiny, prompts, ksample, tiny_adapter, clip_states,
                                                     morph_base):
    foreign = ForeignImagePatch()
    patched = sd15_tiny[0].clone()
    patched.set_model_attn2_replace(foreign, "input", 1)  # IPAdapter_plus uses 2-tuple keys on SD1.5
    model = ApplyAID().apply(patched, schedule(3), "fused outer", "self and cross", 0.0, 0.5,
                             image_endpoints=morph_base[0])[0]
    installed = model.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1)]
    assert isinstance(installed, InterpolationPatch) and isinstance(installed.previous, ForeignImagePatch)
    assert installed.image_branch is not None
    ForeignImagePatch.calls = 0
    frames = aid_sample(patched, prompts, 3, morph_base[0])
    assert ForeignImagePatch.calls > 0
    tokens = reference_tokens("sd15", tiny_adapter("sd15")[1], clip_states)
    reference = reference_model(sd15_tiny[0], tiny_adapter("sd15")[1], tokens["a"], tokens["uncond"], WEIGHT,
                                previous={("input", 1): foreign})
    assert close(frames[0], ksample(prompts["a"], model=reference)[0])
    assert torch.isfinite(frames).all()


# ----------------------------------------------------------------------------------------------
# SDXL family: 3-tuple keys, depth > 1 blocks, the middle block as ("middle", 0)
# ----------------------------------------------------------------------------------------------


def test_sdxl_plus_morph_endpoint_equals_plain_ip_adapter_generation(comfy):
    import comfy.sample as comfy_sample
    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
    from aid_pack.attention.ip_adapter_files import load_ip_adapter
    from aid_pack.samplers.sequence.conditioning import sequence_conditioning
    from aid_pack.samplers.sequence.noise import sequence_noise
    from aid_pack.samplers.sequence.sampler import SequenceRequest, patched_model, sample_sequence, InterpolationOptions

    path = M.ensure_tiny_sdxl_ipadapter(plus=True)
    adapter = load_ip_adapter(str(path))
    g = torch.Generator().manual_seed(9)
    states = {"a": torch.randn(1, 257, 1280, generator=g), "b": torch.randn(1, 257, 1280, generator=g),
              "black": torch.randn(1, 257, 1280, generator=g)}

    def fake_encode(batch, name):  # tells the images apart by their grey level; black is the uncond image
        assert name == "penultimate_hidden_states"
        by_level = {0.3: "a", 0.7: "b", 0.0: "black"}
        return [states[by_level[round(float(image.mean()), 2)]] for image in batch]

    states_a, states_b, uncond = adapter.endpoint_inputs(fake_encode, torch.full((1, 8, 8, 3), 0.3),
                                                         torch.full((1, 8, 8, 3), 0.7))
    endpoints = ImageEndpoints("morph", 1.0, adapter, states_a, states_b, uncond)

    model = tiny_sdxl_model()
    keys = patched_model(model, (0.0, 0.5, 1.0), InterpolationOptions(), "test", endpoints).model_options[
        "transformer_options"]["patches_replace"]["attn2"]
    assert len(keys) == 17 and ("middle", 0, 1) in keys and all(p.image_branch is not None for p in keys.values())

    a, b, negative = sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3)
    coefficients = linear_coefficients(3)
    latent = torch.zeros(3, 4, 8, 8)
    request = SequenceRequest(positive=sequence_conditioning(a, b, coefficients), negative=negative,
                              coefficients=coefficients, latent=latent, noise=sequence_noise(latent, coefficients, 5),
                              seed=5, seed_b=None, steps=3, cfg=4.0, sampler_name="euler", scheduler="normal",
                              image_endpoints=endpoints)
    frames = sample_sequence(model, request)
    assert torch.isfinite(frames).all()
    w = image_proj_weights(path)
    reference = reference_model(model, path, direct_resampler(w, states["a"])[0],
                                direct_resampler(w, states["black"])[0], 1.0)
    plain = comfy_sample.sample(reference, comfy_sample.prepare_noise(latent[:1], 5), 3, 4.0, "euler", "normal", a,
                                negative, latent[:1])
    assert close(frames[0], plain[0])


# ----------------------------------------------------------------------------------------------
# user errors
# ----------------------------------------------------------------------------------------------


def test_adapter_for_another_unet_is_refused_by_both_nodes(sd15_tiny, prompts, link_model):
    full = AIDIPAdapterLoader().load(link_model("ipadapter", M.ensure_ipadapter("sd15")))[0]
    tokens = torch.zeros(4, 768)
    endpoints = ImageEndpoints("image-control", 1.0, full, None, tokens, tokens)
    with pytest.raises(AIDInputError, match=r"AID Sampler: input 'image_endpoints': the IP-Adapter has 16 "
                                            r"cross-attention layers but the model has 4 .*Fix: load an IP-Adapter"):
        aid_sample(sd15_tiny[0], prompts, 3, endpoints)
    sdxl = AIDIPAdapterLoader().load(link_model("ipadapter", M.ensure_tiny_sdxl_ipadapter()))[0]
    endpoints = ImageEndpoints("image-control", 1.0, sdxl, None, torch.zeros(4, 2048), torch.zeros(4, 2048))
    with pytest.raises(AIDInputError, match=r"Apply AID: input 'image_endpoints': the IP-Adapter is for SDXL"):
        ApplyAID().apply(sd15_tiny[0], schedule(3), "fused outer", "self and cross", 0.0, 0.5,
                         image_endpoints=endpoints)
    with pytest.raises(AIDInputError, match=r"input 'image_endpoints': got a str\b.* Fix: connect"):
        ApplyAID().apply(sd15_tiny[0], schedule(3), "fused outer", "self and cross", 0.0, 0.5,
                         image_endpoints="not endpoints")


def test_malicious_bin_is_refused_by_the_loader_node(link_model, capsys):
    name = link_model("ipadapter", M.ensure_malicious_bin())
    with pytest.raises(AIDInputError, match=r"AID IP-Adapter Loader: input 'ipadapter_file': "
                                            r"'aid-malicious-v1-ip-adapter\.bin' contains pickled objects that are "
                                            r"not plain tensors.*Fix: use the \.safetensors release"):
        AIDIPAdapterLoader().load(name)
    assert M.MALICIOUS_MARKER not in capsys.readouterr().out
    legacy = AIDIPAdapterLoader().load(link_model("ipadapter", M.ensure_ipadapter_bin()))[0]
    assert legacy.variant == "SD1.5"
    with pytest.raises(AIDInputError, match=r"'missing\.safetensors' is not in models/ipadapter"):
        AIDIPAdapterLoader().load("missing.safetensors")


def test_loader_lists_the_ipadapter_folder(comfy, link_model):
    name = link_model("ipadapter", M.ensure_ipadapter("sd15_plus"))
    assert name in AIDIPAdapterLoader.INPUT_TYPES()["required"]["ipadapter_file"][0]
    assert AIDIPAdapterLoader().load(name)[0].variant == "SD1.5 plus"


def test_endpoints_node_input_errors(tiny_adapter, images):
    adapter = AIDIPAdapterLoader().load(tiny_adapter("sd15")[0])[0]
    node = AIDIPAdapterEndpoints()
    with pytest.raises(AIDInputError, match=r"input 'image_a': morph needs an image for endpoint A"):
        node.build(adapter, None, images["b"], "morph", 1.0)
    with pytest.raises(AIDInputError, match=r"input 'image_a': image-control has no image at endpoint A"):
        node.build(adapter, None, images["b"], "image-control", 1.0, image_a=images["a"])

    class ViTL:
        image_size = 224

        def encode_image(self, image, crop=True):
            out = type("Output", (), {})()
            out.image_embeds = torch.zeros(image.shape[0], 768)
            return out

    with pytest.raises(AIDInputError, match=r"AID IP-Adapter Endpoints: input 'clip_vision': the SD1.5 IP-Adapter "
                                            r"needs 1024-wide CLIP-vision image_embeds.*ViT-H/14.*Fix: load the CLIP"):
        node.build(adapter, ViTL(), images["b"], "image-control", 1.0)
