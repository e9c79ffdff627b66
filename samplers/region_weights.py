"""Temporal control: the weight w_i(s) of every object at every denoising step (AID_REGION_WEIGHTS).

A weight schedule is a curve over the schedule percent p in [0, 1] (p = s / (steps - 1) for step s,
so the first step is at 0 and the last at 1): piecewise linear through knots (p, w), constant beyond
the first and last knot. One default curve applies to every object; named curves override it for
the objects with that name. The optimisers (samplers/region_optimiser.py) return a table
[steps, objects] instead; used with another number of steps it is resampled over p.

Knots text: one line per curve, pairs "p:w" separated by commas; a line "name = p:w, ..." is the curve
of the object called `name`, a line without a name the default. E.g.
    0:0.8, 0.6:0.4, 1:0.2
    dog = 0:1, 1:0.5
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_WEIGHT = 0.5  # the constant the paper's code starts from


class WeightsError(ValueError):
    """A weight schedule that cannot be read or does not fit the regions; `fix` says what to do."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix


def step_percents(steps: int) -> np.ndarray:
    """Schedule percent of each step: 0 at the first, 1 at the last."""
    if steps <= 1:
        return np.zeros(max(steps, 0))
    return np.arange(steps) / (steps - 1)


@dataclass(frozen=True)
class WeightCurve:
    """w(p): piecewise linear through knots (p, w) sorted by p, constant outside them."""

    knots: tuple[tuple[float, float], ...]

    @classmethod
    def constant(cls, weight: float) -> "WeightCurve":
        return cls(((0.0, float(weight)),))

    @classmethod
    def ramp(cls, start: float, end: float) -> "WeightCurve":
        return cls(((0.0, float(start)), (1.0, float(end))))

    def values(self, steps: int) -> np.ndarray:
        """w at every step, [steps]."""
        ps, ws = zip(*self.knots)
        return np.interp(step_percents(steps), ps, ws)

    def text(self) -> str:
        return ", ".join(f"{p:g}:{w:g}" for p, w in self.knots)


_PAIR = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*:\s*(-?[0-9]*\.?[0-9]+)\s*$")


def parse_curve(text: str) -> WeightCurve:
    """'0:0.8, 0.5:0.3, 1:0' -> WeightCurve; percents in 0..1 and increasing, weights in 0..1."""
    knots = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _PAIR.match(item)
        if match is None:
            raise WeightsError(f"'{item}' is not a knot 'percent:weight'.", "write knots like 0:0.8, 0.5:0.3, 1:0.")
        p, w = float(match.group(1)), float(match.group(2))
        if not 0.0 <= p <= 1.0 or not 0.0 <= w <= 1.0:
            raise WeightsError(f"knot '{item}' is outside 0..1.", "use percents and weights from 0 to 1.")
        if knots and p <= knots[-1][0]:
            raise WeightsError(f"knot '{item}' does not come after {knots[-1][0]:g}.",
                               "list the knots in increasing percent.")
        knots.append((p, w))
    if not knots:
        raise WeightsError("a curve has no knots.", "write at least one knot, e.g. 0:0.5.")
    return WeightCurve(tuple(knots))


def parse_knots(text: str) -> tuple[WeightCurve | None, tuple[tuple[str, WeightCurve], ...]]:
    """The default curve (None if no line has one) and the named curves of a knots text."""
    default, named = None, []
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            name, curve = line.split("=", 1)
            name = name.strip()
            if not name:
                raise WeightsError(f"'{line}' has no object name before '='.", "write 'name = 0:1, 1:0.5'.")
            named.append((name, parse_curve(curve)))
        elif default is not None:
            raise WeightsError("two lines without an object name.", "keep one default line; name the others "
                               "('dog = 0:1, 1:0.5').")
        else:
            default = parse_curve(line)
    return default, tuple(named)


@dataclass(frozen=True, eq=False)
class RegionWeights:
    """AID_REGION_WEIGHTS: curves per object, or an optimised table [steps, objects] for objects `table_names`."""

    default: WeightCurve = WeightCurve.constant(DEFAULT_WEIGHT)
    named: tuple[tuple[str, WeightCurve], ...] = ()
    table: torch.Tensor | None = None
    table_names: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, table: torch.Tensor, names) -> "RegionWeights":
        return cls(table=table.detach().float().cpu().clamp(0.0, 1.0), table_names=tuple(names))

    def curve(self, name: str) -> WeightCurve:
        for curve_name, curve in self.named:
            if curve_name == name:
                return curve
        return self.default

    def table_for(self, steps: int, names) -> torch.Tensor:
        """Weights [steps, len(names)] float32 for a run of `steps` steps over objects `names`."""
        names = tuple(names)
        if self.table is None:
            return torch.tensor(np.stack([self.curve(name).values(steps) for name in names], axis=1)
                                if names else np.zeros((steps, 0)), dtype=torch.float32)
        if len(names) != self.table.shape[1]:
            raise WeightsError(f"the weights were optimised for {self.table.shape[1]} regions "
                               f"({', '.join(self.table_names)}) but the layout has {len(names)}.",
                               "optimise the weights with the same region list.")
        if steps == self.table.shape[0]:
            return self.table.clone()
        old = step_percents(self.table.shape[0]) if self.table.shape[0] > 1 else np.zeros(1)
        values = self.table.numpy()
        return torch.tensor(np.stack([np.interp(step_percents(steps), old, values[:, i])
                                      for i in range(values.shape[1])], axis=1), dtype=torch.float32)

    def rows_for(self, steps: int, names) -> torch.Tensor:
        """[steps, 1, N]: the same weights for every latent row (the run-state layout)."""
        return self.table_for(steps, names).unsqueeze(1)

    def describe(self, names=()) -> str:
        """One line per object: its curve, or its optimised values."""
        if self.table is not None:
            return "\n".join(f"{name}: " + ", ".join(f"{w:.3f}" for w in self.table[:, i].tolist())
                             for i, name in enumerate(self.table_names))
        lines = [f"default: {self.default.text()}"]
        lines += [f"{name}: {curve.text()}" for name, curve in self.named]
        unknown = [name for name, _ in self.named if names and name not in names]
        if unknown:
            lines.append(f"(no region is called {', '.join(unknown)})")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class RowWeights:
    """Weights given per run row: [steps, rows or 1, N] (the optimisers' candidates and trainable table)."""

    rows: torch.Tensor

    def rows_for(self, steps: int, names) -> torch.Tensor:
        if self.rows.shape[0] != steps or self.rows.shape[2] != len(tuple(names)):
            raise WeightsError(f"weights for {self.rows.shape[0]} steps and {self.rows.shape[2]} regions, run of "
                               f"{steps} steps and {len(tuple(names))} regions.", "use the same sampler settings.")
        return self.rows
