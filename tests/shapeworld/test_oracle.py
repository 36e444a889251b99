"""The judge: GenEval's rules on exact detections, on every tag, and the chain checks behind R_sem / R_spa."""

from __future__ import annotations

import pytest

from data_prep.shapeworld.detect import Detection, detect
from data_prep.shapeworld.oracle import (
    chain_layout_score,
    chain_semantic_score,
    check_chain,
    check_chain_layout,
    check_chain_semantics,
    detections_to_objects,
    ground,
    parse_name,
    score_metadata,
    validate_metadata,
)
from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.chain import Box, ChainObject


def image(*objects, size=64):
    return render(Scene(size, tuple(SceneObject(*o) for o in objects)))


LEFT, RIGHT = (4, 24, 20, 40), (40, 24, 56, 40)
TOP, BOTTOM = (24, 4, 40, 20), (24, 42, 40, 58)

POSITION = {
    "tag": "position", "prompt": "a red circle left of a blue square",
    "include": [{"class": "square", "count": 1, "color": "blue"},
                {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}],
}
COUNTING = {
    "tag": "counting", "prompt": "three triangles",
    "include": [{"class": "triangle", "count": 3}], "exclude": [{"class": "triangle", "count": 4}],
}
COMPLEX = {
    "tag": "complex", "prompt": "a red circle above a blue square, and a green triangle left of the blue square",
    "include": [{"class": "square", "count": 1, "color": "blue"},
                {"class": "circle", "count": 1, "color": "red", "position": ["above", 0]},
                {"class": "triangle", "count": 1, "color": "green", "position": ["left of", 0]}],
}


def meta(tag, *include, exclude=None):
    record = {"tag": tag, "prompt": tag, "include": list(include)}
    if exclude:
        record["exclude"] = exclude
    return record


@pytest.mark.parametrize("metadata, objects, expected, reason", [
    (meta("single_object", {"class": "circle", "count": 1}), [("circle", "white", LEFT)], True, ""),
    (meta("single_object", {"class": "circle", "count": 1}), [("square", "white", LEFT)], False,
     "expected circle>=1, found 0"),
    (meta("two_object", {"class": "circle", "count": 1}, {"class": "square", "count": 1}),
     [("circle", "red", LEFT), ("square", "green", RIGHT)], True, ""),
    (meta("two_object", {"class": "circle", "count": 1}, {"class": "square", "count": 1}),
     [("circle", "red", LEFT), ("circle", "green", RIGHT)], False, "expected square>=1, found 0"),
    (meta("colors", {"class": "square", "count": 1, "color": "yellow"}), [("square", "yellow", LEFT)], True, ""),
    (meta("colors", {"class": "square", "count": 1, "color": "yellow"}),
     [("square", "white", LEFT), ("square", "purple", RIGHT)], False,
     "expected yellow square>=1, found 0 yellow; and 1 white, 1 purple"),
    (meta("color_attr", {"class": "circle", "count": 1, "color": "red"}, {"class": "square", "count": 1, "color": "blue"}),
     [("circle", "red", LEFT), ("square", "blue", RIGHT)], True, ""),
    (meta("color_attr", {"class": "circle", "count": 1, "color": "red"}, {"class": "square", "count": 1, "color": "blue"}),
     [("circle", "blue", LEFT), ("square", "red", RIGHT)], False,
     "expected red circle>=1, found 0 red; and 1 blue\nexpected blue square>=1, found 0 blue; and 1 red"),
    (POSITION, [("circle", "red", LEFT), ("square", "blue", RIGHT)], True, ""),
    (POSITION, [("circle", "red", RIGHT), ("square", "blue", LEFT)], False,
     "expected red circle left of target, found right of target"),
    (POSITION, [("circle", "red", TOP), ("square", "blue", BOTTOM)], False,
     "expected red circle left of target, found above target"),
    (POSITION, [("circle", "red", LEFT), ("square", "green", RIGHT)], False,
     "expected blue square>=1, found 0 blue; and 1 green\nno target for red circle to be left of"),
    (POSITION, [("square", "blue", RIGHT)], False, "expected circle>=1, found 0"),
    (COMPLEX, [("circle", "red", TOP), ("square", "blue", RIGHT), ("triangle", "green", LEFT)], True, ""),
    (COMPLEX, [("circle", "red", TOP), ("square", "blue", LEFT), ("triangle", "green", RIGHT)], False,
     "expected green triangle left of target, found right of target"),
])
def test_score_metadata_on_every_tag(metadata, objects, expected, reason):
    correct, why = score_metadata(metadata, image(*objects))
    assert correct is expected
    assert why == reason


def test_counting_exact_fewer_and_more():
    three = [("triangle", "red", (2, 2, 16, 16)), ("triangle", "blue", (24, 2, 38, 16)), ("triangle", "green", (46, 2, 60, 16))]
    assert score_metadata(COUNTING, image(*three)) == (True, "")
    assert score_metadata(COUNTING, image(*three[:2])) == (False, "expected triangle>=3, found 2")
    four = [*three, ("triangle", "white", (24, 40, 38, 54))]
    assert score_metadata(COUNTING, image(*four)) == (False, "expected triangle<4, found 4")
    # other shapes do not count against a triangle count
    assert score_metadata(COUNTING, image(*three, ("circle", "white", (24, 40, 38, 54))))[0]


def test_matched_objects_are_the_largest_of_their_kind():
    # two red circles: the larger (left) one is matched, and it is left of the square
    objects = [("circle", "red", (2, 24, 22, 44)), ("circle", "red", (48, 50, 60, 62)), ("square", "blue", (30, 24, 44, 38))]
    assert score_metadata(POSITION, image(*objects))[0]
    # the larger one right of the square now: fail, though a smaller red circle stands left of it
    objects = [("circle", "red", (2, 48, 12, 58)), ("circle", "red", (44, 20, 64, 40)), ("square", "blue", (20, 20, 34, 34))]
    assert not score_metadata(POSITION, image(*objects))[0]


def test_detections_and_images_score_alike():
    img = image(("circle", "red", LEFT), ("square", "blue", RIGHT))
    assert score_metadata(POSITION, detect(img)) == score_metadata(POSITION, img)
    reversed_dets = list(reversed(detect(img)))
    assert score_metadata(POSITION, reversed_dets)[0]


@pytest.mark.parametrize("bad, message", [
    ({"include": []}, "non-empty"),
    ({"include": [{"class": "dog", "count": 1}]}, "not a ShapeWorld shape"),
    ({"include": [{"class": "circle", "count": 0}]}, r"count must be an integer in 1\.\.64"),
    ({"include": [{"class": "circle", "count": 1, "color": "orange"}]}, "palette"),
    ({"include": [{"class": "circle", "count": 1, "position": ["left of", 0]}]}, "earlier include"),
    ({"include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1, "position": ["near", 0]}]}, "relation"),
])
def test_malformed_metadata_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_metadata(bad)
    with pytest.raises(ValueError, match=message):
        score_metadata(bad, [])


def _clause(**fields):
    return {"include": [{"class": "circle", "count": 1, **fields}]}


# Every field the oracle reads, with a wrong type or past its bound: a ValueError naming the field, never a
# TypeError (a list colour used to raise one: `in COLORS` hashes it) and never work in proportion to a count.
MALFORMED = {
    "colour a list": (_clause(color=["red"]), r"include\[0\]: colour \['red'\]"),
    "colour a dict": (_clause(color={"r": 1}), r"include\[0\]: colour"),
    "colour a number": (_clause(color=3), r"include\[0\]: colour 3"),
    "class a list": ({"include": [{"class": ["circle"], "count": 1}]}, r"include\[0\]: class"),
    "class a dict": ({"include": [{"class": {"circle": 1}, "count": 1}]}, r"include\[0\]: class"),
    "count a string": (_clause(count="1"), "count must be an integer"),
    "count a float": (_clause(count=1.0), "count must be an integer"),
    "count a bool": (_clause(count=True), "count must be an integer"),
    "count negative": (_clause(count=-3), "count must be an integer"),
    "count 3,000,000": (_clause(count=3_000_000), r"count must be an integer in 1\.\.64, got 3000000"),
    "count 10**9": (_clause(count=10**9), "count must be an integer"),
    "count 10**400": (_clause(count=10**400), r"count must be an integer in 1\.\.64, got 1000"),
    "exclude count huge": ({"include": [{"class": "circle", "count": 1}],
                            "exclude": [{"class": "circle", "count": 10**9}]}, r"exclude\[0\]: count"),
    "include not a list": ({"include": {"class": "circle", "count": 1}}, "non-empty 'include' list"),
    "include a string": ({"include": "circle"}, "non-empty 'include' list"),
    "exclude not a list": ({"include": [{"class": "circle", "count": 1}], "exclude": "x"}, "'exclude' must be a list"),
    "entry not an object": ({"include": [["circle", 1]]}, r"include\[0\] must be an object"),
    "entry a number": ({"include": [7]}, r"include\[0\] must be an object"),
    "metadata a list": ([{"class": "circle", "count": 1}], "metadata must be a JSON object"),
    "position a dict": ({"include": [{"class": "circle", "count": 1},
                                     {"class": "square", "count": 1, "position": {"left of": 0}}]}, "position must be"),
    "relation a list": ({"include": [{"class": "circle", "count": 1},
                                     {"class": "square", "count": 1, "position": [["left of"], 0]}]}, "position must be"),
    "target a float": ({"include": [{"class": "circle", "count": 1},
                                    {"class": "square", "count": 1, "position": ["left of", 0.0]}]}, "position target"),
    "too many clauses": ({"include": [{"class": "circle", "count": 1}] * 17}, r"17 include/exclude clauses; at most 16"),
    "too many objects in all": ({"include": [{"class": "circle", "count": 60}, {"class": "square", "count": 60}]},
                                r"asks for 120 objects in all; at most 64"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fields_are_a_value_error_naming_the_field(case):
    bad, message = MALFORMED[case]
    objects = [ChainObject("red circle", Box(100, 100, 400, 400))]
    for check in (validate_metadata, lambda m: score_metadata(m, []), lambda m: chain_semantic_score(objects, m),
                  lambda m: chain_layout_score(objects, m), lambda m: check_chain(objects, m)):
        with pytest.raises(ValueError, match=message):
            check(bad)


def test_a_huge_value_is_shown_cut_short_in_the_message():
    with pytest.raises(ValueError) as err:
        validate_metadata(_clause(color="x" * 1_000_000))
    assert len(str(err.value)) < 200


def test_records_at_the_bounds_are_accepted():
    validate_metadata({"include": [{"class": "circle", "count": 64}],
                       "exclude": [{"class": "circle", "count": 64}] + [{"class": "square", "count": 1}] * 14})


def test_ground_and_parse_name():
    img = image(("circle", "red", (2, 2, 22, 22)), ("circle", "blue", (40, 40, 52, 52)), ("square", "red", LEFT))
    assert ground(img, "red circle") == (2, 2, 22, 22)
    assert ground(img, "blue circle") == (40, 40, 52, 52)
    assert ground(img, "circle") == (2, 2, 22, 22)  # the largest
    assert ground(img, "the red square") == LEFT
    assert ground(img, "green circle") is None
    assert ground(img, "dog") is None
    assert parse_name("A Red Circle") == ("red", "circle")
    assert parse_name("big red circle") is None


def test_detections_to_objects_round_trip():
    img = image(("circle", "red", LEFT), ("square", "blue", RIGHT))
    objects = detections_to_objects(detect(img), 64)
    assert [o.name for o in objects] == ["blue square", "red circle"]
    assert objects[1].box == Box.from_pixels(*LEFT, 64, 64)
    assert check_chain_layout(objects, POSITION) == (True, "")
    assert check_chain_semantics(objects, POSITION) == (True, "")
    assert detections_to_objects([Detection("circle", "red", (0, 0, 10, 20), 150, 1.0)], (10, 20))[0].box.as_tuple() == (0, 0, 1000, 1000)


def obj(name, box=None):
    return ChainObject(name, Box(*box) if box else None)


L, R, T, B = (50, 300, 350, 600), (600, 300, 900, 600), (350, 30, 650, 330), (350, 650, 650, 950)


def test_chain_layout_check():
    good = [obj("red circle", L), obj("blue square", R)]
    assert check_chain_layout(good, POSITION) == (True, "")
    swapped = [obj("red circle", R), obj("blue square", L)]
    assert check_chain_layout(swapped, POSITION) == (False, "expected red circle left of target, found right of target")
    no_box = [obj("red circle"), obj("blue square", R)]
    assert check_chain_layout(no_box, POSITION)[1] == "expected circle>=1, found 0"
    assert check_chain_layout([obj("red circle", T), obj("blue square", B), obj("green triangle", L)], COMPLEX)[0]
    assert not check_chain_layout([obj("red circle", B), obj("blue square", T), obj("green triangle", L)], COMPLEX)[0]
    many = [obj("triangle", (i * 250, 0, i * 250 + 200, 200)) for i in range(4)]
    assert check_chain_layout(many[:3], COUNTING)[0]
    assert check_chain_layout(many, COUNTING) == (False, "expected triangle<4, found 4")


def test_chain_semantics_check():
    assert check_chain_semantics([obj("blue square", R), obj("red circle", L)], POSITION) == (True, "")
    assert check_chain_semantics([obj("red circle", L)], POSITION) == (False, "missing blue square")
    ok, why = check_chain_semantics([obj("red circle", L), obj("blue square", R), obj("red circle", T)], POSITION)
    assert not ok and why == "extra 'red circle'"
    assert check_chain_semantics([obj("red circle"), obj("blue square", R)], POSITION) == (False, "red circle has no box")
    ok, why = check_chain_semantics([obj("red circle", L), obj("blue square", R), obj("dog", T)], POSITION)
    assert why == "unknown object 'dog'"
    # a colourless clause accepts any colour; a coloured one needs its colour
    assert check_chain_semantics([obj("purple triangle", L)] * 3, COUNTING)[0]
    assert not check_chain_semantics([obj("green circle", L), obj("blue square", R)], POSITION)[0]


def test_chain_semantic_score_is_graded():
    exact = [obj("red circle", L), obj("blue square", R)]
    assert chain_semantic_score(exact, POSITION) == 1.0
    assert chain_semantic_score([obj("red circle", L)], POSITION) == pytest.approx(2 / 3)
    assert chain_semantic_score([obj("red circle", L), obj("red circle", R)], POSITION) == pytest.approx(0.5)
    assert chain_semantic_score([obj("red circle"), obj("blue square", R)], POSITION) == pytest.approx(0.75)
    assert chain_semantic_score([*exact, obj("green triangle", T)], POSITION) == pytest.approx(0.8)
    assert chain_semantic_score([], POSITION) == 0.0
    assert chain_semantic_score([obj("dog", L)], POSITION) == 0.0


def test_chain_layout_score_is_graded():
    assert chain_layout_score([obj("red circle", L), obj("blue square", R)], POSITION) == 1.0
    assert chain_layout_score([obj("red circle", R), obj("blue square", L)], POSITION) == 0.0
    assert chain_layout_score([obj("red circle", L)], POSITION) == 0.0
    half = [obj("red circle", T), obj("blue square", B), obj("green triangle", (700, 650, 950, 950))]
    assert chain_layout_score(half, COMPLEX) == 0.5  # above holds, left of does not
    # no stated relation: the share of required objects placed with a box
    two = meta("two_object", {"class": "circle", "count": 1}, {"class": "square", "count": 1})
    assert chain_layout_score([obj("circle", L), obj("square")], two) == 0.5


def test_check_chain_needs_right_names_and_right_layout():
    assert check_chain([obj("red circle", L), obj("blue square", R)], POSITION)
    assert not check_chain([obj("red circle", R), obj("blue square", L)], POSITION)  # right names, wrong layout
    assert not check_chain([obj("blue circle", L), obj("red square", R)], POSITION)  # colours bound to the wrong shapes
    assert not check_chain([obj("red circle", L), obj("blue square", R), obj("green triangle", T)], POSITION)  # extra
