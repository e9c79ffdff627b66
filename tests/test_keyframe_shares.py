"""A keyframe sequence split into shares (AID Sequence Share -> AID Keyframe Sampler) on the real host.

Each participant is simulated by one call with its share. The shares' frames, put together in share
order, must equal the frames of one unsplit run (compare.close), holds included, and each call must
sample only the rows of its frames and the keys those attend to (a spy on the UNet counts them).
The sequence is test_keyframes.py's: A -> B -> C with a hold on A, per-key seeds, PAID guidance on
B -> C and prompts of 77, 154 and 231 tokens.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.unet_rows import counting_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.shares import AIDSequenceShare
from aid_pack.samplers.keyframes.plan import plan_keyframes, resolve_timeline
from test_keyframes import STEPS, conds, keyframe_sample, texts, three_keys  # noqa: F401 (fixtures)


def share(index, count):
    return AIDSequenceShare().select(index, count)[0]


def rows_for(keyframes, frames):
    """The layout rows output `frames` need, worked out from the plan's rows: each frame's row, and for a
    frame between two keys the rows of both keys."""
    plan = plan_keyframes(resolve_timeline(keyframes))
    needed = set()
    for frame in frames:
        row = plan.frame_rows[frame]
        a, b, t = plan.layout.rows[row]
        needed.add(row)
        if 0.0 < t < 1.0:
            needed.update((plan.key_rows[a], plan.key_rows[b]))
    return needed


@pytest.mark.parametrize("count, max_frames", [(2, 0), (3, 0), (2, 4)])
def test_shares_put_together_equal_a_single_run_and_each_samples_only_its_rows(sd15_tiny, conds, three_keys,
                                                                                count, max_frames):
    keyframes, single, _, _ = three_keys
    parts, sampled_rows, largest_call = [], [], 0
    for index in range(count):
        model, counter = counting_model(sd15_tiny[0])
        frames, _, _ = keyframe_sample(model, keyframes, conds["neg"], share=share(index, count),
                                       max_frames_per_batch=max_frames)
        parts.append(frames)
        sampled_rows.append(counter.rows // (2 * STEPS))  # cond and uncond of every row, once per step
        largest_call = max(largest_call, *counter.calls)
    gathered = torch.cat(parts)
    assert gathered.shape == single.shape
    for frame in range(single.shape[0]):
        assert close(gathered[frame], single[frame]), f"frame {frame}"
    total_rows = len(plan_keyframes(resolve_timeline(keyframes)).layout.rows)
    if max_frames == 0:  # one run per share: exactly its frames' rows and their keys
        starts = [0] + [int(sum(p.shape[0] for p in parts[:i])) for i in range(1, count + 1)]
        expected = [len(rows_for(keyframes, range(starts[i], starts[i + 1]))) for i in range(count)]
        assert sampled_rows == expected
    else:  # runs of at most 4 rows: a UNet call holds at most 4 rows, cond and uncond
        assert largest_call <= 2 * max_frames
    assert all(rows < total_rows for rows in sampled_rows), "no share samples the whole sequence"


def test_a_share_keeps_the_sequence_schedule_and_key_frames(sd15_tiny, conds, three_keys):
    """AID Sequence Report and the key list describe the whole sequence on every participant."""
    keyframes, single, schedule, key_frames = three_keys
    frames, part_schedule, part_key_frames = keyframe_sample(sd15_tiny[0], keyframes, conds["neg"], share=share(1, 2))
    assert frames.shape[0] < single.shape[0]
    assert part_schedule == schedule and part_key_frames == key_frames


def test_more_shares_than_frames_between_the_keys_is_refused_before_sampling(sd15_tiny, conds, three_keys):
    keyframes = three_keys[0]
    interior = sum(1 for a, b, t in plan_keyframes(resolve_timeline(keyframes)).layout.rows if 0.0 < t < 1.0)
    model, counter = counting_model(sd15_tiny[0])
    with pytest.raises(AIDInputError, match="AID Keyframe Sampler: input 'share'") as caught:
        keyframe_sample(model, keyframes, conds["neg"], share=share(0, interior + 1))
    assert f"use at most {interior} shares" in str(caught.value) and counter.rows == 0
