"""Temporal control: the weight w_i(p) of every object along the denoising schedule (AID_REGION_WEIGHTS).

p is the schedule percent of the current sigma on the model's whole schedule (samplers/schedule_percent.py:
ComfyUI's start_percent / end_percent measure, 0 at the start of denoising, 1 at its end), not the index
of a step in the run at hand: a KSamplerAdvanced stage or a SplitSigmas half gets the weights the same
sigmas get in one full run. A weight schedule is a curve over p: piecewise linear through knots (p, w),
constant beyond the first and last knot. One default curve applies to every object; named curves
override it for the objects with that name; `shared` curves give each of N objects value / N (the
paper's code starts every object at 5 / N). The optimisers (samplers/region_optimiser.py) return a
table instead, one row per step of the run they optimised with the percent of its sigma, linearly
interpolated between rows (a second-order sampler's midpoints, s_churn's raised sigmas) and constant
beyond the first and last row.

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

DEFAULT_WEIGHT = 0.5  # the convex mix's default: half the local prompt, half the full prompt
OFFICIAL_START_TOTAL = 5.0  # the paper's code starts each of N objects at 5 / N (official mix)
MAX_WEIGHT = 10.0  # widget and knot bound; the convex mix takes 0..1, the official one any of these


class WeightsError(ValueError):
    """A weight schedule that cannot be read or does not fit the regions; `fix` says what to do."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix


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

    def values(self, percents) -> np.ndarray:
        """w at every schedule percent of `percents`."""
        ps, ws = zip(*self.knots)
        return np.interp(np.asarray(percents, dtype=np.float64), ps, ws)

    def text(self) -> str:
        return ", ".join(f"{p:g}:{w:g}" for p, w in self.knots)


_PAIR = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*:\s*(-?[0-9]*\.?[0-9]+)\s*$")


def parse_curve(text: str) -> WeightCurve:
    """'0:0.8, 0.5:0.3, 1:0' -> WeightCurve; percents in 0..1 and increasing, weights in 0..MAX_WEIGHT."""
    knots = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _PAIR.match(item)
        if match is None:
            raise WeightsError(f"'{item}' is not a knot 'percent:weight'.", "write knots like 0:0.8, 0.5:0.3, 1:0.")
        p, w = float(match.group(1)), float(match.group(2))
        if not 0.0 <= p <= 1.0:
            raise WeightsError(f"knot '{item}' has a percent outside 0..1.", "use percents from 0 to 1.")
        if not 0.0 <= w <= MAX_WEIGHT:
            raise WeightsError(f"knot '{item}' has a weight outside 0..{MAX_WEIGHT:g}.",
                               f"use weights from 0 to {MAX_WEIGHT:g} (the convex mix takes 0..1).")
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


def table_at(values: torch.Tensor, percents, p: float) -> torch.Tensor:
    """Rows of `values` [steps, ...] at schedule percent p: linear between the rows' `percents` (increasing),
    the first / last row beyond them, a row itself (bit for bit) at its own percent; differentiable."""
    if len(percents) == 1 or p <= percents[0]:
        return values[0]
    if p >= percents[-1]:
        return values[-1]
    upper = int(np.searchsorted(percents, p, side="right"))
    lower = upper - 1
    fraction = (p - percents[lower]) / (percents[upper] - percents[lower])
    if fraction == 0.0:
        return values[lower]
    return torch.lerp(values[lower], values[upper], float(fraction))


def run_percents(sigmas, to_percent) -> tuple[float, ...]:
    """The schedule percent of each step of a run (its sigmas but the last), strictly increasing."""
    percents = []
    for sigma in list(sigmas)[:-1]:
        p = to_percent(float(sigma))
        percents.append(p if not percents or p > percents[-1] else np.nextafter(percents[-1], 2.0))
    return tuple(float(p) for p in percents)


@dataclass(frozen=True, eq=False)
class RegionWeights:
    """AID_REGION_WEIGHTS: curves per object, or an optimised table [steps, objects] for objects `table_names` at
    schedule percents `table_percents`. `shared`: every curve value is shared by the objects (each gets value / N)."""

    default: WeightCurve = WeightCurve.constant(DEFAULT_WEIGHT)
    named: tuple[tuple[str, WeightCurve], ...] = ()
    table: torch.Tensor | None = None
    table_names: tuple[str, ...] = ()
    table_percents: tuple[float, ...] = ()
    shared: bool = False

    @classmethod
    def official_start(cls) -> "RegionWeights":
        """The paper code's start: 5 / N for each of N objects at every step."""
        return cls(WeightCurve.constant(OFFICIAL_START_TOTAL), shared=True)

    @classmethod
    def from_table(cls, table: torch.Tensor, names, percents, clip: bool = True) -> "RegionWeights":
        """An optimised table [steps, N] at the schedule percents of its steps (clipped to 0..1 for the convex mix)."""
        table = table.detach().float().cpu()
        if len(percents) != table.shape[0]:
            raise ValueError(f"{table.shape[0]} table rows for {len(percents)} percents.")
        return cls(table=table.clamp(0.0, 1.0) if clip else table.clone(), table_names=tuple(names),
                   table_percents=tuple(float(p) for p in percents))

    def curve(self, name: str) -> WeightCurve:
        for curve_name, curve in self.named:
            if curve_name == name:
                return curve
        return self.default

    def check_names(self, names) -> None:
        """WeightsError when an optimised table was made for another number of regions."""
        names = tuple(names)
        if self.table is not None and len(names) != self.table.shape[1]:
            raise WeightsError(f"the weights were optimised for {self.table.shape[1]} regions "
                               f"({', '.join(self.table_names)}) but the layout has {len(names)}.",
                               "optimise the weights with the same region list.")

    def values_at(self, percents, names) -> torch.Tensor:
        """Weights [len(percents), len(names)] float32 at these schedule percents, over objects `names`."""
        names = tuple(names)
        self.check_names(names)
        if self.table is not None:
            return torch.stack([table_at(self.table, self.table_percents, float(p)) for p in percents]) \
                if len(percents) else torch.zeros(0, len(names))
        if not names:
            return torch.zeros(len(percents), 0)
        share = len(names) if self.shared else 1
        return torch.tensor(np.stack([self.curve(name).values(percents) / share for name in names], axis=1),
                            dtype=torch.float32)

    def largest(self, names) -> float:
        """The largest weight anywhere on the schedule (the curves' knots, or the table)."""
        if self.table is not None:
            return float(self.table.max()) if self.table.numel() else 0.0
        knots = [w for name in names for _, w in self.curve(name).knots]
        return max(knots, default=0.0) / (len(tuple(names)) if self.shared and names else 1)

    def lookup(self, names, to_percent, sigmas=None) -> "WeightLookup":
        """The run's weights(sigma) -> [1, N], through the model's schedule percent `to_percent`."""
        self.check_names(names)
        return WeightLookup(lambda p: self.values_at([p], names), to_percent)

    def describe(self, names=()) -> str:
        """One line per object: its curve, or its optimised values."""
        if self.table is not None:
            return "\n".join(f"{name}: " + ", ".join(f"{w:.3f}" for w in self.table[:, i].tolist())
                             for i, name in enumerate(self.table_names))
        share = f" / {len(names) if names else 'N'} each" if self.shared else ""
        lines = [f"default: {self.default.text()}{share}"]
        lines += [f"{name}: {curve.text()}{share}" for name, curve in self.named]
        unknown = [name for name, _ in self.named if names and name not in names]
        if unknown:
            lines.append(f"(no region is called {', '.join(unknown)})")
        return "\n".join(lines)


class WeightLookup:
    """weights(sigma) for one run: `at(p)` -> [rows or 1, N] at the sigma's schedule percent (cached per sigma
    unless the weights carry gradients)."""

    def __init__(self, at, to_percent):
        self.at = at
        self.to_percent = to_percent
        self._cache = {}

    def __call__(self, sigma: float | None) -> torch.Tensor:
        p = 0.0 if sigma is None else self.to_percent(sigma)
        if p in self._cache:
            return self._cache[p]
        value = self.at(p)
        if value.dim() == 1:
            value = value.unsqueeze(0)
        if not value.requires_grad:
            self._cache[p] = value
        return value


@dataclass(frozen=True, eq=False)
class RowWeights:
    """Weights given per run row and step: [steps, rows or 1, N] (the optimisers' candidates and trainable table),
    one step per sigma of the run they sample, interpolated by schedule percent between steps."""

    rows: torch.Tensor

    def lookup(self, names, to_percent, sigmas=None) -> WeightLookup:
        steps = None if sigmas is None else len(sigmas) - 1
        if steps != self.rows.shape[0] or self.rows.shape[2] != len(tuple(names)):
            raise WeightsError(f"weights for {self.rows.shape[0]} steps and {self.rows.shape[2]} regions, run of "
                               f"{steps} steps and {len(tuple(names))} regions.", "use the same sampler settings.")
        percents = run_percents(sigmas, to_percent)
        return WeightLookup(lambda p: table_at(self.rows, percents, p), to_percent)
