"""AID Schedule: coefficients, validation and the node's preview."""
import pytest

from aid_pack.errors import AIDInputError
from aid_pack.samplers.sequence.schedule import (InterpolationSchedule, beta_coefficients, linear_coefficients,
                                        parse_coefficients)
from aid_pack.nodes.schedule import AIDSchedule


def test_linear_coefficients_are_exact():
    assert linear_coefficients(5) == (0.0, 0.25, 0.5, 0.75, 1.0)


def test_beta_one_one_is_linear_and_symmetric_beta_is_symmetric():
    assert beta_coefficients(5, 1.0, 1.0) == pytest.approx(linear_coefficients(5))
    t = beta_coefficients(7, 4.0, 4.0)
    assert t[0] == 0.0 and t[-1] == 1.0 and t[3] == pytest.approx(0.5)
    assert [a + b for a, b in zip(t, reversed(t))] == pytest.approx([1.0] * 7)
    # alpha = beta > 1 packs frames into the middle: middle steps are smaller than the end steps
    assert t[4] - t[3] < t[1] - t[0]


def test_beta_skew_leans_toward_b_when_alpha_exceeds_beta():
    t = beta_coefficients(5, 6.0, 3.0)
    assert t[2] > 0.5


@pytest.mark.parametrize("text, problem", [
    ("0, 0.5", "at least 3"),
    ("0.1, 0.5, 1", "start at 0"),
    ("0, 0.5, 0.9", "end at 1"),
    ("0, 0.6, 0.4, 1", "strictly increase"),
    ("0, x, 1", "numbers"),
])
def test_custom_list_validation(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_coefficients(text)


def test_schedule_value_rejects_bad_coefficients():
    with pytest.raises(ValueError):
        InterpolationSchedule((0.0, 1.0))


def test_node_builds_schedule_and_preview(comfy_base):
    result = AIDSchedule().build(frames=6, curve="beta", alpha=6.0, beta=3.0)
    (schedule,) = result["result"]
    assert schedule.frames == 6 and schedule.curve == "beta"
    assert schedule.coefficients == pytest.approx(beta_coefficients(6, 6.0, 3.0))
    (preview,) = result["ui"]["images"]
    assert (comfy_base / "temp" / preview["subfolder"] / preview["filename"]).is_file()


def test_custom_curve_sets_frame_count():
    (schedule,) = AIDSchedule().build(frames=3, curve="custom", alpha=1, beta=1, custom="0 0.1 0.2 0.9 1")["result"]
    assert schedule.coefficients == (0.0, 0.1, 0.2, 0.9, 1.0)


@pytest.mark.parametrize("kwargs, input_name", [
    (dict(frames=2, curve="linear", alpha=1, beta=1), "frames"),
    (dict(frames=5, curve="custom", alpha=1, beta=1, custom="0, 1"), "custom"),
    (dict(frames=5, curve="cubic", alpha=1, beta=1), "curve"),
])
def test_node_errors_name_node_input_and_fix(kwargs, input_name):
    with pytest.raises(AIDInputError) as error:
        AIDSchedule().build(**kwargs)
    message = str(error.value)
    assert message.startswith("AID Schedule: input '" + input_name + "'") and "Fix:" in message
