"""Properties of the pack's pure functions over generated input (hypothesis): schedules, coefficient
parsing, chunk planning, slerp and the sequence metrics. Examples are derandomized and few, so
the suite stays fast and gives the same result on every run.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from aid_pack.scoring.metrics import PixelDistance, consistency, gini, smoothness
from aid_pack.samplers.sequence.noise import slerp
from aid_pack.samplers.sequence.schedule import (InterpolationSchedule, beta_coefficients, check_coefficients,
                                        make_schedule, parse_coefficients)
from aid_pack.samplers.sequence.sampler import plan_chunks

FEW = settings(max_examples=30, deadline=None, derandomize=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def increasing_coefficients():
    """Strictly increasing lists from exactly 0 to exactly 1, 3 to 60 values."""
    interior = st.lists(st.floats(min_value=1e-9, max_value=1 - 1e-9), min_size=1, max_size=58, unique=True)
    return interior.map(lambda xs: (0.0, *sorted(xs), 1.0))


def assert_valid(coefficients, frames=None):
    assert coefficients[0] == 0.0 and coefficients[-1] == 1.0
    assert all(b > a for a, b in zip(coefficients, coefficients[1:]))
    assert frames is None or len(coefficients) == frames


# ---------------------------------------------------------------- schedules


@FEW
@given(frames=st.integers(3, 5000))
def test_linear_schedules_are_even_and_exact_at_the_ends(frames):
    schedule = make_schedule(frames, "linear")
    assert_valid(schedule.coefficients, frames)
    steps = [b - a for a, b in zip(schedule.coefficients, schedule.coefficients[1:])]
    assert max(steps) - min(steps) < 1e-12


@FEW
@given(frames=st.integers(3, 200), alpha=st.floats(0.05, 100.0), beta=st.floats(0.05, 100.0))
def test_beta_schedules_are_valid_or_refused_with_a_value_error(frames, alpha, beta):
    try:
        coefficients = beta_coefficients(frames, alpha, beta)
    except ValueError:
        return  # extreme shapes squeeze frames together past float resolution: refused, never returned
    assert_valid(coefficients, frames)


@FEW
@given(frames=st.integers(3, 60), alpha=st.floats(0.5, 20.0), beta=st.floats(0.5, 20.0))
def test_swapping_alpha_and_beta_mirrors_the_schedule(frames, alpha, beta):
    try:
        forward, mirrored = beta_coefficients(frames, alpha, beta), beta_coefficients(frames, beta, alpha)
    except ValueError:
        return
    assert [1 - t for t in reversed(mirrored)] == pytest.approx(forward, abs=1e-9)


@FEW
@given(coefficients=increasing_coefficients(), separator=st.sampled_from([", ", " ", "\n", ",", " ,\n "]))
def test_a_written_coefficient_list_reads_back_exactly(coefficients, separator):
    text = separator.join(repr(c) for c in coefficients)
    assert parse_coefficients(text) == coefficients
    assert make_schedule(3, "custom", custom=text).frames == len(coefficients)


@FEW
@given(text=st.text(max_size=80))
def test_any_text_is_a_valid_list_or_a_value_error(text):
    try:
        values = parse_coefficients(text)
    except ValueError:
        return
    assert_valid(values)


@FEW
@given(values=st.lists(finite | st.just(math.nan) | st.just(math.inf), max_size=8))
def test_schedule_values_are_checked_on_construction(values):
    try:
        check_coefficients(values)
    except ValueError:
        with pytest.raises(ValueError):
            InterpolationSchedule(tuple(values))
        return
    assert_valid(values)


# ---------------------------------------------------------------- chunk planning


@FEW
@given(frames=st.integers(3, 5000), limit=st.integers(0, 300))
def test_chunks_hold_each_interior_frame_once_and_both_endpoints(frames, limit):
    assume(limit == 0 or limit >= 3)
    chunks = plan_chunks(frames, limit)
    interior = [f for chunk in chunks for f in chunk[1:-1]]
    assert interior == list(range(1, frames - 1))  # each exactly once, in order
    assert all(chunk[0] == 0 and chunk[-1] == frames - 1 for chunk in chunks)
    if limit:
        assert all(len(chunk) <= limit for chunk in chunks)
        sizes = [len(chunk) for chunk in chunks]
        assert max(sizes) - min(sizes) <= 1  # split evenly
    else:
        assert chunks == [list(range(frames))]


@given(frames=st.integers(3, 100), limit=st.integers(1, 2))
@FEW
def test_chunks_without_room_between_the_endpoints_are_refused(frames, limit):
    assume(limit < frames)
    with pytest.raises(ValueError):
        plan_chunks(frames, limit)


# ---------------------------------------------------------------- slerp


def noise(seed, shape=(2, 3, 4)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@FEW
@given(seed=st.integers(0, 2 ** 16), t=st.floats(0.0, 1.0))
def test_slerp_is_exact_at_the_ends_and_keeps_the_norm_of_equal_norm_inputs(seed, t):
    a, b = noise(seed), noise(seed + 1)
    b = b * (a.norm() / b.norm())
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mixed = slerp(a, b, t)
    assert torch.isclose(mixed.norm(), a.norm(), rtol=1e-4)


@FEW
@given(seed=st.integers(0, 2 ** 16), t=st.floats(0.0, 1.0), scale=st.floats(0.1, 10.0))
def test_slerp_of_parallel_inputs_falls_back_to_lerp(seed, t, scale):
    a = noise(seed)
    mixed = slerp(a, a * scale, t)
    assert torch.isfinite(mixed).all()
    assert torch.allclose(mixed, torch.lerp(a, a * scale, t), atol=1e-5)


@FEW
@given(seed=st.integers(0, 2 ** 16), t=st.floats(0.01, 0.99))
def test_slerp_along_a_dimension_is_slerp_of_each_slice(seed, t):
    a, b = noise(seed, (3, 5)), noise(seed + 7, (3, 5))
    rows = slerp(a, b, t, dim=1)
    for i in range(3):
        assert torch.allclose(rows[i], slerp(a[i], b[i], t), atol=1e-6)


# ---------------------------------------------------------------- metrics

distances = st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=40)


@FEW
@given(values=distances)
def test_gini_and_smoothness_stay_in_their_ranges(values):
    n = len(values)
    assert 0.0 <= gini(values) <= (n - 1) / n + 1e-12
    assert 1 / n - 1e-12 <= smoothness(values) <= 1.0
    assert consistency(values) == pytest.approx(sum(values) / n, rel=1e-12, abs=1e-300)


@FEW
@given(values=distances, scale=st.floats(1e-3, 1e3), seed=st.integers(0, 100))
def test_smoothness_ignores_scale_and_order(values, scale, seed):
    assume(sum(values) > 0)
    order = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [values[i] for i in order]
    assert smoothness([v * scale for v in values]) == pytest.approx(smoothness(values), abs=1e-9)
    assert smoothness(shuffled) == pytest.approx(smoothness(values), abs=1e-12)


@FEW
@given(value=st.floats(0.0, 1e6), n=st.integers(1, 40))
def test_equal_steps_are_perfectly_smooth(value, n):
    assert smoothness([value] * n) == 1.0


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 16), height=st.integers(8, 40), width=st.integers(8, 40))
def test_pixel_distance_is_a_bounded_symmetric_distance(seed, height, width):
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.rand(2, 1, height, width, 3, generator=generator)
    distance = PixelDistance()
    d = float(distance(a, b))
    assert 0.0 <= d <= 1.0
    assert float(distance(b, a)) == pytest.approx(d, abs=1e-6)
    assert float(distance(a, a)) == 0.0
