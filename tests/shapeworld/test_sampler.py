import itertools
import random

import pytest

from data_prep.shapeworld.relations import RELATIONS, holds
from data_prep.shapeworld.sampler import (
    ALL_COMBOS,
    COUNTS,
    TAGS,
    Description,
    apart,
    layout,
    min_gap,
    place,
    sample,
    sample_description,
    side_range,
)
from data_prep.shapeworld.scene import COLORS, MAX_SIDE, MIN_SIDE, SHAPES
from janus_rig.chain import Box

N_OBJECTS = {"single_object": {1}, "two_object": {2}, "counting": set(COUNTS), "colors": {1},
             "position": {2}, "color_attr": {2}, "complex": {3}}


def test_world_constants_at_default_and_small_sizes():
    assert side_range(64) == (12, 21)
    assert side_range(32) == (6, 10)
    assert (min_gap(64), min_gap(32), min_gap(128)) == (2, 1, 4)


@pytest.mark.parametrize("size", [64, 32])
@pytest.mark.parametrize("tag", TAGS)
def test_scene_invariants(tag, size):
    rng = random.Random(f"{tag}-{size}")
    lo, hi = side_range(size)
    gap = min_gap(size)
    for _ in range(300):
        s = sample(tag, rng, size)
        d, objs = s.description, s.scene.objects
        assert s.scene.size == size
        assert len(objs) in N_OBJECTS[tag]
        assert [(o.color, o.shape) for o in objs] == list(d.objects)
        for o in objs:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 and 0 <= y1 and x2 <= size and y2 <= size
            assert x2 - x1 == y2 - y1  # square box
            assert lo <= o.side <= hi
            assert MIN_SIDE - 1e-9 <= o.side / size <= MAX_SIDE + 1e-9
        for a, b in itertools.combinations(objs, 2):
            assert apart(a.box, b.box, gap), (a.box, b.box)
        grid = [Box.from_pixels(*o.box, size, size).as_tuple() for o in objs]
        for subject, relation, anchor in d.relations:
            assert holds(relation, objs[subject].box, objs[anchor].box)
            assert holds(relation, grid[subject], grid[anchor])  # the chain's boxes agree with the prompt
        names = [o.name for o in objs]
        if tag == "counting":
            assert len({o.shape for o in objs}) == 1
        else:
            assert len(set(names)) == len(names)
        if tag == "two_object":
            assert objs[0].shape != objs[1].shape
        if tag == "color_attr":
            assert objs[0].shape != objs[1].shape and objs[0].color != objs[1].color
        if tag == "position":
            assert len(d.relations) == 1 and d.relations[0][0] == 0 and d.relations[0][2] == 1
        if tag == "complex":
            assert [(r[0], r[2]) for r in d.relations] == [(0, 1), (2, 1)]


def test_apart_counts_the_gap_in_pixels():
    assert apart((0, 0, 10, 10), (12, 0, 20, 10), 2)
    assert not apart((0, 0, 10, 10), (11, 0, 20, 10), 2)
    assert apart((0, 0, 10, 10), (0, 11, 10, 20), 1)
    assert not apart((0, 0, 10, 10), (5, 5, 15, 15), 0)


def test_every_relation_pair_of_complex_can_be_placed():
    rng = random.Random(0)
    for r1, r2 in itertools.product(RELATIONS, repeat=2):
        boxes = layout(rng, 32, 3, ((0, r1, 1), (2, r2, 1)))
        assert holds(r1, boxes[0], boxes[1]) and holds(r2, boxes[2], boxes[1])


def test_impossible_layout_raises_a_clear_error(monkeypatch):
    import data_prep.shapeworld.sampler as sampler

    monkeypatch.setattr(sampler, "LAYOUT_ATTEMPTS", 20)
    with pytest.raises(RuntimeError, match="could not place 2 objects"):
        layout(random.Random(0), 64, 2, ((0, "left of", 1), (1, "left of", 0)))


def test_holdout_combinations_never_appear():
    held = {("red", "circle"), ("blue", "square"), ("green", "triangle")}
    allowed = ALL_COMBOS - held
    rng = random.Random(1)
    for tag in TAGS:
        for _ in range(200):
            d = sample_description(tag, rng, allowed)
            assert not set(d.objects) & held


def test_holdout_that_leaves_nothing_is_an_error():
    only_circles = frozenset((c, "circle") for c in COLORS)
    with pytest.raises(ValueError, match="no possible two_object scene"):
        sample_description("two_object", random.Random(0), only_circles)


def test_sampling_is_deterministic_and_covers_the_world():
    a = [sample(t, random.Random(5)) for t in TAGS]
    b = [sample(t, random.Random(5)) for t in TAGS]
    assert a == b
    rng = random.Random(2)
    seen = {(c, s) for _ in range(400) for c, s in sample_description("colors", rng).objects}
    assert seen == set(ALL_COMBOS)
    counts = {len(sample_description("counting", rng).objects) for _ in range(100)}
    assert counts == set(COUNTS)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown tag"):
        sample_description("spatial", random.Random(0))
    with pytest.raises(ValueError, match="at least 16"):
        place(Description("colors", (("red", "circle"),)), random.Random(0), size=8)
    with pytest.raises(ValueError, match="1..4 objects"):
        layout(random.Random(0), 64, 5)
    assert set(SHAPES) == {"circle", "square", "triangle"}
