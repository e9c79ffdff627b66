"""Easing of one keyframe segment: where its interior frames sit between the segment's two keys.

A segment with n interior frames gets coefficients t_1 < ... < t_n strictly inside (0, 1), t_j = e(j / (n + 1))
for an easing curve e (linear, ease in, ease out, ease in-out), the inverse Beta CDF of AID Schedule
(docs/how-it-works.md: alpha = beta > 1 packs frames into the middle of the segment), or a custom list.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..sequence.schedule import beta_interior

EASING_NAMES = ("linear", "ease in", "ease out", "ease in-out", "beta", "custom")
_CURVES = {
    "linear": lambda u: u,
    "ease in": lambda u: u * u * u,  # slow start, fast arrival (cubic, as CSS ease-in-cubic)
    "ease out": lambda u: 1.0 - (1.0 - u) ** 3,
    "ease in-out": lambda u: 4.0 * u ** 3 if u < 0.5 else 1.0 - (-2.0 * u + 2.0) ** 3 / 2.0,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class EasingError(ValueError):
    """An easing that cannot be read, or cannot place a segment's frames."""


@dataclass(frozen=True)
class Easing:
    """How a segment's interior frames are spaced: a named curve, beta(alpha, beta) or a custom list."""

    name: str = "linear"
    alpha: float = 1.0
    beta: float = 1.0
    values: tuple[float, ...] = ()  # custom: the interior coefficients themselves (without the keys' 0 and 1)

    def describe(self) -> str:
        """The easing as it is written, e.g. 'ease in-out', 'beta(6, 3)' or 'custom(0.2, 0.5, 0.8)'."""
        if self.name == "beta":
            return f"beta({self.alpha:g}, {self.beta:g})"
        if self.name == "custom":
            return "custom(" + ", ".join(f"{v:g}" for v in self.values) + ")"
        return self.name

    def coefficients(self, interior: int) -> tuple[float, ...]:
        """The coefficients of `interior` frames between the two keys, strictly increasing inside (0, 1)."""
        if interior < 0:
            raise EasingError(f"a segment cannot have {interior} frames.")
        if self.name == "custom":
            if len(self.values) != interior:
                raise EasingError(f"the custom easing lists {len(self.values)} coefficient"
                                  f"{'' if len(self.values) == 1 else 's'} but the segment has {interior} frame"
                                  f"{'' if interior == 1 else 's'} between its keys.")
            return self.values
        positions = [j / (interior + 1) for j in range(1, interior + 1)]
        if self.name == "beta":  # AID Schedule's curve, the same numbers
            values = beta_interior(interior, self.alpha, self.beta)
        else:
            values = tuple(float(_CURVES[self.name](u)) for u in positions)
        _check_inside(values, f"{self.describe()} gives coefficients too close together for {interior} frames; "
                              "use a gentler easing or fewer frames")
        return values


LINEAR = Easing()


def _check_inside(values, problem: str) -> None:
    previous = 0.0
    for value in values:
        if not (math.isfinite(value) and previous < value < 1.0):
            raise EasingError(problem + ".")
        previous = value


def shown(text: str, limit: int = 80) -> str:
    """`text` as an error quotes it: at most `limit` characters (a pasted megabyte stays out of the message)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_easing(text: str) -> Easing:
    """Read an easing as a user writes it: 'linear', 'ease in', 'ease out', 'ease in-out' (also 'in', 'out',
    'in-out', 'ease-in-out', 'smooth'), 'beta(6, 3)' / 'beta 6 3', or a custom list 'custom(0.2, 0.5, 0.8)' /
    '[0.2, 0.5, 0.8]' / '0.2 0.5 0.8'."""
    spoken = " ".join(text.strip().lower().replace("_", " ").split())
    if not spoken:
        raise EasingError("the easing is empty.")
    aliases = {"in": "ease in", "out": "ease out", "in-out": "ease in-out", "inout": "ease in-out",
               "ease-in": "ease in", "ease-out": "ease out", "ease-in-out": "ease in-out", "ease inout": "ease in-out",
               "ease in out": "ease in-out", "in out": "ease in-out", "smooth": "ease in-out"}
    name = aliases.get(spoken, spoken)
    if name in _CURVES:
        return Easing(name)
    match = re.fullmatch(r"beta\s*\(?\s*(" + _NUMBER + r")\s*[, ]\s*(" + _NUMBER + r")\s*\)?", spoken)
    if match:
        alpha, beta = float(match.group(1)), float(match.group(2))
        if not (alpha > 0 and beta > 0 and math.isfinite(alpha) and math.isfinite(beta)):
            raise EasingError(f"beta needs positive alpha and beta, got {alpha:g} and {beta:g}.")
        return Easing("beta", alpha, beta)
    if spoken.startswith("beta"):
        raise EasingError(f"'{shown(text)}' is not beta(alpha, beta); write e.g. beta(6, 3).")
    listed = re.fullmatch(r"(?:custom\s*)?[\(\[]?(.*?)[\)\]]?", spoken)
    parts = [p for p in re.split(r"[,\s]+", listed.group(1)) if p] if listed else []
    if parts and all(re.fullmatch(_NUMBER, p) for p in parts):
        values = tuple(float(p) for p in parts)
        if len(values) >= 2 and values[0] == 0.0 and values[-1] == 1.0:
            values = values[1:-1]  # the keys' own 0 and 1 may be written too
        _check_inside(values, "a custom easing lists coefficients strictly between 0 and 1 in increasing order "
                              f"(got {shown(', '.join(parts))})")
        return Easing("custom", values=values)
    raise EasingError(f"unknown easing '{shown(text)}'; use linear, ease in, ease out, ease in-out, beta(a, b) or "
                      "a list of coefficients such as 0.2, 0.5, 0.8.")
