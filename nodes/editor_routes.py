"""Live previews for the editor widgets (web/js/): small POST routes under /aid/preview/ that run the nodes' own
Python (schedule coefficients, region weight curves, the keyframe timeline), so the curves and the timeline drawn in
the editor are the numbers the nodes compute. Nothing here runs for API prompts; the routes only read widget values.
"""
from __future__ import annotations

import logging
import math

from ..errors import AIDInputError
from ..samplers.keyframes.plan import Keyframe, Keyframes, resolve_timeline
from ..samplers.keyframes.text import KeyframeError, parse_keyframes
from .region_weights import weights_from_widgets, weights_series
from .schedule import schedule_from_widgets

PREFIX = "/aid/preview"
MAX_TEXT = 100_000  # characters of a keyframe or knots text the preview reads
MAX_TOTAL_FRAMES = 100_000  # AID Keyframe Sampler's total_frames max


class PreviewInputError(ValueError):
    """A request body that is not what the editor sends (wrong type, missing field)."""


def _number(data: dict, name: str, default, kind=float):
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PreviewInputError(f"'{name}' must be a number.")
    if not math.isfinite(value):
        raise PreviewInputError(f"'{name}' must be a finite number.")
    if kind is int:
        if value != int(value):
            raise PreviewInputError(f"'{name}' must be a whole number.")
        return int(value)
    return float(value)


def _text(data: dict, name: str, default: str = "") -> str:
    value = data.get(name, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PreviewInputError(f"'{name}' must be text.")
    if len(value) > MAX_TEXT:
        raise PreviewInputError(f"'{name}' is longer than {MAX_TEXT} characters.")
    return value


def _input_error(error: AIDInputError) -> dict:
    return {"ok": False, "error": {"input": error.input_name, "message": str(error)}}


def schedule_preview(data: dict) -> dict:
    """AID Schedule's coefficients for its widget values: {"ok", "coefficients", "describe"} or {"ok": False, "error"}."""
    try:
        schedule = schedule_from_widgets(_number(data, "frames", 7, int), _text(data, "curve", "linear"),
                                         _number(data, "alpha", 1.0), _number(data, "beta", 1.0),
                                         _text(data, "custom"))
    except AIDInputError as error:
        return _input_error(error)
    return {"ok": True, "coefficients": list(schedule.coefficients), "describe": schedule.describe()}


def weights_preview(data: dict) -> dict:
    """Spatial-Temporal Weights' curves for its widget values: {"ok", "series": [{name, x, y}]} or an error."""
    names = data.get("names") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise PreviewInputError("'names' must be a list of texts.")
    try:
        weights = weights_from_widgets(_text(data, "mode", "constant"), _number(data, "weight", 0.5),
                                       _number(data, "start_weight", 0.8), _number(data, "end_weight", 0.2),
                                       _text(data, "knots"), tuple(names))
    except AIDInputError as error:
        return _input_error(error)
    series = weights_series(weights, tuple(names))
    return {"ok": True, "series": [{"name": name, "x": list(xs), "y": list(ys)} for name, xs, ys in series],
            "describe": weights.describe(tuple(names))}


def _keyframe_error(error: KeyframeError) -> dict:
    return {"ok": False, "error": {"input": "total_frames" if error.source == "total_frames" else "text",
                                   "line": error.line, "source": error.source, "code": error.code,
                                   "problem": error.problem, "fix": error.fix, "message": str(error)}}


def keyframes_preview(data: dict) -> dict:
    """AID Keyframes' timeline for its text (and a sampler's total_frames / loop): keys with their frames, holds,
    prompts and lines, segments with their frames, coefficients and easing; or the KeyframeError with its line.

    The same parser (samplers/keyframes/text.py) and resolve_timeline (plan.py) the sampler runs; prompts are not
    encoded, so no CLIP is needed."""
    total = _number(data, "total_frames", 0, int)
    if not 0 <= total <= MAX_TOTAL_FRAMES:
        raise PreviewInputError(f"'total_frames' must be from 0 to {MAX_TOTAL_FRAMES}.")
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise PreviewInputError("'loop' must be true or false.")
    try:
        specs = parse_keyframes(_text(data, "text"), _text(data, "pre_text"), _text(data, "app_text"))
        keys = tuple(Keyframe(None, spec.position, spec.hold, spec.seed, spec.easing, None, spec.source, spec.text,
                              spec.prompt) for spec in specs)
        timeline = resolve_timeline(Keyframes(keys), total, loop)
    except KeyframeError as error:
        return _keyframe_error(error)
    return {
        "ok": True, "frames": timeline.frames, "loop": timeline.loop, "describe": timeline.describe(),
        "keys": [{"frame": position, "frames": list(frames), "hold": spec.hold, "prompt": spec.prompt,
                  "source": spec.source, "line": int(spec.source.split()[-1]), "seed": spec.seed,
                  "guide": spec.guide}
                 for position, frames, spec in zip(timeline.positions, timeline.key_frames, specs)],
        "segments": [{"key_a": segment.key_a, "key_b": segment.key_b, "frames": list(segment.frames),
                      "coefficients": list(segment.coefficients), "easing": segment.easing.describe()}
                     for segment in timeline.segments],
    }


PREVIEWS = {"schedule": schedule_preview, "weights": weights_preview, "keyframes": keyframes_preview}


def register(server) -> None:
    """Add POST /aid/preview/<name> for every preview to ComfyUI's PromptServer (before it starts serving)."""
    from aiohttp import web

    def handler(preview):
        async def handle(request):
            try:
                data = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": {"message": "the body is not JSON."}}, status=400)
            if not isinstance(data, dict):
                return web.json_response({"ok": False, "error": {"message": "the body must be a JSON object."}},
                                         status=400)
            try:
                return web.json_response(preview(data))
            except PreviewInputError as error:
                return web.json_response({"ok": False, "error": {"message": str(error)}}, status=400)
        return handle

    for name, preview in PREVIEWS.items():
        server.routes.post(f"{PREFIX}/{name}")(handler(preview))
    logging.debug("AID: editor preview routes under %s", PREFIX)
