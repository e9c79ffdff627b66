"""Morphing two real photos (issue 26 acceptance) on the real host with a random-weight SD1.5.

Two random 64 px pictures are inverted under their own prompts; the morph goes from photo A's prompt to
photo B's with frame 0 held on A's recording and the last frame on B's. Frames are compared with
aid_harness.compare.close (relative 1e-4: float rounding of batched runs; a wrong frame is off by 1e-1).
"""
import copy

import pytest
import torch

from aid_harness.compare import close
from aid_harness.unet_rows import counting_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.editing import AIDInversionHold, AIDInvertImage
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.noise import slerp
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, SEED, FRAMES = 64, 3, 3, 5
PROMPT_A, PROMPT_B = "a photo of a house by a lake", "a photo of a red car in a city street"


def random_image(width=SIZE, height=SIZE, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, height, width, 3, generator=generator)


@pytest.fixture(scope="module")
def photos(sd15_tiny, encode):
    """Two random pictures, their prompts and latents (as the core VAE Encode makes them), a negative prompt."""
    clip, vae = sd15_tiny[1], sd15_tiny[2]
    a, b = random_image(seed=0), random_image(seed=1)
    return {"image_a": a, "image_b": b, "latent_a": vae.encode(a), "latent_b": vae.encode(b),
            "source_a": encode(clip, PROMPT_A), "source_b": encode(clip, PROMPT_B),
            "neg": encode(clip, "blurry, low quality")}


def invert(sd15_tiny, photos, which="a", **overrides):
    args = dict(model=sd15_tiny[0], positive=photos["source_" + which], negative=photos["neg"], steps=STEPS, cfg=1.0,
                scheduler="normal", denoise=1.0, refine_steps=0, image=photos["image_" + which], vae=sd15_tiny[2])
    args.update(overrides)
    return AIDInvertImage().invert(**args)[0]


@pytest.fixture(scope="module")
def inversions(sd15_tiny, photos):
    return invert(sd15_tiny, photos, "a"), invert(sd15_tiny, photos, "b")


def schedule(coefficients=None, frames=FRAMES):
    return InterpolationSchedule(tuple(coefficients or linear_coefficients(frames)), "custom")


def morph(sd15_tiny, photos, inversions, sched=None, **overrides):
    args = dict(model=sd15_tiny[0], positive_a=photos["source_a"], positive_b=photos["source_b"],
                negative=photos["neg"], schedule=sched or schedule(), width=512, height=512, seed=SEED, steps=STEPS,
                cfg=7.0, sampler_name="euler", scheduler="normal", mode="fused outer", layers="self and cross",
                start_percent=0.0, end_percent=0.6, max_frames_per_batch=0, inversion=inversions[0],
                inversion_b=inversions[1])
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


@pytest.fixture(scope="module")
def morphed(sd15_tiny, photos, inversions):
    """The 5-frame morph through AID Sampler at cfg 1 and cfg 7."""
    return {cfg: morph(sd15_tiny, photos, inversions, cfg=cfg) for cfg in (1.0, 7.0)}


def core_morph_inputs(model, photos, inversions, sched=None):
    """Apply AID -> AID Inversion Hold (both inversions), AID Conditioning and AID Latent (the core path)."""
    sched = sched or schedule()
    model = ApplyAID().apply(model, sched, "fused outer", "self and cross", 0.0, 0.6)[0]
    model = AIDInversionHold().apply(model, inversions[0], inversion_b=inversions[1])[0]
    positive = AIDConditioning().build(photos["source_a"], photos["source_b"], sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    return model, positive, latent


def core_sampler(comfy, model, positive, negative, latent, cfg, sampler="euler", steps=STEPS):
    return comfy["nodes"].common_ksampler(model, SEED, steps, cfg, sampler, "normal", positive, negative,
                                          latent)[0]["samples"]


@pytest.mark.parametrize("cfg", [1.0, 7.0])
def test_both_endpoints_are_the_photos_at_any_cfg(morphed, photos, cfg):
    frames = morphed[cfg]
    assert frames.shape == (FRAMES, 4, SIZE // 8, SIZE // 8) and torch.isfinite(frames).all()
    assert close(frames[0], photos["latent_a"][0])
    assert close(frames[-1], photos["latent_b"][0])


def test_interior_frames_differ_from_both_photos_and_from_a_run_without_aid(sd15_tiny, photos, inversions, morphed):
    """Without interpolated attention (start = end) the endpoints are the same photos, the interiors move.

    With random weights attention moves the frames by about 1 % of their scale, 100x float rounding."""
    off = morph(sd15_tiny, photos, inversions, start_percent=0.6, end_percent=0.6)
    assert close(off[0], morphed[7.0][0]) and close(off[-1], morphed[7.0][-1])
    for f in range(1, FRAMES - 1):
        frame = morphed[7.0][f]
        assert not close(frame, photos["latent_a"][0], rel=1e-2), f"frame {f} is photo A"
        assert not close(frame, photos["latent_b"][0], rel=1e-2), f"frame {f} is photo B"
        assert not close(off[f], frame, rel=2e-3), f"frame {f} is the same without AID"


def test_a_frame_equals_itself_sampled_in_a_three_frame_run(sd15_tiny, photos, inversions, morphed):
    """The middle frame (t = 0.5) of the 5-frame morph is the frame of the run [A, 0.5, B]: batched == alone."""
    alone = morph(sd15_tiny, photos, inversions, sched=schedule((0.0, 0.5, 1.0)))
    assert close(alone[1], morphed[7.0][FRAMES // 2])
    assert close(alone[0], photos["latent_a"][0]) and close(alone[-1], photos["latent_b"][0])


def test_chunked_morph_equals_unchunked(sd15_tiny, photos, inversions, morphed):
    """Chunks of 3 rows ([A, f, B] each): every chunk holds both photos again."""
    chunked = morph(sd15_tiny, photos, inversions, cfg=1.0, max_frames_per_batch=3)
    for f in range(FRAMES):
        assert close(chunked[f], morphed[1.0][f]), f"frame {f}"


def test_rows_are_fed_both_recordings_and_interiors_start_from_the_slerp_of_both_inverted_noises(
        sd15_tiny, photos, inversions):
    """What the UNet sees: row A's input at step i is A's recording at sigma_i, the last row B's, and at the first
    step row f is slerp(inverted noise A, inverted noise B, t_f)."""
    from comfy.patcher_extension import WrappersMP

    seen = []

    def spy(executor, x, t, *args, **kwargs):
        seen.append(x.detach().clone())
        return executor(x, t, *args, **kwargs)

    model = sd15_tiny[0].clone()
    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "test.spy", spy)
    coefficients = (0.0, 0.3, 1.0)
    morph(sd15_tiny, photos, inversions, sched=schedule(coefficients), model=model, cfg=1.0)
    a, b = inversions
    assert len(seen) == STEPS
    for step, x in enumerate(seen):
        assert torch.equal(x[0], a.latents[step]) and torch.equal(x[-1], b.latents[step]), f"step {step}"
    assert close(seen[0][1], slerp(a.latents[0], b.latents[0], 0.3))
    assert not close(seen[0][1], a.latents[0], rel=1e-2) and not close(seen[0][1], b.latents[0], rel=1e-2)


def custom_advanced(model, positive, negative, latent, cfg, sampler):
    """SamplerCustomAdvanced with CFGGuider, KSamplerSelect, BasicScheduler and RandomNoise (core nodes)."""
    import comfy_extras.nodes_custom_sampler as custom

    guider = custom.CFGGuider.execute(model, positive, negative, cfg)[0]
    sigmas = custom.BasicScheduler.execute(model, "normal", STEPS, 1.0)[0]
    return custom.SamplerCustomAdvanced.execute(custom.RandomNoise.execute(SEED)[0], guider,
                                                custom.KSamplerSelect.execute(sampler)[0], sigmas,
                                                latent)[0]["samples"]


def test_core_path_gives_the_aid_sampler_frames(comfy, sd15_tiny, photos, inversions, morphed):
    """Apply AID -> AID Inversion Hold (inversion + inversion_b) under KSampler (euler, cfg 7) and
    SamplerCustomAdvanced (ddim, cfg 1)."""
    model, positive, latent = core_morph_inputs(sd15_tiny[0], photos, inversions)
    frames = core_sampler(comfy, model, positive, photos["neg"], latent, 7.0)
    for f in range(FRAMES):
        assert close(frames[f], morphed[7.0][f]), f"frame {f}"
    ddim = custom_advanced(model, positive, photos["neg"], latent, 1.0, "ddim")
    for f in range(FRAMES):
        assert close(ddim[f], morphed[1.0][f]), f"ddim frame {f}"


def test_core_path_with_denoise_below_one_keeps_both_photos(comfy, sd15_tiny, photos):
    """Both photos inverted at denoise 0.5, the core KSampler at the same denoise and cfg 7: both ends exact."""
    partial = invert(sd15_tiny, photos, "a", denoise=0.5), invert(sd15_tiny, photos, "b", denoise=0.5)
    model, positive, latent = core_morph_inputs(sd15_tiny[0], photos, partial, schedule((0.0, 0.5, 1.0)))
    frames = comfy["nodes"].common_ksampler(model, SEED, STEPS, 7.0, "euler", "normal", positive, photos["neg"],
                                            latent, denoise=0.5)[0]["samples"]
    assert close(frames[0], photos["latent_a"][0]) and close(frames[-1], photos["latent_b"][0])
    assert torch.isfinite(frames).all() and not close(frames[1], photos["latent_a"][0], rel=1e-2)


def test_the_input_model_is_unchanged(comfy, sd15_tiny, photos, inversions):
    base = sd15_tiny[0]
    wrappers = copy.deepcopy({kind: {key: len(w) for key, w in keys.items()} for kind, keys in base.wrappers.items()})
    held = AIDInversionHold().apply(base, inversions[0], inversion_b=inversions[1])[0]
    assert held is not base and held.get_all_wrappers("predict_noise")
    morph(sd15_tiny, photos, inversions, sched=schedule((0.0, 0.5, 1.0)), cfg=1.0)
    assert {kind: {key: len(w) for key, w in keys.items()} for kind, keys in base.wrappers.items()} == wrappers
    assert not base.get_all_wrappers("predict_noise") and not base.get_all_wrappers("sampler_sample")


def test_a_one_photo_hold_replaced_by_a_morph_hold_and_back(sd15_tiny, inversions):
    """AID Inversion Hold on a model that already holds: the later hold replaces the earlier one."""
    one = AIDInversionHold().apply(sd15_tiny[0], inversions[0])[0]
    two = AIDInversionHold().apply(one, inversions[0], inversion_b=inversions[1])[0]
    assert len(two.get_all_wrappers("predict_noise")) == 1 and len(two.get_all_wrappers("sampler_sample")) == 1
    back = AIDInversionHold().apply(two, inversions[1])[0]
    assert len(back.get_all_wrappers("predict_noise")) == 1


# ---- bad input: named errors before any sampling work (no UNet call) ----

def expect_refusal(node, input_name, call, counter):
    with pytest.raises(AIDInputError) as raised:
        call()
    assert raised.value.node == node and raised.value.input_name == input_name, str(raised.value)
    assert "Fix:" in str(raised.value)
    assert counter.calls == [], "the UNet ran before the refusal"
    return str(raised.value)


@pytest.fixture
def spied(sd15_tiny):
    """A clone of the tiny SD1.5 whose UNet calls are counted (same fingerprint: no weight patches)."""
    return counting_model(sd15_tiny[0])


def test_photos_of_different_sizes_are_refused(comfy, sd15_tiny, photos, inversions, spied):
    model, counter = spied
    wide = invert(sd15_tiny, photos, "b", image=random_image(SIZE + 16, SIZE, seed=1))
    message = expect_refusal("AID Sampler", "inversion_b", lambda: morph(
        sd15_tiny, photos, (inversions[0], wide), model=model), counter)
    assert "80x64" in message and "64x64" in message and "multiples of 8" in message
    patched = ApplyAID().apply(model, schedule(), "fused outer", "self and cross", 0.0, 0.6)[0]
    expect_refusal("AID Inversion Hold", "inversion_b",
                   lambda: AIDInversionHold().apply(patched, inversions[0], inversion_b=wide), counter)


def test_an_inversion_b_from_another_model_or_schedule_is_refused(comfy, sd15_tiny, photos, inversions, spied):
    model, counter = spied
    lora = sd15_tiny[0].clone()
    key = next(k for k in lora.model.state_dict() if k.startswith("diffusion_model.") and k.endswith(".weight"))
    lora.add_patches({key: (torch.zeros_like(lora.model.state_dict()[key]),)}, 0.5)
    other_model = invert(sd15_tiny, photos, "b", model=lora)
    message = expect_refusal("AID Sampler", "inversion_b", lambda: morph(
        sd15_tiny, photos, (inversions[0], other_model), model=model), counter)
    assert "weight patches" in message
    expect_refusal("AID Inversion Hold", "inversion_b",
                   lambda: AIDInversionHold().apply(model, inversions[0], inversion_b=other_model), counter)
    other_steps = invert(sd15_tiny, photos, "b", steps=STEPS + 1)
    message = expect_refusal("AID Sampler", "inversion_b", lambda: morph(
        sd15_tiny, photos, (inversions[0], other_steps), model=model), counter)
    assert f"{STEPS + 1} steps of 'normal'" in message
    message = expect_refusal("AID Inversion Hold", "inversion_b",
                             lambda: AIDInversionHold().apply(model, inversions[0], inversion_b=other_steps), counter)
    assert f"{STEPS + 1} steps" in message and f"{STEPS} steps" in message


def test_samplers_that_cannot_be_held_are_refused(comfy, sd15_tiny, photos, inversions, spied):
    model, counter = spied
    expect_refusal("AID Sampler", "sampler_name", lambda: morph(
        sd15_tiny, photos, inversions, model=model, sampler_name="euler_ancestral"), counter)
    held, positive, latent = core_morph_inputs(model, photos, inversions)
    for sampler in ("euler_ancestral", "heun"):
        message = expect_refusal("AID Inversion Hold", "inversion", lambda: core_sampler(
            comfy, held, positive, photos["neg"], latent, 7.0, sampler=sampler), counter)
        assert "euler or ddim" in message


def test_masks_other_steps_and_a_model_without_a_sequence_are_refused_on_the_core_path(
        comfy, sd15_tiny, photos, inversions, spied):
    model, counter = spied
    held, positive, latent = core_morph_inputs(model, photos, inversions)
    masked = dict(latent, noise_mask=torch.ones(1, SIZE, SIZE))
    message = expect_refusal("AID Inversion Hold", "inversion",
                             lambda: core_sampler(comfy, held, positive, photos["neg"], masked, 1.0), counter)
    assert "noise mask" in message
    expect_refusal("AID Inversion Hold", "inversion",
                   lambda: core_sampler(comfy, held, positive, photos["neg"], latent, 1.0, steps=STEPS + 1), counter)
    plain = AIDInversionHold().apply(model, inversions[0], inversion_b=inversions[1])[0]  # no Apply AID
    message = expect_refusal("AID Inversion Hold", "inversion_b",
                             lambda: core_sampler(comfy, plain, positive, photos["neg"], latent, 1.0), counter)
    assert "Apply AID" in message
    core_sampler(comfy, held, positive, photos["neg"], latent, 1.0)
    assert counter.calls == [FRAMES] * STEPS, "the spy counts the UNet calls of this model's runs"


def test_inversion_b_without_inversion_is_refused(sd15_tiny, photos, inversions, spied):
    model, counter = spied
    message = expect_refusal("AID Sampler", "inversion_b", lambda: morph(
        sd15_tiny, photos, (None, inversions[1]), model=model), counter)
    assert "'inversion'" in message


def test_sdxl_morph_holds_both_endpoints():
    """The same hold on the tiny random SDXL (latents inverted directly, hand-made conditioning), at cfg 7."""
    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model

    model = tiny_sdxl_model()
    a, b, negative = sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3)
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(2, 1, 4, SIZE // 8, SIZE // 8, generator=generator)
    inversions = [AIDInvertImage().invert(model, prompt, negative, STEPS, 1.0, "normal", 1.0, 0,
                                          latent={"samples": latent})[0] for prompt, latent in zip((a, b), latents)]
    frames = AIDSampler().sample(model, a, b, negative, schedule(frames=3), 512, 512, SEED, STEPS, 7.0, "euler",
                                 "normal", "fused outer", "self and cross", 0.0, 0.6, 0, inversion=inversions[0],
                                 inversion_b=inversions[1])[0]["samples"]
    assert close(frames[0], latents[0][0]) and close(frames[-1], latents[1][0])
    assert not close(frames[1], latents[0][0], rel=1e-2) and not close(frames[1], latents[1][0], rel=1e-2)


def test_a_morph_cannot_be_split_across_servers(sd15_tiny, photos, inversions, spied):
    from aid_pack.samplers.sequence.shares import ShareSpec

    model, counter = spied
    expect_refusal("AID Sampler", "share", lambda: morph(sd15_tiny, photos, inversions, model=model,
                                                         share=ShareSpec(0, 2)), counter)


def test_ipadapter_recipe_keeps_both_photos_and_moves_the_frames_between(comfy, link_model, sd15_tiny, photos,
                                                                          inversions, morphed):
    """docs/editing.md's identity recipe: AID IP-Adapter Endpoints (morph, the same two photos) on the same AID
    Sampler. The held endpoints stay the photos; the frames between get the interpolated image prompt."""
    from aid_harness import models as M
    from aid_pack.nodes.ipadapter import AIDIPAdapterEndpoints, AIDIPAdapterLoader

    clip_vision = comfy["nodes"].CLIPVisionLoader().load_clip(link_model("clip_vision",
                                                                         M.ensure_clip_vision_vit_h()))[0]
    layers = [layer["inner_dim"] for layer in M.unet_cross_attention_layers(sd15_tiny[0].model.diffusion_model)]
    adapter = AIDIPAdapterLoader().load(link_model("ipadapter", M.ensure_ipadapter("sd15", layers=layers)))[0]
    endpoints = AIDIPAdapterEndpoints().build(adapter, clip_vision, photos["image_b"], "morph", 0.8,
                                              image_a=photos["image_a"])[0]
    frames = morph(sd15_tiny, photos, inversions, image_endpoints=endpoints)
    assert close(frames[0], photos["latent_a"][0]) and close(frames[-1], photos["latent_b"][0])
    for f in range(1, FRAMES - 1):
        assert torch.isfinite(frames[f]).all()
        assert not close(frames[f], morphed[7.0][f], rel=2e-3), f"frame {f} is the same without the image prompt"


DIT_CFG = {"flux": 1.0, "sd3": 4.0, "qwen_image": 2.5}  # Flux guidance-distilled (cfg 1), SD3.5, Qwen with CFG


@pytest.mark.parametrize("family", list(DIT_CFG))
def test_dit_morph_holds_both_endpoints_and_a_frame_equals_itself_alone(comfy, family):
    """Flux, SD3.5 and Qwen-Image at tiny sizes (latents inverted directly in the family's own layout,
    hand-made conditioning at the model's width): both endpoints exact at cfg 1 and the family's cfg, the
    middle frame of 5 equals the frame of [A, 0.5, B], chunked equals unchunked."""
    from aid_harness.dit_models import dit_conditioning, tiny_dit_model
    from aid_pack.samplers.sequence.sampler import empty_sequence_latent

    model = tiny_dit_model(family)
    shape = empty_sequence_latent(model, 1, SIZE, SIZE).shape  # Qwen-Image: [1, C, 1, h, w]
    a, b, negative = (dit_conditioning(family, seed) for seed in (1, 2, 3))
    latents = torch.randn(2, *shape, generator=torch.Generator().manual_seed(5))
    inversions = [AIDInvertImage().invert(model, prompt, negative, STEPS, 1.0, "simple", 1.0, 0,
                                          latent={"samples": latent})[0] for prompt, latent in zip((a, b), latents)]

    def run(sched, cfg, chunk=0):
        return AIDSampler().sample(model, a, b, negative, sched, 512, 512, SEED, STEPS, cfg, "euler", "simple",
                                   "fused outer", "self and cross", 0.0, 0.6, chunk, inversion=inversions[0],
                                   inversion_b=inversions[1])[0]["samples"]

    for cfg in sorted({1.0, DIT_CFG[family]}):
        frames = run(schedule(), cfg)
        assert close(frames[0], latents[0][0]) and close(frames[-1], latents[1][0]), f"cfg {cfg}"
        for f in range(1, FRAMES - 1):
            assert not close(frames[f], latents[0][0], rel=1e-2) and not close(frames[f], latents[1][0], rel=1e-2)
    alone = run(schedule((0.0, 0.5, 1.0)), cfg)
    assert close(alone[1], frames[FRAMES // 2])
    chunked = run(schedule(), cfg, chunk=3)
    for f in range(FRAMES):
        assert close(chunked[f], frames[f]), f"chunked frame {f}"
