"""Keyframe schedules without a model: the text parser, easing, timelines (holds, loops) and run planning."""
import pytest
from hypothesis import given, settings, strategies as st

from aid_pack.samplers.keyframes.easing import Easing, EasingError, parse_easing
from aid_pack.samplers.keyframes.text import KeyframeError, Position, parse_keyframes
from aid_pack.samplers.keyframes.plan import Keyframe, Keyframes, plan_keyframes, resolve_timeline


def keys_of(text, **kwargs):
    """Parsed keys with their prompt text standing in for the CONDITIONING."""
    return Keyframes(tuple(Keyframe(spec.prompt, spec.position, spec.hold, spec.seed, spec.easing, spec.guide,
                                    spec.source, spec.text, spec.prompt) for spec in parse_keyframes(text, **kwargs)))


def timeline_of(text, total=0, loop=False):
    return resolve_timeline(keys_of(text), total, loop)


# ----------------------------------------------------------------------------------------------
# the parser: valid schedules
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0: a red fox\n12: a white owl", [("frame", 0, "a red fox"), ("frame", 12, "a white owl")]),
    ('"0" :"a red fox",\n"12": "a white owl, snow",', [("frame", 0, "a red fox"), ("frame", 12, "a white owl, snow")]),
    ("0: a: b (photo:1.2), c\n+8: d", [("frame", 0, "a: b (photo:1.2), c"), ("after", 8, "d")]),
    ("0: a\n0.5: b\n75%: c\n-1: d", [("frame", 0, "a"), ("fraction", 0.5, "b"), ("fraction", 0.75, "c"),
                                     ("from end", -1, "d")]),
    ("# travel\n\n0: a\n// comment\n  +4 :  b  ", [("frame", 0, "a"), ("after", 4, "b")]),
    ("0: a {red|blue} car | hold 2\n4:", [("frame", 0, "a {red|blue} car"), ("frame", 4, "a {red|blue} car")]),
], ids=["plain", "fizznodes", "colons-in-prompt", "fraction-and-from-end", "comments", "braces-and-repeat"])
def test_valid_schedules(text, expected):
    specs = parse_keyframes(text)
    assert [(s.position.kind, s.position.value, s.prompt) for s in specs] == expected


def test_options_holds_seeds_easing_and_guidance():
    first, second, third = parse_keyframes("0: a | hold 4 | seed 7 | ease in-out\n"
                                           "+6: b | EASE beta(6, 3) | guide a dog driving a car\n"
                                           "30: c | easing: 0.1, 0.5, 0.9 | hold=2")
    assert (first.hold, first.seed, first.easing, first.guide) == (4, 7, Easing("ease in-out"), None)
    assert (second.hold, second.seed, second.easing, second.guide) == (1, None, Easing("beta", 6, 3),
                                                                       "a dog driving a car")
    assert third.easing == Easing("custom", values=(0.1, 0.5, 0.9)) and third.hold == 2
    assert [s.source for s in (first, second, third)] == ["line 1", "line 2", "line 3"]


def test_pre_and_app_text_wrap_every_prompt():
    specs = parse_keyframes("0: a fox\n8:", pre_text="watercolor,", app_text="4k")
    assert [s.prompt for s in specs] == ["watercolor, a fox 4k", "watercolor, a fox 4k"]


@pytest.mark.parametrize("written,easing", [
    ("linear", Easing()), ("ease in", Easing("ease in")), ("in", Easing("ease in")), ("Ease-Out", Easing("ease out")),
    ("ease in-out", Easing("ease in-out")), ("smooth", Easing("ease in-out")), ("beta(6,3)", Easing("beta", 6, 3)),
    ("beta 2 5", Easing("beta", 2, 5)), ("[0.2, 0.4]", Easing("custom", values=(0.2, 0.4))),
    ("custom(0, 0.3, 1)", Easing("custom", values=(0.3,))), ("0.25 0.5 0.75", Easing("custom", values=(0.25, 0.5, 0.75))),
])
def test_easing_names(written, easing):
    assert parse_easing(written) == easing


def test_easing_coefficients():
    assert Easing().coefficients(3) == (0.25, 0.5, 0.75)
    ease_in, ease_out = Easing("ease in").coefficients(3), Easing("ease out").coefficients(3)
    assert ease_in[0] < 0.25 and ease_out[0] > 0.25 and ease_in[1] == pytest.approx(0.125)
    assert ease_in == pytest.approx(tuple(1 - t for t in reversed(ease_out)))
    in_out = Easing("ease in-out").coefficients(3)
    assert in_out[1] == pytest.approx(0.5) and in_out[0] < 0.25
    middle = Easing("beta", 4, 4).coefficients(5)
    assert middle[2] == pytest.approx(0.5) and middle[3] - middle[2] < 0.1  # packed into the middle
    assert Easing().coefficients(0) == ()
    with pytest.raises(EasingError, match="lists 2 coefficients but the segment has 3 frames"):
        Easing("custom", values=(0.3, 0.6)).coefficients(3)


# ----------------------------------------------------------------------------------------------
# the parser: malformed lines, each with a named error pointing at its line
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,code,line,message", [
    ("0: a\na white owl", "missing-separator", 2, "expected 'frame: prompt'"),
    ("0: a\n12 a white owl", "missing-separator", 2, "expected 'frame: prompt'"),
    ("0: a\nowl: b", "bad-index", 2, "'owl' is not a frame"),
    ("0: a\n7.5: b", "bad-index", 2, "7.5 is not a frame"),
    ("0: a\n150%: b", "bad-index", 2, "past the end"),
    ("0: a\n+0: b", "bad-index", 2, "a step is at least \\+1"),
    (":a", "bad-index", 1, "is not a frame"),
    ("\n0:   \n4: b", "empty-prompt", 2, "the first key has no prompt"),
    ("0: a | hodl 3", "unknown-option", 1, "unknown option 'hodl'"),
    ("0: a\n4: b | hold 2 | hold 3", "duplicate-option", 2, "'hold' is given twice"),
    ("0: a | hold 0", "bad-option-value", 1, "hold 0 would not show the key"),
    ("0: a | seed -4", "bad-option-value", 1, "seed needs a whole number"),
    ("0: a | hold two", "bad-option-value", 1, "hold needs a whole number"),
    ("0: a | ease wobbly", "bad-easing", 1, "unknown easing 'wobbly'"),
    ("0: a | ease beta(6)", "bad-easing", 1, "is not beta\\(alpha, beta\\)"),
    ("0: a | ease beta(0, 2)", "bad-easing", 1, "positive alpha and beta"),
    ("0: a | ease 0.5, 0.2", "bad-easing", 1, "strictly between 0 and 1 in increasing order"),
    ("0: a | guide", "bad-option-value", 1, "guide needs a prompt"),
    ("# only a comment\n", "no-keys", None, "it has no keys"),
])
def test_malformed_lines_name_their_error_and_line(text, code, line, message):
    with pytest.raises(KeyframeError, match=message) as error:
        parse_keyframes(text)
    assert error.value.code == code and error.value.line == line
    if line is not None:
        assert str(error.value).startswith(f"line {line} (") and error.value.fix


@pytest.mark.parametrize("text,total,loop,code,source,message", [
    ("0: a\n8: b\n6: c", 0, False, "out-of-order", "line 3", "frame 6 is not after the key before it \\(line 2"),
    ("0: a | hold 4\n2: b", 0, False, "out-of-order", "line 2", "line 1, frames 0-3, its hold"),
    ("0: a\n8: b\n8: c", 0, False, "out-of-order", "line 3", "frame 8 is the frame of the key before it"),
    ("+4: a\n8: b", 0, False, "bad-index", "line 1", "the first key has no key before it"),
    ("0: a\n0.5: b", 0, False, "needs-length", "line 2", "counted from the sequence's length"),
    ("0: a\n-1: b", 0, False, "needs-length", "line 2", "counted from the sequence's length"),
    ("0: a\n-20: b", 10, False, "bad-index", "line 2", "frame -10 is before the start"),
    ("0: a", 0, False, "too-few-keys", "line 1", "at least two keys"),
    ("0: a\n12: b", 8, False, "too-short", "total_frames", "the sequence has 8 frames but its keys reach frame 12"),
    ("0: a\n12: b | hold 3", 12, True, "too-short", "total_frames", "the loop has 12 frames but its keys reach frame 14"),
    ("0: a | ease 0.5\n4: b", 0, False, "bad-easing", "line 1", "lists 1 coefficient but the segment has 3 frames"),
])
def test_timeline_errors_point_at_the_key(text, total, loop, code, source, message):
    with pytest.raises(KeyframeError, match=message) as error:
        timeline_of(text, total, loop)
    assert error.value.code == code and error.value.source == source and error.value.fix


# ----------------------------------------------------------------------------------------------
# timelines: positions, holds, easing, loops
# ----------------------------------------------------------------------------------------------

def test_absolute_relative_and_fractional_positions_resolve_to_the_same_frames():
    written = ["0: a\n4: b\n8: c", "0: a\n+4: b\n+4: c", "0: a\n0.5: b\n100%: c", "0: a\n50%: b\n-1: c"]
    resolved = [timeline_of(text, total=9) for text in written]
    assert {t.positions for t in resolved} == {(0, 4, 8)} and {t.frames for t in resolved} == {9}
    assert all(t.frame_rows() == resolved[0].frame_rows() for t in resolved)


def test_holds_repeat_the_key_and_relative_steps_count_from_its_last_frame():
    timeline = timeline_of("0: a | hold 3\n+4: b | hold 2\n+2: c")
    assert timeline.positions == (0, 6, 9) and timeline.frames == 10
    assert timeline.key_frames == ((0, 1, 2), (6, 7), (9,))
    rows = timeline.frame_rows()
    assert rows[:3] == ((0, 0, 0.0),) * 3 and rows[6:8] == ((1, 1, 0.0),) * 2
    assert [r[:2] for r in rows[3:6]] == [(0, 1)] * 3 and [r[2] for r in rows[3:6]] == [0.25, 0.5, 0.75]
    assert rows[8] == (1, 2, 0.5)
    assert timeline.key_indices() == (0, 0, 0, None, None, None, 1, 1, None, 2)


def test_frames_before_the_first_key_and_after_the_last_show_them():
    timeline = timeline_of("2: a\n4: b", total=7)
    assert timeline.key_frames == ((0, 1, 2), (4, 5, 6)) and timeline.frame_rows()[3] == (0, 1, 0.5)


def test_each_segment_has_its_own_easing():
    timeline = timeline_of("0: a | ease in\n4: b | ease out\n8: c")
    assert timeline.segments[0].coefficients == Easing("ease in").coefficients(3)
    assert timeline.segments[1].coefficients == Easing("ease out").coefficients(3)


def test_closed_loop_returns_to_the_first_key_without_repeating_it():
    timeline = timeline_of("0: a\n4: b\n8: c", loop=True)
    assert timeline.frames == 12, "the way back is as long as the segment before it; frame 12 would be key 0 again"
    closing = timeline.segments[-1]
    assert (closing.key_a, closing.key_b, closing.frames) == (2, 0, (9, 10, 11))
    assert timeline.frame_rows()[-1] != timeline.frame_rows()[0] and timeline.frame_rows()[0] == (0, 0, 0.0)
    assert timeline.coefficients[0] == 0.0 and timeline.coefficients[-1] == pytest.approx(11 / 12)
    long = timeline_of("0: a\n4: b\n8: c", total=16, loop=True)
    assert long.segments[-1].frames == tuple(range(9, 16))
    wrapped = timeline_of("2: a\n6: b", total=8, loop=True)  # frames before the first key end the way back
    assert wrapped.segments[-1].frames == (7, 0, 1) and wrapped.frame_rows()[1][:2] == (1, 0)


def test_a_loop_sized_from_late_keys_ends_at_the_last_key():
    """Keys at 5 and 10, total_frames 0: the five frames before key 1 already make a way back longer than
    the four between the keys, so the loop ends at the last key (this raised IndexError before)."""
    timeline = timeline_of("5: a\n10: b", loop=True)
    assert timeline.frames == 11 and timeline.key_frames == ((5,), (10,))
    assert timeline.segments[-1].frames == (0, 1, 2, 3, 4)
    rows = timeline.frame_rows()
    assert len(rows) == 11 and rows[5] == (0, 0, 0.0) and rows[10] == (1, 1, 0.0) and rows[0][:2] == (1, 0)
    early = timeline_of("1: a\n6: b", loop=True)  # one frame before the first key: the way back gets 4
    assert early.frames == 10 and early.segments[-1].frames == (7, 8, 9, 0)


# ----------------------------------------------------------------------------------------------
# planning runs
# ----------------------------------------------------------------------------------------------

FORTY = "0: a | hold 2\n+12: b | ease in-out\n+12: c | hold 3\n+10: d"


def test_one_run_holds_every_row_and_holds_share_their_key_row():
    plan = plan_keyframes(timeline_of(FORTY, total=40, loop=True))
    assert len(plan.runs) == 1 and plan.layout.frames == 40 - 1 - 2  # hold 2 and hold 3 are copies
    assert plan.frame_rows[0] == plan.frame_rows[1] == plan.key_rows[0]
    assert plan.layout.key_rows() == {k: plan.key_rows[k] for k in range(4)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(1, 3)), min_size=2, max_size=5), st.integers(0, 12),
       st.booleans(), st.integers(3, 12))
def test_runs_fit_their_budget_and_give_every_row_once(spacing, extra, loop, max_rows):
    lines, position = [], 0
    for index, (gap, hold) in enumerate(spacing):
        position += gap + (1 if index else 0)
        lines.append(f"{position}: key {index} | hold {hold}")
        position += hold - 1
    text = "\n".join(lines)
    total = position + 1 + extra
    plan = plan_keyframes(timeline_of(text, total, loop), max_rows)
    assert plan.max_rows <= max_rows
    produced = [row for run in plan.runs for row in run.produces]
    assert sorted(produced) == list(range(plan.layout.frames)), "every row comes from exactly one run"
    for index, run in enumerate(plan.runs):
        plan.run_layout(index)  # every interior row has its two keys in the run (FrameLayout checks)
        assert list(run.produces) == list(range(run.produces[0], run.produces[-1] + 1)), "contiguous rows"
        assert set(run.produces) <= set(run.rows)
    unchunked = plan_keyframes(timeline_of(text, total, loop))
    assert unchunked.layout == plan.layout and unchunked.frame_rows == plan.frame_rows


def test_runs_are_as_few_as_the_budget_allows_and_even():
    plan = plan_keyframes(timeline_of("0: a\n+11: b"), 5)  # 10 interior frames, 3 per run with both keys
    assert len(plan.runs) == 4 and [len(run.rows) for run in plan.runs] == [5, 5, 5, 3]
    assert plan.frames_of_run(0) == (0, 1, 2, 3) and plan.frames_of_run(3) == (10, 11)
    shared = plan_keyframes(timeline_of("0: a\n+3: b\n+3: c"), 5)  # 7 rows: a run per segment, sharing key b
    assert [run.rows for run in shared.runs] == [(0, 1, 2, 3), (3, 4, 5, 6)]
    with pytest.raises(ValueError, match="3 rows"):
        plan_keyframes(timeline_of("0: a\n4: b"), 2)


def test_position_describes_itself():
    assert [Position(k, v).describe() for k, v in (("frame", 3), ("after", 4), ("fraction", 0.5), ("from end", -1))] \
        == ["3", "+4", "0.5", "-1"]


def test_a_pasted_megabyte_is_not_quoted_whole_in_the_error():
    with pytest.raises(KeyframeError) as error:
        parse_keyframes("0: a fox\n" + "x" * 1_000_000)
    assert error.value.line == 2 and len(str(error.value)) < 300 and "xxx..." in str(error.value)
