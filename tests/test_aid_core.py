"""AID core on the real host with a random-weight SD1.5 checkpoint (issue 3 acceptance).

Frames are compared with aid_harness.compare.close (relative tolerance 1e-4, reasoned there).
"""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED = 64, 4, 5.0, 7

@pytest.fixture(scope="module")
def ksample(comfy, sd15_tiny, prompts):
    """Plain core KSampler: ksample(positive, seed, batch=1, latent=None, model=None) -> latents."""
    def run(positive, seed=SEED, latent=None, model=None, cfg=CFG, sampler="euler"):
        latent = latent if latent is not None else {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
        return comfy["nodes"].common_ksampler(model or sd15_tiny[0], seed, STEPS, cfg, sampler, "normal",
                                              positive, prompts["neg"], latent)[0]["samples"]
    return run


def schedule(frames=5, coefficients=None):
    return InterpolationSchedule(tuple(coefficients or linear_coefficients(frames)), "custom")


def aid_sample(sd15_tiny, prompts, sched, **overrides):
    args = dict(model=sd15_tiny[0], positive_a=prompts["a"], positive_b=prompts["b"], negative=prompts["neg"],
                schedule=sched, width=SIZE, height=SIZE, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler",
                scheduler="normal", mode="fused outer", layers="self and cross", start_percent=0.0,
                end_percent=0.5, max_frames_per_batch=0)
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


@pytest.fixture(scope="module")
def five_frames(sd15_tiny, prompts):
    return aid_sample(sd15_tiny, prompts, schedule(5))


def test_endpoints_equal_plain_generations(five_frames, ksample, prompts):
    assert close(five_frames[0], ksample(prompts["a"])[0])
    assert close(five_frames[-1], ksample(prompts["b"])[0])
    # interior frames are something else: not a copy of an endpoint
    assert not close(five_frames[2], five_frames[0], rel=1e-2)
    assert torch.isfinite(five_frames).all()


def test_two_seed_endpoints_equal_plain_generations_of_each_seed(sd15_tiny, prompts, ksample):
    frames = aid_sample(sd15_tiny, prompts, schedule(3), seed_b=SEED + 100)
    assert close(frames[0], ksample(prompts["a"], seed=SEED)[0])
    assert close(frames[-1], ksample(prompts["b"], seed=SEED + 100)[0])


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_stochastic_sampler_endpoints_equal_plain_generations(sd15_tiny, prompts, ksample, sampler):
    """Step noise (Gaussian or Brownian tree) is shared across frames exactly as a one-image run draws it."""
    frames = aid_sample(sd15_tiny, prompts, schedule(3), sampler_name=sampler)
    assert close(frames[0], ksample(prompts["a"], sampler=sampler)[0])
    assert close(frames[-1], ksample(prompts["b"], sampler=sampler)[0])


def test_frame_equals_middle_frame_of_its_three_frame_run(sd15_tiny, prompts, five_frames):
    t = linear_coefficients(5)
    for f in (1, 3):
        alone = aid_sample(sd15_tiny, prompts, schedule(coefficients=(0.0, t[f], 1.0)))
        assert close(five_frames[f], alone[1])


@pytest.mark.parametrize("max_frames", [3, 4])
def test_chunked_output_equals_unchunked(sd15_tiny, prompts, five_frames, max_frames):
    chunked = aid_sample(sd15_tiny, prompts, schedule(5), max_frames_per_batch=max_frames)
    for f in range(5):
        assert close(chunked[f], five_frames[f]), f"frame {f}"


def test_core_ksampler_path_equals_aid_sampler(sd15_tiny, prompts, ksample, five_frames):
    """Apply AID + AID Conditioning + AID Latent under the core KSampler give the AID Sampler's frames."""
    sched = schedule(5)
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    positive = AIDConditioning().build(prompts["a"], prompts["b"], sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    frames = ksample(positive, latent=latent, model=model)
    for f in range(5):
        assert close(frames[f], five_frames[f]), f"frame {f}"


def test_inactive_patch_equals_text_embedding_interpolation(sd15_tiny, prompts, ksample):
    sched = schedule(4)
    off = aid_sample(sd15_tiny, prompts, sched, start_percent=0.3, end_percent=0.3)
    positive = AIDConditioning().build(prompts["a"], prompts["b"], sched)[0]
    tei = ksample(positive, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    for f in range(4):
        assert close(off[f], tei[f]), f"frame {f}"
    on = aid_sample(sd15_tiny, prompts, sched)
    assert not close(on[1], tei[1], rel=1e-2), "interpolated attention should change interior frames"


def test_input_model_is_not_changed(sd15_tiny, prompts, ksample):
    before = ksample(prompts["a"])
    sched = schedule(3)
    patched = ApplyAID().apply(sd15_tiny[0], sched, "fused inner", "self and cross", 0.0, 1.0)[0]
    aid_sample(sd15_tiny, prompts, sched)
    assert "patches_replace" not in sd15_tiny[0].model_options.get("transformer_options", {})
    assert patched.model_options["transformer_options"]["patches_replace"]["attn1"]
    assert torch.equal(ksample(prompts["a"]), before)


@pytest.mark.parametrize("mode", ["fused inner", "outer", "inner"])
def test_every_mode_keeps_endpoints(sd15_tiny, prompts, ksample, mode):
    frames = aid_sample(sd15_tiny, prompts, schedule(3), mode=mode, layers="self only" if mode == "inner" else
                        "self and cross")
    assert close(frames[0], ksample(prompts["a"])[0])
    assert close(frames[-1], ksample(prompts["b"])[0])


def test_cfg_one_and_long_prompts_keep_endpoints(sd15_tiny, prompts, ksample, encode):
    """cfg 1 sends only the positive chunk; a 462-token A with a 77-token negative runs in separate calls;
    A and B of different lengths are repeated to a common token count."""
    long_a = encode(sd15_tiny[1], ", ".join(["a small brown dog running on green summer grass"] * 40))
    assert long_a[0][0].shape[1] == 462
    cases = {"cfg1": dict(cfg=1.0), "long": dict(positive_a=long_a)}
    for name, overrides in cases.items():
        frames = aid_sample(sd15_tiny, prompts, schedule(3), **overrides)
        a = overrides.get("positive_a", prompts["a"])
        assert close(frames[0], ksample(a, cfg=overrides.get("cfg", CFG))[0]), name
        assert close(frames[-1], ksample(prompts["b"], cfg=overrides.get("cfg", CFG))[0]), name


def test_sdxl_family_runs_with_pooled_outputs_interpolated():
    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
    from aid_pack.samplers.sequence.conditioning import sequence_conditioning
    from aid_pack.samplers.sequence.noise import sequence_noise
    from aid_pack.samplers.sequence.sampler import SequenceRequest, sample_sequence
    import comfy.sample

    model = tiny_sdxl_model()
    a, b, negative = sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3)
    coefficients = linear_coefficients(4)
    positive = sequence_conditioning(a, b, coefficients)
    pooled = positive[0][1]["pooled_output"]
    assert pooled.shape == (4, 1280)
    assert torch.allclose(pooled[1], torch.lerp(a[0][1]["pooled_output"][0], b[0][1]["pooled_output"][0], 1 / 3))
    latent = torch.zeros(4, 4, 8, 8)
    request = SequenceRequest(positive=positive, negative=negative, coefficients=coefficients, latent=latent,
                              noise=sequence_noise(latent, coefficients, 5), seed=5, seed_b=None, steps=3, cfg=4.0,
                              sampler_name="euler", scheduler="normal")
    frames = sample_sequence(model, request)
    assert torch.isfinite(frames).all()
    plain_a = comfy.sample.sample(model, comfy.sample.prepare_noise(latent[:1], 5), 3, 4.0, "euler", "normal",
                                  a, negative, latent[:1])
    assert close(frames[0], plain_a[0])


def test_latent_batch_other_than_schedule_stops_with_clear_error(sd15_tiny, prompts, ksample):
    sched = schedule(5)
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    positive = AIDConditioning().build(prompts["a"], prompts["b"], sched)[0]
    with pytest.raises(Exception, match=r"Apply AID: input 'schedule': the sampled latent batch has 4 frames "
                                        r"but the schedule has 5\. Fix:"):
        ksample(positive, latent={"samples": torch.zeros(4, 4, 8, 8)}, model=model)


@pytest.mark.parametrize("conditioning_coefficients,expected", [
    (linear_coefficients(7), "with a 7-frame schedule, the model from a 5-frame one"),
    (linear_coefficients(5), "with other coefficients than the model's")], ids=["frame count", "coefficients"])
def test_conditioning_from_another_schedule_stops_before_sampling(sd15_tiny, prompts, ksample,
                                                                   conditioning_coefficients, expected):
    """ComfyUI would trim or tile the rows to the latent batch, so the 'endpoint' rows would carry other prompts."""
    from aid_harness.unet_rows import counting_model

    sched = schedule(coefficients=(0.0, 0.1, 0.5, 0.9, 1.0))
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    model, counter = counting_model(model)
    positive = AIDConditioning().build(prompts["a"], prompts["b"], schedule(coefficients=conditioning_coefficients))[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    with pytest.raises(AIDInputError, match=r"Apply AID: input 'schedule': the prompts come from AID Conditioning "
                                            + expected + r".*Fix: connect the same AID Schedule to AID "
                                            r"Conditioning, AID Latent and Apply AID\."):
        ksample(positive, latent=latent, model=model)
    assert counter.calls == [], "nothing was sampled"


def test_conditioning_from_another_model_family_is_refused(sd15_tiny, prompts):
    from aid_harness.models import sdxl_conditioning

    with pytest.raises(AIDInputError, match=r"AID Sampler: input 'positive_b': the prompt was encoded for a SDXL "
                                            r"model but the model is SD1.x\. Fix: encode"):
        aid_sample(sd15_tiny, prompts, schedule(3), positive_b=sdxl_conditioning(0))


@pytest.mark.parametrize("node", ["sampler", "apply"])
def test_start_after_end_is_refused(sd15_tiny, prompts, node):
    with pytest.raises(AIDInputError, match=r"input 'end_percent'.*Fix: set end_percent >= start_percent"):
        if node == "sampler":
            aid_sample(sd15_tiny, prompts, schedule(3), start_percent=0.6, end_percent=0.2)
        else:
            ApplyAID().apply(sd15_tiny[0], schedule(3), "fused outer", "self and cross", 0.6, 0.2)


def test_max_frames_per_batch_below_three_is_refused(sd15_tiny, prompts):
    with pytest.raises(AIDInputError, match="AID Sampler: input 'max_frames_per_batch'"):
        aid_sample(sd15_tiny, prompts, schedule(5), max_frames_per_batch=2)


@pytest.fixture
def progress_hook():
    """Record every ProgressBar update (value, total, has preview) as the server's hook would see them."""
    import comfy.utils

    updates = []
    saved = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None:
                                             updates.append((value, total, preview is not None)))
    yield updates
    comfy.utils.set_progress_bar_global_hook(saved)


def test_progress_covers_every_chunk_once(sd15_tiny, prompts, progress_hook):
    aid_sample(sd15_tiny, prompts, schedule(5), max_frames_per_batch=3)
    values = [value for value, total, _ in progress_hook]
    assert values == list(range(1, 3 * STEPS + 1)) and {total for _, total, _ in progress_hook} == {3 * STEPS}


def test_interrupt_stops_the_sequence(sd15_tiny, prompts, progress_hook):
    import comfy.model_management

    calls = []

    def interrupt_after_first_step(value, total, preview, node_id=None):
        calls.append(value)
        comfy.model_management.interrupt_current_processing(True)

    import comfy.utils
    comfy.utils.set_progress_bar_global_hook(interrupt_after_first_step)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        aid_sample(sd15_tiny, prompts, schedule(5), max_frames_per_batch=3)
    assert calls == [1]
    assert not comfy.model_management.processing_interrupted()


def test_noise_output_drives_sampler_custom_advanced_with_two_seeds(sd15_tiny, prompts, ksample):
    """AID Latent's NOISE under a CFGGuider (what SamplerCustomAdvanced runs): endpoints start from each seed."""
    import comfy.samplers

    sched = schedule(4)
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    latent, noise = AIDLatent().build(SIZE, SIZE, sched, seed=SEED, seed_b=SEED + 100)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(AIDConditioning().build(prompts["a"], prompts["b"], sched)[0], prompts["neg"])
    guider.set_cfg(CFG)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
    frames = guider.sample(noise.generate_noise(latent), latent["samples"], comfy.samplers.sampler_object("euler"),
                           sigmas, disable_pbar=True, seed=noise.seed)
    assert close(frames[0], ksample(prompts["a"], seed=SEED)[0])
    assert close(frames[-1], ksample(prompts["b"], seed=SEED + 100)[0])
    assert not close(frames[1], frames[2], rel=1e-2)
