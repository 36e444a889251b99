"""What a caption states, one checkable fact per object and relation, and the oracle's truth about each.

The facts come from GenEval metadata (include clauses: objects with count and colour; position clauses:
relations), in clause order, objects first:

    >>> meta = {"include": [{"class": "square", "count": 1, "color": "blue"},
    ...                     {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}]}
    >>> [f.statement for f in stated_facts(meta)]
    ['blue square', 'red circle', 'red circle left of blue square']

A fact's `check` is a metadata record that tests that fact alone by GenEval's rules; the ShapeWorld oracle
(`data_prep.shapeworld.oracle.score_metadata`) answers it on an image. A relation needs both its objects, so
a missing object fails its relations too. Counting facts carry the record's exclude clause for their class
("three circles" is false with four).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import check_chain_layout, score_metadata, validate_metadata
from data_prep.shapeworld.prompts import COUNT_WORDS, PLURALS, metadata
from data_prep.shapeworld.relations import RELATIONS
from data_prep.shapeworld.sampler import Description
from data_prep.shapeworld.scene import COLORS, SHAPES
from janus_rig.chain.roles import Verdict

OBJECT, RELATION = "object", "relation"


@dataclass(frozen=True)
class Fact:
    kind: str  # OBJECT or RELATION
    statement: str  # what a verdict line says, e.g. "red circle left of blue square"
    clause: int  # the include clause it comes from
    check: dict  # metadata that checks this fact alone


def _name(clause: dict) -> str:
    color = f"{clause['color']} " if "color" in clause else ""
    count = clause["count"]
    if count == 1:
        return f"{color}{clause['class']}"
    plural = PLURALS.get(clause["class"], clause["class"] + "s")
    return f"{COUNT_WORDS.get(count, str(count))} {color}{plural}"


def _bare(clause: dict) -> dict:
    return {k: v for k, v in clause.items() if k != "position"}


def stated_facts(meta: dict) -> list[Fact]:
    """One fact per include clause (its objects), then one per position clause (its relation)."""
    validate_metadata(meta)
    include, exclude = meta["include"], meta.get("exclude", [])
    facts = []
    for i, clause in enumerate(include):
        own_exclude = [e for e in exclude if e["class"] == clause["class"]]
        facts.append(Fact(OBJECT, _name(clause), i, {"include": [_bare(clause)], "exclude": own_exclude}))
    for i, clause in enumerate(include):
        if "position" in clause:
            relation, target = clause["position"]
            statement = f"{_name(_bare(clause))} {relation} {_name(_bare(include[target]))}"
            check = {"include": [_bare(include[target]), {**clause, "position": [relation, 0]}]}
            facts.append(Fact(RELATION, statement, i, check))
    return facts


def oracle_verdicts(meta: dict, image_or_detections) -> list[Verdict]:
    """The true verdict of every stated fact on an image (PIL, array) or a list of detections."""
    detections = image_or_detections
    if isinstance(detections, (Image.Image, np.ndarray)):
        detections = detect(detections)  # once: every fact is checked on the same objects
    return [Verdict(f.statement, score_metadata(f.check, detections)[0]) for f in stated_facts(meta)]


def chain_verdicts(meta: dict, objects) -> list[Verdict]:
    """Every stated fact answered on chain objects (names, boxes on the 0..1000 grid) instead of an image — e.g. on
    what a checker says it sees — by the same rules (`check_chain_layout`, R_spa's)."""
    return [Verdict(f.statement, check_chain_layout(objects, f.check)[0]) for f in stated_facts(meta)]


# --- ShapeWorld captions -> metadata -------------------------------------------------------------------------------
_C = "(" + "|".join(COLORS) + ")"
_S = "(" + "|".join(SHAPES) + ")"
_R = "(" + "|".join(RELATIONS) + ")"
_N = "(" + "|".join(COUNT_WORDS.values()) + ")"
_P = "(" + "|".join(PLURALS.values()) + ")"
_PATTERNS = {
    "complex": rf"a {_C} {_S} {_R} a {_C} {_S}, and a {_C} {_S} {_R} the {_C} {_S}",
    "position": rf"a {_C} {_S} {_R} a {_C} {_S}",
    "color_attr": rf"a {_C} {_S} and a {_C} {_S}",
    "two_object": rf"a {_S} and a {_S}",
    "counting": rf"{_N} {_P}",
    "colors": rf"a {_C} {_S}",
    "single_object": rf"a {_S}",
}
_ANY_COLOR = next(iter(COLORS))  # tags that name no colour: metadata() leaves it out


def shapeworld_metadata(prompt: str) -> dict | None:
    """GenEval metadata of a caption written by ShapeWorld's templates, or None for any other caption.

    >>> shapeworld_metadata("three triangles")["include"]
    [{'class': 'triangle', 'count': 3}]
    """
    text = " ".join(prompt.strip().split())
    for tag, pattern in _PATTERNS.items():
        m = re.fullmatch(pattern, text)
        if m:
            description = _description(tag, m.groups())
            return None if description is None else metadata(description)
    return None


def _description(tag: str, g: tuple[str, ...]) -> Description | None:
    if tag == "complex":
        c1, s1, r1, c2, s2, c3, s3, r2, c2b, s2b = g
        if (c2b, s2b) != (c2, s2):  # "the ..." must be the object introduced second
            return None
        return Description(tag, ((c1, s1), (c2, s2), (c3, s3)), ((0, r1, 1), (2, r2, 1)))
    if tag == "position":
        c1, s1, r, c2, s2 = g
        return Description(tag, ((c1, s1), (c2, s2)), ((0, r, 1),))
    if tag == "color_attr":
        return Description(tag, ((g[0], g[1]), (g[2], g[3])))
    if tag == "two_object":
        return Description(tag, ((_ANY_COLOR, g[0]), (_ANY_COLOR, g[1])))
    if tag == "counting":
        count = next(n for n, word in COUNT_WORDS.items() if word == g[0])
        shape = next(s for s, plural in PLURALS.items() if plural == g[1])
        return Description(tag, ((_ANY_COLOR, shape),) * count)
    if tag == "colors":
        return Description(tag, ((g[0], g[1]),))
    return Description(tag, ((_ANY_COLOR, g[0]),))
