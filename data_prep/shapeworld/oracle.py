"""The ShapeWorld judge: GenEval's scoring rules on exact detections, and the same rules on a chain's planned boxes.

A metadata record (one line of a GenEval metadata.jsonl) reads, for "a red circle left of a blue square":

    {"tag": "position", "prompt": "a red circle left of a blue square",
     "include": [{"class": "square", "count": 1, "color": "blue"},
                 {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}]}

Include clauses are ANDed, exclude clauses ORed. A clause's matched objects are those of its class (and colour,
when given), in the detector's order (largest first), the first `count` of them. A position clause holds when
every matched object stands in the relation to every object the target clause matched (`relations.holds`).

One difference from GenEval's evaluate_images.py, on purpose: GenEval takes the first `count` objects of the
class and then asks CLIP their colour, so a larger distractor of the same class and another colour fails
"a red circle"; here the colour is exact, so the clause matches among objects of the right colour.
Reason strings follow GenEval's wording, one failure per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from data_prep.shapeworld.detect import Detection, detect
from data_prep.shapeworld.relations import RELATIONS, relations_between
from data_prep.shapeworld.scene import COLORS, SHAPES
from janus_rig.chain import Box, ChainObject

_ARTICLES = {"a", "an", "the"}

# Bounds on a metadata record, checked before any work: the rules make one slot per required object and match
# each against the chain's objects, so an unbounded `count` (10**9) would allocate without limit. A ShapeWorld
# scene holds at most MAX_OBJECTS (4) objects and GenEval's counts stop at 4 (exclude: 5); these leave ample room.
MAX_CLAUSES = 16  # include + exclude clauses in one record
MAX_COUNT = 64  # any clause's count
MAX_REQUIRED_OBJECTS = 64  # the include clauses' counts summed

describe = detect  # what the checker role sees: the objects in an image


class _Thing(NamedTuple):
    """What the rules look at, from a Detection or a ChainObject: colour is None for a chain name without one."""

    shape: str
    color: str | None
    box: tuple


def parse_name(name: str) -> tuple[str | None, str] | None:
    """(colour or None, shape) of an object name, or None when it names no ShapeWorld object.

    >>> parse_name("the red circle"), parse_name("Square"), parse_name("red dog")
    (('red', 'circle'), (None, 'square'), None)
    """
    words = [w for w in name.lower().split() if w not in _ARTICLES]
    if len(words) == 1 and words[0] in SHAPES:
        return None, words[0]
    if len(words) == 2 and words[0] in COLORS and words[1] in SHAPES:
        return words[0], words[1]
    return None


def _show(value) -> str:
    """A value for an error message, cut short: metadata comes from clients and files, and may be huge."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_metadata(metadata: dict) -> None:
    """Raise ValueError naming the first thing wrong with a ShapeWorld metadata record.

    Every field the oracle reads is checked for type first and then against the bounds above, so a record that
    passes costs the rules only a few small loops (the judge server relies on this before doing any work).
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    include = metadata.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError(f"metadata needs a non-empty 'include' list, got {_show(include)}")
    exclude = metadata.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError(f"metadata 'exclude' must be a list, got {_show(exclude)}")
    if len(include) + len(exclude) > MAX_CLAUSES:
        raise ValueError(f"metadata has {len(include) + len(exclude)} include/exclude clauses; at most {MAX_CLAUSES}")
    for part, clauses in (("include", include), ("exclude", exclude)):
        for i, clause in enumerate(clauses):
            where = f"{part}[{i}]"
            if not isinstance(clause, dict):
                raise ValueError(f"{where} must be an object, got {_show(clause)}")
            shape = clause.get("class")
            if not isinstance(shape, str) or shape not in SHAPES:
                raise ValueError(f"{where}: class {_show(shape)} is not a ShapeWorld shape ({', '.join(SHAPES)})")
            count = clause.get("count")
            if not _is_int(count) or not 1 <= count <= MAX_COUNT:
                raise ValueError(f"{where}: count must be an integer in 1..{MAX_COUNT}, got {_show(count)}")
            color = clause.get("color")
            if "color" in clause and (not isinstance(color, str) or color not in COLORS):
                raise ValueError(f"{where}: colour {_show(color)} is not in the palette ({', '.join(COLORS)})")
            if "position" in clause:
                position = clause["position"]
                if part == "exclude":
                    raise ValueError(f"{where}: exclude clauses take no position")
                if not (isinstance(position, list) and len(position) == 2 and isinstance(position[0], str)
                        and position[0] in RELATIONS):
                    raise ValueError(f"{where}: position must be [relation, index] with a relation in {RELATIONS}, "
                                     f"got {_show(position)}")
                target = position[1]
                if not _is_int(target) or not 0 <= target < i:
                    raise ValueError(f"{where}: position target {_show(target)} must index an earlier include clause")
    required = sum(clause["count"] for clause in include)
    if required > MAX_REQUIRED_OBJECTS:
        raise ValueError(f"metadata asks for {required} objects in all; at most {MAX_REQUIRED_OBJECTS}")


def _clause_name(clause: dict) -> str:
    return f"{clause['color']} {clause['class']}" if "color" in clause else clause["class"]


def _detections(image_or_detections) -> list[Detection]:
    if isinstance(image_or_detections, (Image.Image, np.ndarray)):
        return detect(image_or_detections)
    return sorted(image_or_detections, key=lambda d: -d.area)  # stable: equal areas keep the caller's order


def _from_detections(dets: Sequence[Detection]) -> list[_Thing]:
    return [_Thing(d.shape, d.color, d.box) for d in dets]


def _from_chain(objects: Sequence[ChainObject]) -> list[_Thing]:
    """The chain's objects that name a shape and have a box, in chain order."""
    things = []
    for obj in objects:
        parsed = parse_name(obj.name)
        if parsed is not None and obj.box is not None:
            things.append(_Thing(parsed[1], parsed[0], obj.box.as_tuple()))
    return things


def _candidates(things: Sequence[_Thing], clause: dict) -> list[_Thing]:
    return [t for t in things if t.shape == clause["class"] and ("color" not in clause or t.color == clause["color"])]


def _evaluate(things: Sequence[_Thing], metadata: dict) -> tuple[bool, str]:
    """GenEval's evaluate() over things in priority order; (correct, reasons joined by newlines)."""
    validate_metadata(metadata)
    reasons: list[str] = []
    groups: list[list[_Thing] | None] = []  # matched objects per include clause; None when the clause failed
    for clause in metadata["include"]:
        name, count = _clause_name(clause), clause["count"]
        of_class = [t for t in things if t.shape == clause["class"]]
        found = _candidates(things, clause)[:count]
        matched = len(found) >= count
        if len(of_class) < count:
            reasons.append(f"expected {clause['class']}>={count}, found {len(of_class)}")
        elif not matched:
            colors = [t.color or "uncoloured" for t in of_class]
            others = ", ".join(f"{colors.count(c)} {c}" for c in dict.fromkeys(colors))
            reasons.append(f"expected {name}>={count}, found {len(found)} {clause['color']}; and {others}")
        if matched and "position" in clause:
            relation, target = clause["position"]
            if groups[target] is None:
                matched = False
                reasons.append(f"no target for {name} to be {relation}")
            else:
                for obj in found:
                    bad = next((t for t in groups[target] if relation not in relations_between(obj.box, t.box)), None)
                    if bad is not None:
                        matched = False
                        actual = " and ".join(sorted(relations_between(obj.box, bad.box))) or "no relation to"
                        reasons.append(f"expected {name} {relation} target, found {actual} target")
                        break
        groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        n = len(_candidates(things, clause))
        if n >= clause["count"]:
            reasons.append(f"expected {_clause_name(clause)}<{clause['count']}, found {n}")
    return not reasons, "\n".join(reasons)


def score_metadata(metadata: dict, image_or_detections) -> tuple[bool, str]:
    """(correct, reason) for an image (PIL or array) or a list of Detections against one metadata record."""
    return _evaluate(_from_detections(_detections(image_or_detections)), metadata)


def ground(image_or_detections, name: str) -> tuple[int, int, int, int] | None:
    """Pixel box of the largest object called `name` ("red circle", or just "circle"); None when none is there."""
    parsed = parse_name(name)
    if parsed is None:
        return None
    color, shape = parsed
    for det in _detections(image_or_detections):
        if det.shape == shape and (color is None or det.color == color):
            return det.box
    return None


def detections_to_objects(dets: Sequence[Detection], size: int | tuple[int, int]) -> list[ChainObject]:
    """Detections as chain objects named "colour shape" with boxes on the 0..1000 grid of a size (or (w, h)) image."""
    width, height = (size, size) if isinstance(size, int) else size
    return [ChainObject(d.name, Box.from_pixels(*d.box, width, height)) for d in dets]


# --- the chain (prompt -> reasoning) checks -------------------------------------------------------------------


def check_chain_layout(objects: Sequence[ChainObject], metadata: dict) -> tuple[bool, str]:
    """GenEval's rules on the chain's planned boxes (0..1000 grid), objects matched by name in chain order.

    Objects without a box or with a name that is no ShapeWorld object take no part.
    """
    return _evaluate(_from_chain(objects), metadata)


def _slots(metadata: dict) -> list[tuple[str | None, str]]:
    """One (colour or None, shape) per required object: each include clause contributes `count` of them."""
    return [(c.get("color"), c["class"]) for c in metadata["include"] for _ in range(c["count"])]


def _assign(objects: Sequence[ChainObject], metadata: dict) -> tuple[list[int | None], list[int]]:
    """Match chain objects to required slots by name: (object index per slot or None, unmatched object indices).

    Coloured slots are filled first (only an exact name fits them), then colourless slots by shape; objects with
    a box are preferred, so a duplicate without a box is the one left over.
    """
    slots = _slots(metadata)
    order = sorted(range(len(objects)), key=lambda i: objects[i].box is None)
    names = {i: parse_name(objects[i].name) for i in order}
    free = [i for i in order if names[i] is not None]
    filled: list[int | None] = [None] * len(slots)
    for coloured in (True, False):
        for s, (color, shape) in enumerate(slots):
            if (color is not None) != coloured:
                continue
            i = next((i for i in free if names[i][1] == shape and (color is None or names[i][0] == color)), None)
            if i is not None:
                filled[s] = i
                free.remove(i)
    used = set(filled)
    return filled, [i for i in range(len(objects)) if i not in used]


def check_chain_semantics(objects: Sequence[ChainObject], metadata: dict) -> tuple[bool, str]:
    """Whether the chain names exactly the prompt's objects, each once and each with a box; (ok, reasons)."""
    validate_metadata(metadata)
    filled, extra = _assign(objects, metadata)
    reasons = []
    for (color, shape), i in zip(_slots(metadata), filled):
        name = f"{color} {shape}" if color else shape
        if i is None:
            reasons.append(f"missing {name}")
        elif objects[i].box is None:
            reasons.append(f"{objects[i].name} has no box")
    for i in extra:
        what = "extra" if parse_name(objects[i].name) is not None else "unknown object"
        reasons.append(f"{what} {objects[i].name!r}")
    named = [_Thing(p[1], p[0], None) for p in map(parse_name, (o.name for o in objects)) if p is not None]
    for clause in metadata.get("exclude", []):
        n = len(_candidates(named, clause))
        if n >= clause["count"]:
            reasons.append(f"expected {_clause_name(clause)}<{clause['count']}, found {n}")
    return not reasons, "\n".join(reasons)


def check_chain(objects: Sequence[ChainObject], metadata: dict) -> bool:
    """Whether a chain is a right plan for the prompt: it names exactly the prompt's objects, each with a box
    (`check_chain_semantics`), and its boxes satisfy GenEval's rules (`check_chain_layout`)."""
    return check_chain_semantics(objects, metadata)[0] and check_chain_layout(objects, metadata)[0]


def chain_semantic_score(objects: Sequence[ChainObject], metadata: dict) -> float:
    """F1 between the chain's objects and the required ones, by name; an object without a box counts half.

    2 * matched / (required + named): a missing object lowers recall, an extra, duplicated or unknown one lowers
    precision. E.g. required {red circle, blue square}, chain [red circle, red circle] -> 2 * 1 / 4 = 0.5.
    """
    validate_metadata(metadata)
    filled, _ = _assign(objects, metadata)
    matched = sum(1.0 if objects[i].box is not None else 0.5 for i in filled if i is not None)
    total = len(filled) + len(objects)
    return 2 * matched / total if total else 1.0


def chain_layout_score(objects: Sequence[ChainObject], metadata: dict) -> float:
    """Fraction of the stated relations that hold on the chain's boxes, in [0, 1].

    Each position clause scores the share of its (object, target) pairs, count x target count, that stand in the
    relation; a missing object or target leaves its pairs failed. The score is the mean over position clauses.
    A record with no relation scores the share of required objects the chain places with a box.
    """
    validate_metadata(metadata)
    include = metadata["include"]
    positioned = [c for c in include if "position" in c]
    if not positioned:
        filled, _ = _assign(objects, metadata)
        return sum(i is not None and objects[i].box is not None for i in filled) / len(filled)
    things = _from_chain(objects)
    scores = []
    for clause in positioned:
        relation, target = clause["position"]
        target_clause = include[target]
        found = _candidates(things, clause)[: clause["count"]]
        targets = _candidates(things, target_clause)[: target_clause["count"]]
        held = sum(relation in relations_between(a.box, b.box) for a in found for b in targets)
        scores.append(held / (clause["count"] * target_clause["count"]))
    return sum(scores) / len(scores)
