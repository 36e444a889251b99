"""Stated facts of a caption, the oracle's verdicts on them, and ShapeWorld captions read back into metadata."""

from __future__ import annotations

import random

import pytest

from data_prep.shapeworld.prompts import metadata, prompt_text
from data_prep.shapeworld.render import render
from data_prep.shapeworld.sampler import TAGS, sample
from data_prep.shapeworld.scene import Scene, SceneObject
from data_prep.shapeworld.facts import OBJECT, RELATION, oracle_verdicts, shapeworld_metadata, stated_facts

POSITION = {"tag": "position", "prompt": "a red circle left of a blue square",
            "include": [{"class": "square", "count": 1, "color": "blue"},
                        {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}]}


def test_facts_of_each_kind():
    facts = stated_facts(POSITION)
    assert [(f.kind, f.statement) for f in facts] == [
        (OBJECT, "blue square"), (OBJECT, "red circle"), (RELATION, "red circle left of blue square")]
    counting = shapeworld_metadata("three triangles")
    assert [f.statement for f in stated_facts(counting)] == ["three triangles"]
    assert stated_facts(counting)[0].check["exclude"] == [{"class": "triangle", "count": 4}]
    assert [f.statement for f in stated_facts(shapeworld_metadata("a circle and a square"))] == ["circle", "square"]
    with pytest.raises(ValueError, match="include"):
        stated_facts({"include": []})


def test_oracle_verdicts_on_hand_made_scenes():
    red, blue = SceneObject("circle", "red", (4, 20, 20, 36)), SceneObject("square", "blue", (40, 20, 56, 36))
    right = render(Scene(64, (red, blue)))
    assert [v.holds for v in oracle_verdicts(POSITION, right)] == [True, True, True]
    swapped = render(Scene(64, (SceneObject("circle", "red", (40, 20, 56, 36)),
                                SceneObject("square", "blue", (4, 20, 20, 36)))))
    assert [v.holds for v in oracle_verdicts(POSITION, swapped)] == [True, True, False]
    no_circle = render(Scene(64, (blue,)))
    assert [v.holds for v in oracle_verdicts(POSITION, no_circle)] == [True, False, False]  # a relation needs both
    four = Scene(64, tuple(SceneObject("triangle", "green", (x, 4, x + 12, 16)) for x in (2, 17, 32, 47)))
    assert [v.holds for v in oracle_verdicts(shapeworld_metadata("three triangles"), render(four))] == [False]


def test_shapeworld_captions_round_trip():
    rng = random.Random(0)
    for i in range(350):
        s = sample(TAGS[i % len(TAGS)], rng, size=32)
        meta = metadata(s.description)
        assert shapeworld_metadata("  " + prompt_text(s.description).replace(" ", "  ") + " ") == meta
        assert all(v.holds for v in oracle_verdicts(meta, render(s.scene)))  # correct scenes: every fact holds


@pytest.mark.parametrize("caption", ["a dog", "a red circle left of a blue dog", "five circles", "",
                                     "a red circle above a blue square, and a green triangle below the red square"])
def test_other_captions_have_no_metadata(caption):
    assert shapeworld_metadata(caption) is None
