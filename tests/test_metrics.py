"""Sequence metrics: Gini, smoothness, consistency, and the three frame distances behind one interface."""
from __future__ import annotations

import itertools
import json
import os
import random
import sys

import pytest
import torch

from aid_pack.scoring import metrics
from aid_pack.scoring.metrics import (ClipVisionDistance, FrameDistance, PixelDistance, SequenceDistances,
                                       consistency, gini, make_frame_distance, measure_sequence,
                                       neighbour_distances, pairwise_distances, smoothness)


def gini_by_definition(values):
    n, mean = len(values), sum(values) / len(values)
    return sum(abs(a - b) for a, b in itertools.product(values, values)) / (2 * n * n * mean)


# ---------------------------------------------------------------- Gini, smoothness, consistency


def test_hand_computed_gini():
    # sum over ordered pairs of |x_i - x_j| = 20, 2 n^2 mean = 2 * 16 * 2.5 = 80
    assert gini([1, 2, 3, 4]) == 0.25
    assert smoothness([4, 1, 3, 2]) == 0.75
    assert consistency([1, 2, 3, 4]) == 2.5
    # one step holds all the change: the largest Gini n values can have, (n - 1) / n
    assert gini([0, 0, 0, 1]) == 0.75


def test_equal_steps_give_smoothness_one():
    assert smoothness([0.3] * 7) == 1.0
    assert smoothness([0.0, 0.0]) == 1.0  # no change at all is even too
    assert smoothness([0.42]) == 1.0


def test_gini_matches_its_definition_on_random_values():
    rng = random.Random(5)
    for _ in range(20):
        values = [rng.random() for _ in range(rng.randint(2, 12))]
        assert gini(values) == pytest.approx(gini_by_definition(values), abs=1e-12)


def test_gini_and_consistency_reject_bad_values():
    for values in ([1.0, -0.1], [float("nan"), 1.0]):
        with pytest.raises(ValueError):
            gini(values)
    with pytest.raises(ValueError):
        consistency([])


# ---------------------------------------------------------------- the pixel proxy


def flat(value: float, size: int = 32) -> torch.Tensor:
    return torch.full((1, size, size, 3), value)


def test_pixel_distance_is_zero_for_identical_and_bounded():
    frames = torch.rand(4, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    distance = PixelDistance()
    assert torch.equal(distance(frames, frames), torch.zeros(4))
    values = distance(frames, frames.flip(0))
    assert ((values >= 0) & (values <= 1)).all()
    # black against white: colour term 1, DSSIM of two flat images (1 - C1 / (1 + C1)) / 2
    c1 = 0.01 ** 2
    assert float(distance(flat(0.0), flat(1.0))) == pytest.approx(0.5 + 0.25 / (1 + c1), abs=1e-6)


def test_pixel_distance_is_symmetric_deterministic_and_resolution_independent():
    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 1, 16, 16, 3, generator=generator)
    distance = PixelDistance()
    assert torch.equal(distance(a, b), distance(b, a))
    assert torch.equal(distance(a, b), distance(a, b))
    big_a, big_b = (x.repeat_interleave(16, dim=1).repeat_interleave(16, dim=2) for x in (a, b))  # 256 x 256
    assert float(distance(big_a, big_b)) == pytest.approx(float(distance(a, b)), rel=0.05)


def test_pixel_distance_grows_with_change():
    base = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    steps = [float(PixelDistance()(base, (base + amount).clamp(0, 1))) for amount in (0.05, 0.1, 0.2, 0.4)]
    assert steps == sorted(steps) and steps[0] > 0


def test_alternating_frames_give_equal_steps_and_smoothness_one():
    generator = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 1, 48, 48, 3, generator=generator)
    frames = torch.cat([a, b, a, b, a, b])
    distances = neighbour_distances(frames)
    assert len(distances) == 5 and len(set(distances)) == 1 and distances[0] > 0
    assert smoothness(distances) == 1.0


# ---------------------------------------------------------------- the FrameDistance interface


def test_pairwise_neighbours_and_broadcast_agree():
    frames = torch.rand(5, 24, 24, 3, generator=torch.Generator().manual_seed(6))
    distance = PixelDistance()
    pairs = [(0, 4), (3, 1), (2, 2), (1, 2)]
    expected = torch.cat([distance(frames[i:i + 1], frames[j:j + 1]) for i, j in pairs])
    assert torch.allclose(distance.pairwise(frames, pairs), expected)
    assert pairwise_distances(frames, pairs) == pytest.approx(expected.tolist())
    assert torch.allclose(distance.neighbours(frames), distance(frames[:-1], frames[1:]))
    one_to_many = distance(frames[:1], frames)
    assert one_to_many.shape == (5,) and float(one_to_many[0]) == 0.0
    assert torch.allclose(one_to_many, distance(frames, frames[:1]))
    assert distance.pairwise(frames, []).shape == (0,)


def test_embeddings_can_be_cached_for_frames_added_later():
    frames = torch.rand(6, 20, 20, 3, generator=torch.Generator().manual_seed(7))
    distance = PixelDistance()
    early = distance.embed(frames[:3])
    late = distance.embed(frames[3:])
    cached = torch.cat([early, late])
    assert torch.allclose(distance.compare(cached[[0, 5]], cached[[4, 1]]), distance.pairwise(frames, [(0, 4), (5, 1)]))


def test_embed_rejects_non_batches():
    with pytest.raises(ValueError):
        PixelDistance().embed(torch.zeros(8, 8, 3))


def test_embedding_is_batched(monkeypatch):
    distance = PixelDistance()
    distance.batch_size = 2
    seen = []
    original = PixelDistance._embed
    monkeypatch.setattr(PixelDistance, "_embed", lambda self, rgb: seen.append(rgb.shape[0]) or original(self, rgb))
    distance.embed(torch.zeros(5, 8, 8, 4))  # alpha is dropped
    assert seen == [2, 2, 1]


# ---------------------------------------------------------------- CLIP vision (ComfyUI's own model class)


@pytest.fixture(scope="module")
def tiny_clip_vision(comfy, tmp_path_factory):
    """A real comfy.clip_vision.ClipVisionModel with a tiny random-weight config (no file to download)."""
    import comfy.clip_vision

    config = {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 32,
              "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
              "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 2,
              "num_channels": 3, "num_hidden_layers": 2, "patch_size": 32, "projection_dim": 16}
    path = tmp_path_factory.mktemp("clip_vision") / "tiny.json"
    path.write_text(json.dumps(config))
    model = comfy.clip_vision.ClipVisionModel(str(path))
    torch.manual_seed(0)
    for parameter in model.model.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return model


def test_clip_vision_distance_is_cosine_distance_of_image_embeds(tiny_clip_vision):
    frames = torch.rand(4, 64, 80, 3, generator=torch.Generator().manual_seed(8))
    distance = ClipVisionDistance(tiny_clip_vision)
    embeds = tiny_clip_vision.encode_image(frames)["image_embeds"].float()
    expected = 1 - torch.nn.functional.cosine_similarity(embeds[:-1], embeds[1:], dim=-1)
    assert torch.allclose(distance.neighbours(frames), expected, atol=1e-5)
    assert torch.allclose(distance(frames, frames), torch.zeros(4), atol=1e-5)
    assert make_frame_distance("auto", tiny_clip_vision).name == "clip-vision"
    assert measure_sequence(frames, distance).metric == "clip-vision"


def test_clip_vision_distance_needs_a_model():
    with pytest.raises(TypeError):
        ClipVisionDistance(object())
    with pytest.raises(ValueError):
        make_frame_distance("clip-vision")


# ---------------------------------------------------------------- LPIPS, from local files only


def test_without_the_lpips_package_auto_falls_back_to_pixel(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # makes `import lpips` fail
    assert "not installed" in metrics.lpips_unavailable_reason()
    assert isinstance(make_frame_distance("auto"), PixelDistance)
    with pytest.raises(RuntimeError, match="LPIPS is not available"):
        make_frame_distance("lpips")


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """torch's hub cache pointed at an empty temp folder, and any download made to fail loudly."""
    pytest.importorskip("lpips")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("something tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    metrics._LPIPS_CACHE.clear()
    yield tmp_path
    metrics._LPIPS_CACHE.clear()
    torch.hub.set_dir(previous)


def test_lpips_is_unavailable_without_local_backbone_weights(local_hub):
    reason = metrics.lpips_unavailable_reason()
    assert "hub cache" in reason and "never downloads" in reason
    assert isinstance(make_frame_distance("auto"), PixelDistance)


def test_lpips_from_local_files_equals_lpips_forward(local_hub):
    import torchvision

    _, backbone = metrics._lpips_files()
    os.makedirs(os.path.dirname(backbone))
    torch.manual_seed(9)  # stand-in AlexNet weights: the real file is never fetched in tests either
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), backbone)
    assert metrics.lpips_unavailable_reason() is None
    distance = make_frame_distance("auto")
    assert distance.name == "lpips"
    generator = torch.Generator().manual_seed(10)
    a, b = torch.rand(2, 3, 64, 96, 3, generator=generator)
    reference = distance.model(a.movedim(-1, 1), b.movedim(-1, 1), normalize=True).flatten()
    assert torch.allclose(distance(a, b), reference, rtol=1e-4, atol=1e-6)
    assert torch.allclose(distance(a, a), torch.zeros(3), atol=1e-7)
    # the trunk really holds the local file's weights
    state = torch.load(backbone, weights_only=True)
    assert torch.equal(distance.model.net.slice2._modules["3"].weight, state["features.3.weight"])


# ---------------------------------------------------------------- SequenceDistances (AID_DISTANCES)


def test_sequence_distances_summary():
    measured = SequenceDistances((1.0, 4.0, 2.0, 4.0), "pixel", (0.0, 0.2, 0.5, 0.7, 1.0))
    assert measured.frames == 5 and measured.largest_step == 1
    assert measured.smoothness == pytest.approx(1 - gini_by_definition([1.0, 4.0, 2.0, 4.0]))
    record = measured.to_dict()
    assert record["largest_step"] == {"index": 1, "from_frame": 1, "to_frame": 2, "distance": 4.0}
    assert record["consistency"] == 2.75 and record["coefficients"] == [0.0, 0.2, 0.5, 0.7, 1.0]
    json.dumps(record)
    with pytest.raises(ValueError):
        SequenceDistances((1.0,), "pixel", (0.0, 0.5, 1.0))
    with pytest.raises(ValueError):
        SequenceDistances((), "pixel")


def test_measure_sequence_needs_two_frames():
    with pytest.raises(ValueError):
        measure_sequence(torch.zeros(1, 8, 8, 3))
    assert measure_sequence(torch.zeros(2, 8, 8, 3)).distances == (0.0,)


def test_frame_distance_base_is_abstract():
    with pytest.raises(NotImplementedError):
        FrameDistance().embed(torch.zeros(1, 4, 4, 3))
