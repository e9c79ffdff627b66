"""AID Keyframe Sampler and shares on the diffusion transformers (issue 22): tiny Flux, SD3.5 and Qwen-Image.

Key frames equal plain KSampler generations of their keys with their seeds (Flux: with each key's own
FluxGuidance), the frames between are new pictures, the input MODEL is unchanged, a key prompt of
another token count is refused by key and node before any sampling, and a keyframe sequence split
into shares puts back together into the unsplit one.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.dit_models import dit_conditioning
from aid_harness.unet_rows import counting_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.keyframes import AIDKeyframe, AIDKeyframeSampler
from aid_pack.nodes.shares import AIDSequenceShare
from aid_pack.samplers.sequence.conditioning import Guidance
from test_dit_models import FAMILIES, SIZE, STEPS, Dit

SEEDS = (3, 5, 11)


def build_keys(prompts, seeds=SEEDS):
    """Keys at frames 0, 3 and 6 (two frames between each pair), each with its own seed."""
    keys = None
    for index, (prompt, seed) in enumerate(zip(prompts, seeds)):
        keys = AIDKeyframe().build(prompt, "0" if index == 0 else "+3", 1, "linear", "", seed, previous=keys)[0]
    return keys


def keyframe_sample(dit, keyframes, model=None, **overrides):
    args = dict(model=model or dit.model, keyframes=keyframes, negative=dit.negative, width=SIZE, height=SIZE,
                seed=0, steps=STEPS, cfg=dit.cfg, sampler_name="euler", scheduler="simple", total_frames=0,
                loop=False, mode="fused outer", layers="self and cross", start_percent=0.0, end_percent=0.6,
                max_frames_per_batch=0)
    args.update(overrides)
    return AIDKeyframeSampler().sample(**args)[0]["samples"]


@pytest.fixture(scope="module", params=FAMILIES)
def dit(request, comfy):
    return Dit(comfy, request.param)


@pytest.fixture(scope="module")
def three_keys(dit):
    """A -> B -> C on the family, its frames, and the prompts of the keys."""
    prompts = [dit_conditioning(dit.family, seed) for seed in (1, 2, 4)]
    keyframes = build_keys(prompts)
    return keyframes, keyframe_sample(dit, keyframes), prompts


def test_key_frames_equal_plain_generations_and_the_frames_between_are_new(dit, three_keys):
    _, frames, prompts = three_keys
    assert frames.shape[0] == 7
    plains = [dit.plain(prompt, seed=seed)[0] for prompt, seed in zip(prompts, SEEDS)]
    assert frames.shape[1:] == plains[0].shape, "the family's own latent layout (Qwen-Image: 5-D)"
    for frame, plain in zip((0, 3, 6), plains):
        assert close(frames[frame], plain), f"key at frame {frame}"
    for frame in (1, 2, 4, 5):
        assert not any(close(frames[frame], plain, rel=1e-2) for plain in plains), f"frame {frame} is a key's copy"


def test_the_input_model_is_unchanged(dit, three_keys):
    prompt = three_keys[2][0]
    before = dit.plain(prompt, seed=SEEDS[0])
    keyframe_sample(dit, three_keys[0])
    assert torch.equal(dit.plain(prompt, seed=SEEDS[0]), before)


def test_a_fourth_key_of_another_token_count_is_refused_by_name_before_sampling(dit):
    """This raised a raw IndexError in the token-count check (three names for four counts)."""
    prompts = [dit_conditioning(dit.family, seed, tokens=tokens) for seed, tokens in ((1, 8), (2, 8), (4, 8), (6, 12))]
    keys = build_keys(prompts, seeds=(1, 2, 3, 4))
    model, counter = counting_model(dit.model)
    with pytest.raises(AIDInputError, match=r"^AID Keyframe Sampler: input 'keyframes': the prompts have different "
                                            r"token counts \(key 1 8, key 2 8, key 3 8, key 4 12 tokens\)\. .* Fix: "):
        keyframe_sample(dit, keys, model=model)
    assert counter.rows == 0, "refused before any sampling"


def test_a_guide_of_another_token_count_is_named(dit):
    prompts = [dit_conditioning(dit.family, seed) for seed in (1, 2, 4)]
    keys = AIDKeyframe().build(prompts[0], "0", 1, "linear", "", 1)[0]
    guide = Guidance(dit_conditioning(dit.family, 9, tokens=12))
    keys = AIDKeyframe().build(prompts[1], "+3", 1, "linear", "", 2, previous=keys, guidance=guide)[0]
    keys = AIDKeyframe().build(prompts[2], "+3", 1, "linear", "", 3, previous=keys)[0]
    with pytest.raises(AIDInputError, match=r"AID Keyframe Sampler: input 'keyframes': .*the guidance of key 2 12"):
        keyframe_sample(dit, keys)


def test_flux_keys_keep_their_own_flux_guidance(comfy):
    dit = Dit(comfy, "flux")
    prompts = [dit_conditioning("flux", seed, guidance=value) for seed, value in ((1, 2.0), (2, 6.0), (4, 3.5))]
    frames = keyframe_sample(dit, build_keys(prompts))
    for frame, prompt, seed in zip((0, 3, 6), prompts, SEEDS):
        assert close(frames[frame], dit.plain(prompt, seed=seed)[0]), f"key at frame {frame}"
    same = [dit_conditioning("flux", seed, guidance=2.0) for seed in (1, 2, 4)]
    assert not close(frames[3], dit.plain(same[1], seed=SEEDS[1])[0], rel=1e-3), "the guidance reaches the key"


@pytest.mark.parametrize("count", [2, 3])
def test_keyframe_shares_on_a_dit_put_together_equal_one_run(dit, three_keys, count):
    keyframes, single, _ = three_keys
    parts = [keyframe_sample(dit, keyframes, share=AIDSequenceShare().select(index, count)[0])
             for index in range(count)]
    gathered = torch.cat(parts)
    assert gathered.shape == single.shape
    for frame in range(single.shape[0]):
        assert close(gathered[frame], single[frame]), f"frame {frame}"


@pytest.mark.parametrize("count", [2, 3])
def test_two_endpoint_shares_on_a_dit_put_together_equal_one_run(dit, count):
    """AID Sampler's `share` on the family: the participants' frames in share order are the unsplit run's."""
    from test_dit_models import schedule

    single = dit.aid(schedule(5))
    parts = [dit.aid(schedule(5), share=AIDSequenceShare().select(index, count)[0]) for index in range(count)]
    gathered = torch.cat(parts)
    assert gathered.shape == single.shape
    for frame in range(single.shape[0]):
        assert close(gathered[frame], single[frame]), f"frame {frame}"
