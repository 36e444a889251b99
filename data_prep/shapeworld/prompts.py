"""Prompt text, GenEval metadata and the LAION-SG scene graph for a sampled Description.

The templates are fixed (other tools and the word-level tokenizer depend on them):

    single_object  a {shape}                               a circle
    two_object     a {shape1} and a {shape2}               a circle and a square
    counting       {two|three|four} {shape}s               three triangles
    colors         a {color} {shape}                       a red circle
    color_attr     a {color1} {shape1} and a {color2} {shape2}
    position       a {color1} {shape1} {relation} a {color2} {shape2}
    complex        a {c1} {s1} {rel1} a {c2} {s2}, and a {c3} {s3} {rel2} the {c2} {s2}

A position metadata line lists the anchor first and points the other object at it:

    {"tag": "position", "include": [{"class": "square", "count": 1, "color": "blue"},
     {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}],
     "prompt": "a red circle left of a blue square"}
"""

from __future__ import annotations

from data_prep.shapeworld.relations import RELATIONS
from data_prep.shapeworld.sampler import ALL_COMBOS, COUNTS, TAGS, Combo, Description, combo_choices
from data_prep.shapeworld.scene import SHAPES

COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
PLURALS = {shape: shape + "s" for shape in SHAPES}
TEMPLATES = {
    "single_object": "a {shape}",
    "two_object": "a {shape1} and a {shape2}",
    "counting": "{count} {shapes}",
    "colors": "a {color} {shape}",
    "color_attr": "a {color1} {shape1} and a {color2} {shape2}",
    "position": "a {color1} {shape1} {relation} a {color2} {shape2}",
    "complex": (
        "a {color1} {shape1} {relation1} a {color2} {shape2}, and a {color3} {shape3} {relation2} the {color2} {shape2}"
    ),
}
# Tags whose prompt space is large enough for the bench to be disjoint from training prompts.
DISJOINT_TAGS = ("position", "complex", "color_attr")


def prompt_text(d: Description) -> str:
    (c1, s1), *rest = d.objects
    if d.tag == "single_object":
        return TEMPLATES[d.tag].format(shape=s1)
    if d.tag == "colors":
        return TEMPLATES[d.tag].format(color=c1, shape=s1)
    if d.tag == "counting":
        return TEMPLATES[d.tag].format(count=COUNT_WORDS[len(d.objects)], shapes=PLURALS[s1])
    (c2, s2) = rest[0]
    if d.tag == "two_object":
        return TEMPLATES[d.tag].format(shape1=s1, shape2=s2)
    if d.tag == "color_attr":
        return TEMPLATES[d.tag].format(color1=c1, shape1=s1, color2=c2, shape2=s2)
    if d.tag == "position":
        return TEMPLATES[d.tag].format(color1=c1, shape1=s1, relation=d.relations[0][1], color2=c2, shape2=s2)
    if d.tag == "complex":
        (c3, s3) = rest[1]
        rel1, rel2 = d.relations[0][1], d.relations[1][1]
        return TEMPLATES[d.tag].format(
            color1=c1, shape1=s1, relation1=rel1, color2=c2, shape2=s2, color3=c3, shape3=s3, relation2=rel2
        )
    raise ValueError(f"unknown tag {d.tag!r}; valid: {', '.join(TAGS)}")


def _clause(combo: Combo, with_color: bool, count: int = 1) -> dict:
    color, shape = combo
    clause = {"class": shape, "count": count}
    if with_color:
        clause["color"] = color
    return clause


def metadata(d: Description) -> dict:
    """GenEval's metadata line: include clauses AND, exclude clauses OR; colour only where the prompt names it."""
    objs = d.objects
    if d.tag == "single_object":
        include = [_clause(objs[0], False)]
    elif d.tag == "colors":
        include = [_clause(objs[0], True)]
    elif d.tag == "two_object":
        include = [_clause(o, False) for o in objs]
    elif d.tag == "color_attr":
        include = [_clause(o, True) for o in objs]
    elif d.tag == "counting":
        n, shape = len(objs), objs[0][1]
        return {
            "tag": d.tag,
            "include": [{"class": shape, "count": n}],
            "exclude": [{"class": shape, "count": n + 1}],
            "prompt": prompt_text(d),
        }
    elif d.tag in ("position", "complex"):
        anchor = d.relations[0][2]  # every relation of these tags points at the same anchor
        include = [_clause(objs[anchor], True)]
        for subject, relation, _ in d.relations:
            include.append({**_clause(objs[subject], True), "position": [relation, 0]})
    else:
        raise ValueError(f"unknown tag {d.tag!r}; valid: {', '.join(TAGS)}")
    return {"tag": d.tag, "include": include, "prompt": prompt_text(d)}


def scene_graph(d: Description, first_global_id: int = 0) -> dict:
    """LAION-SG's items/relations; item_id is the index into the scene's objects, relations are the prompt's.

    global_item_id numbers items across a whole file (the writer passes a running offset).
    """
    items = [
        {"item_id": i, "label": shape, "attributes": [color], "global_item_id": first_global_id + i}
        for i, (color, shape) in enumerate(d.objects)
    ]
    relations = [
        {"triple_id": t, "item1": subject, "relation": relation, "item2": anchor}
        for t, (subject, relation, anchor) in enumerate(d.relations)
    ]
    return {"items": items, "relations": relations}


def prompt_space_size(tag: str, allowed: frozenset[Combo] = ALL_COMBOS) -> int:
    """How many distinct prompts a tag can produce, e.g. 3 for single_object, 1224 for position."""
    n = len(combo_choices(tag, allowed))
    per_choice = {"counting": len(COUNTS), "position": len(RELATIONS), "complex": len(RELATIONS) ** 2}
    return n * per_choice.get(tag, 1)
