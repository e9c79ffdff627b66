"""Which rows of an attention batch get which attention: the plan both AID patches follow, made once per batch shape.

One attention call sees rows = chunks x frames, one chunk per conditioning entry the guider batched.
In every positive chunk the frame layout (attention/layout.py) says which rows are keys and which are
interior frames of a segment between two key rows; every other row (key rows, other chunks) gets plain
attention. A RowPlan holds that as ready index objects on the batch's device: the plain rows (a slice
when consecutive, so one backend call covers them all), each segment's interior rows (a slice when consecutive), its key rows and coefficients, and
the per-row gathers a chained patch needs for its whole-batch calls. RowPlans caches one per
(positive chunks, device), so an attention call looks its plan up instead of building index tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .layout import FrameLayout


@dataclass(frozen=True)
class SegmentRows:
    """The interior rows of one segment of one positive chunk, in batch rows."""

    rows: slice | torch.Tensor  # a slice (a view) when the rows are consecutive, else an index tensor
    key_a: slice  # the row of the segment's first key, as a one-row slice
    key_b: slice
    t: torch.Tensor  # [len(rows)] float32 coefficients on the batch's device


@dataclass(frozen=True)
class RowPlan:
    """Every row of a batch: plain, or interior to a segment; see the module docstring."""

    rows: int
    plain: slice | torch.Tensor | None  # the rows that get plain attention (a slice when consecutive); None: none
    segments: tuple[SegmentRows, ...]
    key_a: torch.Tensor  # [rows] the row of each row's first key (a plain row: itself)
    key_b: torch.Tensor  # [rows] the row of each row's second key (a plain row: itself)
    t: torch.Tensor  # [rows] float32 coefficient of each row (0 on plain rows)
    interior: torch.Tensor  # [rows] bool: the rows that are interpolated
    held: torch.Tensor  # rows 1.. of every positive chunk (the rows regional interpolation holds at row 0)
    first_row: torch.Tensor  # [rows] row 0 of each positive chunk's rows (other rows: themselves)

    def has_interior(self) -> bool:
        """Whether any row is interpolated."""
        return bool(self.segments)


def _rows_index(rows: list[int], device) -> slice | torch.Tensor:
    """A slice for a run of consecutive rows (a view), else an index tensor."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return torch.tensor(rows, device=device)


def plan_rows(layout: FrameLayout, positive: tuple[bool, ...], device) -> RowPlan:
    """The RowPlan of a batch of len(positive) chunks laid out by `layout`, with index tensors on `device`."""
    frames = layout.frames
    rows = frames * len(positive)
    key_a, key_b, t = list(range(rows)), list(range(rows)), [0.0] * rows
    first_row, held, interior, segments = list(range(rows)), [], set(), []
    for chunk, is_positive in enumerate(positive):
        if not is_positive:
            continue
        base = chunk * frames
        held.extend(range(base + 1, base + frames))
        first_row[base:base + frames] = [base] * frames
        for (row_a, row_b), members in layout.segments().items():
            for row, coefficient in members:
                key_a[base + row], key_b[base + row], t[base + row] = base + row_a, base + row_b, coefficient
                interior.add(base + row)
            segments.append(SegmentRows(
                _rows_index([base + row for row, _ in members], device), slice(base + row_a, base + row_a + 1),
                slice(base + row_b, base + row_b + 1),
                torch.tensor([coefficient for _, coefficient in members], dtype=torch.float32, device=device)))

    def index(values):
        return torch.tensor(values, dtype=torch.long, device=device)

    plain = [row for row in range(rows) if row not in interior]
    return RowPlan(rows, _rows_index(plain, device) if plain else None, tuple(segments),
                   index(key_a), index(key_b), torch.tensor(t, dtype=torch.float32, device=device),
                   torch.tensor([row in interior for row in range(rows)], dtype=torch.bool, device=device),
                   index(held), index(first_row))


class RowPlans:
    """RowPlan of one frame layout per (positive chunks, device), made on first use."""

    def __init__(self, layout: FrameLayout):
        self.layout = layout
        self._plans: dict = {}

    def get(self, positive, device) -> RowPlan:
        """The plan for a call whose chunks are positive where `positive` says, on `device`."""
        key = (tuple(positive), torch.device(device))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_rows(self.layout, key[0], key[1])
        return plan


SegmentFn = Callable[..., torch.Tensor]


def attend_rows(plan: RowPlan, q, k, v, plain: Callable, interpolate_segment: SegmentFn) -> torch.Tensor:
    """Attention of every row of a batch: one plain(q, k, v) call on the plain rows and
    interpolate_segment(q, k, v, k_a, v_a, k_b, v_b, t) on each segment's interior rows; -> a tensor like q.

    Rows are the first dimension of q, k, v (any layout behind it); consecutive rows are views, not copies.
    """
    out = torch.empty_like(q)
    if plan.plain is not None:
        rows = plan.plain
        out[rows] = plain(q[rows], k[rows], v[rows])
    for segment in plan.segments:
        rows, a, b = segment.rows, segment.key_a, segment.key_b
        out[rows] = interpolate_segment(q[rows], k[rows], v[rows], k[a], v[a], k[b], v[b], segment.t)
    return out
