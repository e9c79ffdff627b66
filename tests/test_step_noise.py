"""Stochastic samplers share their step noise across frames on every path (issue 10.2).

Apply AID + the core KSampler / SamplerCustomAdvanced: endpoint B must equal the plain generation of
B (its step noise is a one-image draw of the seed, not its row of a batch draw), and a frame must
not depend on where it sits in the batch (no flicker). Every sampler ComfyUI lists whose function
draws step noise is checked, plus two seeds through AID Latent's NOISE.
"""
import inspect

import pytest
import torch

from aid_harness.compare import close
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED = 64, 3, 5.0, 7


def stochastic_samplers():
    """Names in KSampler.SAMPLERS whose sampler function takes a noise_sampler (draws step noise)."""
    import comfy.samplers

    names = []
    for name in comfy.samplers.KSampler.SAMPLERS:
        function = getattr(comfy.samplers.sampler_object(name), "sampler_function", None)
        if function is not None and "noise_sampler" in inspect.signature(function).parameters:
            names.append(name)
    return names


def schedule(coefficients):
    return InterpolationSchedule(tuple(coefficients), "custom")


def ksample(comfy, model, positive, negative, sampler, latent=None):
    latent = latent or {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    return comfy["nodes"].common_ksampler(model, SEED, STEPS, CFG, sampler, "normal", positive, negative,
                                          latent)[0]["samples"]


def core_path(comfy, sd15_tiny, prompts, coefficients, sampler):
    """Apply AID + AID Conditioning + AID Latent under the core KSampler."""
    sched = schedule(coefficients)
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    positive = AIDConditioning().build(prompts["a"], prompts["b"], sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    return ksample(comfy, model, positive, prompts["neg"], sampler, latent)


def test_the_list_of_stochastic_samplers_is_what_the_host_has():
    names = stochastic_samplers()
    assert {"euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "lcm", "er_sde"} <= set(names)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", stochastic_samplers())
def test_core_ksampler_endpoints_equal_plain_generations(comfy, sd15_tiny, prompts, sampler):
    frames = core_path(comfy, sd15_tiny, prompts, linear_coefficients(3), sampler)
    assert close(frames[0], ksample(comfy, sd15_tiny[0], prompts["a"], prompts["neg"], sampler)[0])
    assert close(frames[-1], ksample(comfy, sd15_tiny[0], prompts["b"], prompts["neg"], sampler)[0])


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_core_ksampler_frame_does_not_depend_on_its_batch(comfy, sd15_tiny, prompts, sampler):
    five = core_path(comfy, sd15_tiny, prompts, linear_coefficients(5), sampler)
    alone = core_path(comfy, sd15_tiny, prompts, (0.0, 0.75, 1.0), sampler)
    assert close(five[3], alone[1]), "frame 3 of five equals the middle frame of its three-frame run"
    assert close(five[-1], alone[-1])


def test_sampler_custom_advanced_two_seeds_share_both_seeds_step_noise(comfy, sd15_tiny, prompts):
    """AID Latent's NOISE with seed_b: B's step noise is seed_b's one-image draw, so B is B's plain image."""
    import comfy.samplers

    sched = schedule(linear_coefficients(3))
    model = ApplyAID().apply(sd15_tiny[0], sched, "fused outer", "self and cross", 0.0, 0.5)[0]
    latent, noise = AIDLatent().build(SIZE, SIZE, sched, seed=SEED, seed_b=SEED + 100)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)

    def custom(model, positive, latent, noise):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, prompts["neg"])
        guider.set_cfg(CFG)
        return guider.sample(noise.generate_noise(latent), latent["samples"],
                             comfy.samplers.sampler_object("euler_ancestral"), sigmas, disable_pbar=True,
                             seed=noise.seed)

    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    frames = custom(model, AIDConditioning().build(prompts["a"], prompts["b"], sched)[0], latent, noise)
    one = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    plain_b = custom(sd15_tiny[0], prompts["b"], one, Noise_RandomNoise(SEED + 100))
    plain_a = custom(sd15_tiny[0], prompts["a"], one, Noise_RandomNoise(SEED))
    assert close(frames[0], plain_a[0]) and close(frames[-1], plain_b[0])


def test_keyframe_rows_get_the_slerp_of_their_two_keys_step_noise(comfy):
    """Row (key_a, key_b, t) gets slerp(n_a, n_b, t) of one-image draws; key rows get exactly their key's draw."""
    import comfy.k_diffusion.sampling as k_sampling
    from aid_pack.attention.layout import FrameLayout
    from aid_pack.samplers.sequence.noise import slerp
    from aid_pack.samplers.sequence.step_noise import SharedStepNoise

    layout = FrameLayout(((0, 1, 0.0), (0, 1, 0.4), (0, 1, 1.0), (1, 2, 0.5), (1, 2, 1.0)))
    row = torch.zeros(1, 4, 8, 8)
    seeds = (3, 3, 9)  # keys 0 and 1 share a seed, key 2 has its own
    shared = SharedStepNoise(None, row, torch.tensor([10.0, 1.0, 0.0]), layout, seeds)
    draws = shared(10.0, 1.0)
    one_image = {seed: k_sampling.default_noise_sampler(row, seed=seed)(10.0, 1.0) for seed in (3, 9)}
    assert torch.equal(draws[0], one_image[3][0]) and torch.equal(draws[2], one_image[3][0])
    assert torch.equal(draws[1], one_image[3][0]), "between two keys of one seed: that seed's draw"
    assert torch.equal(draws[4], one_image[9][0])
    assert torch.allclose(draws[3], slerp(one_image[3], one_image[9], 0.5)[0])
