"""AID's options on diffusion transformers, and living with other packs' patches (issue 12).

Tiny in-process Flux / SD3.5 / Qwen-Image (aid_harness/dit_models.py) on the real host: every mode,
layers choice and block choice keeps the endpoints; Flux guidance flows per frame; another pack's
attention override and dit block wrapper are chained to; unsupported models and block choices are
refused with a message that says what is supported.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.dit_models import tiny_dit_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from test_dit_models import SIZE, Dit, schedule


@pytest.fixture(scope="module")
def flux(comfy):
    return Dit(comfy, "flux")


@pytest.fixture(scope="module")
def flux_ends(flux):
    return flux.plain(flux.a)[0], flux.plain(flux.b)[0]


@pytest.fixture(scope="module")
def flux_default(flux):
    return flux.aid(schedule(3))


@pytest.mark.parametrize("mode", ["fused inner", "outer", "inner"])
def test_every_mode_keeps_endpoints(flux, flux_ends, flux_default, mode):
    frames = flux.aid(schedule(3), mode=mode)
    assert close(frames[0], flux_ends[0]) and close(frames[-1], flux_ends[1])
    assert not close(frames[1], flux_default[1], rel=1e-3)


@pytest.mark.parametrize("option", [dict(layers="self only"), dict(layers="cross only"), dict(dit_blocks="double"),
                                    dict(dit_blocks="single")], ids=lambda o: "-".join(o.values()))
def test_layers_and_block_choices_keep_endpoints_and_change_the_interior(flux, flux_ends, flux_default, option):
    frames = flux.aid(schedule(3), **option)
    assert close(frames[0], flux_ends[0]) and close(frames[-1], flux_ends[1])
    assert not close(frames[1], flux_default[1], rel=1e-3)


@pytest.mark.parametrize("family", ["sd3", "qwen_image"])
def test_single_blocks_are_refused_where_a_family_has_none(comfy, family):
    model = tiny_dit_model(family)
    with pytest.raises(AIDInputError, match=r"Apply AID: input 'dit_blocks': .* models have only double blocks\. "
                                            r"Fix: choose all or double\."):
        ApplyAID().apply(model, schedule(3), "fused outer", "self and cross", 0.0, 0.6, dit_blocks="single")


def guidance_spy(model):
    """(clone, calls): every model call appends the guidance rows of its positive chunk."""
    calls = []

    def wrapper(apply_model, args):
        chunks = list(args["cond_or_uncond"])
        rows = args["c"]["guidance"].reshape(len(chunks), -1)
        calls.append(rows[0].tolist())
        return apply_model(args["input"], args["timestep"], **args["c"])

    clone = model.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    return clone, calls


def test_flux_guidance_flows_per_frame(flux):
    """A at guidance 2 and B at 5 (FluxGuidance's key): each endpoint is its own plain generation."""
    import node_helpers

    a = node_helpers.conditioning_set_values(flux.a, {"guidance": 2.0})
    b = node_helpers.conditioning_set_values(flux.b, {"guidance": 5.0})
    spied, calls = guidance_spy(flux.model)
    frames = flux.aid(schedule(coefficients=(0.0, 0.25, 1.0)), model=spied, positive_a=a, positive_b=b)
    assert calls[0] == pytest.approx([2.0, 2.75, 5.0])
    assert close(frames[0], flux.plain(a)[0]) and close(frames[-1], flux.plain(b)[0])
    assert not close(flux.plain(b)[0], flux.plain(flux.b)[0], rel=1e-3), "guidance changes the image"
    # FluxGuidance applied to AID Conditioning's output sets every frame (it wins over the endpoints' values)
    sched = schedule(3)
    positive = node_helpers.conditioning_set_values(AIDConditioning().build(a, b, sched)[0], {"guidance": 4.0})
    patched = ApplyAID().apply(spied, sched, "fused outer", "self and cross", 0.0, 0.6)[0]
    calls.clear()
    flux.plain(positive, model=patched, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    assert calls[0] == pytest.approx([4.0, 4.0, 4.0])
    # ... also when it sets A's own value again (this was taken for "not set" and the frames kept 2 -> 5)
    positive = node_helpers.conditioning_set_values(AIDConditioning().build(a, b, sched)[0], {"guidance": 2.0})
    calls.clear()
    flux.plain(positive, model=patched, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    assert calls[0] == pytest.approx([2.0, 2.0, 2.0])


class CountingOverride:
    """Another pack's optimized_attention_override: counts its calls and runs the backend it is given."""

    def __init__(self):
        self.calls = 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        return func(*args, **kwargs)


def test_an_attention_override_already_there_is_chained_to(flux, flux_default):
    other = CountingOverride()
    model = flux.model.clone()
    model.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = other
    frames = flux.aid(schedule(3), model=model)
    assert other.calls > 0
    for f in range(3):
        assert close(frames[f], flux_default[f]), f"frame {f}"


class CountingBlockWrapper:
    """Another pack's dit block wrapper at ("double_block", i): counts calls, runs the block."""

    def __init__(self):
        self.calls = 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, args, extra):
        self.calls += 1
        return extra["original_block"](args)


def test_sd3_block_wrappers_chain_to_another_packs_wrapper(comfy):
    sd3 = Dit(comfy, "sd3")
    plain_aid = sd3.aid(schedule(3))
    other = CountingBlockWrapper()
    model = sd3.model.clone()
    model.set_model_patch_replace(other, "dit", "double_block", 1)
    frames = sd3.aid(schedule(3), model=model)
    assert other.calls > 0
    for f in range(3):
        assert close(frames[f], plain_aid[f]), f"frame {f}"


def test_sd3_with_skip_layer_guidance_keeps_endpoints(comfy):
    """Core SkipLayerGuidanceDiT puts its skip at the same dit key in its extra pass."""
    import nodes

    sd3 = Dit(comfy, "sd3")
    slg = nodes.NODE_CLASS_MAPPINGS["SkipLayerGuidanceDiT"].execute(sd3.model, scale=3.0, start_percent=0.0,
                                                                     end_percent=1.0, double_layers="1",
                                                                     single_layers="").result[0]
    frames = sd3.aid(schedule(3), model=slg)
    assert close(frames[0], sd3.plain(sd3.a, model=slg)[0]) and close(frames[-1], sd3.plain(sd3.b, model=slg)[0])
    assert not close(frames[0], sd3.plain(sd3.a)[0], rel=1e-3), "skip layer guidance took part"


def test_unsupported_model_is_refused_with_the_supported_list(flux):
    """Flux.2 subclasses Flux but is not one AID was built and tested for."""
    from comfy import model_management, model_patcher, supported_models

    config = supported_models.Flux2({
        "image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None, "context_in_dim": 64,
        "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
        "axes_dim": [8, 8, 8, 8], "theta": 2000, "patch_size": 1, "qkv_bias": False, "guidance_embed": True,
        "global_modulation": True, "mlp_silu_act": True, "ops_bias": False})
    config.set_inference_dtype(torch.float32, None)
    model = model_patcher.ModelPatcher(config.get_model({}), model_management.get_torch_device(),
                                       model_management.unet_offload_device())
    with pytest.raises(AIDInputError, match=r"Apply AID: input 'model': this model \(Flux2\) is not one AID can "
                                            r"interpolate\. Supported: SD1\.x, SD2\.x and SDXL.*Flux\.1.*SD3 / SD3\.5 "
                                            r"and Qwen-Image\."):
        ApplyAID().apply(model, schedule(3), "fused outer", "self and cross", 0.0, 0.6)
    with pytest.raises(AIDInputError, match="AID Sampler: input 'model': this model"):
        flux.aid(schedule(3), model=model)


@pytest.mark.parametrize("family", ["flux", "sd3", "qwen_image"])
def test_ip_adapter_endpoints_are_refused_on_a_dit(comfy, family):
    """Before: the adapter's layer count was compared with the DiT's (0) and the fix spoke of UNets."""
    from aid_harness import models
    from aid_pack.attention.image_prompt import ImageEndpoints
    from aid_pack.attention.ip_adapter_files import load_ip_adapter

    tokens = torch.zeros(4, 768)
    endpoints = ImageEndpoints("image-control", 1.0, load_ip_adapter(str(models.ensure_ipadapter("sd15"))), None,
                               tokens, tokens)
    name = {"flux": "Flux", "sd3": "SD3", "qwen_image": "Qwen-Image"}[family]
    with pytest.raises(AIDInputError, match=rf"Apply AID: input 'image_endpoints': IP-Adapter image endpoints work on "
                                            rf"SD1\.x and SDXL checkpoints, and this is a {name} model"):
        ApplyAID().apply(tiny_dit_model(family), schedule(3), "fused outer", "self and cross", 0.0, 0.6,
                         image_endpoints=endpoints)


@pytest.mark.parametrize("family", ["flux", "sd3", "qwen_image"])
def test_regions_and_regional_interpolation_are_refused_on_a_dit_by_name(comfy, family):
    """Before: Apply Spatial-Temporal Attention said 'no UNet transformer blocks', and AID Regional
    Interpolation told a DiT patched by Apply AID to 'connect the output of Apply AID'."""
    from aid_harness.unet_rows import counting_model
    from aid_pack.nodes.region_sampler import AIDRegionalInterpolation, ApplySpatialTemporalAttention
    from aid_pack.nodes.region_sampler import SpatialTemporalSampler
    from aid_pack.nodes.regions import SpatialTemporalRegion

    dit = Dit(comfy, family)
    regions = SpatialTemporalRegion().add("cat", "fractions", 0.0, 0.0, 0.5, 1.0, local_prompt=dit.b)["result"][0]
    name = dit.model.model.__class__.__name__
    refused = r"input 'model': this is a .* model: .* Fix: use an SD1\.x, SD2\.x or SDXL checkpoint"
    with pytest.raises(AIDInputError, match="^Apply Spatial-Temporal Attention: " + refused):
        ApplySpatialTemporalAttention().apply(dit.model, regions)
    model, counter = counting_model(dit.model)
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    with pytest.raises(AIDInputError, match="^Spatial-Temporal Sampler: " + refused):
        SpatialTemporalSampler().sample(model, dit.a, dit.negative, regions, latent, 0, 2, dit.cfg, "euler",
                                        "simple", "fixed weights", 1, 0.005, 2)
    assert counter.rows == 0, f"{name}: refused before sampling"
    patched = ApplyAID().apply(dit.model, schedule(3), "fused outer", "self and cross", 0.0, 0.6)[0]
    with pytest.raises(AIDInputError, match="^AID Regional Interpolation: " + refused + ", or leave this node out"):
        AIDRegionalInterpolation().apply(patched, regions)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_smooth_sampler_runs_on_flux_and_sd3_and_its_schedule_reproduces_its_frames(flux, comfy, link_model, family):
    """AID Smooth Sampler on Flux (cfg 1) and SD3.5 (cfg 4) with the 16-channel VAE file through the core
    VAELoader (Qwen-Image decodes with the Wan VAE, which the tests do not build)."""
    from aid_harness import dit_models
    from aid_pack.nodes.smooth import AIDSmoothSampler

    dit = flux if family == "flux" else Dit(comfy, family)
    vae = comfy["nodes"].VAELoader().load_vae(link_model("vae", dit_models.ensure_vae16()))[0]
    output = AIDSmoothSampler().sample(
        model=dit.model, vae=vae, positive_a=dit.a, positive_b=dit.b, negative=dit.negative, frames=3,
        method="dynamic selection", exploration_frames=4, max_trials=2, target_smoothness=1.0, frames_per_round=2,
        metric="pixel", width=SIZE, height=SIZE, seed=7, steps=dit.steps, cfg=dit.cfg, sampler_name="euler",
        scheduler="simple", mode="fused outer", layers="self and cross", start_percent=0.0, end_percent=0.6,
        max_frames_per_batch=0)
    latent, images, chosen, _ = output["result"]
    assert latent["samples"].shape == (3, 16, SIZE // 8, SIZE // 8) and images.shape == (3, SIZE, SIZE, 3)
    again = dit.aid(chosen)
    for f in range(3):
        assert close(latent["samples"][f], again[f]), f"frame {f}"


def test_an_attention_mask_is_refused_before_the_first_step_when_interpolation_starts_late(flux):
    """With start_percent 0.5 the joint override met the mask only at its first interpolated step, so the run
    died half-way; the sequence run now refuses it by node and input before step 1."""
    from aid_harness.unet_rows import counting_model

    masked = [[context, dict(options, attention_mask=torch.zeros(1, 8 + 16, 8 + 16),
                             attention_mask_img_shape=(4, 4))] for context, options in flux.a]
    model, counter = counting_model(flux.model)
    with pytest.raises(AIDInputError, match=r"^AID Sampler: input 'model': the positive conditioning carries an "
                                            r"attention mask .* Fix: remove the attention mask"):
        flux.aid(schedule(3), model=model, positive_a=masked, start_percent=0.5, end_percent=1.0)
    assert counter.rows == 0, "refused before any step"
    plain = flux.aid(schedule(3), model=model, positive_a=masked, start_percent=0.5, end_percent=0.5)
    assert torch.isfinite(plain).all(), "without interpolation the mask is ComfyUI's to apply"
