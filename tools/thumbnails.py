"""Template-browser thumbnails drawn from a workflow's own parameters: a diagram, not a render.

`diagram(prompt, title)` reads the workflow's API prompt (what it would queue) and draws, on a
320 x 320 card, what the workflow does:
- a sequence from A to B: a strip of frame placeholders, each at its coefficient t, shaded from A's
  colour to B's, with the prompts written at the ends (the PAID guidance prompt in the middle) and
  the schedule curve (t per frame) beneath;
- keyframes: the timeline of keys, holds and segments (and the loop seam);
- regions: the canvas with each object's box and name;
- editing: the photo, then the frames towards the edit prompt;
- image prompts: image A -> image B (or one control image).
It needs the pack importable as `aid_pack` (a booted host, as tools/templates.py and the tests
have) to read schedules, keyframe text and Auto Layout prompts with the pack's own parsers.
"""
from __future__ import annotations

import textwrap

SIZE = 320
BACKGROUND, INK, MUTED, GRID = (250, 250, 247), (33, 37, 41), (120, 124, 130), (222, 222, 218)
COLOUR_A, COLOUR_B = (66, 133, 244), (234, 88, 54)
REGION_COLOURS = ((66, 133, 244), (234, 88, 54), (52, 168, 83), (171, 71, 188), (251, 188, 5))
BADGE = "diagram of the workflow"


def diagram(prompt: dict, title: str):
    """A PIL image (RGB, SIZE x SIZE) showing what the workflow in the API `prompt` does."""
    from PIL import Image, ImageDraw

    card = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(card)
    draw.text((10, 8), title, fill=INK)
    draw.text((SIZE - 10 - 6 * len(BADGE), SIZE - 16), BADGE, fill=MUTED)
    graph = Graph(prompt)
    if graph.first("AIDKeyframes"):
        _keyframes(draw, graph)
    elif graph.first("AIDSpatialTemporalRegion", "AIDSpatialTemporalAutoLayout", "AIDSpatialTemporalTypedLayout"):
        _regions(draw, graph)
    else:
        _sequence(draw, graph)
    return card


class Graph:
    """The API prompt with link following: inputs given as [node id, slot] lead to that node."""

    def __init__(self, prompt: dict):
        self.nodes = prompt

    def all(self, *class_types: str) -> list[dict]:
        return [node for _, node in sorted(self.nodes.items(), key=lambda item: int(item[0]))
                if node["class_type"] in class_types]

    def first(self, *class_types: str) -> dict | None:
        found = self.all(*class_types)
        return found[0] if found else None

    def source(self, node: dict | None, name: str) -> dict | None:
        """The node an input is linked to (None when it is a widget value or absent)."""
        value = (node or {}).get("inputs", {}).get(name)
        return self.nodes.get(str(value[0])) if isinstance(value, list) else None

    def text(self, node: dict | None, name: str) -> str:
        """The prompt text behind a CONDITIONING input, following encoders and PAID Guidance."""
        source = self.source(node, name)
        for _ in range(8):
            if source is None:
                return ""
            inputs = source["inputs"]
            if isinstance(inputs.get("text"), str):
                return inputs["text"]
            linked = next((self.source(source, key) for key in ("conditioning", "positive", "text")
                           if isinstance(inputs.get(key), list)), None)
            source = linked
        return ""


def _schedule_coefficients(graph: Graph) -> tuple[tuple[float, ...], str]:
    """The frames' coefficients from AID Schedule (or a sampler's frame count), and how they were set."""
    from aid_pack.samplers.sequence.schedule import linear_coefficients, make_schedule

    schedule = graph.first("AIDSchedule")
    if schedule is not None:
        i = schedule["inputs"]
        made = make_schedule(int(i["frames"]), i["curve"], float(i["alpha"]), float(i["beta"]), i.get("custom", ""))
        label = i["curve"] if i["curve"] != "beta" else f"beta({i['alpha']:g}, {i['beta']:g})"
        return tuple(made.coefficients), label
    smooth = graph.first("AIDSmoothSampler")
    frames = int(smooth["inputs"]["frames"]) if smooth else 7
    return linear_coefficients(frames), "chosen by the Smooth Sampler" if smooth else "linear"


def _sequence(draw, graph: Graph) -> None:
    coefficients, label = _schedule_coefficients(graph)
    user = graph.first("AIDConditioning", "AIDSampler", "AIDSmoothSampler", "AIDTextEncodeEqualLength")
    text_a = graph.text(user, "positive_a") or (user or {}).get("inputs", {}).get("text_a", "")
    text_b = graph.text(user, "positive_b") or (user or {}).get("inputs", {}).get("text_b", "")
    guide = graph.first("PAIDGuidance")
    guide_text = graph.text(guide, "conditioning") if guide else ""
    inverts = graph.all("AIDInvertImage")
    images = graph.all("LoadImage")
    ends = ("prompt A", "prompt B")
    if len(inverts) >= 2:
        ends = ("photo A", "photo B")
        text_a = "frame 0 is photo A: " + graph.text(inverts[0], "positive")
        text_b = "the last frame is photo B: " + graph.text(inverts[1], "positive")
    elif inverts:
        ends = ("your photo", "edit prompt")
        text_a = "frame 0 is the photo: " + graph.text(inverts[0], "positive")
    elif images and graph.first("AIDIPAdapterEndpoints"):
        mode = graph.first("AIDIPAdapterEndpoints")["inputs"].get("mode", "morph")
        files = [node["inputs"].get("image", "") for node in images]
        if mode == "morph":
            ends, text_b = ("image A", "image B"), f"images {' -> '.join(files)}, both under the prompt"
        else:
            ends, text_b = ("prompt", "control image"), f"towards the control image {files[-1]}"
    _strip(draw, coefficients, 44, ends)
    _wrapped(draw, f"A: {text_a}", 10, 112, COLOUR_A)
    _wrapped(draw, f"B: {text_b}" if text_b else "", 10, 150, COLOUR_B)
    if guide_text:
        _wrapped(draw, f"PAID guide (frames between): {guide_text}", 10, 188, INK, lines=2)
    _curve(draw, coefficients, (40, 226, 300, 296), f"t per frame: {label}")


def _strip(draw, coefficients, top: int, ends: tuple[str, str]) -> None:
    """One box per frame, shaded by t, A's and B's labels under the ends."""
    frames = len(coefficients)
    left, right = 10, SIZE - 10
    gap = 4 if frames <= 12 else 1
    width = max(1, (right - left - gap * (frames - 1)) // max(frames, 1))
    for index, t in enumerate(coefficients):
        x = left + index * (width + gap)
        draw.rectangle((x, top, x + width, top + 40), fill=_mix(COLOUR_A, COLOUR_B, t), outline=INK)
        if width >= 24:
            draw.text((x + 2, top + 42), f"{t:.2f}", fill=MUTED)
    draw.text((left, top + 54), ends[0], fill=COLOUR_A)
    draw.text((right - 6 * len(ends[1]), top + 54), ends[1], fill=COLOUR_B)


def _curve(draw, coefficients, box, label: str) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=GRID)
    draw.text((x0, y0 - 12), label, fill=MUTED)
    frames = len(coefficients)
    points = [(x0 + (x1 - x0) * i / max(frames - 1, 1), y1 - (y1 - y0) * t) for i, t in enumerate(coefficients)]
    draw.line(points, fill=INK, width=2)
    for x, y in points:
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=_mix(COLOUR_A, COLOUR_B, (y1 - y) / (y1 - y0)))


def _keyframes(draw, graph: Graph) -> None:
    node = graph.first("AIDKeyframes")
    sampler = graph.first("AIDKeyframeSampler")
    inputs = sampler["inputs"] if sampler else {}
    timeline = _timeline(node["inputs"]["text"], int(inputs.get("total_frames", 0)), bool(inputs.get("loop", False)))
    frames = timeline.frames
    left, right, top = 10, SIZE - 10, 60
    scale = (right - left) / max(frames, 1)
    draw.rectangle((left, top, right, top + 24), outline=GRID)
    for segment in timeline.segments:
        for frame, t in zip(segment.frames, segment.coefficients):
            colour_a = REGION_COLOURS[segment.key_a % len(REGION_COLOURS)]
            colour_b = REGION_COLOURS[segment.key_b % len(REGION_COLOURS)]
            x = left + frame * scale
            draw.rectangle((x, top + 4, x + max(scale - 1, 1), top + 20), fill=_mix(colour_a, colour_b, t))
    for key, frames_of_key in enumerate(timeline.key_frames):
        colour = REGION_COLOURS[key % len(REGION_COLOURS)]
        for frame in frames_of_key:
            x = left + frame * scale
            draw.rectangle((x, top, x + max(scale - 1, 2), top + 24), fill=colour, outline=INK)
    draw.text((left, top + 28), "frame 0", fill=MUTED)
    end_label = f"{frames} frames" + (", loops back to key 1" if timeline.loop else "")
    draw.text((right - 6 * len(end_label), top + 28), end_label, fill=MUTED)
    y = top + 50
    prompts = [spec.prompt for spec in _specs(node["inputs"]["text"])]
    for key, (position, prompt) in enumerate(zip(timeline.positions, prompts)):
        colour = REGION_COLOURS[key % len(REGION_COLOURS)]
        draw.rectangle((left, y + 2, left + 8, y + 10), fill=colour)
        y = _wrapped(draw, f"key {key + 1} @ frame {position}: {prompt or '(image key)'}", left + 14, y, INK,
                     width=46, lines=2) + 4
        if y > SIZE - 40:
            break


def _specs(text: str):
    from aid_pack.samplers.keyframes.text import parse_keyframes

    return parse_keyframes(text)


def _timeline(text: str, total_frames: int, loop: bool):
    """The keyframe text's timeline, read with the pack's own parser (prompts stand in for conditioning)."""
    from aid_pack.samplers.keyframes.plan import Keyframe, Keyframes, resolve_timeline

    keys = tuple(Keyframe(spec.prompt, spec.position, spec.hold, spec.seed, spec.easing, spec.guide, spec.source,
                          spec.text, spec.prompt) for spec in _specs(text))
    return resolve_timeline(Keyframes(keys), total_frames, loop)


def _regions(draw, graph: Graph) -> None:
    boxes = [(n["inputs"].get("description", "object"), _box_fractions(n["inputs"]))
             for n in graph.all("AIDSpatialTemporalRegion")]
    auto = graph.first("AIDSpatialTemporalAutoLayout")
    if auto is not None:
        from aid_pack.samplers.regions.prompt_layout import parse_prompt

        boxes += parse_prompt(auto["inputs"]["prompt"]).placed()
    typed = graph.first("AIDSpatialTemporalTypedLayout")
    if typed is not None:
        from aid_pack.samplers.regions.prompt_layout import parse_layout_text

        boxes += parse_layout_text(typed["inputs"].get("layout", ""))
    x0, y0, side = 60, 30, 200
    draw.rectangle((x0, y0, x0 + side, y0 + side), fill=(255, 255, 255), outline=INK)
    for index, (name, (x, y, w, h)) in enumerate(boxes):
        colour = REGION_COLOURS[index % len(REGION_COLOURS)]
        rect = (x0 + x * side, y0 + y * side, x0 + (x + w) * side, y0 + (y + h) * side)
        draw.rectangle(rect, outline=colour, width=3)
        draw.text((rect[0] + 4, rect[1] + 3), name, fill=colour)
    full = graph.first("AIDSpatialTemporalAutoLayout")
    caption = full["inputs"]["prompt"] if full else "; ".join(name for name, _ in boxes)
    mixes = sorted({n["inputs"].get("mix") for n in graph.all("AIDApplySpatialTemporalAttention",
                                                              "AIDSpatialTemporalSampler",
                                                              "AIDSpatialTemporalWeightOptimiser")} - {None})
    if graph.first("AIDRegionalInterpolation"):
        conditioning = graph.first("AIDConditioning")
        caption = (f"only the region travels from A ({graph.text(conditioning, 'positive_a')}) to B "
                   f"({graph.text(conditioning, 'positive_b')})")
    _wrapped(draw, caption, 10, y0 + side + 8, INK, width=50, lines=4)
    if mixes:
        draw.text((10, SIZE - 30), "mix: " + ", ".join(mixes), fill=MUTED)


def _box_fractions(inputs: dict) -> tuple[float, float, float, float]:
    values = [float(inputs[k]) for k in ("x", "y", "width", "height")]
    if inputs.get("units") == "pixels":
        width, height = float(inputs.get("canvas_width", 512)), float(inputs.get("canvas_height", 512))
        values = [values[0] / width, values[1] / height, values[2] / width, values[3] / height]
    return tuple(values)


def _wrapped(draw, text: str, x: int, y: int, colour, width: int = 50, lines: int = 3) -> int:
    """Draw `text` wrapped to `width` characters, at most `lines` lines; returns the y below it."""
    for line in textwrap.wrap(text, width)[:lines]:
        draw.text((x, y), line, fill=colour)
        y += 12
    return y


def _mix(a, b, t: float):
    t = min(max(float(t), 0.0), 1.0)
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))
