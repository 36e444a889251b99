"""Scene sampling per GenEval tag: first what the prompt describes (a `Description`), then where things go.

A Description lists the objects in the order the prompt mentions them, each with its colour (colour is part of
every object even when the prompt does not name it), plus the relations the prompt states as
(subject index, relation, anchor index). For example the position prompt
"a red circle left of a blue square" is

    Description("position", (("red", "circle"), ("blue", "square")), ((0, "left of", 1),))

`place` then lays the objects out on the canvas: square boxes of side MIN_SIDE..MAX_SIDE of the canvas, inside it,
at least `min_gap(size)` pixels apart, every stated relation holding by GenEval's rule (relations.py) for the pixel
boxes and for the chain's 0..1000 boxes alike. The scene's
objects keep the Description's order, so indices into one are indices into the other.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from functools import lru_cache

from data_prep.shapeworld.relations import RELATIONS, holds
from data_prep.shapeworld.scene import (
    COLORS,
    MAX_OBJECTS,
    MAX_SIDE,
    MIN_GAP_AT_64,
    MIN_SIDE,
    SHAPES,
    Scene,
    SceneObject,
)
from janus_rig.chain import Box

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "complex")
COUNTS = (2, 3, 4)  # counting prompts; MAX_OBJECTS bounds them
MIN_CANVAS = 16  # below this the side range and the gap round to nothing
ALL_COMBOS = frozenset(itertools.product(COLORS, SHAPES))  # (colour, shape)

# Placement: each object gets PLACE_TRIES random boxes to fit beside those already placed; a scene that gets
# stuck starts over, up to LAYOUT_ATTEMPTS times (measured acceptance keeps the mean well under 10 starts).
PLACE_TRIES = 50
LAYOUT_ATTEMPTS = 2000

Combo = tuple[str, str]  # (colour, shape)
PixelBox = tuple[int, int, int, int]  # x2/y2 exclusive
Relation = tuple[int, str, int]  # (subject index, relation, anchor index): "subject {relation} anchor"


@dataclass(frozen=True)
class Description:
    tag: str
    objects: tuple[Combo, ...]  # prompt-mention order
    relations: tuple[Relation, ...] = ()


@dataclass(frozen=True)
class Sample:
    description: Description
    scene: Scene  # scene.objects[i] is description.objects[i]


def side_range(size: int) -> tuple[int, int]:
    """Smallest and largest box side in pixels at this canvas size (18%..34%, rounded inwards)."""
    return math.ceil(MIN_SIDE * size - 1e-9), math.floor(MAX_SIDE * size + 1e-9)


def min_gap(size: int) -> int:
    """Pixels between any two boxes: MIN_GAP_AT_64 at 64 px, scaled with the canvas and rounded up."""
    return max(1, math.ceil(MIN_GAP_AT_64 * size / 64 - 1e-9))


def check_size(size: int) -> None:
    if not isinstance(size, int) or size < MIN_CANVAS:
        raise ValueError(f"canvas size must be an integer of at least {MIN_CANVAS} px, got {size!r}")


def holds_in_chain_too(relation: str, a: PixelBox, b: PixelBox, size: int) -> bool:
    """The relation holds for the pixel boxes and for their 0..1000 chain boxes (rounding can flip a borderline
    case), so a chain never shows a layout that contradicts its own prompt."""
    grid = lambda box: Box.from_pixels(*box, size, size).as_tuple()  # noqa: E731
    return holds(relation, a, b) and holds(relation, grid(a), grid(b))


def apart(a: PixelBox, b: PixelBox, gap: int) -> bool:
    """Whether two pixel boxes (x2/y2 exclusive) leave at least `gap` empty pixels between them on some axis."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


# ---- what the prompt describes ---------------------------------------------------------------------------------


def _colors_by_shape(allowed: frozenset[Combo]) -> dict[str, list[str]]:
    return {s: [c for c in COLORS if (c, s) in allowed] for s in SHAPES if any((c, s) in allowed for c in COLORS)}


@lru_cache(maxsize=16)
def combo_choices(tag: str, allowed: frozenset[Combo] = ALL_COMBOS) -> tuple[tuple[Combo, ...], ...]:
    """Every object tuple a tag's prompt can name, in a fixed order (colours of unnamed-colour tags excluded).

    single_object / two_object / counting name no colour, so their choices are shape tuples with colour "";
    the colour is drawn per object afterwards. Used both to sample and to size the prompt space.
    """
    combos = sorted(allowed, key=lambda cs: (SHAPES.index(cs[1]), list(COLORS).index(cs[0])))
    shapes = list(_colors_by_shape(allowed))
    if tag in ("single_object", "counting"):
        return tuple((("", s),) for s in shapes)
    if tag == "two_object":
        return tuple((("", a), ("", b)) for a, b in itertools.permutations(shapes, 2))
    if tag == "colors":
        return tuple((c,) for c in combos)
    if tag == "color_attr":
        return tuple((a, b) for a, b in itertools.permutations(combos, 2) if a[0] != b[0] and a[1] != b[1])
    if tag == "position":
        return tuple(itertools.permutations(combos, 2))
    if tag == "complex":
        return tuple(itertools.permutations(combos, 3))
    raise ValueError(f"unknown tag {tag!r}; valid: {', '.join(TAGS)}")


def sample_description(tag: str, rng: random.Random, allowed: frozenset[Combo] = ALL_COMBOS) -> Description:
    """What one prompt of `tag` describes, drawn uniformly over its prompt space (`allowed` filters combos)."""
    choices = combo_choices(tag, allowed)
    if not choices:
        raise ValueError(f"the held-out combinations leave no possible {tag} scene; hold out fewer")
    chosen = rng.choice(choices)
    by_shape = _colors_by_shape(allowed)
    if tag == "counting":
        shape = chosen[0][1]
        chosen = tuple((rng.choice(by_shape[shape]), shape) for _ in range(rng.choice(COUNTS)))
    elif tag in ("single_object", "two_object"):
        chosen = tuple((rng.choice(by_shape[s]), s) for _, s in chosen)
    relations: tuple[Relation, ...] = ()
    if tag == "position":
        relations = ((0, rng.choice(RELATIONS), 1),)
    elif tag == "complex":  # "a {0} {rel1} a {1}, and a {2} {rel2} the {1}"
        relations = ((0, rng.choice(RELATIONS), 1), (2, rng.choice(RELATIONS), 1))
    return Description(tag, tuple(chosen), relations)


# ---- where things go -------------------------------------------------------------------------------------------


def _random_box(rng: random.Random, size: int, lo: int, hi: int) -> PixelBox:
    side = rng.randint(lo, hi)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    return (x, y, x + side, y + side)


def layout(rng: random.Random, size: int, n: int, relations: tuple[Relation, ...] = ()) -> list[PixelBox]:
    """`n` boxes that fit the world's rules and satisfy every relation; RuntimeError if the cap is hit."""
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1..{MAX_OBJECTS} objects, got {n}")
    lo, hi = side_range(size)
    gap = min_gap(size)
    # A relation is checked as soon as both its boxes exist, i.e. when the later of the two is placed.
    checks = {i: [(s, r, a) for s, r, a in relations if max(s, a) == i] for i in range(n)}
    for _ in range(LAYOUT_ATTEMPTS):
        boxes: list[PixelBox] = []
        for i in range(n):
            for _ in range(PLACE_TRIES):
                box = _random_box(rng, size, lo, hi)
                if not all(apart(box, other, gap) for other in boxes):
                    continue
                trial = boxes + [box]
                if all(holds_in_chain_too(r, trial[s], trial[a], size) for s, r, a in checks[i]):
                    boxes.append(box)
                    break
            else:
                break  # stuck: start the scene over
        if len(boxes) == n:
            return boxes
    raise RuntimeError(
        f"could not place {n} objects with relations {list(relations)} on a {size} px canvas in "
        f"{LAYOUT_ATTEMPTS} attempts; the constraints may be unsatisfiable at this size"
    )


def place(description: Description, rng: random.Random, size: int = 64) -> Scene:
    check_size(size)
    boxes = layout(rng, size, len(description.objects), description.relations)
    objects = tuple(SceneObject(shape, color, box) for (color, shape), box in zip(description.objects, boxes))
    return Scene(size, objects)


def sample(tag: str, rng: random.Random, size: int = 64, allowed: frozenset[Combo] = ALL_COMBOS) -> Sample:
    description = sample_description(tag, rng, allowed)
    return Sample(description, place(description, rng, size))
