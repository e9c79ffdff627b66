"""Keyframe sequences: keys K_0 -> K_1 -> ... (optionally back to K_0), planned into batched AID runs.

Three steps, each a value the next one reads:
- `Keyframes`: the keys as the user gave them (a prompt's CONDITIONING, where it sits, hold, seed,
  easing and PAID guidance of the segment it starts), from the schedule text (samplers/keyframes/text.py)
  or from AID Keyframe nodes;
- `resolve_timeline` -> `Timeline`: every output frame is a key (shown for its hold) or an interior
  frame of a segment K_a -> K_b at a coefficient t from the segment's easing; a closed loop's last
  segment returns to K_0, and its frames stop one short of K_0, so the clip loops without a repeated frame;
- `plan_keyframes` -> `KeyframePlan`: the rows to sample (each key once, each interior frame once;
  holds are copies) and the sampling runs. A run is a contiguous stretch of rows in frame order plus
  the key rows its interior frames need (attention/layout.py), at most `max_rows` rows, as few runs as
  that allows and as even as possible. A key sampled in several runs is taken from the run it belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...attention.layout import FrameLayout
from .easing import LINEAR, Easing, EasingError
from .text import KeyframeError, Position, parse_position
from ..sequence.shares import Share, share_runs

MIN_ROWS_PER_RUN = 3  # two keys and one frame between them


@dataclass(frozen=True, eq=False)
class Keyframe:
    """One key of a sequence: its prompt, where it sits, and the options of the segment it starts."""

    conditioning: list  # CONDITIONING of the key's prompt
    position: Position
    hold: int = 1
    seed: int | None = None  # None: the sampler's seed
    easing: Easing | None = None  # of the segment from this key to the next; None: linear
    guidance: list | None = None  # PAID guidance CONDITIONING of that segment
    source: str = ""  # where the key was written: "line 3", "key 2"
    text: str = ""  # the line (or a description) for messages
    prompt: str = ""  # the prompt text when known


@dataclass(frozen=True, eq=False)
class Keyframes:
    """The AID_KEYFRAMES value: keys in order."""

    keys: tuple[Keyframe, ...]

    def __len__(self) -> int:
        return len(self.keys)

    def then(self, key: Keyframe) -> "Keyframes":
        """These keys followed by one more (the AID Keyframe node chain)."""
        return Keyframes(self.keys + (key,))


@dataclass(frozen=True)
class Segment:
    """Frames between key_a and key_b: their output frame indices and coefficients, in order."""

    key_a: int
    key_b: int
    frames: tuple[int, ...]
    coefficients: tuple[float, ...]
    easing: Easing


@dataclass(frozen=True)
class Timeline:
    """Every output frame of a keyframe sequence: a key or an interior frame of a segment."""

    frames: int
    key_frames: tuple[tuple[int, ...], ...]  # key -> the output frames showing it (first = its position)
    segments: tuple[Segment, ...]
    loop: bool
    positions: tuple[int, ...]  # key -> its frame

    @property
    def keys(self) -> int:
        return len(self.key_frames)

    def frame_rows(self) -> tuple[tuple[int, int, float], ...]:
        """(key_a, key_b, t) of every output frame; a key's frames are (k, k, 0)."""
        rows: list = [None] * self.frames
        for key, frames in enumerate(self.key_frames):
            for frame in frames:
                rows[frame] = (key, key, 0.0)
        for segment in self.segments:
            for frame, t in zip(segment.frames, segment.coefficients):
                rows[frame] = (segment.key_a, segment.key_b, t)
        return tuple(rows)

    def key_positions(self) -> tuple[int, ...]:
        """The frame of every key (where it was written to sit)."""
        return self.positions

    def key_indices(self) -> tuple[int | None, ...]:
        """The key each output frame shows, None for a frame between two keys."""
        return tuple(a if t == 0.0 else None for a, b, t in self.frame_rows())

    @property
    def coefficients(self) -> tuple[float, ...]:
        """Each frame's place along the path through the keys, for plots and reports: (segment + t) / segments.

        0 at the first key, 1 at the last key of an open sequence (a loop's last frame is just short of 1,
        where the first key comes back); a key's held frames share its value.
        """
        count = len(self.segments)
        order = {segment.key_a: index for index, segment in enumerate(self.segments)}
        places = []
        for a, b, t in self.frame_rows():
            places.append(a / count if t == 0.0 else (order[a] + t) / count)
        return tuple(places)

    def describe(self) -> str:
        """One line for logs and reports, e.g. '4 keys at frames 0, 12, 24, 36; 48 frames, closed loop'."""
        kind = "closed loop" if self.loop else "open"
        return (f"{self.keys} keys at frames {', '.join(str(p) for p in self.key_positions())}; "
                f"{self.frames} frames, {kind}")


def _frames(count: int) -> str:
    return f"{count} frame" + ("" if count == 1 else "s")


def _resolve_position(key: Keyframe, index: int, previous_end: int | None, total: int, loop: bool) -> int:
    position = key.position
    if position.kind == "frame":
        return int(position.value)
    if position.kind == "after":
        if previous_end is None:
            raise KeyframeError("bad-index", key.source, "the first key has no key before it to count from.",
                                "give the first key a frame number, e.g. 0.", key.text)
        return previous_end + int(position.value)
    if total <= 0:
        written = position.describe() if position.kind == "fraction" else str(int(position.value))
        raise KeyframeError("needs-length", key.source, f"'{written}' is counted from the sequence's length, which "
                            "is not set.", "set total_frames on the sampler, or write frame numbers.", key.text)
    if position.kind == "from end":
        return total + int(position.value)
    last = total if loop else total - 1  # a loop's 100% is its end, where the first key comes back
    return int(position.value * last + 0.5)


def resolve_timeline(keyframes: Keyframes, total_frames: int = 0, loop: bool = False) -> Timeline:
    """Place every key and segment on output frames.

    Open sequences start at frame 0 (frames before the first key show it) and end at `total_frames`
    (0: the last key's last held frame; frames after it show the last key). A closed loop of
    `total_frames` frames (0: the last segment as long as the one before it, or, when more frames come
    before the first key than that, those frames and no more) ends with the segment from
    the last key back to the first, whose end, the first key, is frame 0 again; frames before the first
    key belong to that segment. Raises KeyframeError naming the key's line for keys out of order.
    """
    keys = keyframes.keys
    if len(keys) < 2:
        source = keys[0].source if keys else "the schedule"
        raise KeyframeError("too-few-keys", source, f"a sequence needs at least two keys, got {len(keys)}.",
                            "add a second key, e.g. '16: <another prompt>'.", keys[0].text if keys else "")
    positions, ends = [], []
    for index, key in enumerate(keys):
        previous_end = ends[-1] - 1 if ends else None
        position = _resolve_position(key, index, previous_end, total_frames, loop)
        if position < 0:
            raise KeyframeError("bad-index", key.source, f"frame {position} is before the start of the sequence.",
                                "use a frame of 0 or more.", key.text)
        if ends and position < ends[-1]:
            before = keys[index - 1]
            shown = (f"frame {positions[-1]}" if before.hold == 1 else
                     f"frames {positions[-1]}-{ends[-1] - 1}, its hold")
            problem = (f"frame {position} is the frame of the key before it ({before.source})." if position ==
                       positions[-1] else f"frame {position} is not after the key before it ({before.source}, "
                       f"{shown}).")
            raise KeyframeError("out-of-order", key.source, problem,
                                f"put the keys in frame order, each after the previous key's last frame "
                                f"({ends[-1]} or later).", key.text)
        positions.append(position)
        ends.append(position + key.hold)
    end = ends[-1]
    if loop:
        if total_frames > 0:
            frames = total_frames
        else:  # the way back as long as the segment before it, but never shorter than the frames before key 1
            spacing = positions[-1] - (ends[-2] - 1)
            frames = max(end - 1 + spacing - positions[0], end)
        closing = frames - end + positions[0]
        if closing < 0:
            raise KeyframeError("too-short", "total_frames", f"the loop has {_frames(frames)} but its keys reach "
                                f"frame {end - 1} ({keys[-1].source}).",
                                f"set total_frames to {end - positions[0]} or more, or 0 to size the loop from the keys.")
    else:
        frames = total_frames if total_frames > 0 else end
        if frames < end:
            raise KeyframeError("too-short", "total_frames", f"the sequence has {_frames(frames)} but its keys "
                                f"reach frame {end - 1} ({keys[-1].source}).",
                                f"set total_frames to {end} or more, or 0 to end at the last key.")
    key_frames = [list(range(p, e)) for p, e in zip(positions, ends)]
    if not loop:
        key_frames[0] = list(range(0, positions[0])) + key_frames[0]
        key_frames[-1] += list(range(end, frames))
    pairs = [(k, k + 1, list(range(ends[k], positions[k + 1]))) for k in range(len(keys) - 1)]
    if loop:
        pairs.append((len(keys) - 1, 0, list(range(end, frames)) + list(range(0, positions[0]))))
    segments = []
    for key_a, key_b, segment_frames in pairs:
        source = keys[key_a]
        easing = source.easing or LINEAR
        try:
            coefficients = easing.coefficients(len(segment_frames))
        except EasingError as error:
            raise KeyframeError("bad-easing", source.source, f"the segment to the next key: {error}",
                                "list one coefficient per frame between the keys, or use a named easing.",
                                source.text) from None
        segments.append(Segment(key_a, key_b, tuple(segment_frames), coefficients, easing))
    return Timeline(frames, tuple(tuple(f) for f in key_frames), tuple(segments), loop, tuple(positions))


@dataclass(frozen=True)
class PlannedRun:
    """One sampling run: the rows it holds (sorted) and those whose result is taken from it."""

    rows: tuple[int, ...]
    produces: tuple[int, ...]


@dataclass(frozen=True)
class KeyframePlan:
    """Rows to sample, the output frame each row gives, and the runs.

    layout.rows[r] = (key_a, key_b, t) with global key numbers; key rows are (k, k, 0), one per key, in
    frame order with the interior rows of each segment after the key that starts it. frame_rows[f] is the
    row whose result is output frame f (every frame of a key's hold shares its row).
    """

    timeline: Timeline
    layout: FrameLayout
    frame_rows: tuple[int, ...]
    key_rows: tuple[int, ...]  # key -> its row
    runs: tuple[PlannedRun, ...]

    @property
    def max_rows(self) -> int:
        """The largest run's rows (what bounds peak memory)."""
        return max(len(run.rows) for run in self.runs)

    def sources(self) -> dict[int, int]:
        """row -> the run whose result is used for it."""
        return {row: index for index, run in enumerate(self.runs) for row in run.produces}

    def run_layout(self, index: int) -> FrameLayout:
        """The frame layout of one run (attention/layout.py)."""
        return self.layout.select(self.runs[index].rows)

    def frames_of_run(self, index: int) -> tuple[int, ...]:
        """The output frames whose result comes from run `index` (contiguous in frame order, holds included)."""
        produced = set(self.runs[index].produces)
        return tuple(frame for frame, row in enumerate(self.frame_rows) if row in produced)


def _needs(layout: FrameLayout, key_rows, row: int) -> set[int]:
    a, b, t = layout.rows[row]
    return {row} if t in (0.0, 1.0) else {row, key_rows[a], key_rows[b]}


def _greedy_runs(layout: FrameLayout, key_rows, max_rows: int) -> list[tuple[list[int], set[int]]]:
    """Cut the rows, in order, into contiguous stretches whose rows plus needed keys fit max_rows."""
    runs, stretch, rows = [], [], set()
    for row in range(layout.frames):
        needed = _needs(layout, key_rows, row)
        if stretch and len(rows | needed) > max_rows:
            runs.append((stretch, rows))
            stretch, rows = [], set()
        stretch.append(row)
        rows |= needed
    runs.append((stretch, rows))
    return runs


def plan_keyframes(timeline: Timeline, max_rows: int = 0) -> KeyframePlan:
    """Rows and runs for a timeline; max_rows 0 puts every row in one run, otherwise it must be >= 3.

    Runs are the fewest contiguous stretches that fit max_rows (cutting greedily is optimal for contiguous
    stretches), then evened out: the smallest budget that still gives that many runs.
    """
    rows, frame_rows, key_rows = [], [None] * timeline.frames, []
    for key in range(timeline.keys):
        key_rows.append(len(rows))
        rows.append((key, key, 0.0))
        for frame in timeline.key_frames[key]:
            frame_rows[frame] = key_rows[key]
        for segment in timeline.segments:
            if segment.key_a == key:
                for frame, t in zip(segment.frames, segment.coefficients):
                    frame_rows[frame] = len(rows)
                    rows.append((segment.key_a, segment.key_b, t))
    layout = FrameLayout(tuple(rows))
    if 0 < max_rows < MIN_ROWS_PER_RUN:
        raise ValueError(f"a run needs room for two keys and a frame between them ({MIN_ROWS_PER_RUN} rows).")
    if max_rows <= 0 or max_rows >= layout.frames:
        runs = [(list(range(layout.frames)), set(range(layout.frames)))]
    else:
        runs = _greedy_runs(layout, key_rows, max_rows)
        low, high = MIN_ROWS_PER_RUN, max_rows
        while low < high:  # the fewest rows per run that still needs no more runs
            middle = (low + high) // 2
            if len(_greedy_runs(layout, key_rows, middle)) <= len(runs):
                high = middle
            else:
                low = middle + 1
        runs = _greedy_runs(layout, key_rows, low)
    planned = tuple(PlannedRun(tuple(sorted(needed)), tuple(stretch)) for stretch, needed in runs)
    return KeyframePlan(timeline, layout, tuple(frame_rows), tuple(key_rows), planned)


def share_plan(plan: KeyframePlan, share: Share, max_rows: int = 0) -> KeyframePlan:
    """The plan of one participant's share (samplers/sequence/shares.py): only the rows it samples, in its own runs.

    The share's frames come out of these runs exactly as out of the whole plan's (a frame depends on its row
    and its segment's two keys only); `max_rows` bounds its runs as plan_keyframes' max_rows does.
    """
    runs = share_runs(plan.layout, share, max_rows)
    return replace(plan, runs=tuple(PlannedRun(run.rows, run.produces) for run in runs))


def key_seeds(keyframes: Keyframes, seed: int) -> tuple[int, ...]:
    """Every key's noise seed: its own, else the sampler's."""
    return tuple(int(seed if key.seed is None else key.seed) for key in keyframes.keys)


__all__ = ["Keyframe", "Keyframes", "KeyframeError", "KeyframePlan", "PlannedRun", "Position", "Segment", "Timeline",
           "key_seeds", "parse_position", "plan_keyframes", "resolve_timeline"]
