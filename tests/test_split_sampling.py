"""A sequence split into shares (AID Sequence Share -> AID Sampler / AID Smooth Sampler) on the real host.

Each participant is simulated by one call with its share; the shares' frames, put together in share
order, must equal the frames of one unsplit run (compare.close, the tolerance of test_aid_core.py),
and each call must sample only its share's rows (a spy on the UNet counts them).
"""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.unet_rows import counting_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.nodes.shares import AIDSequenceShare
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients
from test_aid_core import CFG, SEED, SIZE
from test_smooth_node import smooth

STEPS = 2
FRAMES = 7


def share(index, count):
    return AIDSequenceShare().select(index, count)[0]


def sampled(model, prompts, frames=FRAMES, **overrides):
    args = dict(model=model, positive_a=prompts["a"], positive_b=prompts["b"], negative=prompts["neg"],
                schedule=InterpolationSchedule(linear_coefficients(frames), "linear"), width=SIZE, height=SIZE,
                seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal", mode="fused outer",
                layers="self and cross", start_percent=0.0, end_percent=0.5, max_frames_per_batch=0)
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


@pytest.fixture(scope="module")
def single_run(sd15_tiny, prompts):
    return sampled(sd15_tiny[0], prompts)


@pytest.mark.parametrize("count, max_frames", [(2, 0), (3, 0), (2, 3)])
def test_shares_put_together_equal_a_single_run_and_each_samples_only_its_rows(sd15_tiny, prompts, single_run,
                                                                                count, max_frames):
    parts, rows = [], []
    for index in range(count):
        model, counter = counting_model(sd15_tiny[0])
        parts.append(sampled(model, prompts, share=share(index, count), max_frames_per_batch=max_frames))
        rows.append(counter.rows // (2 * STEPS))  # cond and uncond of every row, once per step
    gathered = torch.cat(parts)
    assert gathered.shape == single_run.shape
    for frame in range(FRAMES):
        assert close(gathered[frame], single_run[frame]), f"frame {frame}"
    interior = [len(range(1, FRAMES - 1)[index::count]) for index in range(count)]  # 5 frames: 3+2, 2+2+1
    if max_frames == 0:
        assert rows == [n + 2 for n in interior], "each share samples its interior frames and both endpoints"
    else:  # runs of 3 rows: [A, f, B] per interior frame
        assert rows == [3 * n for n in interior]


def test_every_participant_with_the_same_share_gets_the_same_frames(sd15_tiny, prompts):
    """The split is static: it depends on the share and the frame count only, never on the run."""
    first = sampled(sd15_tiny[0], prompts, share=share(1, 2))
    again = sampled(sd15_tiny[0], prompts, share=share(1, 2))
    assert first.shape[0] == 3 and torch.equal(first, again)


def test_share_count_one_is_the_whole_sequence(sd15_tiny, prompts, single_run):
    assert torch.equal(sampled(sd15_tiny[0], prompts, share=share(0, 1)), single_run)


def test_more_shares_than_frames_between_the_endpoints_is_refused_before_sampling(sd15_tiny, prompts):
    model, counter = counting_model(sd15_tiny[0])
    with pytest.raises(AIDInputError, match="AID Sampler: input 'share': 6 shares of a 7-frame sequence") as caught:
        sampled(model, prompts, share=share(0, 6))
    assert "use at most 5 shares" in str(caught.value) and counter.rows == 0


@pytest.mark.parametrize("index, count, input_name", [(2, 2, "share_index"), (0, 0, "share_count"),
                                                      ("two", 2, "share_index")])
def test_a_share_that_does_not_exist_is_refused_by_the_share_node(index, count, input_name):
    with pytest.raises(AIDInputError, match=f"AID Sequence Share: input '{input_name}'"):
        share(index, count)


@pytest.mark.parametrize("value", ["1", 1.0, 1])
def test_the_share_node_takes_distributed_values_text_or_number(value):
    """Distributed Value sends text unless its type is set to INT; both mean worker 1's share."""
    assert share(value, 2) == share(1, 2)


@pytest.mark.slow
def test_smooth_sampler_searches_whole_and_outputs_only_its_share(sd15_tiny, prompts):
    search = dict(frames=4, exploration_frames=5, steps=STEPS)
    whole = smooth(sd15_tiny, prompts, **search)
    latent, images, schedule, distances = whole["result"]
    parts = [smooth(sd15_tiny, prompts, share=share(index, 2), **search) for index in range(2)]
    assert [p["result"][0]["samples"].shape[0] for p in parts] == [2, 2]
    gathered_latents = torch.cat([p["result"][0]["samples"] for p in parts])
    gathered_images = torch.cat([p["result"][1] for p in parts])
    assert close(gathered_latents, latent["samples"]) and close(gathered_images, images)
    for part in parts:  # the schedule and distances describe the whole sequence on every participant
        assert part["result"][2].coefficients == schedule.coefficients
        assert part["result"][3].distances == distances.distances
    assert "this participant outputs share 1 of 2: frames 2-3" in parts[1]["ui"]["text"][0]


@pytest.mark.parametrize("value", [1, {"index": 1, "count": 2}, [1, 2]])
def test_a_share_socket_fed_anything_but_a_share_is_refused_by_name(sd15_tiny, prompts, value):
    """The input guard knows AID_SHARE: a prompt's raw JSON on the socket names the node that makes shares."""
    with pytest.raises(AIDInputError, match=r"^AID Sampler: input 'share': got a .* not a sequence share\. "
                                            r"Fix: connect AID Sequence Share"):
        sampled(sd15_tiny[0], prompts, share=value)
