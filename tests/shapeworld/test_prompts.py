import random
import re
from collections import Counter

import pytest

from data_prep.shapeworld import chains
from data_prep.shapeworld.chains import (
    REGIONS,
    RELATION_PHRASES,
    grounding_chain,
    prompt_chain,
    reading_order,
    region,
    training_chain,
)
from data_prep.shapeworld.prompts import metadata, prompt_space_size, prompt_text, scene_graph
from data_prep.shapeworld.oracle import check_chain
from data_prep.shapeworld.relations import holds
from data_prep.shapeworld.sampler import TAGS, Description, Sample, sample, sample_description
from data_prep.shapeworld.scene import Scene, SceneObject
from data_prep.shapeworld.vocab import text_fragments
from janus_rig.chain import CHAIN_TOKENS, Box, parse_chain

EXAMPLES = [
    (Description("single_object", (("red", "circle"),)), "a circle"),
    (Description("two_object", (("red", "circle"), ("red", "square"))), "a circle and a square"),
    (Description("counting", (("red", "triangle"), ("blue", "triangle"), ("red", "triangle"))), "three triangles"),
    (Description("counting", (("red", "square"),) * 2), "two squares"),
    (Description("counting", (("red", "circle"),) * 4), "four circles"),
    (Description("colors", (("purple", "square"),)), "a purple square"),
    (Description("color_attr", (("red", "circle"), ("blue", "square"))), "a red circle and a blue square"),
    (Description("position", (("red", "circle"), ("blue", "square")), ((0, "left of", 1),)),
     "a red circle left of a blue square"),
    (Description("position", (("white", "triangle"), ("green", "triangle")), ((0, "below", 1),)),
     "a white triangle below a green triangle"),
    (Description("complex", (("red", "circle"), ("blue", "square"), ("green", "triangle")),
                 ((0, "right of", 1), (2, "above", 1))),
     "a red circle right of a blue square, and a green triangle above the blue square"),
]


@pytest.mark.parametrize("description, text", EXAMPLES)
def test_template_text(description, text):
    assert prompt_text(description) == text
    assert metadata(description)["prompt"] == text


def test_metadata_exact_forms():
    single, two, counting, _, _, colors, color_attr, position, _, complex_ = (d for d, _ in EXAMPLES)
    assert metadata(single) == {
        "tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a circle"
    }
    assert metadata(two)["include"] == [{"class": "circle", "count": 1}, {"class": "square", "count": 1}]
    assert metadata(counting) == {
        "tag": "counting",
        "include": [{"class": "triangle", "count": 3}],
        "exclude": [{"class": "triangle", "count": 4}],
        "prompt": "three triangles",
    }
    assert metadata(colors)["include"] == [{"class": "square", "count": 1, "color": "purple"}]
    assert metadata(color_attr)["include"] == [
        {"class": "circle", "count": 1, "color": "red"},
        {"class": "square", "count": 1, "color": "blue"},
    ]
    assert metadata(position) == {
        "tag": "position",
        "include": [
            {"class": "square", "count": 1, "color": "blue"},
            {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]},
        ],
        "prompt": "a red circle left of a blue square",
    }
    assert metadata(complex_)["include"] == [
        {"class": "square", "count": 1, "color": "blue"},
        {"class": "circle", "count": 1, "color": "red", "position": ["right of", 0]},
        {"class": "triangle", "count": 1, "color": "green", "position": ["above", 0]},
    ]


@pytest.mark.parametrize("tag", TAGS)
def test_metadata_schema_and_position_indices(tag):
    rng = random.Random(tag)
    for _ in range(200):
        d = sample_description(tag, rng)
        m = metadata(d)
        keys = {"tag", "include", "prompt"} | ({"exclude"} if tag == "counting" else set())
        assert set(m) == keys
        assert m["tag"] == tag and m["prompt"] == prompt_text(d)
        for clause in m["include"]:
            assert set(clause) <= {"class", "count", "color", "position"}
            assert ("color" in clause) == (tag in ("colors", "color_attr", "position", "complex"))
            if "position" in clause:
                relation, index = clause["position"]
                anchor = m["include"][index]
                assert "position" not in anchor
                subject = next(s for s, r, a in d.relations if r == relation and d.objects[s][1] == clause["class"]
                               and d.objects[s][0] == clause["color"])
                assert (anchor["color"], anchor["class"]) == d.objects[d.relations[0][2]]
                assert subject != d.relations[0][2]


def test_scene_graph_schema():
    d = EXAMPLES[-1][0]
    assert scene_graph(d, first_global_id=10) == {
        "items": [
            {"item_id": 0, "label": "circle", "attributes": ["red"], "global_item_id": 10},
            {"item_id": 1, "label": "square", "attributes": ["blue"], "global_item_id": 11},
            {"item_id": 2, "label": "triangle", "attributes": ["green"], "global_item_id": 12},
        ],
        "relations": [
            {"triple_id": 0, "item1": 0, "relation": "right of", "item2": 1},
            {"triple_id": 1, "item1": 2, "relation": "above", "item2": 1},
        ],
    }
    assert scene_graph(EXAMPLES[1][0])["relations"] == []


def test_prompt_space_sizes():
    sizes = {tag: prompt_space_size(tag) for tag in TAGS}
    assert sizes == {"single_object": 3, "two_object": 6, "counting": 9, "colors": 18,
                     "position": 18 * 17 * 4, "color_attr": 3 * 2 * 6 * 5, "complex": 18 * 17 * 16 * 16}
    rng = random.Random(0)
    for tag in ("single_object", "two_object", "counting", "colors"):
        assert len({prompt_text(sample_description(tag, rng)) for _ in range(2000)}) == sizes[tag]


# ---- chains ------------------------------------------------------------------------------------------------------

_PHRASE_TO_RELATION = {p: r for r, phrases in RELATION_PHRASES.items() for p in phrases}


def _check_chain(s: Sample, text: str) -> list[int]:
    """Assert the chain is well formed and truthful; return the mention order as scene indices."""
    parsed = parse_chain(text, strict=True)
    size, objs = s.scene.size, s.scene.objects
    by_box = {Box.from_pixels(*o.box, size, size): i for i, o in enumerate(objs)}
    order = [by_box[o.box] for o in parsed.objects]
    assert sorted(order) == list(range(len(objs)))  # every object exactly once
    for o, i in zip(parsed.objects, order):
        assert o.name == objs[i].name
    for k, i in enumerate(order):
        after = parsed.texts[k + 1]
        for phrase, relation in _PHRASE_TO_RELATION.items():
            for ref_phrase, ref in ((chains.REFERENCE_PREVIOUS, k - 1), (chains.REFERENCE_FIRST, 0)):
                if after.startswith(f" {phrase} {ref_phrase}"):
                    assert ref >= 0 and holds(relation, objs[i].box, objs[order[ref]].box), (text, k)
                    assert holds(relation, parsed.objects[k].box.as_tuple(), parsed.objects[ref].box.as_tuple())
        for phrase in REGIONS.values():
            if after.startswith(f" {phrase}"):
                assert region(objs[i], size) == phrase, text
    return order


@pytest.mark.parametrize("tag", TAGS)
def test_training_chains_are_valid_and_truthful(tag):
    rng = random.Random(tag)
    for _ in range(300):
        s = sample(tag, rng)
        _check_chain(s, training_chain(s, rng))


def _skeleton(text: str) -> str:
    return re.sub(r"<\|obj_start\|>.*?<\|box_end\|>", "#", text)


def test_chain_order_and_phrasing_vary():
    s = sample("complex", random.Random(3))
    rng = random.Random(0)
    texts = [training_chain(s, rng) for _ in range(200)]
    orders = Counter(tuple(_check_chain(s, t)) for t in texts)
    assert len(orders) >= 4
    assert len({_skeleton(t) for t in texts}) >= 30
    stated = [t for t in texts if any(f" {p} " in _skeleton(t) for p in _PHRASE_TO_RELATION)]
    assert 0.2 * len(texts) < len(stated) < len(texts)  # sometimes the relation is said, sometimes not


def test_grounding_chain_is_canonical():
    scene = Scene(64, (
        SceneObject("square", "blue", (40, 40, 55, 55)),
        SceneObject("circle", "red", (2, 3, 20, 21)),
        SceneObject("triangle", "white", (30, 3, 44, 17)),
    ))
    assert reading_order(scene) == [1, 2, 0]
    text = grounding_chain(scene)
    assert text == (
        "The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|>, "
        "a <|obj_start|>white triangle<|obj_end|> <|box_start|>(469,47),(688,266)<|box_end|> and "
        "a <|obj_start|>blue square<|obj_end|> <|box_start|>(625,625),(859,859)<|box_end|>."
    )
    rng = random.Random(1)
    for tag in TAGS:
        s = sample(tag, rng)
        assert _check_chain(s, grounding_chain(s.scene)) == reading_order(s.scene)
        assert grounding_chain(s.scene) == grounding_chain(s.scene)


@pytest.mark.parametrize("tag", TAGS)
def test_prompt_chains_are_right_plans_in_the_prompts_words(tag):
    rng = random.Random(tag)
    for _ in range(300):
        s = sample(tag, rng)
        text = prompt_chain(s)
        order = _check_chain(s, text)
        assert check_chain(parse_chain(text).objects, metadata(s.description))  # the oracle's "right plan"
        assert order == (reading_order(s.scene) if tag == "counting" else list(range(len(s.scene.objects))))
        if tag in ("colors", "color_attr", "position", "complex"):  # the prompt names colours: its words, boxes added
            assert re.sub(r"<\|box_start\|>.*?<\|box_end\|>", "", text).replace("<|obj_start|>", "").replace(
                "<|obj_end|>", "").replace(" ,", ",").replace("  ", " ").rstrip(" .") == prompt_text(s.description)
        assert prompt_chain(s) == text  # one fixed chain per scene


def test_prompt_chain_examples():
    d = Description("complex", (("red", "circle"), ("blue", "square"), ("white", "triangle")),
                    ((0, "left of", 1), (2, "above", 1)))
    scene = Scene(64, (
        SceneObject("circle", "red", (2, 30, 20, 48)),
        SceneObject("square", "blue", (30, 30, 48, 48)),
        SceneObject("triangle", "white", (30, 2, 48, 20)),
    ))
    assert prompt_chain(Sample(d, scene)) == (
        "a <|obj_start|>red circle<|obj_end|> <|box_start|>(31,469),(312,750)<|box_end|> left of "
        "a <|obj_start|>blue square<|obj_end|> <|box_start|>(469,469),(750,750)<|box_end|>, and "
        "a <|obj_start|>white triangle<|obj_end|> <|box_start|>(469,31),(750,312)<|box_end|> above the blue square."
    )
    two = Sample(Description("two_object", (("red", "circle"), ("blue", "square"))), Scene(64, scene.objects[:2]))
    assert prompt_chain(two) == (
        "a <|obj_start|>red circle<|obj_end|> <|box_start|>(31,469),(312,750)<|box_end|> and "
        "a <|obj_start|>blue square<|obj_end|> <|box_start|>(469,469),(750,750)<|box_end|>."
    )


# ---- vocabulary --------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+")


def _words(text: str) -> set[str]:
    for token in CHAIN_TOKENS:
        text = text.replace(token, " ")
    return set(_WORD.findall(text))


def test_vocabulary_covers_every_prompt_and_chain_word():
    vocab = set().union(*(_words(f) for f in text_fragments()))
    rng = random.Random(0)
    seen = set()
    for i in range(2000):
        s = sample(TAGS[i % len(TAGS)], rng)
        for text in (prompt_text(s.description), training_chain(s, rng), grounding_chain(s.scene), prompt_chain(s)):
            seen |= _words(text)
    assert seen <= vocab, sorted(seen - vocab)
    assert not any(c in f for f in text_fragments() for c in "{}")  # no unfilled placeholders
    assert text_fragments() == text_fragments()  # deterministic order
