"""Layout by rule: objects and boxes from a prompt's noun phrases and spatial words (no trained predictor).

The paper predicts object centres with a trained layout transformer; its weights are not obtainable
(one checkpoint on a file host, fairseq + CUDA), so this module places boxes by fixed rules instead:
- a prompt is read clause by clause (split at , ; .), after a leading "a photo of" and the like;
- spatial words split a clause into noun phrases: left of / to the left of, right of, above / over /
  on top of, below / under / beneath, on (above and touching), next to / beside (the first-named
  object on the left), between X and Y; "on the left", "at the top", "in the top right corner" ...
  place an object in a part of the image when a prompt has no relation between objects;
- objects joined by "and" are placed side by side in the order named;
- relations become columns and rows (a longest path through "left of" and "above" edges); an object
  without a horizontal relation spans the columns of the objects it is above or below, and likewise
  for rows; boxes are the cells with a small margin.
Each placed object's local prompt keeps the article the prompt gave it: "a cat" -> "a photo of a cat"
(the paper's code writes "A photo of " + the object as the prompt names it, "the" dropped).
Whatever is not understood gives no region rather than a wrong one: a clause with a word it cannot
place (behind, in front of, amid, in ...), a phrase with an inner article ("a man in a suit"),
contradicting relations, or a single object without a position yields no box, and `notes` says why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MARGIN = 0.03
BAND = (0.12, 0.88)  # the extent of a dimension no relation constrains

SCENE_PREFIXES = ("a photo of", "a picture of", "an image of", "a painting of", "a drawing of", "a render of",
                  "a rendering of", "an illustration of", "a photograph of", "there is", "there are", "a scene of",
                  "a scene with", "photo of", "picture of", "image of")
DETERMINERS = {"a", "an", "the", "one", "some", "another", "this", "that", "these", "those", "my", "his", "her",
               "their", "its", "our", "your"}
ARTICLES = {"a", "an", "the"}
# Words that place things in ways the rules do not model: a clause holding one of them gives no region.
UNPLACEABLE = {"in", "at", "with", "from", "behind", "front", "inside", "near", "nearby", "amidst", "amid", "among",
               "around", "across", "through", "into", "onto", "upon", "against", "along", "within", "without",
               "toward", "towards", "beyond", "past", "via", "outside", "by", "off", "opposite", "facing", "holding",
               "wearing", "riding"}
LINKING = {"is", "are", "was", "were", "be", "being", "sits", "stands", "lies", "sitting", "standing", "lying",
           "placed", "located", "positioned", "which", "that", "who", "appears", "floating", "hanging", "flying",
           "parked", "resting", "perched", "seated", "shown", "stacked", "set", "kept", "put", "right", "directly",
           "just", "slightly"}
FRAME_WORDS = {"image", "picture", "photo", "frame", "scene", "canvas", "painting"}
POSITION_WORDS = {"left", "right", "top", "bottom", "middle", "center", "centre"}


def _binary_phrases() -> list[tuple[tuple[str, ...], str]]:
    phrases = []
    for side in ("left", "right"):
        for start in (("to", "the"), ("on", "the"), ("at", "the"), ()):
            for end in (("side", "of"), ("of",)):
                if start or end == ("of",):
                    phrases.append((start + (side,) + end, side))
    phrases += [(("on", "top", "of"), "on"), (("above",), "above"), (("over",), "above"), (("atop",), "on"),
                (("below",), "below"), (("under",), "below"), (("underneath",), "below"), (("beneath",), "below"),
                (("next", "to"), "beside"), (("beside",), "beside"), (("alongside",), "beside"),
                (("by", "the", "side", "of"), "beside"), (("between",), "between"), (("on",), "on")]
    return phrases


def _unary_phrases() -> list[tuple[tuple[str, ...], str]]:
    places = [("left",), ("right",), ("top",), ("bottom",), ("middle",), ("center",), ("centre",),
              ("top", "left"), ("top", "right"), ("bottom", "left"), ("bottom", "right")]
    phrases = []
    for preposition in ("on", "to", "at", "in"):
        for place in places:
            for end in ((), ("side",), ("corner",), ("half",)):
                phrases.append(((preposition, "the") + place + end, " ".join(place)))
    return phrases


PHRASES = sorted([(words, ("rel", kind)) for words, kind in _binary_phrases()]
                 + [(words, ("pos", place)) for words, place in _unary_phrases()], key=lambda item: -len(item[0]))


@dataclass
class ParsedLayout:
    """Objects (in first-mention order), their boxes (x, y, w, h fractions; only placed objects), and notes."""

    objects: list[str] = field(default_factory=list)
    boxes: dict = field(default_factory=dict)
    relations: list = field(default_factory=list)  # (kind, a, b[, c])
    notes: list[str] = field(default_factory=list)
    articles: dict = field(default_factory=dict)  # name -> the article of its first mention ("a", "an", "" ...)

    def placed(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """(name, box) of every placed object, in first-mention order."""
        return [(name, self.boxes[name]) for name in self.objects if name in self.boxes]

    def local_prompts(self) -> dict:
        """name -> its local prompt 'a photo of <article> <name>' (the article as first written; 'the' is
        written 'a' or 'an', as the paper's code drops it and a photo shows one)."""
        return {name: f"a photo of {_article(self.articles.get(name, ''), name)}{name}" for name in self.objects}


def _tokens(clause: str) -> list:
    """Words of a clause as ('word', w), ('rel', kind), ('pos', place) and ('and',) items."""
    words = re.findall(r"[a-z]+(?:[-'][a-z]+)*", clause)
    items, index = [], 0
    while index < len(words):
        for phrase, item in PHRASES:
            if tuple(words[index:index + len(phrase)]) == phrase:
                index += len(phrase)
                # "on the left of the image", "at the top of the picture": a place, not a relation to an object
                frame = _frame_words(words[index:], item)
                if frame:
                    item = ("pos", item[1])
                    index += frame
                items.append(item)
                break
        else:
            items.append(("and",) if words[index] == "and" else ("word", words[index]))
            index += 1
    return items


def _frame_words(rest: list[str], item) -> int:
    """How many words after a left/right relation or a place say 'of the image' (0 if they do not)."""
    if item[0] == "rel" and item[1] in ("left", "right") and rest[:1] == ["the"] and rest[1:2] and \
            rest[1] in FRAME_WORDS:
        return 2
    if item[0] == "pos" and rest[:2] == ["of", "the"] and rest[2:3] and rest[2] in FRAME_WORDS:
        return 3
    return 0


def _article(article: str, name: str) -> str:
    """The article to write before `name` in a local prompt, with its space ('' when the prompt had none)."""
    if article == "the":
        article = "an" if name[:1] in "aeiou" else "a"
    return f"{article} " if article else ""


def _leading_article(words) -> str:
    """The determiner words that open a noun phrase ('a', 'an', 'the', 'some' ...), joined."""
    leading = []
    for word in words:
        if word not in DETERMINERS:
            break
        leading.append(word)
    return " ".join(leading)


def _noun_phrase(words: list[str]) -> str | None:
    """The object a run of words names ('red car'), or None when it is not one plain noun phrase."""
    words = list(words)
    while words and words[0] in DETERMINERS:
        words.pop(0)
    while words and (words[-1] in LINKING or (len(words) > 1 and words[-1].endswith("ing"))):
        words.pop()
    if not words or len(words) > 5:
        return None
    if any(word in ARTICLES or word in UNPLACEABLE or word in POSITION_WORDS for word in words):
        return None
    return " ".join(words)


def _groups(items: list, articles: dict) -> list[list[tuple[str, str | None]]] | None:
    """Split a segment (items between relations) at 'and' into (noun phrase, place) pairs; None if unreadable.
    The article of each phrase goes into `articles` (first mention wins)."""
    groups, words, place = [], [], None
    for item in items + [("and",)]:
        if item[0] == "and":
            if words:
                name = _noun_phrase(words)
                if name is None:
                    return None
                articles.setdefault(name, _leading_article(words))
                groups.append((name, place))
            elif place is not None:
                return None
            words, place = [], None
        elif item[0] == "pos":
            if not words or place is not None:
                return None
            place = item[1]
        else:
            words.append(item[1])
    return [groups] if groups else None


def _strip_prefix(clause: str) -> str:
    clause = clause.strip()
    for prefix in sorted(SCENE_PREFIXES, key=len, reverse=True):
        if clause.startswith(prefix + " "):
            return clause[len(prefix) + 1:]
    return clause


def parse_prompt(prompt: str) -> ParsedLayout:
    """Read objects, relations and places from a prompt and place boxes (see the module docstring)."""
    result = ParsedLayout()
    places, joined = {}, []
    for clause in filter(str.strip, re.split(r"[,;.\n]", prompt.lower())):
        items = _tokens(_strip_prefix(clause))
        segments, kinds = [[]], []
        for item in items:
            if item[0] == "rel":
                kinds.append(item[1])
                segments.append([])
            else:
                segments[-1].append(item)
        articles = {}
        groups = [_groups(segment, articles) for segment in segments]
        if any(group is None for group in groups):
            result.notes.append(f"'{clause.strip()}': a phrase is not a plain list of objects or holds a word "
                                f"without a rule (in, behind, with, ...); no region from this clause.")
            continue
        groups = [group[0] for group in groups]
        relations = _relations(kinds, groups)
        if relations is None:
            result.notes.append(f"'{clause.strip()}': 'between' needs two objects after it; no region from it.")
            continue
        for name, article in articles.items():
            result.articles.setdefault(name, article)
        for group in groups:
            for name, place in group:
                if name not in result.objects:
                    result.objects.append(name)
                if place is not None:
                    places[name] = place
            joined += [("beside", a, b) for (a, _), (b, _) in zip(group, group[1:])]
        result.relations += relations
    related = result.relations + joined
    if result.relations and places:
        result.notes.append("places like 'on the left' are not combined with relations between objects; the "
                            "relations decide.")
    if result.relations or (joined and not places):
        result.boxes = _grid_boxes(result.objects, related, result.notes)
    elif places:
        result.boxes = {name: _place_box(place) for name, place in places.items()}
    unplaced = [name for name in result.objects if name not in result.boxes]
    if unplaced and result.boxes:
        result.notes.append(f"no position for {', '.join(unplaced)}: no region.")
    elif unplaced and not result.notes:
        result.notes.append(f"no spatial word places {', '.join(unplaced)}: no region.")
    return result


def _relations(kinds, groups):
    """(kind, a, b[, c]) for every pair the relations between consecutive groups name; None if malformed."""
    relations = []
    for index, kind in enumerate(kinds):
        left, right = groups[index], groups[index + 1]
        if kind == "between":
            if len(right) != 2:
                return None
            relations += [("between", a, right[0][0], right[1][0]) for a, _ in left]
            continue
        relations += [(kind, a, b) for a, _ in left for b, _ in right]
    return relations


def _edges(relations):
    """Horizontal edges (a left of b) and vertical edges (a above b)."""
    horizontal, vertical = [], []
    for relation in relations:
        kind, a, b = relation[0], relation[1], relation[2]
        if kind in ("left", "beside"):
            horizontal.append((a, b))
        elif kind == "right":
            horizontal.append((b, a))
        elif kind in ("above", "on"):
            vertical.append((a, b))
        elif kind == "below":
            vertical.append((b, a))
        elif kind == "between":
            horizontal += [(b, a), (a, relation[3])]
    return horizontal, vertical


def _levels(names, edges):
    """Longest-path level of every name in the edges' DAG; None if the edges contradict themselves (a cycle)."""
    level = {name: 0 for edge in edges for name in edge}
    for _ in range(len(names) + 1):
        changed = False
        for a, b in edges:
            if a == b:
                return None
            if level[b] < level[a] + 1:
                level[b], changed = level[a] + 1, True
        if not changed:
            return level
    return None


def _grid_boxes(names, relations, notes) -> dict:
    horizontal, vertical = _edges(relations)
    columns, rows = _levels(names, horizontal), _levels(names, vertical)
    if columns is None or rows is None:
        notes.append("the relations contradict each other (e.g. A left of B and B left of A); no regions.")
        return {}
    placed = set(columns) | set(rows)
    spans_x = _spans(placed, columns, vertical)
    spans_y = _spans(placed, rows, horizontal)
    count_x = max(columns.values(), default=-1) + 1
    count_y = max(rows.values(), default=-1) + 1
    boxes = {}
    for name in names:
        if name not in placed:
            continue
        x0, x1 = _extent(spans_x.get(name), count_x)
        y0, y1 = _extent(spans_y.get(name), count_y)
        boxes[name] = (round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4))
    return boxes


def _spans(placed, levels, cross_edges):
    """Cell span (first, last) of each placed object along one axis; objects without a level borrow their
    partners' along the other axis (a sofa below two cats spans both cats' columns)."""
    spans = {name: (level, level) for name, level in levels.items()}
    for name in placed:
        if name in spans:
            continue
        partners = [spans[other] for a, b in cross_edges for other in ((b,) if a == name else (a,) if b == name else ())
                    if other in spans]
        if partners:
            spans[name] = (min(p[0] for p in partners), max(p[1] for p in partners))
    return spans


def _extent(span, count):
    """(start, end) fractions of a cell span of `count` cells, with margins; the whole band without a span."""
    if span is None or count == 0:
        return BAND
    return span[0] / count + MARGIN, (span[1] + 1) / count - MARGIN


def _place_box(place: str) -> tuple[float, float, float, float]:
    """The box of an object 'on the left', 'at the top', 'in the top right corner', ..."""
    x0, x1 = BAND
    y0, y1 = BAND
    for word in place.split():
        if word == "left":
            x0, x1 = MARGIN, 0.5 - MARGIN
        elif word == "right":
            x0, x1 = 0.5 + MARGIN, 1.0 - MARGIN
        elif word == "top":
            y0, y1 = MARGIN, 0.5 - MARGIN
        elif word == "bottom":
            y0, y1 = 0.5 + MARGIN, 1.0 - MARGIN
        else:  # middle, center, centre
            x0, x1, y0, y1 = 0.25, 0.75, 0.25, 0.75
    return round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)


# ----------------------------------------------------------------------------------------------
# the editable text form of a layout: one "name: x, y, width, height" line per object
# ----------------------------------------------------------------------------------------------


class LayoutTextError(ValueError):
    """A line of a typed layout that cannot be read; `line` is its number (from 1)."""

    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line = line


def format_layout(placed) -> str:
    """Lines 'name: x, y, width, height' (fractions) for (name, box) pairs; the text parse_layout_text reads."""
    return "\n".join(f"{name}: {x:.3g}, {y:.3g}, {w:.3g}, {h:.3g}" for name, (x, y, w, h) in placed)


def parse_layout_text(text: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(name, box) per line 'name: x, y, width, height' (fractions of the image); '#' starts a comment line."""
    placed = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise LayoutTextError(number, f"'{line}' has no ':' between the object and its box.")
        name, numbers = line.rsplit(":", 1)
        name = " ".join(name.split())
        try:
            values = [float(value) for value in re.split(r"[,\s]+", numbers.strip()) if value]
        except ValueError:
            raise LayoutTextError(number, f"'{numbers.strip()}' is not four numbers.") from None
        if not name or len(values) != 4:
            raise LayoutTextError(number, f"'{line}' is not 'name: x, y, width, height'.")
        x, y, w, h = values
        if w <= 0 or h <= 0 or x >= 1 or y >= 1 or x + w <= 0 or y + h <= 0:
            raise LayoutTextError(number, f"the box of '{name}' is empty or outside the image (fractions 0..1).")
        placed.append((name, (x, y, w, h)))
    return placed
