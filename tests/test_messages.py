"""Counts in what a user reads are grammatical: '1 frame', '2 frames', '1 batch'."""
import pytest
import torch

from aid_pack.errors import AIDInputError, plural
from aid_pack.nodes.schedule import AIDSchedule
from aid_pack.nodes.video import AIDFramesToVideo
from aid_pack.samplers.sequence.noise import SequenceNoise, sequence_noise
from aid_pack.samplers.sequence.schedule import InterpolationSchedule


@pytest.mark.parametrize("count, noun, expected", [
    (0, "frame", "0 frames"), (1, "frame", "1 frame"), (2, "frame", "2 frames"), (1.0, "frame", "1.0 frame"),
    (1, "batch", "1 batch"), (3, "batch", "3 batches"),
])
def test_plural(count, noun, expected):
    assert plural(count, noun, "batches" if noun == "batch" else None) == expected


def test_one_frame_clip_summary_says_frame(comfy_base):
    result = AIDFramesToVideo().save(torch.rand(1, 16, 16, 3), "aid_test/one", "gif", 8.0, "forward", 0, 0, False,
                                     "pad", 19, 90)
    assert result["ui"]["text"][0].startswith("1 frame -> 1 (forward)")


def test_too_few_frames_message_is_grammatical_for_any_count():
    for frames in (1, 2):
        with pytest.raises(AIDInputError, match=rf"input 'frames': {frames} is too few frames\."):
            AIDSchedule().build(frames, "linear", 1.0, 1.0)


def test_latent_with_one_frame_is_named_in_the_singular():
    with pytest.raises(ValueError, match="the latent has 1 frame but the schedule has 3"):
        sequence_noise(torch.zeros(1, 4, 8, 8), (0.0, 0.5, 1.0), 0)
    with pytest.raises(AIDInputError, match="the latent has 1 frame but the noise was made for 3"):
        SequenceNoise((0.0, 0.5, 1.0), 0, None, "AID Latent").generate_noise({"samples": torch.zeros(1, 4, 8, 8)})


def test_schedule_description_counts_frames():
    assert InterpolationSchedule((0.0, 0.5, 1.0), "linear").describe() == "linear, 3 frames"
