"""PAID guidance on the real host (issue 4): interior frames are conditioned on the guidance prompt.

The contexts (and SDXL's pooled vectors, inside `y`) that reach the UNet are recorded by a
unet function wrapper on a clone of the model, which AID's own clones keep. Tolerances as in
test_aid_core.py: latents relative to their largest magnitude, 1e-4.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning, PAIDGuidance
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.conditioning import repeat_tokens
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED = 64, 3, 5.0, 11
LONG = ", ".join(["a small brown dog driving a shiny red car along a coastal road"] * 6)


def schedule(frames):
    return InterpolationSchedule(tuple(linear_coefficients(frames)), "custom")


def spied(model):
    """(clone of model, calls): each UNet call appends {"chunks": cond_or_uncond, "context": ..., "y": ...}."""
    calls = []

    def wrapper(apply_model, args):
        c = args["c"]
        calls.append({"chunks": list(args["cond_or_uncond"]), "context": c["c_crossattn"].detach().clone(),
                      "y": c["y"].detach().clone() if c.get("y") is not None else None})
        return apply_model(args["input"], args["timestep"], **c)

    clone = model.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    return clone, calls


def positive_rows(calls, key="context"):
    """The positive chunk's rows of `key` in every UNet call that had one: list of [F, ...] tensors."""
    rows = []
    for call in calls:
        if 0 in call["chunks"]:
            size = call[key].shape[0] // len(call["chunks"])
            start = call["chunks"].index(0) * size
            rows.append(call[key][start:start + size])
    assert rows, "the positive branch never reached the UNet"
    return rows


def expected_contexts(a, b, middle, frames, tokens):
    """Per-frame contexts [F, tokens, C]: A, `middle(t)` for interior frames, B, each repeated to `tokens`."""
    t = linear_coefficients(frames)
    rows = [a] + [middle(t[f]) for f in range(1, frames - 1)] + [b]
    return torch.cat([repeat_tokens(row, tokens) for row in rows])


@pytest.fixture(scope="module")
def prompts(sd15_tiny, encode):
    clip = sd15_tiny[1]
    return {"a": encode(clip, "a dog"), "b": encode(clip, "a car"), "g": encode(clip, "a dog driving a car"),
            "long": encode(clip, LONG), "longer": encode(clip, LONG + ", " + LONG),
            "neg": encode(clip, "blurry, low quality")}


def ksample(comfy, model, positive, negative, latent=None):
    latent = latent if latent is not None else {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    return comfy["nodes"].common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", positive, negative,
                                          latent)[0]["samples"]


def aid_sample(model, a, b, negative, sched, guidance=None, **overrides):
    args = dict(model=model, positive_a=a, positive_b=b, negative=negative, schedule=sched, width=SIZE, height=SIZE,
                seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal", mode="fused outer",
                layers="self and cross", start_percent=0.0, end_percent=0.5, max_frames_per_batch=0,
                guidance=PAIDGuidance().build(guidance)[0] if guidance is not None else None)
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


@pytest.mark.parametrize("lengths", ["77 77 77", "77 77 154"])
def test_interior_frames_are_conditioned_on_the_guidance(comfy, sd15_tiny, prompts, lengths):
    """Every UNet call's positive rows: A, the guidance for each interior frame, B; endpoints as plain A and B.

    (A 77, B 154 and guidance 231 tokens, 462 in all, run in test_core_ksampler_path_with_guidance_equals_aid_sampler.)
    """
    b, g = prompts["b"], (prompts["g"] if lengths == "77 77 77" else prompts["long"])
    assert [c[0][0].shape[1] for c in (prompts["a"], b, g)] == [int(n) for n in lengths.split()]
    model, calls = spied(sd15_tiny[0])
    frames = aid_sample(model, prompts["a"], b, prompts["neg"], schedule(5), guidance=g)

    contexts = positive_rows(calls)
    assert len(contexts) == STEPS
    for context in contexts:
        expected = expected_contexts(prompts["a"][0][0], b[0][0], lambda t: g[0][0], 5, context.shape[1])
        assert torch.equal(context, expected)
    assert close(frames[0], ksample(comfy, sd15_tiny[0], prompts["a"], prompts["neg"])[0])
    assert close(frames[-1], ksample(comfy, sd15_tiny[0], b, prompts["neg"])[0])
    unguided = aid_sample(sd15_tiny[0], prompts["a"], b, prompts["neg"], schedule(5))
    assert not close(frames[2], unguided[2], rel=1e-2), "the guidance should change the interior frames"
    assert close(frames[0], unguided[0]) and close(frames[-1], unguided[-1])


def test_without_guidance_interior_frames_keep_the_blend(sd15_tiny, prompts):
    """No guidance: the issue-3 conditioning, lerp(A, B, t) per interior frame."""
    model, calls = spied(sd15_tiny[0])
    aid_sample(model, prompts["a"], prompts["b"], prompts["neg"], schedule(4))
    a, b = prompts["a"][0][0], prompts["b"][0][0]
    for context in positive_rows(calls):
        assert torch.equal(context, expected_contexts(a, b, lambda t: torch.lerp(a, b, t), 4, context.shape[1]))


def test_guidance_equal_to_the_blend_gives_the_unguided_frames(sd15_tiny, prompts):
    """Guidance only replaces the interior frames' own condition: with the middle blend as guidance, nothing changes."""
    a, b = prompts["a"][0], prompts["b"][0]
    blend = [[torch.lerp(a[0], b[0], 0.5), {"pooled_output": torch.lerp(a[1]["pooled_output"],
                                                                        b[1]["pooled_output"], 0.5)}]]
    guided = aid_sample(sd15_tiny[0], prompts["a"], prompts["b"], prompts["neg"], schedule(3), guidance=blend)
    plain = aid_sample(sd15_tiny[0], prompts["a"], prompts["b"], prompts["neg"], schedule(3))
    assert torch.equal(guided, plain)


def test_core_ksampler_path_with_guidance_equals_aid_sampler(comfy, sd15_tiny, prompts):
    """PAID Guidance -> AID Conditioning under Apply AID and the core KSampler: same contexts, same frames."""
    sched = schedule(3)
    guidance = PAIDGuidance().build(prompts["longer"])[0]
    positive = AIDConditioning().build(prompts["a"], prompts["long"], sched, guidance=guidance)[0]
    applied = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    model, calls = spied(applied)
    frames = ksample(comfy, model, positive, prompts["neg"], AIDLatent().build(SIZE, SIZE, sched, seed=SEED)[0])
    for context in positive_rows(calls):
        assert context.shape[1] == 462
        expected = expected_contexts(prompts["a"][0][0], prompts["long"][0][0], lambda t: prompts["longer"][0][0], 3,
                                     462)
        assert torch.equal(context, expected)
    assert close(frames[-1], ksample(comfy, sd15_tiny[0], prompts["long"], prompts["neg"])[0])
    reference = aid_sample(sd15_tiny[0], prompts["a"], prompts["long"], prompts["neg"], sched,
                           guidance=prompts["longer"])
    for f in range(3):
        assert close(frames[f], reference[f]), f"frame {f}"


def test_sdxl_interior_frames_get_the_guidance_context_and_pooled_output():
    """SDXL family: the pooled vector (the first 1280 of the 2816 values of `y`) follows the same rule."""
    import comfy.sample
    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model

    base = tiny_sdxl_model()
    a, b, negative = sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3)
    g = sdxl_conditioning(4, tokens=154)
    model, calls = spied(base)
    frames = aid_sample(model, a, b, negative, schedule(4), guidance=g, steps=2, cfg=4.0)

    for context in positive_rows(calls):
        assert torch.equal(context, expected_contexts(a[0][0], b[0][0], lambda t: g[0][0], 4, context.shape[1]))
    pooled = [a[0][1]["pooled_output"], g[0][1]["pooled_output"], g[0][1]["pooled_output"], b[0][1]["pooled_output"]]
    for y in positive_rows(calls, "y"):
        assert y.shape == (4, 2816)
        assert torch.equal(y[:, :1280], torch.cat(pooled))
    latent = torch.zeros(1, 4, SIZE // 8, SIZE // 8)
    for frame, cond in ((0, a), (-1, b)):
        plain = comfy.sample.sample(base, comfy.sample.prepare_noise(latent, SEED), 2, 4.0, "euler", "normal", cond,
                                    negative, latent)
        assert close(frames[frame], plain[0])


def test_guidance_errors_name_the_guidance_input(sd15_tiny, prompts):
    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model

    with pytest.raises(AIDInputError, match=r"PAID Guidance: input 'conditioning': the conditioning is empty"):
        PAIDGuidance().build([])
    with pytest.raises(AIDInputError, match=r"AID Sampler: input 'guidance': the prompt was encoded for a SDXL "
                                            r"model but the model is SD1.x\. Fix: encode"):
        aid_sample(sd15_tiny[0], prompts["a"], prompts["b"], prompts["neg"], schedule(3), guidance=sdxl_conditioning())
    sched = schedule(3)
    two_entries = PAIDGuidance().build(prompts["g"] + prompts["g"])[0]
    with pytest.raises(AIDInputError, match=r"AID Conditioning: input 'guidance': it has 2 conditioning entries and "
                                            r"positive_a has 1\. Fix: encode the guidance like A and B"):
        AIDConditioning().build(prompts["a"], prompts["b"], sched, guidance=two_entries)
    with pytest.raises(AIDInputError, match=r"AID Conditioning: input 'guidance': it is 2048 wide and positive_a 768"):
        AIDConditioning().build(prompts["a"], prompts["b"], sched, guidance=PAIDGuidance().build(sdxl_conditioning())[0])
    batch = [[torch.cat([prompts["g"][0][0]] * 2), {}]]
    with pytest.raises(AIDInputError, match=r"AID Conditioning: input 'guidance': guidance has a batch of 2"):
        AIDConditioning().build(prompts["a"], prompts["b"], sched, guidance=PAIDGuidance().build(batch)[0])
    no_pooled = [[prompts["g"][0][0], {}]]
    with pytest.raises(AIDInputError, match=r"input 'guidance': the guidance prompt has no pooled output"):
        AIDConditioning().build(prompts["a"], prompts["b"], sched, guidance=PAIDGuidance().build(no_pooled)[0])
    with pytest.raises(AIDInputError, match=r"AID Sampler: input 'guidance': this SDXL-family model needs a pooled"):
        aid_sample(tiny_sdxl_model(), sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3), sched,
                   guidance=[[sdxl_conditioning(4)[0][0], {}]])
