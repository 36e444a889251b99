"""Checker rows on the model's own images: the policy draws a chain and an image for a world prompt, and the oracle
writes what the checker should say about that image.

Perturbed renders (`perturb.py`) are crisp; the images the checker meets in the loop are the policy's own VQ
decodings (blurred edges, off shades, shapes half drawn). A checker trained on renders alone reads its own images
worse (docs/lab/notebook.md §5), so `janus-rig reflect-data --own MODEL --own-share S` makes S of the rows from the
model's own drawings:

- chain: the plan the model wrote (what the loop's checker is shown);
- image: the decoded image (resized to the world's size if the model draws at another size);
- scene: what the ShapeWorld detector finds in it; reflection: that scene's grounding chain, the true verdict of
  every stated fact on the image (`facts.oracle_verdicts`) and the decision, keep iff all hold;
- plan_right: whether that plan is right for the prompt (`oracle.check_chain`);
- no actor target (`"actor": false`, `"edit": null`): an own image has no known right edit in general, so these rows
  teach the checker only (`janus_rig.reflect.data`) and the editor phase leaves them out.

One kind of own failure does have a known edit: a right plan drawn wrong. Redrawing the same plan can fix it, and
the loop's misses are mostly of this kind (docs/lab/notebook.md §5), so `reflect-data --own-right-plans` keeps only the
drawings of right plans and gives their edits the actor's target: the plan unchanged and, as edit boxes, the regions
the drawing got wrong (`redraw_boxes`). Those rows teach the actor too, and the editor phase redraws them.

Another known edit works for any own failure, right plan or wrong: re-planning. The world record's own chain is a
right plan for the prompt whose layout is known to be drawable (it was rendered), and a whole-image redraw from it
fixes what a redraw of the model's plan cannot (plans with overlapping boxes; docs/lab/notebook.md §5). With
`reflect-data --own-replan` the edits of all own rows carry that target: the record's chain and the whole image as
the edit box (`WHOLE_IMAGE`), for the loop's `--edit-region full`.

Rows whose chain is not a well-formed chain are skipped and counted (`own_bad_chain`): the checker is shown the
plan, and a row must be readable strictly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from PIL import Image

from data_prep.shapeworld.chains import seen_chain
from data_prep.shapeworld.detect import Detection, detect
from data_prep.shapeworld.facts import oracle_verdicts
from data_prep.shapeworld.oracle import check_chain
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.chain import WHOLE_IMAGE as WHOLE_IMAGE_BOX
from janus_rig.chain import Box, ChainFormatError, ChainObject, parse_chain
from janus_rig.chain.roles import EDIT, KEEP, format_edit, format_reflection

OWN = "own"  # the `perturbation.kind` of an own-image row
WHOLE_IMAGE = ChainObject("image", WHOLE_IMAGE_BOX)  # the edit box of a re-plan
# A model's drawings, as data preparation sees them: (prompts, seed) -> (one chain and one image per prompt). The
# policy-backed one is built by the command layer (`janus-rig reflect-data --own MODEL`), so preparing data never
# runs a model itself.
Drawer = Callable[[list[str], int], tuple[list[str], list[Image.Image]]]
DRAWN_IOU = 0.5  # a planned object is drawn when a detection of its name overlaps its box at IoU >= this


def redraw_boxes(plan: list[ChainObject], detections: list[Detection], size: int) -> list[ChainObject]:
    """The regions to redraw so that an image follows its plan (0..1000 grid): every planned object that no
    detection of the same name covers at IoU >= DRAWN_IOU, then every detection that no planned object accounts for
    (a stray or wrongly drawn object, named as detected); all planned objects when both lists are empty (the
    drawing fails in a way no single object shows)."""
    found = [ChainObject(d.name, Box.from_pixels(*d.box, size, size)) for d in detections]
    matched: set[int] = set()
    boxes = []
    for obj in plan:
        hit = next((i for i, f in enumerate(found) if i not in matched and f.name == obj.name
                    and obj.box.iou(f.box) >= DRAWN_IOU), None)
        if hit is None:
            boxes.append(obj)
        else:
            matched.add(hit)
    boxes += [f for i, f in enumerate(found) if i not in matched]
    return boxes or list(plan)


def own_example(record: dict, chain: str, image: Image.Image, size: int, *,
                redraw: bool = False, replan: bool = False) -> tuple[dict, Image.Image]:
    """The reflect.jsonl row (without id/image) for the model's `chain` and decoded `image` of a world record's
    prompt, and the image at the world's `size`. With `redraw`, an edit of a right plan carries the actor's target
    (the same plan, `redraw_boxes`); with `replan`, every edit carries the record's chain and the whole image.
    Raises ChainFormatError for a chain that does not parse."""
    plan = parse_chain(chain, strict=True).objects
    plan_right = check_chain(plan, record["metadata"])
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    detections = detect(image)
    scene = Scene(size, tuple(SceneObject(d.shape, d.color, tuple(d.box)) for d in detections))
    verdicts = oracle_verdicts(record["metadata"], detections)
    decision = KEEP if all(v.holds for v in verdicts) else EDIT
    boxes = redraw_boxes(plan, detections, size) if redraw and plan_right and decision == EDIT else []
    target = chain
    if replan and decision == EDIT:
        target, boxes = record["chain"], [WHOLE_IMAGE]
    row = {
        "source": record["id"],
        "tag": record.get("tag"),
        "prompt": record["prompt"],
        "metadata": record["metadata"],
        "chain": chain,
        "scene": scene.to_json(),
        "perturbation": {"kind": OWN, "object": None, "note": "the model's own image"},
        "plan_error": False,
        "plan_right": plan_right,
        "verdicts": [{"statement": v.statement, "holds": v.holds} for v in verdicts],
        "decision": decision,
        "reflection": format_reflection(seen_chain(scene), verdicts, decision),
        "actor": bool(boxes),
        "edit": format_edit(target, boxes) if boxes else None,
        "edit_boxes": [list(o.box.as_tuple()) for o in boxes],
    }
    return row, image


def own_examples(draw: Drawer, records: list[dict], n: int, rng: random.Random, size: int, *,
                 batch_size: int = 32, seed: int = 0, right_plans: bool = False,
                 replan: bool = False) -> Iterator[tuple[dict, Image.Image] | tuple[None, str]]:
    """n drawings by `draw` (one chain and image per prompt; batch b drawn with seed + b) for records picked with
    replacement by `rng`: yields (row, image) per usable drawing, (None, reason) per skipped one. With
    `right_plans`, drawings of wrong plans are skipped (`own_wrong_plan`) and the edits of the rest carry the
    actor's redraw target; with `replan` every edit carries the re-plan target (`own_example`)."""
    picked = [rng.choice(records) for _ in range(n)]
    for b, start in enumerate(range(0, n, batch_size)):
        batch = picked[start:start + batch_size]
        chains, images = draw([r["prompt"] for r in batch], seed + b)
        for record, chain, drawn in zip(batch, chains, images):
            try:
                row, image = own_example(record, chain, drawn, size, redraw=right_plans, replan=replan)
            except ChainFormatError:
                yield None, "own_bad_chain"
                continue
            yield (None, "own_wrong_plan") if right_plans and not row["plan_right"] else (row, image)
