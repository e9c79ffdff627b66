"""Read a keyframe schedule as users write prompt travel: one line per key, `frame: prompt`.

    0: a red fox in the snow | hold 4 | ease in-out
    +12: a white owl on a branch | seed 7
    "24": "a black cat on a wall",        (FizzNodes / AnimateDiff-Evolved style, quotes and comma optional)
    75%: a grey wolf at night | ease beta(6, 3) | guide a wolf howling at the moon

The frame is an absolute index (0, 24), counted from the end (-1 is the last frame), a step after the
previous key (+12: twelve frames after the previous key's last held frame) or a fraction of the
sequence (0.5 or 50%). Options after `|` (a `|` inside {...} stays in the prompt):
- `hold N`: the key is shown for N frames (default 1), copied, not sampled again;
- `seed N`: the key's own noise seed; frames between two keys start from slerp of their noises;
- `ease E`: the spacing of the frames from this key to the next (samplers/keyframes/easing.py);
- `guide PROMPT`: PAID guidance for the frames from this key to the next.
An empty prompt repeats the previous key's. Blank lines and lines starting with # or // are skipped.

Parsing needs no model: it returns KeySpecs; samplers/keyframes/plan.py resolves positions into frames.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .easing import Easing, EasingError, parse_easing, shown

OPTION_NAMES = {"hold": "hold", "seed": "seed", "ease": "ease", "easing": "ease", "guide": "guide",
                "guidance": "guide"}
_INDEX = re.compile(r"""^\s*(?P<quote>["']?)(?P<index>[^"':]*?)(?P=quote)\s*:(?P<rest>.*)$""")


class KeyframeError(ValueError):
    """A schedule problem that points at its line (or node): `code` names the kind, `source` the place."""

    def __init__(self, code: str, source: str, problem: str, fix: str, text: str = ""):
        self.code, self.source, self.problem, self.fix, self.text = code, source, problem, fix, text
        quoted = f" ('{shown(text)}')" if text else ""
        super().__init__(f"{source}{quoted}: {problem}")

    @property
    def line(self) -> int | None:
        """The line number when the source is a line of the schedule text."""
        match = re.fullmatch(r"line (\d+)", self.source)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Position:
    """Where a key sits: kind "frame" (absolute), "from end" (negative index), "after" (frames after the
    previous key's last held frame) or "fraction" (of the sequence, 0..1)."""

    kind: str
    value: float

    def describe(self) -> str:
        """The position as it is written."""
        if self.kind == "after":
            return f"+{int(self.value)}"
        if self.kind == "fraction":
            return f"{self.value:g}"
        return str(int(self.value))


@dataclass(frozen=True)
class KeySpec:
    """One key as written: where it sits, its prompt and options."""

    source: str  # "line 3"
    text: str  # the line, for messages
    position: Position
    prompt: str
    hold: int = 1
    seed: int | None = None
    easing: Easing | None = None
    guide: str | None = None


def parse_position(text: str) -> Position:
    """'12' -> frame 12, '-1' -> the last frame, '+8' -> 8 after the previous key, '0.5' or '50%' -> half-way."""
    spoken = text.replace(" ", "")
    if re.fullmatch(r"\d+", spoken):
        return Position("frame", int(spoken))
    if re.fullmatch(r"-\d+", spoken):
        if int(spoken) == 0:
            return Position("frame", 0)
        return Position("from end", int(spoken))
    if re.fullmatch(r"\+\d+", spoken):
        if int(spoken) == 0:
            raise ValueError("'+0' would put the key on the previous key's frame; a step is at least +1.")
        return Position("after", int(spoken))
    if re.fullmatch(r"(\d+\.?\d*|\.\d+)%", spoken):
        value = float(spoken[:-1]) / 100.0
        if value > 1.0:
            raise ValueError(f"{spoken} is past the end of the sequence (100% is the last frame).")
        return Position("fraction", value)
    if re.fullmatch(r"\d+\.\d*|\.\d+", spoken):
        value = float(spoken)
        if value > 1.0:
            raise ValueError(f"{spoken} is not a frame: frames are whole numbers, fractions of the sequence lie "
                             "between 0 and 1.")
        return Position("fraction", value)
    raise ValueError(f"'{shown(text)}' is not a frame: write a frame number (12), a step after the previous "
                     "key (+8), a fraction (0.5 or 50%) or a frame counted from the end (-1).")


def _split_options(text: str) -> list[str]:
    """Split at `|` outside {...} (a dynamic-prompt choice such as {red|blue} stays whole)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        if char == "|" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(rest: str) -> str:
    """The prompt part without a trailing comma and surrounding quotes (FizzNodes writes '"0": "a cat",')."""
    rest = rest.strip()
    if rest.endswith(","):
        rest = rest[:-1].rstrip()
    if rest[:1] in "\"'" and rest:
        quote = rest[0]
        closing = rest.rfind(quote)
        if closing > 0:
            after = rest[closing + 1:].strip()
            return rest[1:closing] + (" " + after if after else "")
    return rest


def _option(name_and_value: str, source: str, line: str, seen: set) -> tuple[str, object]:
    match = re.fullmatch(r"\s*([A-Za-z_-]+)\s*[:=]?\s*(.*?)\s*", name_and_value)
    if not match or not match.group(1):
        raise KeyframeError("unknown-option", source, f"'{shown(name_and_value)}' is not an option.",
                            "write options as '| hold 4', '| seed 7', '| ease in-out' or '| guide <prompt>'.", line)
    word, value = match.group(1).lower(), match.group(2)
    name = OPTION_NAMES.get(word)
    if name is None:
        raise KeyframeError("unknown-option", source, f"unknown option '{word}'.",
                            "the options are hold, seed, ease and guide (a '|' inside a prompt must sit in {...}).",
                            line)
    if name in seen:
        raise KeyframeError("duplicate-option", source, f"'{word}' is given twice.", "keep one of them.", line)
    seen.add(name)
    if name in ("hold", "seed"):
        if not re.fullmatch(r"\d+", value):
            raise KeyframeError("bad-option-value", source, f"{name} needs a whole number, got '{shown(value)}'.",
                                "e.g. '| hold 4' or '| seed 123'.", line)
        number = int(value)
        if name == "hold" and number < 1:
            raise KeyframeError("bad-option-value", source, "hold 0 would not show the key at all.",
                                "hold counts the frames that show the key: use 1 or more.", line)
        return name, number
    if name == "ease":
        try:
            return name, parse_easing(value)
        except EasingError as error:
            raise KeyframeError("bad-easing", source, str(error),
                                "use linear, ease in, ease out, ease in-out, beta(6, 3) or a list like 0.2, 0.5, 0.8.",
                                line) from None
    if not value:
        raise KeyframeError("bad-option-value", source, "guide needs a prompt.",
                            "write '| guide <the prompt of the path>' or remove the option.", line)
    return name, value


def parse_keyframes(text: str, pre_text: str = "", app_text: str = "") -> list[KeySpec]:
    """Every key of a schedule text, in order; `pre_text` / `app_text` are put before / after every prompt.

    Raises KeyframeError (with the line) for the first line that cannot be read.
    """
    keys: list[KeySpec] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")) or line in ("{", "}"):
            continue
        source = f"line {number}"
        match = _INDEX.match(line)
        if not match:
            raise KeyframeError("missing-separator", source, "expected 'frame: prompt'.",
                                "start the line with its frame and a colon, e.g. '12: a white owl'.", line)
        try:
            position = parse_position(match.group("index"))
        except ValueError as error:
            raise KeyframeError("bad-index", source, str(error), "e.g. '0:', '24:', '+8:', '0.5:' or '-1:'.",
                                line) from None
        parts = _split_options(_unquote(match.group("rest")))
        prompt, options, seen = parts[0].strip(), {}, set()
        for part in parts[1:]:
            name, value = _option(part, source, line, seen)
            options[name] = value
        if not prompt:
            if not keys:
                raise KeyframeError("empty-prompt", source, "the first key has no prompt.",
                                    "write a prompt after the colon (an empty prompt repeats the previous key's).",
                                    line)
            prompt = keys[-1].prompt
        else:
            prompt = " ".join(p for p in (pre_text.strip(), prompt, app_text.strip()) if p)
        keys.append(KeySpec(source, line, position, prompt, options.get("hold", 1), options.get("seed"),
                            options.get("ease"), options.get("guide")))
    if not keys:
        raise KeyframeError("no-keys", "the schedule", "it has no keys.",
                            "write one line per key, e.g. '0: a red fox' and '16: a white owl'.")
    return keys
