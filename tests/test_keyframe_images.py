"""IP-Adapter images as keys (issue 14): image morphing through three pictures in one keyframe sequence.

The reference for each segment is the verified two-image morph (AID IP-Adapter Endpoints + AID Sampler,
tests/test_ipadapter.py) between the segment's two images with the segment's coefficients.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.ipadapter import AIDIPAdapterEndpoints, AIDIPAdapterLoader
from aid_pack.nodes.keyframes import AIDIPAdapterKeys, AIDKeyframes, AIDKeyframeSampler
from test_ipadapter import CFG, SEED, SIZE, STEPS, WEIGHT, aid_sample, clip_vision, images, tiny_adapter  # noqa: F401

PROMPT = "a portrait photo of a woman"


@pytest.fixture(scope="module")
def key_images(images):
    """Three different pictures [1, H, W, 3]: the two of the IP-Adapter tests and a third."""
    g = torch.Generator().manual_seed(9)
    third = torch.stack([torch.rand(SIZE, SIZE, generator=g).round()] * 3, dim=-1)[None]
    return [images["a"], images["b"], third]


@pytest.fixture(scope="module")
def adapter(tiny_adapter):
    return AIDIPAdapterLoader().load(tiny_adapter("sd15")[0])[0]


def keyframe_sample(sd15_tiny, keyframes, negative, image_keys):
    return AIDKeyframeSampler().sample(
        sd15_tiny[0], keyframes, negative, SIZE, SIZE, SEED, STEPS, CFG, "euler", "normal", 0, False, "fused outer",
        "self and cross", 0.0, 0.5, 0, image_keys=image_keys)[0]["samples"]


def test_image_keys_morph_segment_by_segment_like_two_image_morphs(sd15_tiny, encode, adapter, clip_vision, key_images):
    keyframes = AIDKeyframes().build(sd15_tiny[1], f"0: {PROMPT}\n+3:\n+3:")[0]
    negative = encode(sd15_tiny[1], "blurry, low quality")
    image_keys = AIDIPAdapterKeys().build(adapter, clip_vision, torch.cat(key_images), WEIGHT)[0]
    assert image_keys.keys == 3
    frames = keyframe_sample(sd15_tiny, keyframes, negative, image_keys)
    assert frames.shape[0] == 7
    prompts = {"a": encode(sd15_tiny[1], PROMPT), "b": encode(sd15_tiny[1], PROMPT), "neg": negative}
    for first, rows in ((0, range(0, 4)), (1, range(3, 7))):
        endpoints = AIDIPAdapterEndpoints().build(adapter, clip_vision, key_images[first + 1], "morph", WEIGHT,
                                                  image_a=key_images[first])[0]
        morph = aid_sample(sd15_tiny[0], prompts, 4, endpoints)
        for position, frame in enumerate(rows):
            assert close(frames[frame], morph[position]), f"segment {first} -> {first + 1}, frame {frame}"
    assert not close(frames[3], frames[0], rel=1e-2) and not close(frames[6], frames[3], rel=1e-2)


def test_image_keys_must_match_the_keys(sd15_tiny, encode, adapter, clip_vision, key_images):
    with pytest.raises(AIDInputError, match=r"AID IP-Adapter Keys: input 'images': got 1 image"):
        AIDIPAdapterKeys().build(adapter, clip_vision, key_images[0], WEIGHT)
    two = AIDIPAdapterKeys().build(adapter, clip_vision, torch.cat(key_images[:2]), WEIGHT)[0]
    keyframes = AIDKeyframes().build(sd15_tiny[1], f"0: {PROMPT}\n+2:\n+2:")[0]
    with pytest.raises(AIDInputError, match=r"input 'image_keys': there are 2 images for 3 keys"):
        keyframe_sample(sd15_tiny, keyframes, encode(sd15_tiny[1], "blurry"), two)
