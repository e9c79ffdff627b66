"""The editor's preview routes (nodes/editor_routes.py): the numbers the live curves and the keyframe timeline draw
are the nodes' own, and bad bodies are refused. The browser side is tests/test_frontend.py."""
import pytest


@pytest.fixture(scope="module")
def routes(comfy):
    from aid_pack.nodes import editor_routes

    return editor_routes


@pytest.mark.parametrize("widgets", [
    {"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0},
    {"frames": 5, "curve": "beta", "alpha": 6.0, "beta": 3.0},
    {"frames": 4, "curve": "linear", "alpha": 4.0, "beta": 4.0},
    {"frames": 9, "curve": "custom", "alpha": 1.0, "beta": 1.0, "custom": "0, 0.1, 0.5, 1"},
])
def test_schedule_preview_is_the_node_schedule(routes, comfy, widgets):
    schedule = comfy["pack"].nodes.schedule.AIDSchedule().build(**widgets)["result"][0]
    answer = routes.schedule_preview(widgets)
    assert answer == {"ok": True, "coefficients": list(schedule.coefficients), "describe": schedule.describe()}


def test_schedule_preview_exact_small_case(routes):
    assert routes.schedule_preview({"frames": 3, "curve": "beta", "alpha": 2, "beta": 2})["coefficients"] == [0, 0.5, 1]
    assert routes.schedule_preview({"frames": 5, "curve": "linear"})["coefficients"] == [0, 0.25, 0.5, 0.75, 1]


@pytest.mark.parametrize("widgets, input_name", [
    ({"frames": 2, "curve": "beta", "alpha": 4, "beta": 4}, "frames"),
    ({"frames": 7, "curve": "custom", "custom": "0, 0.5, 0.4, 1"}, "custom"),
    ({"frames": 7, "curve": "spline"}, "curve"),
])
def test_schedule_preview_names_the_input_the_node_would_refuse(routes, widgets, input_name):
    answer = routes.schedule_preview(widgets)
    assert answer["ok"] is False and answer["error"]["input"] == input_name
    assert "AID Schedule: input" in answer["error"]["message"]


def test_a_body_of_the_wrong_types_is_refused(routes):
    for body in ({"frames": "7"}, {"frames": 7.5}, {"frames": True}, {"alpha": float("nan")}, {"custom": 3}):
        with pytest.raises(routes.PreviewInputError):
            routes.schedule_preview({"curve": "beta", **body})


def test_weights_preview_is_the_node_curves(routes, comfy):
    weights_module = comfy["pack"].nodes.region_weights
    widgets = {"mode": "knots", "weight": 0.5, "start_weight": 0.8, "end_weight": 0.2,
               "knots": "0:0.8, 0.5:0.5, 1:0.2\ndog = 0:1, 1:0.3"}
    weights = weights_module.weights_from_widgets(**widgets)
    answer = routes.weights_preview(widgets)
    assert answer["ok"] is True
    assert [(s["name"], s["x"], s["y"]) for s in answer["series"]] == weights_module.weights_series(weights)
    assert answer["series"][1]["name"] == "dog" and answer["series"][1]["y"][0] == 1.0
    assert answer["series"][0]["y"][10] == pytest.approx(0.5)  # the knot at 0.5


def test_weights_preview_official_start_shares_among_the_named_regions(routes):
    answer = routes.weights_preview({"mode": "official start (5/N)", "names": ["cat", "dog"]})
    assert answer["series"][0]["name"] == "each of 2" and set(answer["series"][0]["y"]) == {2.5}


def test_weights_preview_refuses_a_curve_named_after_no_region(routes):
    answer = routes.weights_preview({"mode": "knots", "knots": "0:0.5\nbird = 0:1", "names": ["cat", "dog"]})
    assert answer["ok"] is False and answer["error"]["input"] == "knots" and "bird" in answer["error"]["message"]


def test_keyframes_preview_timeline_of_the_node_example(routes, comfy):
    text = comfy["pack"].nodes.keyframes.EXAMPLE
    answer = routes.keyframes_preview({"text": text})
    assert answer["ok"] is True
    assert [k["frame"] for k in answer["keys"]] == [0, 14, 26, 38]
    assert answer["keys"][0]["frames"] == [0, 1, 2] and answer["keys"][0]["hold"] == 3
    assert [k["line"] for k in answer["keys"]] == [1, 2, 3, 4]
    assert answer["frames"] == 39 and answer["loop"] is False
    segments = answer["segments"]
    assert [len(s["frames"]) for s in segments] == [11, 11, 11]
    assert [s["easing"] for s in segments] == ["ease in-out", "linear", "beta(4, 4)"]
    assert all(0 < t < 1 for s in segments for t in s["coefficients"])


def test_keyframes_preview_exact_small_loop(routes):
    answer = routes.keyframes_preview({"text": "0: a\n4: b", "loop": True, "total_frames": 8})
    assert answer["frames"] == 8 and answer["loop"] is True
    assert answer["segments"] == [
        {"key_a": 0, "key_b": 1, "frames": [1, 2, 3], "coefficients": [0.25, 0.5, 0.75], "easing": "linear"},
        {"key_a": 1, "key_b": 0, "frames": [5, 6, 7], "coefficients": [0.25, 0.5, 0.75], "easing": "linear"}]


@pytest.mark.parametrize("body, line, code", [
    ({"text": "0: a fox\nnot a key line\n12: an owl"}, 2, "missing-separator"),
    ({"text": "0: a fox\n12: an owl\n6: a wolf"}, 3, "out-of-order"),
    ({"text": "0: a fox | hold x\n12: an owl"}, 1, None),
    ({"text": "0: a fox"}, 1, "too-few-keys"),
])
def test_keyframes_preview_error_has_the_line_the_sampler_would_name(routes, body, line, code):
    answer = routes.keyframes_preview(body)
    assert answer["ok"] is False
    assert answer["error"]["line"] == line and answer["error"]["input"] == "text"
    assert answer["error"]["message"].startswith(f"line {line}")
    if code:
        assert answer["error"]["code"] == code


def test_keyframes_preview_too_short_total_frames_names_total_frames(routes):
    answer = routes.keyframes_preview({"text": "0: a\n12: b", "total_frames": 5})
    assert answer["ok"] is False and answer["error"]["input"] == "total_frames" and answer["error"]["line"] is None


@pytest.mark.server
def test_a_running_comfyui_serves_the_preview_routes(comfy, tmp_path, routes):
    from aid_harness import host
    from aid_harness.runner import ServerRunner

    host.make_base_directory(tmp_path)
    cases = [("schedule", {"frames": 5, "curve": "beta", "alpha": 6, "beta": 3}),
             ("weights", {"mode": "linear ramp", "start_weight": 1, "end_weight": 0}),
             ("keyframes", {"text": "0: a\n+4: b | ease in\n12: c", "loop": True}),
             ("keyframes", {"text": "0: a\n\n0: b"})]
    with ServerRunner(comfy["root"], tmp_path) as server:
        for name, body in cases:
            assert server.post(f"/aid/preview/{name}", body) == (200, routes.PREVIEWS[name](body)), name
        status, answer = server.post("/aid/preview/schedule", {"frames": "many"})
        assert status == 400 and "frames" in answer["error"]["message"]
        status, answer = server.post("/aid/preview/keyframes", [1, 2])
        assert status == 400 and answer["ok"] is False
