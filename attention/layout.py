"""Where each row of a sequence batch takes its endpoints from: the frame layout of one sampling run.

A sequence goes through keys K_0, K_1, ... (two for A -> B; more for keyframe sequences). Every row
of a run's batch is a frame between two keys: (key_a, key_b, t). At t = 0 the row is key_a itself,
at t = 1 key_b itself: key rows get plain attention, so they equal plain generations of their key.
Every other row is an interior frame of the segment key_a -> key_b and attends to the rows where
those two keys sit in the same batch (docs/how-it-works.md). A key shared by two segments sits
in one row that serves both.

The two-endpoint layout [A, frames..., B] is FrameLayout.between(coefficients): rows (0, 1, t_f).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class FrameLayout:
    """rows[r] = (key_a, key_b, t) of row r of a run; t in [0, 1], 0 or 1 on key rows."""

    rows: tuple[tuple[int, int, float], ...]

    def __post_init__(self):
        rows = tuple((int(a), int(b), float(t)) for a, b, t in self.rows)
        object.__setattr__(self, "rows", rows)
        if not rows:
            raise ValueError("a frame layout needs at least one row.")
        for a, b, t in rows:
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"coefficient {t:g} is outside 0..1.")
        missing = sorted({key for a, b, t in rows if 0.0 < t < 1.0 for key in (a, b)} - set(self._key_rows))
        if missing:
            raise ValueError(f"interior frames need their keys in the same batch; key(s) {missing} have no row.")

    @classmethod
    def between(cls, coefficients) -> "FrameLayout":
        """The two-endpoint layout: frame f between key 0 (A) and key 1 (B) at coefficient t_f."""
        return cls(tuple((0, 1, float(t)) for t in coefficients))

    @property
    def frames(self) -> int:
        """Number of rows (frames) in the run."""
        return len(self.rows)

    @property
    def coefficients(self) -> tuple[float, ...]:
        """Each row's coefficient within its segment."""
        return tuple(t for _, _, t in self.rows)

    def key_of(self, row: int) -> int | None:
        """The key a row is (None for an interior frame)."""
        a, b, t = self.rows[row]
        return a if t == 0.0 else b if t == 1.0 else None

    @cached_property
    def _key_rows(self) -> dict[int, int]:
        found = {}
        for row in range(len(self.rows)):
            key = self.key_of(row)
            if key is not None:
                found.setdefault(key, row)
        return found

    @cached_property
    def _segments(self) -> dict[tuple[int, int], list[tuple[int, float]]]:
        keys = self._key_rows
        groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for row, (a, b, t) in enumerate(self.rows):
            if 0.0 < t < 1.0:
                groups.setdefault((keys[a], keys[b]), []).append((row, t))
        return groups

    def key_rows(self) -> dict[int, int]:
        """key -> the first row holding it."""
        return dict(self._key_rows)

    def segments(self) -> dict[tuple[int, int], list[tuple[int, float]]]:
        """(row of key_a, row of key_b) -> [(interior row, t), ...], in row order (shared: do not change it)."""
        return self._segments

    def has_interior(self) -> bool:
        """Whether any row is an interior frame (else interpolation has nothing to do)."""
        return any(0.0 < t < 1.0 for _, _, t in self.rows)

    def select(self, rows) -> "FrameLayout":
        """The layout of a run holding only these rows (chunked sampling)."""
        return FrameLayout(tuple(self.rows[r] for r in rows))
