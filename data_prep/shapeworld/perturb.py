"""Reflection training data: perturb a correct scene so that the caption fails in a known way, and write what the
checker should say about the result and what the actor should do about it.

Perturbations of a correct scene (objects keep the world's rules: sizes, inside the canvas, gaps between boxes):

    move        a relation's subject moves so that this relation fails and every other fact still holds
    recolor     an object named with a colour gets another colour (its object fact and its relations fail)
    swap_shape  an object gets another shape (its object fact and its relations fail)
    drop        an object disappears (its object fact and its relations fail; a count falls short)
    add         an object appears: one more of the counted shape for counting captions (the count fails),
                otherwise an object no clause names (nothing fails: the image is still correct)

A perturbation never gives a new object the colour and shape of another object, so the oracle's matching of
clauses to objects only changes where intended; `Perturbed.expected_failures` states the intent and the oracle
(on the rendered image) must agree (tests/reflect/test_perturb.py).

Targets (rows of WORLD/reflect.jsonl, see docs/reflection.md):
- checker: the oracle's description of the perturbed image (the grounding chain of its scene), the true verdict
  of every stated fact (`data_prep.shapeworld.facts.oracle_verdicts`), and the decision: keep iff all hold;
- actor (edit decisions only): the record's correct chain and the edit boxes, the union of the old and the new
  box of every changed object (a region to clear, a region to draw, or both), each named by its object.

The plan shown with the image is the record's correct chain: the image failed to follow a right plan (a drawing
error). With `plan_errors` > 0 that share of the moves shows instead the plan the moved image follows (the record's
chain with the moved object's box; `plan_error: true`): a wrong plan drawn faithfully, which the actor must revise
to the correct chain, not copy.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from data_prep.shapeworld.chains import seen_chain
from data_prep.shapeworld.facts import OBJECT, RELATION, Fact, oracle_verdicts, stated_facts
from data_prep.shapeworld.own_images import own_examples
from data_prep.shapeworld.relations import holds
from data_prep.shapeworld.render import render
from data_prep.shapeworld.sampler import apart, holds_in_chain_too, min_gap, side_range
from data_prep.shapeworld.scene import COLORS, MAX_OBJECTS, SHAPES, Scene, SceneObject
from janus_rig.chain import Box, ChainFormatError, ChainObject, format_span
from janus_rig.chain.roles import EDIT, KEEP, format_edit, format_reflection

log = logging.getLogger(__name__)

PERTURBATIONS = ("move", "recolor", "swap_shape", "drop", "add")
# How often each kind is tried first. Broken relations are what the method is about, and only position and complex
# captions have one to break, so moves are favoured where they apply.
KIND_WEIGHTS = {"move": 3.0, "recolor": 1.0, "swap_shape": 1.0, "drop": 1.0, "add": 1.0}
NONE = "none"  # an unperturbed example (the checker's decision is keep)
PLACE_TRIES = 400  # random boxes tried for a moved or added object before the perturbation counts as impossible
REFLECT_FILE, REFLECT_IMAGES = "reflect.jsonl", "reflect/images"


@dataclass(frozen=True)
class Perturbed:
    kind: str  # one of PERTURBATIONS, or NONE
    scene: Scene  # the perturbed scene
    index: int | None  # the changed object's index in the correct scene (None for add and none)
    expected_failures: frozenset[str]  # statements of the facts meant to fail
    edit_boxes: tuple[ChainObject, ...]  # 0..1000 grid regions to redraw to restore the correct scene
    note: str  # what was done, e.g. "moved the red circle"


def _matches(obj: SceneObject, clause: dict) -> bool:
    return obj.shape == clause["class"] and ("color" not in clause or obj.color == clause["color"])


def _concerns(fact: Fact, scene: Scene) -> set[int]:
    """Objects of the correct scene that the fact's clauses match."""
    return {i for clause in fact.check["include"] for i, o in enumerate(scene.objects) if _matches(o, clause)}


def _grid(obj: SceneObject, size: int) -> ChainObject:
    return ChainObject(obj.name, Box.from_pixels(*obj.box, size, size))


def _fails_everywhere(relation: str, box, anchor, size: int) -> bool:
    """The relation fails for the pixel boxes and for their 0..1000 chain boxes (no borderline case)."""
    grid = lambda b: Box.from_pixels(*b, size, size).as_tuple()  # noqa: E731
    return not holds(relation, box, anchor) and not holds(relation, grid(box), grid(anchor))


def _combos(scene: Scene, skip: int | None = None) -> set[tuple[str, str]]:
    return {(o.color, o.shape) for i, o in enumerate(scene.objects) if i != skip}


def _random_box(rng: random.Random, size: int, side: int) -> tuple[int, int, int, int]:
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    return (x, y, x + side, y + side)


def _fits(box, scene: Scene, skip: int | None) -> bool:
    gap = min_gap(scene.size)
    return all(apart(box, o.box, gap) for i, o in enumerate(scene.objects) if i != skip)


def _with(scene: Scene, index: int, obj: SceneObject | None) -> Scene:
    objects = list(scene.objects)
    if obj is None:
        del objects[index]
    else:
        objects[index] = obj
    return replace(scene, objects=tuple(objects))


# --- the perturbations: (scene, facts, rng) -> Perturbed or None when it does not apply ----------------------------
def _move(scene: Scene, facts: list[Fact], rng: random.Random) -> Perturbed | None:
    relations = [f for f in facts if f.kind == RELATION]
    if not relations:
        return None
    fact = rng.choice(relations)
    anchor_clause, subject_clause = fact.check["include"]  # a relation's check: [anchor, subject with position]
    subjects = [i for i, o in enumerate(scene.objects) if _matches(o, subject_clause)]
    anchors = [i for i, o in enumerate(scene.objects) if _matches(o, anchor_clause)]
    if len(subjects) != 1 or len(anchors) != 1:
        return None
    i, anchor = subjects[0], anchors[0]
    relation = subject_clause["position"][0]
    # Every other relation that involves the subject must keep holding (pixel and chain boxes alike).
    keep = [(f.check["include"][1], f.check["include"][0]) for f in relations
            if f is not fact and i in _concerns(f, scene)]
    obj, size = scene.objects[i], scene.size
    for _ in range(PLACE_TRIES):
        box = _random_box(rng, size, obj.side)
        if not _fits(box, scene, i):
            continue
        if not _fails_everywhere(relation, box, scene.objects[anchor].box, size):
            continue
        moved = _with(scene, i, SceneObject(obj.shape, obj.color, box))
        if all(_relation_holds(moved, s, t) for s, t in keep):
            boxes = (_grid(moved.objects[i], size), _grid(obj, size))
            return Perturbed("move", moved, i, frozenset({fact.statement}), boxes, f"moved the {obj.name}")
    return None


def _relation_holds(scene: Scene, subject_clause: dict, anchor_clause: dict) -> bool:
    subject = next(o for o in scene.objects if _matches(o, subject_clause))
    anchor = next(o for o in scene.objects if _matches(o, anchor_clause))
    return holds_in_chain_too(subject_clause["position"][0], subject.box, anchor.box, scene.size)


def _failing(facts: list[Fact], scene: Scene, i: int, colour_only: bool = False) -> frozenset[str]:
    """Facts that a change of object i breaks: those whose clauses match it (by colour, for a recolouring)."""
    out = set()
    for f in facts:
        for clause in f.check["include"]:
            if _matches(scene.objects[i], clause) and (not colour_only or "color" in clause):
                out.add(f.statement)
    return frozenset(out)


def _recolor(scene: Scene, facts: list[Fact], rng: random.Random) -> Perturbed | None:
    named = [i for i in range(len(scene.objects)) if _failing(facts, scene, i, colour_only=True)]
    if not named:
        return None
    i = rng.choice(named)
    obj, taken = scene.objects[i], _combos(scene, i)
    colours = [c for c in COLORS if c != obj.color and (c, obj.shape) not in taken]
    if not colours:
        return None
    new = SceneObject(obj.shape, rng.choice(colours), obj.box)
    return Perturbed("recolor", _with(scene, i, new), i, _failing(facts, scene, i, colour_only=True),
                     (_grid(obj, scene.size),), f"recoloured the {obj.name} {new.color}")


def _swap_shape(scene: Scene, facts: list[Fact], rng: random.Random) -> Perturbed | None:
    named = [i for i in range(len(scene.objects)) if _failing(facts, scene, i)]
    if not named:
        return None
    i = rng.choice(named)
    obj, taken = scene.objects[i], _combos(scene, i)
    shapes = [s for s in SHAPES if s != obj.shape and (obj.color, s) not in taken]
    if not shapes:
        return None
    new = SceneObject(rng.choice(shapes), obj.color, obj.box)
    return Perturbed("swap_shape", _with(scene, i, new), i, _failing(facts, scene, i),
                     (_grid(obj, scene.size),), f"turned the {obj.name} into a {new.shape}")


def _drop(scene: Scene, facts: list[Fact], rng: random.Random) -> Perturbed | None:
    named = [i for i in range(len(scene.objects)) if _failing(facts, scene, i)]
    if not named:
        return None
    i = rng.choice(named)
    obj = scene.objects[i]
    return Perturbed("drop", _with(scene, i, None), i, _failing(facts, scene, i), (_grid(obj, scene.size),),
                     f"removed the {obj.name}")


def _add(scene: Scene, facts: list[Fact], rng: random.Random) -> Perturbed | None:
    if len(scene.objects) >= MAX_OBJECTS:
        return None
    counted = [f for f in facts if f.kind == OBJECT and f.check["exclude"]]
    clauses = [c for f in facts for c in f.check["include"]]
    taken = _combos(scene)
    if counted:  # one more of the counted shape: the count fails
        fact = rng.choice(counted)
        shape = fact.check["include"][0]["class"]
        combos = [(c, shape) for c in COLORS]
        expected = frozenset({fact.statement})
    else:  # an object no clause names: still correct
        combos = [(c, s) for c in COLORS for s in SHAPES
                  if (c, s) not in taken and not any(_matches(SceneObject(s, c, (0, 0, 1, 1)), k) for k in clauses)]
        expected = frozenset()
    if not combos:
        return None
    color, shape = rng.choice(combos)
    lo, hi = side_range(scene.size)
    for _ in range(PLACE_TRIES):
        box = _random_box(rng, scene.size, rng.randint(lo, hi))
        if _fits(box, scene, None):
            new = SceneObject(shape, color, box)
            added = replace(scene, objects=(*scene.objects, new))
            return Perturbed("add", added, None, expected, (_grid(new, scene.size),), f"added a {new.name}")
    return None


KINDS = {"move": _move, "recolor": _recolor, "swap_shape": _swap_shape, "drop": _drop, "add": _add}


def perturb(scene: Scene, meta: dict, kind: str, rng: random.Random) -> Perturbed | None:
    """Apply one perturbation to a correct scene of the caption `meta`; None when the kind cannot apply to it."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r}; valid: {', '.join(PERTURBATIONS)}")
    return KINDS[kind](scene, stated_facts(meta), rng)


def unperturbed(scene: Scene) -> Perturbed:
    return Perturbed(NONE, scene, None, frozenset(), (), "unchanged")


# --- targets -------------------------------------------------------------------------------------------------------
def followed_plan(chain: str, old: ChainObject, new: ChainObject) -> str | None:
    """The chain with the span of `old` (its name and box) rewritten with `new`'s box: the plan a moved object's
    image follows. None when the span is not found exactly once."""
    span = format_span(old.name, old.box)
    if chain.count(span) != 1:
        return None
    return chain.replace(span, format_span(new.name, new.box))


def example(record: dict, perturbed: Perturbed, plan_error: bool = False) -> tuple[dict, object]:
    """The reflect.jsonl row (without id/image) and the rendered image for a perturbed record; `plan_error` (moves
    only) shows the plan the moved image follows instead of the record's chain."""
    image = render(perturbed.scene)
    verdicts = oracle_verdicts(record["metadata"], image)
    failed = frozenset(v.statement for v in verdicts if not v.holds)
    if failed != perturbed.expected_failures:
        raise ValueError(f"{perturbed.kind} was meant to fail {sorted(perturbed.expected_failures)} but the oracle "
                         f"finds {sorted(failed)} failing")
    decision = KEEP if not failed else EDIT
    shown = record["chain"]
    if plan_error:
        if perturbed.kind != "move":
            raise ValueError(f"plan errors are moves; got {perturbed.kind}")
        new, old = perturbed.edit_boxes  # the moved object's new and old box
        shown = followed_plan(record["chain"], old, new)
        if shown is None:
            raise ValueError(f"plan error: the moved {old.name}'s span is not in the record's chain exactly once")
    row = {
        "source": record["id"],
        "tag": record.get("tag"),
        "prompt": record["prompt"],
        "metadata": record["metadata"],
        "chain": shown,
        "scene": perturbed.scene.to_json(),
        "perturbation": {"kind": perturbed.kind, "object": perturbed.index, "note": perturbed.note},
        "plan_error": plan_error,
        "verdicts": [{"statement": v.statement, "holds": v.holds} for v in verdicts],
        "decision": decision,
        "reflection": format_reflection(seen_chain(perturbed.scene), verdicts, decision),
        "edit": format_edit(record["chain"], perturbed.edit_boxes) if decision == EDIT else None,
        "edit_boxes": [list(o.box.as_tuple()) for o in perturbed.edit_boxes] if decision == EDIT else [],
    }
    return row, image


def _weighted_order(rng: random.Random, weights: dict[str, float]) -> list[str]:
    """The kinds in a random order where a kind comes first with probability proportional to its weight."""
    left, order = dict(weights), []
    while left:
        kind = rng.choices(list(left), weights=list(left.values()))[0]
        order.append(kind)
        del left[kind]
    return order


def make_example(record: dict, rng: random.Random, keep_fraction: float,
                 weights: dict[str, float] = KIND_WEIGHTS, plan_errors: float = 0.0) -> tuple[dict, object]:
    """One row for a correct world record: unperturbed with probability keep_fraction, else the first applicable
    perturbation in a random order drawn by `weights`; a move shows the plan its image follows with probability
    `plan_errors`. ValueError naming the field when the record cannot be used."""
    for field in ("id", "prompt", "chain", "metadata", "scene"):
        if not record.get(field):
            raise ValueError(f"no {field!r}")
    scene = Scene.from_json(record["scene"])
    meta = record["metadata"]
    if not all(v.holds for v in oracle_verdicts(meta, render(scene))):
        raise ValueError("the record's scene does not satisfy its own caption")
    chosen = unperturbed(scene)
    if rng.random() >= keep_fraction:
        for kind in _weighted_order(rng, weights):
            p = perturb(scene, meta, kind, rng)
            if p is not None:
                chosen = p
                break
    plan_error = chosen.kind == "move" and plan_errors > 0 and rng.random() < plan_errors
    return example(record, chosen, plan_error)


def check_rows_free(world: str | Path, split: str = "train", name: str | None = None,
                    overwrite: bool = False) -> tuple[str, str, list[Path]]:
    """The rows file and image prefix a `write_reflect_data` call writes, and the earlier images of that prefix.
    ValueError when an earlier set is there and `overwrite` is off (a rerun never mixes with an earlier one)."""
    root = Path(world)
    out_name = f"{name}.jsonl" if name else REFLECT_FILE if split == "train" else f"reflect_{split}.jsonl"
    prefix = name or f"reflect-{split}"
    earlier = sorted((root / REFLECT_IMAGES).glob(f"{prefix}-*.png"))
    if ((root / out_name).exists() or earlier) and not overwrite:
        raise ValueError(f"{root / out_name} (or its images {REFLECT_IMAGES}/{prefix}-*.png) exists: pick another "
                         "--name, or add --overwrite to replace the rows and delete their earlier images")
    return out_name, prefix, earlier


def write_reflect_data(world: str | Path, n: int, seed: int = 0, split: str = "train", keep_fraction: float = 0.25,
                       progress: bool = True, plan_errors: float = 0.0, own=None, own_share: float = 0.0,
                       name: str | None = None, own_keep: float | None = None,
                       own_right_plans: bool = False, own_replan: bool = False, overwrite: bool = False) -> dict:
    """Write n rows to WORLD/reflect.jsonl (WORLD/reflect_val.jsonl for split val) and their images to
    WORLD/reflect/images/, from records of WORLD/{split}.jsonl drawn with replacement (seeded).

    With a drawer `own` (own_images.Drawer: a model's drawings) and `own_share` > 0, that share of the rows are
    checker rows on the model's own drawings of the records' prompts (`own_images.py`), written first; the rest
    are perturbed renders.
    A policy draws correct images more often than wrong ones; `own_keep` caps the share of keep rows among the own
    rows (drawing on, up to OWN_DRAWS_PER_ROW draws per row, and counting the keeps left out as `own_keep_over_cap`),
    so the checker sees enough of its own failures. Without it the own rows are one draw each, as they come.
    `own_right_plans` keeps only drawings of right plans (the failures a redraw can fix; the others are counted as
    `own_wrong_plan`, drawing on as for `own_keep`) and gives their edits the actor's target: the same plan and the
    regions drawn wrong. `own_replan` gives the edits of all own rows the re-plan target instead: the record's chain
    (a drawable right plan) and the whole image (`own_images.own_example`).
    `name` writes WORLD/{name}.jsonl with row ids and images `{name}-N` instead, so a second set (say, a model's own
    drawings of the val prompts) sits next to the default ones without overwriting them.
    Records that cannot be used are skipped, logged by id and counted by reason in the returned stats."""
    root = Path(world)
    source = root / f"{split}.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: {root} is not a `janus-rig world` directory with a {split} split")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction {keep_fraction} is outside [0, 1]")
    if not 0.0 <= plan_errors <= 1.0:
        raise ValueError(f"plan_errors {plan_errors} is outside [0, 1]")
    if not 0.0 <= own_share <= 1.0:
        raise ValueError(f"own_share {own_share} is outside [0, 1]")
    check_rows_name(name)
    if own_keep is not None and not 0.0 <= own_keep <= 1.0:
        raise ValueError(f"own_keep {own_keep} is outside [0, 1]")
    if own_share > 0 and own is None:
        raise ValueError("own_share > 0 needs a policy to draw the own images (`--own MODEL`)")
    kinds, skipped, decisions = Counter(), Counter(), Counter()
    plan_error_rows = 0
    records = []
    for line_no, line in enumerate(source.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                log.warning("%s:%d is not JSON (%s); skipped", source, line_no, err.msg)
                skipped["not_json"] += 1
    if not records:
        raise ValueError(f"{source} holds no records")
    out_name, prefix, earlier = check_rows_free(root, split, name, overwrite)
    for image in earlier:  # a rerun with a smaller n would otherwise leave images that no row names
        image.unlink()
    (root / REFLECT_IMAGES).mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"shapeworld-reflect-{split}-{seed}")
    width = max(6, len(str(n - 1)))
    with open(root / out_name, "w") as out, tqdm(total=n, desc="reflect data", unit="row", disable=not progress) as bar:
        written, attempts = 0, 0

        def write(row: dict, image) -> None:
            nonlocal written
            row_id = f"{prefix}-{written:0{width}d}"
            image_path = f"{REFLECT_IMAGES}/{row_id}.png"
            image.save(root / image_path)
            out.write(json.dumps({"id": row_id, "image": image_path, **row}) + "\n")
            kinds[row["perturbation"]["kind"]] += 1
            decisions[row["decision"]] += 1
            written += 1
            bar.update()

        n_own = round(own_share * n) if own is not None else 0
        if n_own:
            size = _world_size(root, records)
            keep_cap = n_own if own_keep is None else int(own_keep * n_own)
            max_draws = n_own if own_keep is None and not own_right_plans else OWN_DRAWS_PER_ROW * n_own
            own_rows = keeps = draws = 0
            while own_rows < n_own and draws < max_draws:
                chunk = min(max(n_own - own_rows, 32), max_draws - draws)
                for row, image in own_examples(own, records, chunk, rng, size, seed=seed + draws,
                                               right_plans=own_right_plans, replan=own_replan):
                    if row is None:
                        skipped[image] += 1  # the reason
                    elif own_rows < n_own and (row["decision"] != KEEP or keeps < keep_cap):
                        keeps += row["decision"] == KEEP
                        own_rows += 1
                        write(row, image)
                    elif row["decision"] == KEEP and own_rows < n_own:
                        skipped["own_keep_over_cap"] += 1
                draws += chunk
            if own_rows < n_own:
                log.warning("%d of %d own-image rows after %d draws; perturbed rows fill the rest", own_rows, n_own,
                            draws)
        while written < n:
            attempts += 1
            if attempts > 10 * n + 100:
                raise ValueError(f"only {written} of {n} rows could be made from {source}; skipped: {dict(skipped)}")
            record = rng.choice(records)
            try:
                row, image = make_example(record, rng, keep_fraction, plan_errors=plan_errors)
            except (ValueError, KeyError, TypeError, ChainFormatError) as err:
                reason = str(err).split(":")[0][:60]
                if skipped[reason] < 5:
                    log.warning("%s record %s skipped: %s", source.name, record.get("id", "?"), err)
                skipped[reason] += 1
                continue
            plan_error_rows += row["plan_error"]
            write(row, image)
    return {"rows": n, "path": str(root / out_name), "kinds": dict(kinds), "decisions": dict(decisions),
            "plan_errors": plan_error_rows, "skipped": dict(skipped)}


OWN_DRAWS_PER_ROW = 10  # with own_keep or own_right_plans: draws per own row at most, then perturbed rows fill in
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_WORLD_FILES = {"train", "val", "grounding", "world", "metadata"}


def check_rows_name(name: str | None) -> None:
    """ValueError unless `name` (None: the default files) can name a rows file in a world directory."""
    if name is not None and (not _NAME.fullmatch(name) or name in _WORLD_FILES):
        raise ValueError(f"--name {name!r}: use letters, digits, '_' and '-', and none of the world's own files "
                         f"({', '.join(sorted(_WORLD_FILES))})")


def _world_size(root: Path, records: list[dict]) -> int:
    """The world's image size: world.json's "size", else the records' scenes'."""
    settings = root / "world.json"
    if settings.is_file():
        return int(json.loads(settings.read_text())["size"])
    return int(records[0]["scene"]["size"])
