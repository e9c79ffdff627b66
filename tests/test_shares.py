"""Shares of a split sequence (samplers/sequence/shares.py): exhaustive small cases of the pure split and its runs."""
import math

import pytest

from aid_pack.attention.layout import FrameLayout
from aid_pack.samplers.sequence.schedule import linear_coefficients
from aid_pack.samplers.sequence.sampler import plan_chunks
from aid_pack.samplers.sequence.shares import (ShareError, ShareSpec, rows_needed, select_share, share_runs,
                                      split_shares)

SMALL = [(frames, count) for frames in range(2, 26) for count in range(1, max(frames - 2, 1) + 1)]


def between(frames: int) -> FrameLayout:
    return FrameLayout.between(linear_coefficients(frames)) if frames > 2 else FrameLayout.between((0.0, 1.0))


def test_shares_are_contiguous_in_order_and_cover_every_frame_once():
    for frames, count in SMALL:
        shares = split_shares(between(frames), count)
        case = f"{frames} frames, {count} shares"
        assert [f for share in shares for f in share.frames] == list(range(frames)), case
        assert all(share.frames == tuple(range(share.frames[0], share.frames[-1] + 1)) for share in shares), case
        assert shares[0].frames[0] == 0 and shares[-1].frames[-1] == frames - 1, case  # first keeps A, last B
        assert [share.index for share in shares] == list(range(count)), case


def test_each_share_samples_its_frames_and_the_endpoints_they_attend_to():
    for frames, count in SMALL:
        for share in split_shares(between(frames), count):
            assert share.produces == share.frames
            interior = [f for f in share.frames if 0 < f < frames - 1]
            expected = set(share.frames) | ({0, frames - 1} if interior else set())
            assert share.rows == tuple(sorted(expected)), f"{frames} frames, {share.describe()}"


def test_interior_frames_are_split_evenly_larger_shares_first():
    for frames, count in SMALL:
        shares = split_shares(between(frames), count)
        sizes = [sum(1 for f in share.frames if 0 < f < frames - 1) for share in shares]
        case = f"{frames} frames, {count} shares: {sizes}"
        assert sum(sizes) == frames - 2 and max(sizes) - min(sizes) <= 1, case
        assert sizes == sorted(sizes, reverse=True), case
        assert frames == 2 or min(sizes) >= 1, "every share of a split has something to sample: " + case


def test_exact_split_of_seven_frames_in_two():
    first, second = split_shares(between(7), 2)
    assert (first.frames, first.rows) == ((0, 1, 2, 3), (0, 1, 2, 3, 6))
    assert (second.frames, second.rows) == ((4, 5, 6), (0, 4, 5, 6))
    assert second.describe() == "share 1 of 2: frames 4-6"


def test_the_whole_sequence_is_one_share():
    (whole,) = split_shares(between(5), 1)
    assert whole.frames == whole.rows == whole.produces == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("frames, count", [(3, 2), (5, 4), (7, 6), (2, 2)])
def test_more_shares_than_interior_frames_is_refused_with_the_largest_count(frames, count):
    with pytest.raises(ShareError) as caught:
        select_share(between(frames), ShareSpec(0, count))
    assert caught.value.input_name == "share_count" and f"at most {max(frames - 2, 1)} shares" in caught.value.fix


@pytest.mark.parametrize("index, count, input_name", [(2, 2, "share_index"), (-1, 3, "share_index"),
                                                      (0, 0, "share_count")])
def test_a_share_that_does_not_exist_names_its_input(index, count, input_name):
    with pytest.raises(ShareError) as caught:
        ShareSpec(index, count)
    assert caught.value.input_name == input_name


def test_runs_of_the_whole_sequence_are_plan_chunks():
    for frames in range(3, 21):
        for max_rows in (0, 3, 4, 5, 7):
            (whole,) = split_shares(between(frames), 1)
            runs = share_runs(between(frames), whole, max_rows)
            assert [list(run.rows) for run in runs] == plan_chunks(frames, max_rows), (frames, max_rows)
            assert sorted(row for run in runs for row in run.produces) == list(range(frames))


def test_runs_of_a_share_fit_hold_their_keys_and_produce_each_frame_once():
    for frames, count in [(f, c) for f, c in SMALL if f >= 5 and c <= 4]:
        layout = between(frames)
        for max_rows in (0, 3, 4, 6):
            for share in split_shares(layout, count):
                case = f"{frames} frames, {share.describe()}, max_rows {max_rows}"
                runs = share_runs(layout, share, max_rows)
                assert sorted(row for run in runs for row in run.produces) == list(share.produces), case
                for run in runs:
                    assert set(run.produces) <= set(run.rows) and run.rows == rows_needed(layout, run.produces)
                    assert max_rows == 0 or len(run.rows) <= max_rows, case
                interior = sum(1 for f in share.frames if 0 < f < frames - 1)
                fewest = 1 if max_rows == 0 or len(share.rows) <= max_rows else math.ceil(interior / (max_rows - 2))
                assert len(runs) == fewest, "as few runs as the budget allows: " + case


def keyframe_layout():
    """Three keys with holds, as a keyframe plan lays them out: rows [K0, a, a, a, K1, b, b, K2] and the
    output frames K0 K0 a a a K1 K1 K1 b b K2 (K0 and K1 held), each showing one row."""
    rows = ((0, 0, 0.0), (0, 1, 0.25), (0, 1, 0.5), (0, 1, 0.75), (1, 1, 0.0), (1, 2, 1 / 3), (1, 2, 2 / 3),
            (2, 2, 0.0))
    frame_rows = (0, 0, 1, 2, 3, 4, 4, 4, 5, 6, 7)
    return FrameLayout(rows), frame_rows


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_keyframe_sequences_split_into_contiguous_output_frames_with_their_keys(count):
    layout, frame_rows = keyframe_layout()
    shares = split_shares(layout, count, frame_rows)
    assert [f for share in shares for f in share.frames] == list(range(len(frame_rows)))
    for share in shares:
        assert share.produces == tuple(sorted({frame_rows[f] for f in share.frames}))
        assert share.rows == rows_needed(layout, share.produces)
    held = [share.index for share in shares for f in share.frames if frame_rows[f] == 4]
    assert len(set(held)) == 1, "a held key stays in one share"


def test_keyframe_share_samples_the_keys_of_both_segments_it_spans():
    layout, frame_rows = keyframe_layout()
    first, second = split_shares(layout, 2, frame_rows)
    assert first.frames == (0, 1, 2, 3, 4, 5, 6, 7) and first.rows == (0, 1, 2, 3, 4)
    assert second.frames == (8, 9, 10) and second.rows == (4, 5, 6, 7)  # K1 sampled again, not kept
    assert share_runs(layout, first, 3)[0].rows == (0, 1, 4)
