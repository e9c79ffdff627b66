"""Choosing the coefficients of a sequence for even perceptual steps (docs/smooth.md).

Two searches over frames that a caller makes on request:

* auto beta: the t = 0.5 frame decides which way the curve leans (alpha >= beta when it is closer
  to A), then (alpha, beta) is searched within bounds for the Beta schedule whose F-frame trial
  sequence is smoothest, until a target smoothness or a trial budget is reached;
* dynamic selection: from {0, 0.5, 1}, frames are added in the widest gaps at Beta-CDF quantiles of
  the current fit, (alpha, beta) is refitted to the normalised cumulative distances, and at the
  exploration budget the F frames (first and last included) whose neighbour distances have the
  smallest spread are kept.

Model-free: a search sees `generate(coefficients) -> IMAGE [n, H, W, C]` (the frames at those
coefficients, in that order) and a FrameDistance. Frames are independent given the endpoints, so a
round asks `generate` for all of its new frames at once; samplers/smooth/sampling.py turns that
into one batched diffusion run [A, new frames..., B]. No ComfyUI import here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ...errors import plural
from ...scoring.metrics import FrameDistance, smoothness
from ..sequence.schedule import beta_coefficients

METHODS = ("dynamic selection", "auto beta")
FIT_BOUNDS = (0.05, 100.0)  # the AID Schedule node's alpha/beta range
MIN_GAP = 1e-3  # no new frame closer than this (in t) to an explored one
MIN_STEP = 0.02  # the auto-beta pattern search stops below this step, in log(alpha), log(beta)
FIRST_STEP = 0.2  # its first step: the model-based guesses make the large moves
PAIR_CHUNK = 256  # pairs compared at once when filling a distance matrix

Generate = Callable[[Sequence[float]], torch.Tensor]


# ---------------------------------------------------------------- Beta fit


def cumulative_progress(coefficients: Sequence[float], distances: Sequence[float]) -> list[float]:
    """Normalised cumulative distance u_i (0 at the first frame, 1 at the last) along explored frames.

    With no change at all (every distance 0) the coefficients themselves are returned, i.e. linear.
    """
    total = math.fsum(distances)
    if total <= 0.0:
        return [float(c) for c in coefficients]
    running, result = 0.0, [0.0]
    for d in distances:
        running += d
        result.append(running / total)
    result[-1] = 1.0
    return result


def fit_beta(coefficients: Sequence[float], progress: Sequence[float], initial=(1.0, 1.0),
             bounds=FIT_BOUNDS) -> tuple[float, float]:
    """(alpha, beta) whose CDF is closest, by least squares, to `progress` at `coefficients`.

    Solved in log(alpha), log(beta) within `bounds` by scipy's least_squares; started from
    `initial` and, if that leaves a residual, from a few other shapes (the best fit is kept).
    Only interior points count (every Beta CDF is 0 at t = 0 and 1 at t = 1); with none, `initial`.
    """
    from scipy.optimize import least_squares
    from scipy.special import betainc

    points = [(float(t), float(u)) for t, u in zip(coefficients, progress) if 0.0 < t < 1.0]
    low, high = math.log(bounds[0]), math.log(bounds[1])
    clip = lambda x: min(max(x, low), high)  # noqa: E731
    if not points:
        return float(initial[0]), float(initial[1])
    ts = np.array([t for t, _ in points])
    us = np.array([u for _, u in points])

    def residual(x):
        return betainc(math.exp(x[0]), math.exp(x[1]), ts) - us

    best = None
    for start in (initial, (3.0, 3.0), (0.5, 0.5), (5.0, 1.5), (1.5, 5.0)):
        x0 = [clip(math.log(start[0])), clip(math.log(start[1]))]
        solution = least_squares(residual, x0, bounds=([low, low], [high, high]), xtol=1e-12, ftol=1e-12,
                                 gtol=1e-12)
        if best is None or solution.cost < best.cost - 1e-15:
            best = solution
        if best.cost < 1e-14:
            break
    return float(math.exp(best.x[0])), float(math.exp(best.x[1]))


# ---------------------------------------------------------------- choosing F of N frames


def path_spread(matrix, path: Sequence[int]) -> float:
    """max - min of the distances matrix[p_k, p_k+1] between consecutive frames of `path`."""
    steps = [float(matrix[a][b]) for a, b in zip(path, path[1:])]
    return max(steps) - min(steps)


def smoothest_path(matrix, frames: int) -> list[int]:
    """Indices 0 = p_0 < p_1 < ... < p_{F-1} = N - 1 minimising max_k d_k - min_k d_k, d_k = matrix[p_k, p_{k+1}].

    `matrix` [N, N] holds the distance between explored frames i < j (ordered by coefficient) in its
    upper triangle. Exact: for each candidate smallest step w (every entry is one), a min-max DP over
    paths of F - 1 steps that use only steps >= w gives the least largest step M(w); the optimum is
    min over w of M(w) - w, and the DP's path attains it. At most N^2 / 2 DPs of F vectorised N x N
    steps; w where even M(-inf) - w cannot beat the best are skipped, and the scan ends when no
    path is left. Ties go to the first smallest w, then to the lowest indices.
    """
    d = np.asarray(matrix, dtype=np.float64)
    n = d.shape[0]
    if d.shape != (n, n):
        raise ValueError(f"expected a square distance matrix, got shape {d.shape}.")
    if not 2 <= frames <= n:
        raise ValueError(f"cannot keep {frames} frames of {n} explored (need 2 <= frames <= explored).")
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    if frames == 2:
        return [0, n - 1]

    def least_largest_step(w):
        """M(w) and parent pointers of the min-max DP over paths of F - 1 steps, each >= w."""
        weights = np.where(upper & (d >= w), d, np.inf)
        largest = np.full(n, np.inf)
        largest[0] = -np.inf
        parents = []
        for _ in range(frames - 1):
            candidates = np.maximum(largest[:, None], weights)  # [from, to]
            parent = np.argmin(candidates, axis=0)
            largest = candidates[parent, np.arange(n)]
            parents.append(parent)
        return float(largest[n - 1]), parents

    unconstrained, _ = least_largest_step(-np.inf)  # M(w) >= this for every w
    best_spread, best_path = math.inf, None
    for w in np.unique(d[upper]):
        if unconstrained - w >= best_spread - 1e-12:
            continue  # M(w) - w cannot beat the best
        largest, parents = least_largest_step(w)
        if not math.isfinite(largest):
            break  # M(w) only grows with w
        if largest - w >= best_spread - 1e-12:
            continue
        best_spread = largest - w
        path = [n - 1]
        for parent in reversed(parents):
            path.append(int(parent[path[-1]]))
        best_path = path[::-1]
    if best_path is None:
        raise ValueError("no path through the explored frames (distances must be finite).")
    return best_path


# ---------------------------------------------------------------- explored frames


class FrameExplorer:
    """The frames made so far, by coefficient; each is generated once and embedded once.

    `explore(coefficients)` makes the new ones in one call to `generate` (a round) and stores their
    images and embeddings; distances are then compared from the stored embeddings.
    """

    def __init__(self, generate: Generate, distance: FrameDistance, on_round: Callable[[int], None] | None = None):
        self.generate = generate
        self.distance = distance
        self.on_round = on_round
        self.rounds = 0
        self.round_sizes: list[int] = []
        self._images: dict[float, torch.Tensor] = {}
        self._embeddings: dict[float, torch.Tensor] = {}
        self._pair_distances: dict[tuple[float, float], float] = {}

    @property
    def coefficients(self) -> list[float]:
        """Every explored coefficient, ascending."""
        return sorted(self._images)

    def explore(self, coefficients: Sequence[float]) -> list[float]:
        """Make the frames at the coefficients not explored yet, in one round; returns those coefficients."""
        new = sorted({float(c) for c in coefficients} - set(self._images))
        if not new:
            return []
        if new[0] < 0.0 or new[-1] > 1.0:
            raise ValueError(f"coefficients must lie in 0..1, got {new[0]:g} .. {new[-1]:g}.")
        images = self.generate(tuple(new))
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != len(new):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"generate() returned {shape} for {len(new)} coefficients; expected an IMAGE batch "
                             "with one frame per coefficient.")
        embeddings = self.distance.embed(images)
        for index, t in enumerate(new):
            self._images[t] = images[index]
            self._embeddings[t] = embeddings[index]
        self.rounds += 1
        self.round_sizes.append(len(new))
        if self.on_round is not None:
            self.on_round(self.rounds)
        return new

    def images(self, coefficients: Sequence[float]) -> torch.Tensor:
        """IMAGE [n, H, W, C] of explored coefficients, in the given order."""
        return torch.stack([self._images[float(t)] for t in coefficients])

    def distances(self, coefficients: Sequence[float]) -> list[float]:
        """Distances between consecutive frames of `coefficients` (all explored)."""
        return self._compare(list(zip(coefficients, coefficients[1:])))

    def matrix(self, coefficients: Sequence[float]) -> np.ndarray:
        """[N, N] with the distance of frames i < j in the upper triangle (zeros elsewhere)."""
        n = len(coefficients)
        pairs = [(coefficients[i], coefficients[j]) for i in range(n) for j in range(i + 1, n)]
        result = np.zeros((n, n))
        result[np.triu_indices(n, k=1)] = self._compare(pairs)
        return result

    def _compare(self, pairs) -> list[float]:
        """Distances of (a, b) coefficient pairs; each pair is compared once and remembered."""
        pairs = [(float(a), float(b)) for a, b in pairs]
        missing = list(dict.fromkeys(p for p in pairs if p not in self._pair_distances))
        for start in range(0, len(missing), PAIR_CHUNK):
            chunk = missing[start:start + PAIR_CHUNK]
            first = torch.stack([self._embeddings[a] for a, _ in chunk])
            second = torch.stack([self._embeddings[b] for _, b in chunk])
            values = self.distance.compare(first, second).to(torch.float64).cpu().tolist()
            self._pair_distances.update(zip(chunk, values))
        return [self._pair_distances[p] for p in pairs]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Trial:
    """One auto-beta trial: the F-frame Beta(alpha, beta) sequence and its neighbour distances."""

    alpha: float
    beta: float
    coefficients: tuple[float, ...]
    distances: tuple[float, ...]

    @property
    def smoothness(self) -> float:
        return smoothness(self.distances)


@dataclass(frozen=True)
class SmoothResult:
    """The chosen sequence and how it was found.

    coefficients: the F coefficients kept, first 0 and last 1; distances: their F - 1 neighbour
    distances; frames: their images; alpha, beta: the chosen Beta (auto beta) or the last fit
    (dynamic selection); explored: every coefficient made; rounds: calls to generate.
    """

    method: str
    coefficients: tuple[float, ...]
    distances: tuple[float, ...]
    frames: torch.Tensor
    alpha: float
    beta: float
    explored: tuple[float, ...]
    rounds: int
    round_sizes: tuple[int, ...]
    trials: tuple[Trial, ...] = ()

    @property
    def smoothness(self) -> float:
        return smoothness(self.distances)

    def describe(self) -> str:
        """One line for the UI, e.g. 'dynamic selection: 7 of 16 explored frames in 5 rounds, smoothness 0.962'."""
        if self.method == "auto beta":
            how = f"beta({self.alpha:.3g}, {self.beta:.3g}) after {plural(len(self.trials), 'trial')}"
        else:
            how = f"{len(self.coefficients)} of {len(self.explored)} explored frames (fit beta({self.alpha:.3g}, " \
                  f"{self.beta:.3g}))"
        return f"{self.method}: {how}, {plural(self.rounds, 'round')}, smoothness {self.smoothness:.4f}"


def _result(method, explorer: FrameExplorer, coefficients, distances, alpha, beta, trials=()) -> SmoothResult:
    coefficients = tuple(float(t) for t in coefficients)
    return SmoothResult(method, coefficients, tuple(distances), explorer.images(coefficients), float(alpha),
                        float(beta), tuple(explorer.coefficients), explorer.rounds, tuple(explorer.round_sizes),
                        tuple(trials))


def planned_rounds(method: str, frames: int, exploration_frames: int = 16, frames_per_round: int = 4,
                   max_trials: int = 12) -> int:
    """Calls to generate a search makes at most (the first one is the {0, 0.5, 1} probe)."""
    if method == "dynamic selection":
        return 1 + math.ceil(max(exploration_frames - 3, 0) / max(frames_per_round, 1))
    if method == "auto beta":
        return 1 + math.ceil(max_trials / trials_per_round(frames, frames_per_round))
    raise ValueError(f"unknown method '{method}', expected one of {', '.join(METHODS)}.")


def trials_per_round(frames: int, frames_per_round: int) -> int:
    """Auto-beta trials made together: as many F - 2 interior frames as fit in frames_per_round (at least one)."""
    return max(1, frames_per_round // max(frames - 2, 1))


def _fit_explored(explorer: FrameExplorer, bounds=FIT_BOUNDS) -> tuple[float, float]:
    explored = explorer.coefficients
    return fit_beta(explored, cumulative_progress(explored, explorer.distances(explored)), bounds=bounds)


# ---------------------------------------------------------------- dynamic selection


def split_gaps(coefficients: Sequence[float], distances: Sequence[float], count: int, alpha: float, beta: float,
               min_gap: float = MIN_GAP) -> list[float]:
    """Up to `count` new coefficients placed in the widest gaps between explored frames.

    Frames go one at a time to the gap whose steps would stay widest, d_i / (n_i + 1) with n_i the
    frames it already got (so one frame goes to the widest gap, several can go to one very wide
    gap); ties go to the gap wider in t. A gap (a, b) with n frames gets them at the Beta(alpha,
    beta) CDF quantiles F^-1(F(a) + (F(b) - F(a)) j / (n + 1)): its CDF midpoint for one frame.
    Where the CDF is numerically flat the split is linear. No frame comes closer than min_gap.
    """
    from scipy.stats import beta as beta_distribution

    gaps = list(zip(coefficients, coefficients[1:]))
    counts = [0] * len(gaps)
    for _ in range(count):
        open_gaps = [i for i, (a, b) in enumerate(gaps) if (b - a) / (counts[i] + 2) >= min_gap]
        if not open_gaps:
            break
        chosen = max(open_gaps, key=lambda i: (distances[i] / (counts[i] + 1), gaps[i][1] - gaps[i][0], -i))
        counts[chosen] += 1
    new = []
    for (a, b), n in zip(gaps, counts):
        if n == 0:
            continue
        cdf_a, cdf_b = beta_distribution.cdf([a, b], alpha, beta)
        points = [float(beta_distribution.ppf(cdf_a + (cdf_b - cdf_a) * j / (n + 1), alpha, beta))
                  for j in range(1, n + 1)]
        spaced = all(p - q >= min_gap for p, q in zip(points + [b], [a] + points))
        if not (cdf_b > cdf_a and spaced):
            points = [a + (b - a) * j / (n + 1) for j in range(1, n + 1)]
        new.extend(points)
    return new


def dynamic_selection(generate: Generate, distance: FrameDistance, frames: int, exploration_frames: int = 16,
                      frames_per_round: int = 4, on_round=None) -> SmoothResult:
    """Explore up to `exploration_frames` frames (endpoints included), then keep the F of smallest step spread.

    Rounds: {0, 0.5, 1}; then up to frames_per_round new frames per round, placed by split_gaps under
    the Beta fitted to the normalised cumulative distances of all explored frames (refitted every
    round). The kept path uses the direct distances between the frames it keeps.
    """
    if frames < 3 or exploration_frames < frames:
        raise ValueError(f"need 3 <= frames <= exploration_frames, got {frames} and {exploration_frames}.")
    explorer = FrameExplorer(generate, distance, on_round)
    explorer.explore((0.0, 0.5, 1.0))
    alpha, beta = _fit_explored(explorer)
    while len(explorer.coefficients) < exploration_frames:
        explored = explorer.coefficients
        count = min(frames_per_round, exploration_frames - len(explored))
        new = split_gaps(explored, explorer.distances(explored), count, alpha, beta)
        if not new or not explorer.explore(new):
            break
        alpha, beta = _fit_explored(explorer)
    explored = explorer.coefficients
    if len(explored) < frames:
        raise ValueError(f"only {plural(len(explored), 'frame')} could be explored, fewer than the {frames} to keep.")
    path = smoothest_path(explorer.matrix(explored), frames)
    kept = [explored[i] for i in path]
    return _result("dynamic selection", explorer, kept, explorer.distances(kept), alpha, beta)


# ---------------------------------------------------------------- auto beta

# Pattern-search moves in (log alpha, log beta): the compass directions, then the diagonals.
_DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def lean_toward(distance_to_a: float, distance_to_b: float) -> str | None:
    """Which endpoint the t = 0.5 frame is closer to ("A", "B"), or None on a tie.

    Closer to A means the change happens late, so frames belong nearer B: alpha >= beta.
    """
    if distance_to_a < distance_to_b:
        return "A"
    if distance_to_a > distance_to_b:
        return "B"
    return None


def refit_trial(trial: Trial, bounds=FIT_BOUNDS) -> tuple[float, float]:
    """The Beta whose schedule should even out this trial's steps.

    The trial's own cumulative distances c_f at its coefficients t_f say where the sequence really is;
    reading off where c reaches f / (F - 1) (piecewise linear in t) gives corrected coefficients, and
    the Beta CDF fitted through them is the next guess, a fixed-point step on the measured sequence.
    """
    coefficients = np.array(trial.coefficients)
    reached = np.maximum.accumulate(np.array(cumulative_progress(trial.coefficients, trial.distances)))
    targets = np.linspace(0.0, 1.0, len(coefficients))
    corrected = np.interp(targets, reached, coefficients)
    return fit_beta(corrected, targets, initial=(trial.alpha, trial.beta), bounds=bounds)


def default_bounds(steps_with_interpolation: float) -> tuple[float, float]:
    """The reference's range for alpha and beta: 1 .. the number of interpolated steps (here at least 3)."""
    return 1.0, max(3.0, float(steps_with_interpolation))


def auto_beta(generate: Generate, distance: FrameDistance, frames: int, max_trials: int = 12,
              target_smoothness: float = 0.9, bounds: tuple[float, float] = (1.0, 12.0),
              frames_per_round: int = 4, on_round=None) -> SmoothResult:
    """Search Beta(alpha, beta) within `bounds` for the smoothest F-frame trial sequence.

    Round 0 makes the t = 0.5 frame: closer to A restricts the search to alpha >= beta, closer to B
    to alpha <= beta. Each later round evaluates up to trials_per_round candidates together: in the
    first, the Beta fitted to the probe's distances and linear; then refit_trial of the best trial
    (a model-based guess) and a pattern search around it in log(alpha), log(beta) (8 moves of step
    h, h halved when all were tried without improvement, from FIRST_STEP down to MIN_STEP).
    Candidates are projected into the bounds and the probe's half. Stops at `target_smoothness`,
    after `max_trials` trials, or when the step is spent.
    """
    if frames < 3 or max_trials < 1:
        raise ValueError(f"need frames >= 3 and max_trials >= 1, got {frames} and {max_trials}.")
    low, high = float(bounds[0]), float(bounds[1])
    if not 0 < low <= high:
        raise ValueError(f"bounds must satisfy 0 < low <= high, got {bounds}.")
    log_low, log_high = math.log(low), math.log(high)
    explorer = FrameExplorer(generate, distance, on_round)
    explorer.explore((0.0, 0.5, 1.0))
    to_a, to_b = explorer.distances((0.0, 0.5, 1.0))
    lean = lean_toward(to_a, to_b)

    def feasible(point):
        u, v = (min(max(x, log_low), log_high) for x in point)
        if (lean == "A" and u < v) or (lean == "B" and u > v):
            u = v = (u + v) / 2.0
        return round(u, 9), round(v, 9)

    trials: dict[tuple[float, float], Trial | None] = {}  # None: too extreme for F distinct coefficients
    best: tuple[float, float] | None = None
    step = min((log_high - log_low) / 8.0, FIRST_STEP)

    def near_tried(point, radius):
        return any(math.hypot(point[0] - p[0], point[1] - p[1]) < radius for p in trials)

    def candidates():
        if best is None:  # the Beta fitted to the probe, and linear (when the range starts at 1)
            found = [feasible(tuple(math.log(x) for x in _fit_explored(explorer))), feasible((log_low, log_low))]
        else:
            found = []
            refitted = feasible(tuple(math.log(x) for x in refit_trial(trials[best])))
            if not near_tried(refitted, MIN_STEP):
                found.append(refitted)
            found += [feasible((best[0] + step * du, best[1] + step * dv)) for du, dv in _DIRECTIONS]
        return [p for p in dict.fromkeys(found) if not near_tried(p, MIN_STEP / 2.0)]

    def made():
        return [trial for trial in trials.values() if trial is not None]

    capacity = trials_per_round(frames, frames_per_round)
    while len(made()) < max_trials:
        batch = candidates()[:min(capacity, max_trials - len(made()))]
        if not batch:
            if best is None or step / 2.0 < MIN_STEP:
                break
            step /= 2.0
            continue
        schedules = {}
        for point in batch:
            try:
                schedules[point] = beta_coefficients(frames, math.exp(point[0]), math.exp(point[1]))
            except ValueError:
                trials[point] = None
        explorer.explore([t for coefficients in schedules.values() for t in coefficients])
        for point, coefficients in schedules.items():
            trials[point] = Trial(math.exp(point[0]), math.exp(point[1]), coefficients,
                                  tuple(explorer.distances(coefficients)))
            if best is None or trials[point].smoothness > trials[best].smoothness:
                best = point
        if best is not None and trials[best].smoothness >= target_smoothness:
            break
    if best is None:
        raise ValueError("no Beta(alpha, beta) within the bounds gives distinct coefficients for this many frames.")
    chosen = trials[best]
    return _result("auto beta", explorer, chosen.coefficients, chosen.distances, chosen.alpha, chosen.beta, made())
