"""A participant's share of a sequence: a contiguous range of its frames, and the rows it samples for them.

A sequence can be split among N participants (GPUs or machines, e.g. ComfyUI-Distributed's master
and workers) because frames are independent once the keys they attend to are fixed (docs/shares.md
section 3): an interior frame needs its own row and the rows of its segment's two keys, nothing
else. A participant samples its frames plus those keys and keeps only its frames, so the frames of
a split run equal those of one run. Shares follow frame order: gathered in participant order, they
are the sequence in order. A key sampled by several participants is kept by the share whose range
holds it (the first share keeps A, the last keeps B); the others drop their copy.

The split is static and balanced by interior frames, the rows a share adds: share i gets an even
part of them (larger parts first, as plan_chunks cuts runs), a share begins at its first interior
frame, and the frames that are no interior frame (keys, held frames) stay with the interior frames
before them (share 0 also takes those at the start). Every share also samples the keys its frames
attend to, so with two endpoints a share samples its interior frames + 2 rows.

Pure functions over a FrameLayout (attention/layout.py) and, for sequences whose output frames are
not one row each (a keyframe sequence's holds), the row each output frame shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...attention.layout import FrameLayout


class ShareError(ValueError):
    """A share that cannot exist: which input is wrong, the problem and the fix, for the node to report."""

    def __init__(self, input_name: str, problem: str, fix: str):
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        super().__init__(f"{input_name}: {problem} {fix}")


@dataclass(frozen=True)
class ShareSpec:
    """Which share a participant takes: `index` of `count` (0 = the first share, the one that keeps A)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1:
            raise ShareError("share_count", f"{self.count} shares is not a split.",
                             "use 1 (the whole sequence) or the number of participants.")
        if not 0 <= self.index < self.count:
            raise ShareError("share_index", f"share {self.index} does not exist: {self.count} shares are numbered "
                             f"0 to {self.count - 1}.", "give the master 0 and worker n the value n, and set "
                             "share_count to the number of participants (master and workers).")

    @property
    def whole(self) -> bool:
        """One share: the whole sequence on this participant."""
        return self.count == 1


@dataclass(frozen=True)
class Share:
    """One participant's part of a sequence laid out by a FrameLayout.

    frames: the output frames it keeps, contiguous and ascending; rows: the layout rows it samples
    (those of its frames and the keys they attend to), ascending; produces: the rows whose results
    it keeps (those of its frames), ascending.
    """

    index: int
    count: int
    frames: tuple[int, ...]
    rows: tuple[int, ...]
    produces: tuple[int, ...]

    def describe(self) -> str:
        """'share 1 of 2: frames 4-6' for logs and the UI."""
        span = f"frame {self.frames[0]}" if len(self.frames) == 1 else f"frames {self.frames[0]}-{self.frames[-1]}"
        return f"share {self.index} of {self.count}: {span}"


@dataclass(frozen=True)
class ShareRun:
    """One sampling run of a share: the rows in its batch and those whose result is taken from it."""

    rows: tuple[int, ...]
    produces: tuple[int, ...]


def _is_interior(layout: FrameLayout, row: int) -> bool:
    return layout.key_of(row) is None


def rows_needed(layout: FrameLayout, rows) -> tuple[int, ...]:
    """`rows` plus the key rows their interior rows attend to, ascending."""
    keys = layout.key_rows()
    needed = set(rows)
    for row in rows:
        a, b, _ = layout.rows[row]
        if _is_interior(layout, row):
            needed.update((keys[a], keys[b]))
    return tuple(sorted(needed))


def _even_parts(items: int, count: int) -> list[int]:
    """Sizes of `count` parts of `items`, as even as possible, larger parts first."""
    size, extra = divmod(items, count)
    return [size + (1 if part < extra else 0) for part in range(count)]


def _contiguous_parts(interior: list[bool], count: int) -> list[range]:
    """Cut positions 0..n-1 into `count` ranges with even numbers of interior positions.

    Part i > 0 begins at its first interior position; positions before it belong to part i - 1.
    Needs at least `count` interior positions (or count 1).
    """
    positions = [position for position, flag in enumerate(interior) if flag]
    starts, taken = [0], 0
    for size in _even_parts(len(positions), count)[:-1]:
        taken += size
        starts.append(positions[taken])
    ends = starts[1:] + [len(interior)]
    return [range(start, end) for start, end in zip(starts, ends)]


def select_share(layout: FrameLayout, spec: ShareSpec, frame_rows=None) -> Share:
    """The share `spec` names of the sequence `layout` describes.

    `frame_rows[f]` is the layout row output frame f shows (default: frame f is row f, as in a
    two-endpoint sequence). Raises ShareError when there are more shares than interior frames, since a
    share without an interior frame would have nothing to sample (count 1 is always possible).
    """
    frame_rows = tuple(range(layout.frames)) if frame_rows is None else tuple(int(r) for r in frame_rows)
    interior = [_is_interior(layout, row) for row in frame_rows]
    if spec.count > max(1, sum(interior)):
        between = sum(interior)
        raise ShareError("share_count", f"{spec.count} shares of a {len(frame_rows)}-frame sequence leave a share "
                         f"without frames: only {between} of them lie between the keys.",
                         f"use at most {max(between, 1)} shares, or more frames.")
    frames = _contiguous_parts(interior, spec.count)[spec.index]
    produces = tuple(sorted({frame_rows[f] for f in frames}))
    return Share(spec.index, spec.count, tuple(frames), rows_needed(layout, produces), produces)


def split_shares(layout: FrameLayout, count: int, frame_rows=None) -> list[Share]:
    """Every share of a `count`-way split, in participant order."""
    return [select_share(layout, ShareSpec(index, count), frame_rows) for index in range(count)]


def share_runs(layout: FrameLayout, share: Share, max_rows: int = 0) -> list[ShareRun]:
    """The sampling runs of a share: one, or the fewest contiguous runs of at most `max_rows` rows.

    max_rows 0 (or at least the share's rows) means one run. Otherwise the rows the share keeps are cut
    like the frames of a split (even numbers of interior rows per run), each run holding the keys its
    interior rows attend to; with two endpoints these are plan_chunks' runs. max_rows must then be >= 3.
    """
    if max_rows <= 0 or len(share.rows) <= max_rows:
        return [ShareRun(share.rows, share.produces)]
    if max_rows < 3:
        raise ValueError("a run needs room for two keys and a frame between them (3 rows).")
    produced = list(share.produces)
    interior = [_is_interior(layout, row) for row in produced]
    for runs in range(max(1, math.ceil(sum(interior) / (max_rows - 2))), sum(interior) + 1):
        parts = [tuple(produced[p] for p in part) for part in _contiguous_parts(interior, runs)]
        candidate = [ShareRun(rows_needed(layout, part), part) for part in parts]
        if all(len(run.rows) <= max_rows for run in candidate):
            return candidate
    # Keys with no frame between them (keyframe sequences) can crowd a run: one row and its keys per run.
    return [ShareRun(rows_needed(layout, (row,)), (row,)) for row in produced]
