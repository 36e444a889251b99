"""Reasoning chains for ShapeWorld: varied phrasing for training records, one canonical form for grounding.

Every chain names every object of the scene exactly once as "{color} {shape}" with its box on the 0..1000 grid.
Training chains vary the object order (prompt order, reading order, anchor first, random), the sentence style
(a list, steps, plain sentences), and what each mention adds: nothing, the canvas region, or a relation to an
object already mentioned ("it" = the previous one, "the first one"). Every stated region and relation is true of
the scene's pixel boxes by GenEval's rule, so RL has room to find better chains without being taught falsehoods:

    Start with a <|obj_start|>blue square<|obj_end|> <|box_start|>(500,500),(812,812)<|box_end|> in the center.
    Then a <|obj_start|>red circle<|obj_end|> <|box_start|>(47,531),(375,859)<|box_end|> to the left of it.

The grounding chain (the checker's target: what is in the image) is fixed: reading order, one sentence:

    The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(...)<|box_end|> and a <|obj_start|>...

The *prompt* chain style (`janus-rig world --chains prompt`) is one fixed form instead of the varied ones: the
prompt's own words in the prompt's order, each object followed by its box, every relation stated as the prompt
states it, before the box it constrains is written (counting prompts: reading order):

    a <|obj_start|>white triangle<|obj_end|> <|box_start|>(...)<|box_end|> right of a <|obj_start|>red circle...
"""

from __future__ import annotations

import random

from data_prep.shapeworld.relations import relations_between
from data_prep.shapeworld.sampler import Relation, Sample
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.chain import Box, ChainObject, format_chain
from janus_rig.chain.roles import NOTHING_SEEN

# ---- fixed phrasing (the vocabulary; vocab.py reads every constant below) -------------------------------------
LIST_OPENINGS = (
    "The image shows a ",
    "The picture contains a ",
    "We see a ",
    "There is a ",
    "On a black background there is a ",
)
LIST_SEPARATOR, LIST_LAST_SEPARATOR = ", a ", " and a "
LIST_ENDINGS = (".", ". Nothing else is in the image.", ". The background is black.")
STEP_SINGLE = ("Just a ", "A single ", "Only a ")
STEP_FIRST = ("First, a ", "Start with a ", "Begin with a ")
STEP_NEXT = ("Then a ", "Next, a ", "Add a ", "Also a ")
STEP_LAST = ("Finally, a ", "Last, a ", "Then a ")
SENTENCE_DETAILED = ("A ", " is")  # "A <obj> is in the top left."
SENTENCE_PLAIN = ("There is a ", "There is also a ")  # first / later sentence without a detail
SENTENCE_END, SENTENCE_GAP = ".", " "
COUNT_PREFACES = {1: "One object. ", 2: "Two objects. ", 3: "Three objects. ", 4: "Four objects. "}
RELATION_PHRASES = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
REFERENCE_PREVIOUS, REFERENCE_FIRST = "it", "the first one"
# Canvas thirds of an object's centre (row, column) -> phrase.
REGIONS = {
    ("top", "left"): "in the top left",
    ("top", "center"): "at the top",
    ("top", "right"): "in the top right",
    ("middle", "left"): "on the left",
    ("middle", "center"): "in the center",
    ("middle", "right"): "on the right",
    ("bottom", "left"): "in the bottom left",
    ("bottom", "center"): "at the bottom",
    ("bottom", "right"): "in the bottom right",
}
GROUNDING_OPENING, GROUNDING_ENDING = "The image shows a ", "."
PROMPT_AND = ", and a "  # the prompt chain's second clause (complex prompts)

CHAIN_STYLES = ("varied", "prompt")  # a world's training chains: training_chain or prompt_chain
STYLES = ("list", "steps", "sentences")
ORDERS = ("prompt", "reading", "anchor_first", "random")
P_PREFACE = 0.25  # chance of a count preface ("Three objects. ")
P_FIRST_REGION = 0.4  # chance the first mention says where it is
P_RELATION, P_REGION = 0.55, 0.2  # later mentions: a relation (when one holds), else a region, else nothing
P_STATED = 0.8  # when a prompt-stated relation can be said, how often it is the one said


def chain_object(obj: SceneObject, size: int) -> ChainObject:
    return ChainObject(obj.name, Box.from_pixels(*obj.box, size, size))


def region(obj: SceneObject, size: int) -> str:
    cx, cy = obj.center
    thirds = lambda v, names: names[min(2, int(3 * v / size))]  # noqa: E731
    return REGIONS[(thirds(cy, ("top", "middle", "bottom")), thirds(cx, ("left", "center", "right")))]


def reading_order(scene: Scene) -> list[int]:
    """Object indices top to bottom, then left to right (by the box's top-left corner)."""
    return sorted(range(len(scene.objects)), key=lambda i: (scene.objects[i].box[1], scene.objects[i].box[0]))


def grounding_chain(scene: Scene) -> str:
    """The canonical chain of what is in the image: every object in reading order, one fixed sentence."""
    objs = [chain_object(scene.objects[i], scene.size) for i in reading_order(scene)]
    return format_chain(_listing(GROUNDING_OPENING, objs, [""] * len(objs), GROUNDING_ENDING))


def seen_chain(scene: Scene) -> str:
    """What the checker should say is in an image of this scene (the grounding chain; NOTHING_SEEN when empty)."""
    return grounding_chain(scene) if scene.objects else NOTHING_SEEN


def _listing(opening: str, objs: list[ChainObject], details: list[str], ending: str) -> list:
    parts: list = [opening]
    for k, (obj, detail) in enumerate(zip(objs, details)):
        if k:
            parts.append(LIST_LAST_SEPARATOR if k == len(objs) - 1 else LIST_SEPARATOR)
        parts += [obj, detail]
    return parts + [ending]


def _mention_order(sample: Sample, rng: random.Random) -> list[int]:
    scene, relations = sample.scene, sample.description.relations
    order = rng.choice(ORDERS if relations else tuple(o for o in ORDERS if o != "anchor_first"))
    indices = list(range(len(scene.objects)))
    if order == "reading":
        return reading_order(scene)
    if order == "anchor_first":
        anchor = relations[0][2]
        return [anchor] + [i for i in indices if i != anchor]
    if order == "random":
        rng.shuffle(indices)
    return indices


def _stated(relations: tuple[Relation, ...], a: int, b: int) -> str | None:
    """The prompt's relation of object a to object b, inverted when the prompt states it the other way round."""
    for subject, relation, anchor in relations:
        if (subject, anchor) == (a, b):
            return relation
        if (subject, anchor) == (b, a):
            return INVERSE[relation]
    return None


def _relation_detail(sample: Sample, order: list[int], k: int, rng: random.Random) -> str | None:
    """A true relation of the k-th mentioned object to one mentioned before it, e.g. ' to the left of it'."""
    objs, stated, size = sample.scene.objects, sample.description.relations, sample.scene.size
    current = order[k]
    references = [(order[k - 1], REFERENCE_PREVIOUS)] + ([(order[0], REFERENCE_FIRST)] if k >= 2 else [])
    options = []  # (is stated, relation, reference phrase)
    for ref, phrase in references:
        # True of the pixel boxes and of the boxes the chain shows (rounding can flip a borderline relation).
        pixel = relations_between(objs[current].box, objs[ref].box)
        shown = [chain_object(objs[i], size).box.as_tuple() for i in (current, ref)]
        grid = relations_between(*shown)
        for relation in sorted(pixel & grid):
            options.append((relation == _stated(stated, current, ref), relation, phrase))
    if not options:
        return None
    preferred = [o for o in options if o[0]]
    _, relation, phrase = rng.choice(preferred if preferred and rng.random() < P_STATED else options)
    return f" {rng.choice(RELATION_PHRASES[relation])} {phrase}"


def _details(sample: Sample, order: list[int], rng: random.Random) -> list[str]:
    size, objs = sample.scene.size, sample.scene.objects
    details = [f" {region(objs[order[0]], size)}" if rng.random() < P_FIRST_REGION else ""]
    for k in range(1, len(order)):
        roll = rng.random()
        relation = _relation_detail(sample, order, k, rng) if roll < P_RELATION else None
        if relation:
            details.append(relation)
        elif roll < P_RELATION + P_REGION:
            details.append(f" {region(objs[order[k]], size)}")
        else:
            details.append("")
    return details


def _steps(objs: list[ChainObject], details: list[str], rng: random.Random) -> list:
    n, parts = len(objs), []
    for k, (obj, detail) in enumerate(zip(objs, details)):
        if n == 1:
            prefix = rng.choice(STEP_SINGLE)
        else:
            prefix = rng.choice(STEP_FIRST if k == 0 else STEP_LAST if k == n - 1 else STEP_NEXT)
        parts += [SENTENCE_GAP if k else "", prefix, obj, detail, SENTENCE_END]
    return parts


def _sentences(objs: list[ChainObject], details: list[str]) -> list:
    parts = []
    for k, (obj, detail) in enumerate(zip(objs, details)):
        parts.append(SENTENCE_GAP if k else "")
        if detail:
            parts += [SENTENCE_DETAILED[0], obj, SENTENCE_DETAILED[1], detail, SENTENCE_END]
        else:
            parts += [SENTENCE_PLAIN[min(k, 1)], obj, SENTENCE_END]
    return parts


def training_chain(sample: Sample, rng: random.Random) -> str:
    """One varied chain for a sampled scene; every object once, every stated region and relation true."""
    scene = sample.scene
    order = _mention_order(sample, rng)
    objs = [chain_object(scene.objects[i], scene.size) for i in order]
    details = _details(sample, order, rng)
    style = rng.choice(STYLES)
    if style == "list":
        parts = _listing(rng.choice(LIST_OPENINGS), objs, details, rng.choice(LIST_ENDINGS))
    elif style == "steps":
        parts = _steps(objs, details, rng)
    else:
        parts = _sentences(objs, details)
    if rng.random() < P_PREFACE:
        parts = [COUNT_PREFACES[len(objs)], *parts]
    return format_chain(parts)


def prompt_chain(sample: Sample) -> str:
    """The prompt's words in its order with every object's box: one fixed chain per scene (module docstring).

    Relations are the prompt's (subject, relation, anchor) with the subject written first, as the prompt does:
    "a A right of a B, and a C above the B"; prompts without relations list their objects in prompt order
    (counting prompts, which do not order theirs: reading order).
    """
    d, scene = sample.description, sample.scene
    objs = [chain_object(o, scene.size) for o in scene.objects]
    if not d.relations:
        order = reading_order(scene) if d.tag == "counting" else list(range(len(objs)))
        return format_chain(_listing("a ", [objs[i] for i in order], [""] * len(order), SENTENCE_END))
    (first, relation, anchor), *rest = d.relations
    parts: list = ["a ", objs[first], f" {relation} a ", objs[anchor]]
    for subject, relation, anchor in rest:  # complex: "..., and a C above the B"
        parts += [PROMPT_AND, objs[subject], f" {relation} the {objs[anchor].name}"]
    return format_chain(parts + [SENTENCE_END])


def fixed_texts() -> list[str]:
    """Every fixed text a chain can contain (for the vocabulary)."""
    texts = [*LIST_OPENINGS, LIST_SEPARATOR, LIST_LAST_SEPARATOR, *LIST_ENDINGS, *STEP_SINGLE, *STEP_FIRST]
    texts += [*STEP_NEXT, *STEP_LAST, *SENTENCE_DETAILED, *SENTENCE_PLAIN, SENTENCE_END, *COUNT_PREFACES.values()]
    texts += [p for phrases in RELATION_PHRASES.values() for p in phrases]
    texts += [REFERENCE_PREVIOUS, REFERENCE_FIRST, *REGIONS.values(), GROUNDING_OPENING, GROUNDING_ENDING]
    texts += ["a ", PROMPT_AND, " the "]
    return texts
