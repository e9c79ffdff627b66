"""Coefficient selection for even steps (issue 7), model-free: path solver, Beta fit, both searches.

The searches run on a constructed generator: frame(t) = lerp(image A, image B, s(t)) with s non-linear,
measured with the pixel distance, so the perceptual change per unit of t is uneven and known.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_distribution

from aid_pack.scoring.metrics import PixelDistance, smoothness
from aid_pack.samplers.sequence.schedule import beta_coefficients, linear_coefficients
from aid_pack.samplers.smooth.selection import (FrameExplorer, auto_beta, cumulative_progress, dynamic_selection, fit_beta,
                                      lean_toward, path_spread, planned_rounds, refit_trial, smoothest_path,
                                      split_gaps, Trial)


def brute_force_spread(matrix, frames):
    n = len(matrix)
    return min(path_spread(matrix, (0, *inner, n - 1)) for inner in itertools.combinations(range(1, n - 1), frames - 2))


class Generator:
    """frame(t) = lerp(A, B, s(t)) for two smooth random 16 x 16 images; records every call."""

    def __init__(self, curve, seed=1, size=16):
        g = torch.Generator().manual_seed(seed)
        a, b = (torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(size, size),
                                                mode="bilinear").movedim(1, -1) for _ in range(2))
        self.a, self.b, self.curve = a, b, curve
        self.calls = []

    def __call__(self, coefficients):
        self.calls.append(tuple(coefficients))
        s = torch.tensor([float(self.curve(t)) for t in coefficients], dtype=torch.float32).view(-1, 1, 1, 1)
        return torch.lerp(self.a.expand(len(s), -1, -1, -1), self.b.expand(len(s), -1, -1, -1), s)

    def smoothness(self, coefficients):
        return smoothness(PixelDistance().neighbours(self(coefficients)).tolist())


LATE = lambda t: t ** 3  # noqa: E731  most change near B: the t = 0.5 frame is close to A
EARLY = lambda t: 1 - (1 - t) ** 3  # noqa: E731  most change near A


# ---------------------------------------------------------------- path solver


@pytest.mark.parametrize("n, frames", [(4, 3), (5, 3), (6, 4), (7, 5), (8, 4), (9, 6), (9, 9), (8, 2)])
def test_smoothest_path_is_optimal_by_brute_force(n, frames):
    rng = random.Random(n * 31 + frames)
    for case in range(25):
        matrix = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                # case 0..4: few distinct values, so ties are common
                matrix[i, j] = rng.randint(1, 4) / 4 if case < 5 else rng.random()
        path = smoothest_path(matrix, frames)
        assert path[0] == 0 and path[-1] == n - 1 and len(path) == frames
        assert all(a < b for a, b in zip(path, path[1:]))
        assert path_spread(matrix, path) == pytest.approx(brute_force_spread(matrix, frames), abs=1e-12)


def test_smoothest_path_uses_the_direct_distance_between_kept_frames():
    # neighbours 0-1-2-3 are 1 apart, but the direct 0 -> 2 and 2 -> 3 steps are what the kept path shows
    matrix = np.array([[0, 1, 5, 9], [0, 0, 1, 2], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=float)
    assert smoothest_path(matrix, 3) == [0, 1, 3]  # steps 1 and 2 (spread 1) beat 5 and 1 (spread 4)


def test_smoothest_path_refuses_more_frames_than_explored():
    with pytest.raises(ValueError, match="cannot keep 5 frames of 4"):
        smoothest_path(np.ones((4, 4)), 5)


# ---------------------------------------------------------------- Beta fit


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (4.0, 4.0), (6.0, 3.0), (1.5, 7.0), (0.6, 0.8), (12.0, 2.5)])
def test_fit_beta_recovers_known_parameters_from_exact_cdf_samples(alpha, beta):
    ts = np.linspace(0.0, 1.0, 9)
    fitted = fit_beta(ts, beta_distribution.cdf(ts, alpha, beta))
    assert fitted == pytest.approx((alpha, beta), rel=1e-4)


def test_fit_beta_on_uneven_samples_and_without_interior_points():
    ts = [0.0, 0.1, 0.13, 0.5, 0.52, 0.9, 1.0]
    assert fit_beta(ts, beta_distribution.cdf(ts, 3.0, 1.5)) == pytest.approx((3.0, 1.5), rel=1e-4)
    assert fit_beta([0.0, 1.0], [0.0, 1.0], initial=(2.0, 5.0)) == (2.0, 5.0)


def test_cumulative_progress_normalises_and_falls_back_to_linear():
    assert cumulative_progress([0, 0.2, 1], [1.0, 3.0]) == [0.0, 0.25, 1.0]
    assert cumulative_progress([0, 0.2, 1], [0.0, 0.0]) == [0, 0.2, 1]


def test_refit_trial_finds_the_schedule_that_evens_out_a_trial():
    # a trial at linear coefficients of a sequence whose progress is the Beta(3, 1.5) CDF
    coefficients = linear_coefficients(9)
    progress = beta_distribution.cdf(coefficients, 3.0, 1.5)
    trial = Trial(1.0, 1.0, coefficients, tuple(np.diff(progress)))
    assert refit_trial(trial) == pytest.approx((3.0, 1.5), rel=0.05)


# ---------------------------------------------------------------- exploration


def test_split_gaps_puts_one_frame_at_the_cdf_midpoint_of_the_widest_gap():
    new = split_gaps([0.0, 0.5, 1.0], [0.1, 0.3], 1, 2.0, 5.0)
    cdf = beta_distribution.cdf
    assert new == pytest.approx([beta_distribution.ppf((cdf(0.5, 2, 5) + 1) / 2, 2.0, 5.0)])
    assert 0.5 < new[0] < 1.0


def test_split_gaps_shares_frames_by_width_and_keeps_them_apart():
    # the second gap is 3x wider: 3 of 4 frames go there, at Beta quantiles (linear here)
    assert split_gaps([0.0, 0.5, 1.0], [1.0, 3.0], 4, 1.0, 1.0) == pytest.approx([0.25, 0.625, 0.75, 0.875])
    assert split_gaps([0.0, 0.0015, 1.0], [5.0, 0.0], 1, 1.0, 1.0) == pytest.approx([0.50075])  # the first is too narrow to split
    assert split_gaps([0.0, 0.001, 0.002], [1.0, 1.0], 3, 1.0, 1.0) == []


def test_explorer_generates_each_frame_once_and_embeds_once():
    generator = Generator(LATE)
    distance = PixelDistance()
    embedded = []
    embed = distance.embed
    distance.embed = lambda frames: embedded.append(frames.shape[0]) or embed(frames)
    explorer = FrameExplorer(generator, distance)
    assert explorer.explore([0.0, 0.5, 1.0]) == [0.0, 0.5, 1.0]
    assert explorer.explore([1.0, 0.25, 0.5, 0.75]) == [0.25, 0.75]
    assert explorer.explore([0.25]) == []
    assert generator.calls == [(0.0, 0.5, 1.0), (0.25, 0.75)] and embedded == [3, 2]
    assert explorer.coefficients == [0.0, 0.25, 0.5, 0.75, 1.0] and explorer.rounds == 2
    direct = PixelDistance()(generator([0.0]), generator([0.75]))
    assert explorer.matrix([0.0, 0.75, 1.0])[0, 1] == pytest.approx(float(direct[0]))


def test_lean_points_the_curve_toward_the_far_endpoint():
    assert lean_toward(0.1, 0.4) == "A"  # t = 0.5 looks like A: frames belong nearer B (alpha >= beta)
    assert lean_toward(0.4, 0.1) == "B"
    assert lean_toward(0.2, 0.2) is None


# ---------------------------------------------------------------- the two searches, acceptance


@pytest.mark.parametrize("curve", [LATE, EARLY], ids=["late", "early"])
def test_both_methods_even_out_a_nonlinear_sequence(curve):
    frames = 5
    assert Generator(curve).smoothness(linear_coefficients(frames)) < 0.8

    generator = Generator(curve)
    dynamic = dynamic_selection(generator, PixelDistance(), frames, exploration_frames=32, frames_per_round=4)
    assert dynamic.smoothness >= 0.95
    assert len(dynamic.coefficients) == frames and dynamic.coefficients[0] == 0 and dynamic.coefficients[-1] == 1
    assert len(dynamic.explored) == 32 and dynamic.rounds == planned_rounds("dynamic selection", frames, 32, 4)
    assert generator.calls[0] == (0.0, 0.5, 1.0) and all(len(c) <= 4 for c in generator.calls[1:])
    assert sum(len(c) for c in generator.calls) == 32  # every explored frame made exactly once
    assert Generator(curve).smoothness(dynamic.coefficients) == pytest.approx(dynamic.smoothness, abs=1e-6)

    generator = Generator(curve)
    auto = auto_beta(generator, PixelDistance(), frames, max_trials=8, target_smoothness=0.97, bounds=(1.0, 12.0))
    assert auto.smoothness >= 0.95
    assert auto.coefficients == pytest.approx(beta_coefficients(frames, auto.alpha, auto.beta))
    assert (auto.alpha >= auto.beta) == (curve is LATE)
    assert Generator(curve).smoothness(auto.coefficients) == pytest.approx(auto.smoothness, abs=1e-6)


def test_auto_beta_stops_at_the_target_or_the_trial_budget():
    reached = auto_beta(Generator(LATE), PixelDistance(), 5, max_trials=12, target_smoothness=0.5)
    assert reached.trials[-1].smoothness >= 0.5 and all(t.smoothness < 0.5 for t in reached.trials[:-1])
    budget = auto_beta(Generator(LATE), PixelDistance(), 5, max_trials=3, target_smoothness=1.0)
    assert len(budget.trials) == 3 and budget.smoothness == max(t.smoothness for t in budget.trials)
    assert all(1.0 <= v <= 12.0 for t in budget.trials for v in (t.alpha, t.beta))
    assert budget.rounds <= planned_rounds("auto beta", 5, max_trials=3, frames_per_round=4)


def test_auto_beta_batches_whole_trials_per_round():
    generator = Generator(EARLY)
    result = auto_beta(generator, PixelDistance(), 4, max_trials=6, target_smoothness=1.0, frames_per_round=4)
    # 2 interior frames a trial, 4 frames a round: two trials per round after the probe
    assert all(len(c) <= 4 for c in generator.calls[1:])
    assert len(generator.calls) <= planned_rounds("auto beta", 4, max_trials=6, frames_per_round=4) == 4
    assert len(result.trials) == 6


def test_dynamic_selection_stops_exploring_a_jump_it_cannot_resolve():
    """A sequence that jumps at t = 0.3: splitting near the jump never shrinks the step, so exploration piles
    frames next to it only until they would come closer than MIN_GAP, and the budget still holds."""
    generator = Generator(lambda t: 0.0 if t < 0.3 else 1.0)
    result = dynamic_selection(generator, PixelDistance(), 4, exploration_frames=20, frames_per_round=3)
    explored = result.explored
    assert len(explored) <= 20 and len(set(explored)) == len(explored)
    assert min(b - a for a, b in zip(explored, explored[1:])) >= 1e-3 - 1e-12
