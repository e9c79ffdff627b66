"""Interpolation coefficient schedules t_0 = 0 < t_1 < ... < t_{F-1} = 1 (docs/how-it-works.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import plural

CURVES = ("linear", "beta", "custom")


@dataclass(frozen=True)
class InterpolationSchedule:
    """The coefficients of an F-frame sequence, endpoints included, and how they were made.

    This is the value of the AID_SCHEDULE type that flows between the pack's nodes.
    """

    coefficients: tuple[float, ...]
    curve: str = "custom"
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self):
        check_coefficients(self.coefficients)

    @property
    def frames(self) -> int:
        """Number of frames F, both endpoints included."""
        return len(self.coefficients)

    def describe(self) -> str:
        """One line for logs and previews, e.g. 'beta(6, 3), 7 frames'."""
        name = f"beta({self.alpha:g}, {self.beta:g})" if self.curve == "beta" else self.curve
        return f"{name}, {plural(self.frames, 'frame')}"


def check_coefficients(coefficients) -> None:
    """Raise ValueError unless the list starts at 0, ends at 1, strictly increases and has >= 3 values."""
    values = list(coefficients)
    if len(values) < 3:
        raise ValueError(f"a sequence needs at least 3 frames (2 endpoints and 1 in between), got {len(values)}.")
    if any(not math.isfinite(v) for v in values):
        raise ValueError("coefficients must be finite numbers.")
    if values[0] != 0.0 or values[-1] != 1.0:
        raise ValueError(f"coefficients must start at 0 and end at 1, got {values[0]:g} ... {values[-1]:g}.")
    for i, (a, b) in enumerate(zip(values, values[1:])):
        if not b > a:
            raise ValueError(f"coefficients must strictly increase, but value {i + 1} ({b:g}) follows {a:g}.")


def linear_coefficients(frames: int) -> tuple[float, ...]:
    """Evenly spaced coefficients f / (F - 1)."""
    if frames < 3:
        raise ValueError(f"a sequence needs at least 3 frames, got {frames}.")
    return tuple([0.0] + [f / (frames - 1) for f in range(1, frames - 1)] + [1.0])


def beta_interior(count: int, alpha: float, beta: float) -> tuple[float, ...]:
    """The `count` coefficients strictly between 0 and 1: inverse CDF of Beta(alpha, beta) at j / (count + 1)."""
    from scipy.stats import beta as beta_distribution

    return tuple(float(beta_distribution.ppf(j / (count + 1), alpha, beta)) for j in range(1, count + 1))


def beta_coefficients(frames: int, alpha: float, beta: float) -> tuple[float, ...]:
    """t_f = inverse CDF of Beta(alpha, beta) at f / (F - 1); alpha = beta = 1 is linear."""
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be positive, got {alpha:g} and {beta:g}.")
    coefficients = (0.0, *beta_interior(frames - 2, alpha, beta), 1.0)
    check_coefficients(coefficients)
    return coefficients


def parse_coefficients(text: str) -> tuple[float, ...]:
    """Read a custom list such as '0, 0.25, 0.5, 0.75, 1' (commas, spaces or new lines)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as error:
        raise ValueError(f"could not read the list as numbers ({error}).") from None
    check_coefficients(values)
    return values


def make_schedule(frames: int, curve: str = "linear", alpha: float = 1.0, beta: float = 1.0,
                  custom: str = "") -> InterpolationSchedule:
    """Build a schedule from the AID Schedule node's settings; a custom list sets F itself."""
    if curve == "linear":
        return InterpolationSchedule(linear_coefficients(frames), "linear")
    if curve == "beta":
        return InterpolationSchedule(beta_coefficients(frames, alpha, beta), "beta", alpha, beta)
    if curve == "custom":
        return InterpolationSchedule(parse_coefficients(custom), "custom")
    raise ValueError(f"unknown curve '{curve}', expected one of {', '.join(CURVES)}.")
