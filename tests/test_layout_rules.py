"""Automatic layout by rule: prompts to boxes (table-driven), and what is not understood gives no region."""
import pytest
import torch

from aid_pack.samplers.regions.prompt_layout import LayoutTextError, format_layout, parse_layout_text, parse_prompt

LEFT_HALF = (0.03, 0.12, 0.44, 0.76)
RIGHT_HALF = (0.53, 0.12, 0.44, 0.76)
TOP_HALF = (0.12, 0.03, 0.76, 0.44)
BOTTOM_HALF = (0.12, 0.53, 0.76, 0.44)
THIRDS = [(0.03, 0.12, 0.2733, 0.76), (0.3633, 0.12, 0.2733, 0.76), (0.6967, 0.12, 0.2733, 0.76)]

EXACT = [
    ("a cat to the left of a dog", {"cat": LEFT_HALF, "dog": RIGHT_HALF}),
    ("a photo of a dog to the right of a cat", {"cat": LEFT_HALF, "dog": RIGHT_HALF}),
    ("a red car on the left side of a blue bus", {"red car": LEFT_HALF, "blue bus": RIGHT_HALF}),
    ("a bird above a car", {"bird": TOP_HALF, "car": BOTTOM_HALF}),
    ("a lamp over a table", {"lamp": TOP_HALF, "table": BOTTOM_HALF}),
    ("a ball below a table", {"ball": BOTTOM_HALF, "table": TOP_HALF}),
    ("a ball under a chair", {"ball": BOTTOM_HALF, "chair": TOP_HALF}),
    ("a cat sitting on a table", {"cat": TOP_HALF, "table": BOTTOM_HALF}),
    ("a vase on top of a piano", {"vase": TOP_HALF, "piano": BOTTOM_HALF}),
    ("a cat next to a dog", {"cat": LEFT_HALF, "dog": RIGHT_HALF}),
    ("a cat beside a dog", {"cat": LEFT_HALF, "dog": RIGHT_HALF}),
    ("a cat between a dog and a bird", {"dog": THIRDS[0], "cat": THIRDS[1], "bird": THIRDS[2]}),
    ("a cat and a dog", {"cat": LEFT_HALF, "dog": RIGHT_HALF}),
    ("a red cup on the left and a blue book on the right", {"red cup": LEFT_HALF, "blue book": RIGHT_HALF}),
    ("a photo of a red cup on the left of the image", {"red cup": LEFT_HALF}),
    ("a cup of coffee next to a laptop, highly detailed", {"cup of coffee": LEFT_HALF, "laptop": RIGHT_HALF}),
    ("a cat at the top of the picture", {"cat": TOP_HALF}),
]


@pytest.mark.parametrize("prompt, boxes", EXACT, ids=[prompt for prompt, _ in EXACT])
def test_prompt_gives_these_boxes(prompt, boxes):
    assert dict(parse_prompt(prompt).placed()) == boxes


def _centre(box):
    x, y, w, h = box
    return x + w / 2, y + h / 2


RELATIVE = [
    # prompt, (a, relation, b): the centre of a's box lies left of / above b's
    ("a cat to the left of a dog and a bird", [("cat", "left", "dog"), ("dog", "left", "bird")]),
    ("a cat left of a dog, a ball below the dog", [("cat", "left", "dog"), ("dog", "above", "ball")]),
    ("a cat and a dog above a sofa", [("cat", "above", "sofa"), ("dog", "above", "sofa"), ("cat", "left", "dog")]),
    ("a tree to the right of a house, a sun above the house", [("house", "left", "tree"), ("sun", "above", "house")]),
    ("a mug beneath a shelf", [("shelf", "above", "mug")]),
]


@pytest.mark.parametrize("prompt, facts", RELATIVE, ids=[prompt for prompt, _ in RELATIVE])
def test_relations_hold_between_box_centres(prompt, facts):
    boxes = dict(parse_prompt(prompt).placed())
    for a, relation, b in facts:
        (ax, ay), (bx, by) = _centre(boxes[a]), _centre(boxes[b])
        assert (ax < bx) if relation == "left" else (ay < by), (a, relation, b, boxes)


def test_a_region_below_two_objects_spans_both_their_columns():
    boxes = dict(parse_prompt("a cat and a dog above a sofa").placed())
    assert boxes["sofa"][0] <= boxes["cat"][0] and boxes["sofa"][0] + boxes["sofa"][2] >= sum(boxes["dog"][::2])


NO_REGION = [
    "a cat amidst a dog",           # unknown word between the objects
    "a cat behind a dog",           # depth: no rule
    "a cat in front of a dog",
    "a man in a suit to the left of a car",  # a phrase with an inner article
    "a photo of a cat",             # one object, no position
    "a cat to the left of a dog, the dog to the left of the cat",  # contradiction
    "a cat between a dog",          # between needs two
    "",
]


@pytest.mark.parametrize("prompt", NO_REGION)
def test_what_is_not_understood_gives_no_region(prompt):
    parsed = parse_prompt(prompt)
    assert parsed.placed() == []
    if prompt:
        assert parsed.notes, "the node says why nothing was placed"


def test_only_the_understood_clause_places_objects():
    parsed = parse_prompt("a cat to the left of a dog, a bird behind a tree")
    assert dict(parsed.placed()) == {"cat": LEFT_HALF, "dog": RIGHT_HALF}
    assert any("behind" in note for note in parsed.notes)


def test_layout_text_round_trips_and_names_the_bad_line():
    placed = parse_prompt("a cat between a dog and a bird").placed()
    again = parse_layout_text(format_layout(placed))
    assert [name for name, _ in again] == ["cat", "dog", "bird"]
    assert all(abs(a - b) < 1e-3 for (_, box_a), (_, box_b) in zip(placed, again) for a, b in zip(box_a, box_b))
    assert parse_layout_text("# comment\nred cup: 0.1 0.2 0.3 0.4") == [("red cup", (0.1, 0.2, 0.3, 0.4))]
    for text, line in (("cat: 0.1, 0.2, 0.3", 1), ("cat: 0, 0, 0.5, 0.5\ndog 0.5 0 0.5 0.5", 2),
                       ("cat: 1.2, 0, 0.5, 0.5", 1), ("cat: a, b, c, d", 1)):
        with pytest.raises(LayoutTextError) as error:
            parse_layout_text(text)
        assert error.value.line == line


def test_auto_layout_node_encodes_local_prompts_and_its_text_feeds_the_typed_layout(sd15_tiny):
    from aid_pack.nodes.layout import SpatialTemporalAutoLayout, SpatialTemporalTypedLayout

    clip = sd15_tiny[1]
    out = SpatialTemporalAutoLayout().build(clip, "a photo of a cat to the left of a dog")
    regions, positive, text, prompt = out["result"]
    assert regions.names == ("cat", "dog") and all(r.conditioning is not None for r in regions.regions)
    assert positive[0][0].shape[1] == 77 and prompt == "a photo of a cat to the left of a dog"
    assert out["ui"]["images"] and text in out["ui"]["text"][0]
    typed = SpatialTemporalTypedLayout().build(clip, text.replace("cat: 0.03", "cat: 0.1"))["result"][0]
    assert typed.names == ("cat", "dog") and typed.regions[0].box[0] == 0.1
    nothing = SpatialTemporalAutoLayout().build(clip, "a cat behind a dog")
    assert len(nothing["result"][0]) == 0 and "note:" in nothing["ui"]["text"][0]


@pytest.mark.parametrize("prompt, expected", [
    ("a photo of a cat to the left of a dog", {"cat": "a photo of a cat", "dog": "a photo of a dog"}),
    ("an apple above the orange", {"apple": "a photo of an apple", "orange": "a photo of an orange"}),
    ("two cats next to an owl", {"two cats": "a photo of two cats", "owl": "a photo of an owl"}),
])
def test_local_prompts_keep_the_article_the_prompt_gave(prompt, expected):
    assert parse_prompt(prompt).local_prompts() == expected


def test_auto_layout_encodes_local_prompts_with_their_article_and_draws_discs_on_request(sd15_tiny, encode):
    from aid_pack.nodes.layout import SpatialTemporalAutoLayout, SpatialTemporalTypedLayout

    clip = sd15_tiny[1]
    regions = SpatialTemporalAutoLayout().build(clip, "a cat to the left of an owl", shape="disc")["result"][0]
    assert [r.local_text for r in regions.regions] == ["a photo of a cat", "a photo of an owl"]
    assert torch.equal(regions.regions[1].conditioning[0][0], encode(clip, "a photo of an owl")[0][0])
    assert {r.shape for r in regions.regions} == {"disc"}
    typed = SpatialTemporalTypedLayout().build(clip, "cat: 0.1, 0.1, 0.3, 0.3", shape="disc")["result"][0]
    assert typed.regions[0].shape == "disc" and typed.regions[0].centre == pytest.approx((0.25, 0.25))


@pytest.mark.parametrize("node", ["auto", "typed"])
def test_megabyte_layout_texts_are_refused_before_encoding(node):
    """The server fuzz test's 1 MB Auto Layout prompt kept the host encoding ~250,000 tokens (up to 14 GB)."""
    from aid_pack.errors import AIDInputError
    from aid_pack.nodes.layout import SpatialTemporalAutoLayout, SpatialTemporalTypedLayout

    class UnusedClip:
        def tokenize(self, *args, **kwargs):
            raise AssertionError("the text should have been refused before encoding")

        encode_from_tokens = encode_from_tokens_scheduled = tokenize

    text = "a red apple to the left of a blue vase, " * 30_000
    if node == "auto":
        with pytest.raises(AIDInputError, match=r"^Spatial-Temporal Auto Layout: input 'prompt': it is 1,2\d\d,\d\d\d "
                                                r"characters long"):
            SpatialTemporalAutoLayout().build(UnusedClip(), text)
    else:
        with pytest.raises(AIDInputError, match=r"^Spatial-Temporal Typed Layout: input 'layout': it is "):
            SpatialTemporalTypedLayout().build(UnusedClip(), "cat: 0.1, 0.1, 0.3, 0.3\n" * 60_000)
