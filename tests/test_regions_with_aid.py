"""Spatial-temporal control next to AID: either order of the two nodes gives the same frames, and regional
interpolation (a coefficient map inside AID) holds the rest of the image at endpoint A.

AID chains to what it finds at a key with joined key sets [own; endpoint], which a patch that splits keys
by token ranges cannot read; so the region patch always stays the outer one (attention/install.py).
"""
import copy

import pytest
import torch

from aid_harness.compare import close
from aid_pack.attention.branches import POSITIVE_UUIDS
from aid_pack.attention.patch import InterpolationPatch, InterpolationSettings, comfy_attention
from aid_pack.attention.region_patch import RegionPatch
from aid_pack.attention.regions import CoefficientMap, LayerMasks
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.region_sampler import AIDRegionalInterpolation, ApplySpatialTemporalAttention
from aid_pack.nodes.regions import SpatialTemporalRegion
from aid_pack.samplers.regions.layout import Region, RegionLayout
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED, FRAMES = 64, 2, 5.0, 5, 4


@pytest.fixture(scope="module")
def sequence(sd15_tiny, prompts, encode):
    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    latent, _ = AIDLatent().build(SIZE, SIZE, schedule, seed=SEED)
    local = encode(sd15_tiny[1], "a photo of a red ball")
    regions = SpatialTemporalRegion().add("red ball", "fractions", 0.0, 0.0, 0.5, 1.0, local_prompt=local)["result"][0]
    return {"schedule": schedule, "latent": latent, "regions": regions,
            "positive": AIDConditioning().build(prompts["a"], prompts["b"], schedule)[0]}


def apply_aid(model, schedule):
    return ApplyAID().apply(model, schedule, "fused outer", "self and cross", 0.0, 0.6)[0]


def run(comfy, model, sequence, prompts):
    return comfy["nodes"].common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", sequence["positive"],
                                          prompts["neg"], sequence["latent"])[0]["samples"]


@pytest.fixture(scope="module")
def aid_frames(comfy, sd15_tiny, sequence, prompts):
    return run(comfy, apply_aid(sd15_tiny[0], sequence["schedule"]), sequence, prompts)


def test_aid_and_regions_in_either_order_give_the_same_frames(comfy, sd15_tiny, sequence, prompts, aid_frames):
    apply_regions = ApplySpatialTemporalAttention().apply
    regions_then_aid = apply_aid(apply_regions(sd15_tiny[0], sequence["regions"])[0], sequence["schedule"])
    aid_then_regions = apply_regions(apply_aid(sd15_tiny[0], sequence["schedule"]), sequence["regions"])[0]
    first, second = run(comfy, regions_then_aid, sequence, prompts), run(comfy, aid_then_regions, sequence, prompts)
    for frame in range(FRAMES):
        assert close(first[frame], second[frame]), frame
    assert not close(first[1], aid_frames[1], rel=1e-2), "the regions take effect on the sequence"


def test_reapplying_aid_over_regions_keeps_one_aid_patch_inside_the_region_patch(sd15_tiny, sequence):
    model = apply_aid(apply_aid(ApplySpatialTemporalAttention().apply(sd15_tiny[0], sequence["regions"])[0],
                                sequence["schedule"]), sequence["schedule"])
    patches = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert patches and all(isinstance(p, RegionPatch) for p in patches.values())
    assert all(isinstance(p.previous, InterpolationPatch) and p.previous.previous is None for p in patches.values())


def test_a_coefficient_map_over_the_whole_image_is_plain_aid(comfy, sd15_tiny, sequence, prompts, aid_frames):
    everywhere = SpatialTemporalRegion().add("all", "fractions", 0, 0, 1, 1)["result"][0]
    model = AIDRegionalInterpolation().apply(apply_aid(sd15_tiny[0], sequence["schedule"]), everywhere)[0]
    frames = run(comfy, model, sequence, prompts)
    for frame in range(FRAMES):
        assert close(frames[frame], aid_frames[frame]), frame


def test_a_left_half_map_moves_the_left_half_and_keeps_endpoint_a(comfy, sd15_tiny, sequence, prompts, aid_frames):
    left = SpatialTemporalRegion().add("left", "fractions", 0, 0, 0.5, 1)["result"][0]
    frames = run(comfy, AIDRegionalInterpolation().apply(apply_aid(sd15_tiny[0], sequence["schedule"]), left)[0],
                 sequence, prompts)
    assert close(frames[0], aid_frames[0]), "frame 0 is plain A"
    assert not close(frames[2], aid_frames[2], rel=1e-2)


HEADS, DIM = 2, 8
COEFFICIENTS = (0.0, 0.4, 1.0)


def test_outside_the_map_frames_after_a_attend_to_a_and_inside_they_are_plain_aid(comfy):
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 16, HEADS * DIM, generator=generator) for _ in range(3))
    options = {"n_heads": HEADS, "dim_head": DIM, "attn_precision": None, "cond_or_uncond": [0], "uuids": ["p"],
               POSITIVE_UUIDS: frozenset({"p"}), "sigmas": torch.tensor([1.0] * 3), "original_shape": [3, 4, 4, 4]}
    left = RegionLayout((Region("left", box=(0.0, 0.0, 0.5, 1.0)),))
    settings = InterpolationSettings(COEFFICIENTS)
    aid = InterpolationPatch(settings)(q, k, v, options)
    held = InterpolationPatch(InterpolationSettings(COEFFICIENTS, coefficient_map=CoefficientMap(
        LayerMasks(left.rasterise))))(q, k, v, options)
    inside = torch.tensor([index % 4 < 2 for index in range(16)])
    toward_a = comfy_attention(options)(q[1:], k[:1].expand(2, -1, -1), v[:1].expand(2, -1, -1))
    assert torch.equal(held[0], aid[0]), "endpoint A is plain"
    assert torch.allclose(held[1:, inside], aid[1:, inside], atol=1e-6)
    assert torch.allclose(held[1:, ~inside], toward_a[:, ~inside], atol=1e-6)


def test_regional_interpolation_needs_an_aid_model(sd15_tiny, sequence):
    with pytest.raises(AIDInputError, match="AID Regional Interpolation: input 'model'.*Apply AID"):
        AIDRegionalInterpolation().apply(sd15_tiny[0], sequence["regions"])


@pytest.mark.parametrize("order", ["regions then AID", "AID then regions"])
def test_a_region_at_weight_zero_next_to_aid_gives_the_aid_frames(comfy, sd15_tiny, sequence, prompts, aid_frames,
                                                                   order):
    from aid_pack.nodes.region_weights import SpatialTemporalWeights

    zero = SpatialTemporalWeights().build("constant", 0.0, 0.0, 0.0, "")["result"][0]
    apply_regions = ApplySpatialTemporalAttention().apply
    if order == "regions then AID":
        model = apply_aid(apply_regions(sd15_tiny[0], sequence["regions"], zero)[0], sequence["schedule"])
    else:
        model = apply_regions(apply_aid(sd15_tiny[0], sequence["schedule"]), sequence["regions"], zero)[0]
    frames = run(comfy, model, sequence, prompts)
    for frame in range(FRAMES):
        assert close(frames[frame], aid_frames[frame]), frame


def test_applying_both_leaves_the_input_model_unchanged(sd15_tiny, sequence):
    model = sd15_tiny[0]
    before = copy.deepcopy(model.model_options)
    apply_aid(ApplySpatialTemporalAttention().apply(model, sequence["regions"])[0], sequence["schedule"])
    ApplySpatialTemporalAttention().apply(apply_aid(model, sequence["schedule"]), sequence["regions"])
    assert model.model_options == before


def test_aid_sampler_keeps_the_regions_of_a_regional_model(comfy, sd15_tiny, sequence, prompts, aid_frames):
    """AID Sampler patches its model again; before, that dropped AID Regional Interpolation's map silently
    (its frames were plain AID's). Now it samples what the core path samples on the regional model."""
    from aid_pack.nodes.sampler import AIDSampler

    left = SpatialTemporalRegion().add("left", "fractions", 0, 0, 0.5, 1)["result"][0]
    regional = AIDRegionalInterpolation().apply(apply_aid(sd15_tiny[0], sequence["schedule"]), left)[0]
    core = run(comfy, regional, sequence, prompts)
    sampled = AIDSampler().sample(regional, prompts["a"], prompts["b"], prompts["neg"], sequence["schedule"], SIZE,
                                  SIZE, SEED, STEPS, CFG, "euler", "normal", "fused outer", "self and cross", 0.0,
                                  0.6, 0)[0]["samples"]
    for frame in range(FRAMES):
        assert close(sampled[frame], core[frame]), frame
    assert not close(sampled[2], aid_frames[2], rel=1e-2), "the regions hold"


def test_a_keyframe_run_of_a_regional_model_is_refused_by_name(sd15_tiny, sequence, prompts):
    from aid_harness.unet_rows import counting_model
    from aid_pack.nodes.keyframes import AIDKeyframe, AIDKeyframeSampler

    left = SpatialTemporalRegion().add("left", "fractions", 0, 0, 0.5, 1)["result"][0]
    regional = AIDRegionalInterpolation().apply(apply_aid(sd15_tiny[0], sequence["schedule"]), left)[0]
    model, counter = counting_model(regional)
    keys = None
    for index, name in enumerate(("a", "b", "a")):
        keys = AIDKeyframe().build(prompts[name], "0" if index == 0 else "+2", 1, "linear", "", -1, previous=keys)[0]
    with pytest.raises(AIDInputError, match=r"^AID Keyframe Sampler: input 'model': this model carries AID Regional "
                                            r"Interpolation"):
        AIDKeyframeSampler().sample(model, keys, prompts["neg"], SIZE, SIZE, SEED, STEPS, CFG, "euler", "normal", 0,
                                    False, "fused outer", "self and cross", 0.0, 0.6, 0)
    assert counter.rows == 0
