"""Real-image editing on the real host with a random-weight SD1.5 (issue 13 acceptance).

A random 64 px picture is inverted under its prompt; the edit sequence goes from that prompt to an
edit prompt with endpoint A held on the recorded trajectory. Frames are compared with
aid_harness.compare.close (relative 1e-4: float rounding of batched runs; a wrong frame is off by 1e-1).
"""
import copy
import dataclasses

import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.editing import AIDInversionHold, AIDInvertImage
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.editing.inversion import held_model
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, SEED, FRAMES = 64, 3, 3, 4


def random_image(width=SIZE, height=SIZE, batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, height, width, 3, generator=generator)


def relative_error(a, b) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-6)


@pytest.fixture(scope="module")
def photo(sd15_tiny, encode):
    """A random picture, its prompt, the edit prompt, and its latent as the core VAE Encode makes it."""
    image = random_image()
    clip, vae = sd15_tiny[1], sd15_tiny[2]
    return {"image": image, "latent": vae.encode(image), "source": encode(clip, "a photo of a house by a lake"),
            "edit": encode(clip, "a photo of a house by a lake in winter, snow"),
            "neg": encode(clip, "blurry, low quality")}


def invert(sd15_tiny, photo, **overrides):
    args = dict(model=sd15_tiny[0], positive=photo["source"], negative=photo["neg"], steps=STEPS, cfg=1.0,
                scheduler="normal", denoise=1.0, refine_steps=0, image=photo["image"], vae=sd15_tiny[2])
    args.update(overrides)
    return AIDInvertImage().invert(**args)


@pytest.fixture(scope="module")
def inversion(sd15_tiny, photo):
    return invert(sd15_tiny, photo)[0]


def schedule(frames=FRAMES):
    return InterpolationSchedule(linear_coefficients(frames), "linear")


def edit(sd15_tiny, photo, inversion, sched=None, **overrides):
    args = dict(model=sd15_tiny[0], positive_a=photo["source"], positive_b=photo["edit"], negative=photo["neg"],
                schedule=sched or schedule(), width=512, height=512, seed=SEED, steps=STEPS, cfg=7.0,
                sampler_name="euler", scheduler="normal", mode="fused outer", layers="self and cross",
                start_percent=0.0, end_percent=0.6, max_frames_per_batch=0, inversion=inversion)
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


@pytest.fixture(scope="module")
def edited(sd15_tiny, photo, inversion):
    """The 4-frame edit through AID Sampler at cfg 1 and cfg 7."""
    return {cfg: edit(sd15_tiny, photo, inversion, cfg=cfg) for cfg in (1.0, 7.0)}


def core_sampler(comfy, model, positive, negative, latent, cfg, sampler="euler", steps=STEPS, denoise=1.0):
    return comfy["nodes"].common_ksampler(model, SEED, steps, cfg, sampler, "normal", positive, negative, latent,
                                          denoise=denoise)[0]["samples"]


def core_edit_inputs(sd15_tiny, photo, inversion, sched=None, start_percent=0.0, end_percent=0.6):
    """Apply AID + AID Inversion Hold, AID Conditioning and AID Latent: the core path's model, prompt, latent."""
    sched = sched or schedule()
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", start_percent, end_percent)[0]
    model = AIDInversionHold().apply(model, inversion)[0]
    positive = AIDConditioning().build(photo["source"], photo["edit"], sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    return model, positive, latent


@pytest.mark.parametrize("cfg", [1.0, 7.0])
def test_frame_zero_is_the_input_latent_at_any_cfg(edited, photo, cfg):
    frames = edited[cfg]
    assert frames.shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
    assert close(frames[0], photo["latent"][0])
    assert not close(frames[-1], photo["latent"][0], rel=1e-2), "endpoint B is the edit, not a copy"
    assert torch.isfinite(frames).all()


def custom_advanced(model, positive, negative, latent, cfg, sampler):
    """SamplerCustomAdvanced with CFGGuider, KSamplerSelect, BasicScheduler and RandomNoise (core nodes)."""
    import comfy_extras.nodes_custom_sampler as custom

    guider = custom.CFGGuider.execute(model, positive, negative, cfg)[0]
    sigmas = custom.BasicScheduler.execute(model, "normal", STEPS, 1.0)[0]
    return custom.SamplerCustomAdvanced.execute(custom.RandomNoise.execute(SEED)[0], guider,
                                                custom.KSamplerSelect.execute(sampler)[0], sigmas,
                                                latent)[0]["samples"]


def test_core_path_gives_the_aid_sampler_frames(comfy, sd15_tiny, photo, inversion, edited):
    """Apply AID + AID Inversion Hold under the core KSampler (euler, cfg 7) and SamplerCustomAdvanced (ddim, cfg 1)."""
    model, positive, latent = core_edit_inputs(sd15_tiny, photo, inversion)
    frames = core_sampler(comfy, model, positive, photo["neg"], latent, 7.0)
    for f in range(FRAMES):
        assert close(frames[f], edited[7.0][f]), f"frame {f}"
    ddim = custom_advanced(model, positive, photo["neg"], latent, 1.0, "ddim")
    for f in range(FRAMES):
        assert close(ddim[f], edited[1.0][f]), f"ddim frame {f}"


def test_core_path_with_denoise_below_one_keeps_frame_zero(comfy, sd15_tiny, photo, inversion):
    """A partial inversion (denoise 0.5 on both nodes) under the core KSampler at cfg 7: frame 0 is still the photo."""
    partial = invert(sd15_tiny, photo, denoise=0.5)[0]
    assert partial.steps == STEPS and float(partial.sigmas[0]) < float(inversion.sigmas[0]) / 2  # starts part-way
    model, positive, latent = core_edit_inputs(sd15_tiny, photo, partial)
    frames = core_sampler(comfy, model, positive, photo["neg"], latent, 7.0, denoise=0.5)
    assert close(frames[0], photo["latent"][0])
    assert torch.isfinite(frames).all() and not close(frames[-1], photo["latent"][0], rel=1e-2)


def test_regeneration_drifts_without_the_hold_and_not_with_it(comfy, sd15_tiny, photo, inversion):
    """Prompt A alone from the inverted noise: plain Euler drifts from the photo, the held run lands on it."""
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    for cfg in (1.0, 7.0):
        runs = {}
        for hold in (False, True):
            model = held_model(sd15_tiny[0], inversion, "test", hold_endpoint=hold)
            runs[hold] = core_sampler(comfy, model, photo["source"], photo["neg"], latent, cfg)[0]
        drift = relative_error(runs[False], photo["latent"][0])
        held = relative_error(runs[True], photo["latent"][0])
        print(f"\nregeneration from the inverted noise, {STEPS} steps euler, cfg {cfg:g}: relative error "
              f"{drift:.3g} without the hold, {held:.2g} with it")
        assert drift > 1e-2 and held < 1e-4


def test_endpoint_a_is_fed_the_recorded_trajectory_and_every_row_starts_from_the_inverted_noise(
        sd15_tiny, photo, inversion):
    """What the UNet sees: row A's input at step i is the recording at sigma_i (the real image's keys and
    values), and at the first step every row is the inverted noise."""
    from comfy.patcher_extension import WrappersMP

    seen = []

    def spy(executor, x, t, *args, **kwargs):
        seen.append((float(t[0]), x.detach().clone()))
        return executor(x, t, *args, **kwargs)

    model = held_model(ApplyAID().apply(sd15_tiny[0], schedule(3), "fused outer", "self and cross", 0.0, 0.6)[0],
                       inversion, "test")
    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "test.spy", spy)
    edit(sd15_tiny, photo, None, sched=schedule(3), model=model, cfg=1.0, width=SIZE, height=SIZE)
    assert [sigma for sigma, _ in seen] == pytest.approx(inversion.sigmas[:-1].tolist(), rel=1e-5)
    for step, (_, x) in enumerate(seen):
        assert torch.equal(x[0], inversion.latents[step]), f"step {step}"
    for row in range(3):
        assert close(seen[0][1][row], inversion.latents[0]), f"row {row} does not start from the inverted noise"


def test_interior_frames_change_with_interpolated_attention(sd15_tiny, photo, inversion, edited):
    """The same held edit with the AID patch switched off (start = end): endpoints equal, interiors differ.

    With random weights attention moves the frames by 0.6-1.7 % of their scale (measured), 60x float rounding.
    """
    off = edit(sd15_tiny, photo, inversion, start_percent=0.6, end_percent=0.6)
    assert close(off[0], edited[7.0][0]) and close(off[-1], edited[7.0][-1])
    for f in range(1, FRAMES - 1):
        assert not close(off[f], edited[7.0][f], rel=2e-3), f"frame {f} is the same without AID"


def test_chunked_edit_equals_unchunked(sd15_tiny, photo, inversion, edited):
    chunked = edit(sd15_tiny, photo, inversion, cfg=1.0, max_frames_per_batch=3)
    for f in range(FRAMES):
        assert close(chunked[f], edited[1.0][f]), f"frame {f}"


def test_paid_guidance_and_latent_input(sd15_tiny, photo, inversion, encode):
    """Inverting the VAE Encode LATENT records the same trajectory; a PAID guided edit keeps frame 0 exact."""
    from aid_pack.nodes.conditioning import PAIDGuidance

    from_latent, latent = invert(sd15_tiny, photo, image=None, vae=None, latent={"samples": photo["latent"]})
    assert torch.equal(latent["samples"], photo["latent"])
    assert close(from_latent.latents, inversion.latents)
    guidance = PAIDGuidance().build(encode(sd15_tiny[1], "a photo of a house by a frozen lake"))[0]
    frames = edit(sd15_tiny, photo, from_latent, sched=schedule(3), cfg=1.0, guidance=guidance)
    assert close(frames[0], photo["latent"][0])


def test_the_input_model_is_not_changed(sd15_tiny, inversion):
    held = AIDInversionHold().apply(sd15_tiny[0], inversion)[0]
    assert held is not sd15_tiny[0]
    assert not sd15_tiny[0].get_all_wrappers("predict_noise")
    assert held.get_all_wrappers("predict_noise")


# ---- bad input: named errors before any sampling work ----

def expect_error(node, input_name, call):
    with pytest.raises(AIDInputError) as raised:
        call()
    assert raised.value.node == node and raised.value.input_name == input_name, str(raised.value)
    assert "Fix:" in str(raised.value)
    return str(raised.value)


def test_image_sizes_the_vae_would_crop_are_refused(sd15_tiny, photo):
    message = expect_error("AID Invert Image", "image", lambda: invert(sd15_tiny, photo, image=random_image(68, 64)))
    assert "68x64" in message and "64x64" in message


def test_batches_and_missing_sources_are_refused(sd15_tiny, photo):
    expect_error("AID Invert Image", "image", lambda: invert(sd15_tiny, photo, image=random_image(batch=2)))
    expect_error("AID Invert Image", "latent", lambda: invert(
        sd15_tiny, photo, image=None, latent={"samples": torch.zeros(2, 4, 8, 8)}))
    expect_error("AID Invert Image", "image", lambda: invert(sd15_tiny, photo, image=None))
    expect_error("AID Invert Image", "vae", lambda: invert(sd15_tiny, photo, vae=None))
    expect_error("AID Invert Image", "latent", lambda: invert(sd15_tiny, photo, latent={"samples": photo["latent"]}))
    patched = ApplyAID().apply(sd15_tiny[0], schedule(), "fused outer", "self and cross", 0.0, 0.6)[0]
    expect_error("AID Invert Image", "model", lambda: invert(sd15_tiny, photo, model=patched))


def test_the_inversion_keeps_no_autograd_graph_outside_inference_mode(sd15_tiny, photo):
    """TrajectoryRecorder ran the model with grad enabled: benchmark workers outside inference mode kept a
    graph through every model call (and measured its memory)."""
    model, grad_modes = sd15_tiny[0].clone(), []

    def spy(apply_model, args):
        grad_modes.append(torch.is_grad_enabled())
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(spy)
    with torch.enable_grad():
        recorded = invert(sd15_tiny, photo, model=model)[0]
    assert grad_modes and not any(grad_modes)
    assert not recorded.latents.requires_grad


def test_a_model_that_already_holds_an_inversion_is_refused_by_name(sd15_tiny, photo, inversion):
    """Inverting through AID Inversion Hold's model failed inside the sampler with a sampler message."""
    held = AIDInversionHold().apply(sd15_tiny[0], inversion)[0]
    message = expect_error("AID Invert Image", "model", lambda: invert(sd15_tiny, photo, model=held))
    assert "AID Inversion Hold" in message
    patched = ApplyAID().apply(sd15_tiny[0], schedule(), "fused outer", "self and cross", 0.0, 0.6)[0]
    both = AIDInversionHold().apply(patched, inversion)[0]
    expect_error("AID Invert Image", "model", lambda: invert(sd15_tiny, photo, model=both))


def test_other_sigmas_are_refused(comfy, sd15_tiny, photo, inversion):
    for overrides in ({"steps": STEPS + 1}, {"scheduler": "karras"}):
        message = expect_error("AID Sampler", "inversion", lambda: edit(sd15_tiny, photo, inversion, **overrides))
        assert f"{STEPS} steps of 'normal'" in message
    model, positive, latent = core_edit_inputs(sd15_tiny, photo, inversion)
    expect_error("AID Inversion Hold", "inversion",
                 lambda: core_sampler(comfy, model, positive, photo["neg"], latent, 1.0, steps=STEPS + 1))
    expect_error("AID Inversion Hold", "inversion",
                 lambda: core_sampler(comfy, model, positive, photo["neg"], latent, 1.0, denoise=0.5))
    partial = dataclasses.replace(inversion, settings=dataclasses.replace(inversion.settings, denoise=0.5))
    message = expect_error("AID Sampler", "inversion", lambda: edit(sd15_tiny, photo, partial))
    assert "denoise 0.5" in message


def test_other_models_are_refused(sd15_tiny, photo, inversion):
    import comfy.model_patcher
    from aid_harness.models import tiny_sdxl_model

    base = sd15_tiny[0]
    other_weights = copy.deepcopy(base.model)
    with torch.no_grad():
        for parameter in other_weights.diffusion_model.parameters():
            parameter.mul_(1.01)
    checkpoint = comfy.model_patcher.ModelPatcher(other_weights, base.load_device, base.offload_device)
    message = expect_error("AID Sampler", "inversion", lambda: edit(sd15_tiny, photo, inversion, model=checkpoint))
    assert "another checkpoint" in message
    lora = base.clone()
    key = next(k for k in lora.model.state_dict() if k.startswith("diffusion_model.") and k.endswith(".weight"))
    lora.add_patches({key: (torch.zeros_like(lora.model.state_dict()[key]),)}, 0.5)
    message = expect_error("AID Inversion Hold", "inversion", lambda: AIDInversionHold().apply(lora, inversion))
    assert "weight patches" in message
    message = expect_error("AID Inversion Hold", "inversion",
                           lambda: AIDInversionHold().apply(tiny_sdxl_model(), inversion))
    assert "SDXL" in message


def test_samplers_that_cannot_be_held_are_refused(comfy, sd15_tiny, photo, inversion):
    message = expect_error("AID Sampler", "sampler_name",
                           lambda: edit(sd15_tiny, photo, inversion, sampler_name="dpmpp_2m"))
    assert "euler, ddim" in message
    model, positive, latent = core_edit_inputs(sd15_tiny, photo, inversion)
    message = expect_error("AID Inversion Hold", "inversion", lambda: core_sampler(
        comfy, model, positive, photo["neg"], latent, 1.0, sampler="heun"))
    assert "heun" in message and "euler or ddim" in message
    for sampler in ("dpmpp_2m", "euler_ancestral"):  # multistep, and first order but with step noise
        message = expect_error("AID Inversion Hold", "inversion", lambda: custom_advanced(
            model, positive, photo["neg"], latent, 1.0, sampler))
        assert f"the sampler is {sampler};" in message


def test_latents_of_another_size_or_with_a_mask_are_refused(comfy, sd15_tiny, photo, inversion):
    model, positive, _ = core_edit_inputs(sd15_tiny, photo, inversion)
    wrong = AIDLatent().build(SIZE + 16, SIZE, schedule(), seed=0)[0]
    message = expect_error("AID Inversion Hold", "inversion",
                           lambda: core_sampler(comfy, model, positive, photo["neg"], wrong, 1.0))
    assert "80x64" in message and "64 and 64" in message
    masked = dict(AIDLatent().build(SIZE, SIZE, schedule(), seed=0)[0], noise_mask=torch.ones(1, SIZE, SIZE))
    expect_error("AID Inversion Hold", "inversion",
                 lambda: core_sampler(comfy, model, positive, photo["neg"], masked, 1.0))


@pytest.mark.slow
def test_editing_cost_benchmark_runs_on_the_tiny_model():
    """benchmarks/editing_cost.py still runs and prints its table and the drift figures (not checked: no timed tests)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "editing_cost.py"
    done = subprocess.run([sys.executable, str(script), "--model", "tiny", "--size", "64", "--steps", "2"],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("aid", "inversion"))]
    assert [row[0] for row in rows] == ["aid", "aid", "inversion", "inversion"] and rows[0][2] == "1.000"
    assert "cfg 7 held" in done.stdout


def test_a_held_edit_cannot_be_split_across_servers(sd15_tiny, photo, inversion):
    from aid_pack.samplers.sequence.shares import ShareSpec

    message = expect_error("AID Sampler", "share", lambda: edit(sd15_tiny, photo, inversion, share=ShareSpec(0, 2)))
    assert "disconnect 'share'" in message
