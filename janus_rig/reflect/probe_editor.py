"""The editor alone: how often a redraw fixes an image that departs from a right plan, apart from the checker and
the actor (which decide whether and what to edit). `janus-rig eval editor` runs it.

    cases      reflect-data rows (`janus-rig reflect-data --split val`, or `--own M --name own_val` for the
               model's own drawings) whose plan is right for the prompt (`check_chain`); the oracle scores each
               row's image: wrong images are what an edit should fix, right ones what it must not break
    regions    boxes: region-locked, the patches under the oracle's edit boxes — where the image departs from
               its plan (`departure_boxes`: planned objects not drawn there, drawn objects not planned there);
               full: the whole image redrawn from the plan (`ReflectConfig.edit_region`)
    scores     per region: the share of wrong images a redraw fixes; for full redraws also the share of right
               images it keeps right (a region-locked edit of a right image has no oracle boxes to redraw)

`departure_boxes` and `editor_scores` are pure; `redraw` runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import check_chain, detections_to_objects, score_metadata
from data_prep.vq_cache import encode_images, load_image
from janus_rig.chain import COORD_MAX, Box, ChainFormatError, ChainObject, parse_chain
from janus_rig.rollout import edit

REGIONS = ("boxes", "full")
MATCH_IOU = 0.5  # a drawn object is where the plan put it: same name, IoU >= this (the loop's seen-object rule)


def departure_boxes(plan: Sequence[ChainObject], drawn: Sequence[ChainObject]) -> list[Box]:
    """Where an image departs from its plan (boxes on the 0..1000 grid): the plan's box of every planned object
    not drawn there (no drawn object of its name at IoU >= 0.5), then the box of every drawn object not planned
    there. Empty: the image follows its plan."""
    def placed(obj: ChainObject, others: Sequence[ChainObject]) -> bool:
        return any(o.name == obj.name and o.box is not None and o.box.iou(obj.box) >= MATCH_IOU for o in others)

    boxes = [p.box for p in plan if p.box is not None and not placed(p, drawn)]
    return boxes + [d.box for d in drawn if d.box is not None and not placed(d, plan)]


def edit_cases(rows: Sequence[dict], root: Path, world_size: int) -> tuple[list[dict], dict]:
    """The rows whose plan is right, each with the oracle's reading of its image: (cases, counts).

    A case is {"row", "wrong" (the oracle fails the image), "boxes" (`departure_boxes`, [] when the image follows
    its plan)}. Rows with an unreadable or wrong plan are counted (`plan_unreadable`, `plan_wrong`), not probed:
    redrawing cannot fix a wrong plan.
    """
    cases, counts = [], {"rows": len(rows), "plan_unreadable": 0, "plan_wrong": 0}
    for row in rows:
        try:
            plan = parse_chain(row["chain"], strict=True).objects
        except ChainFormatError:
            counts["plan_unreadable"] += 1
            continue
        if not check_chain(plan, row["metadata"]):
            counts["plan_wrong"] += 1
            continue
        pixels = load_image(root / row["image"], world_size, world_size)  # (3, S, S) uint8
        detections = detect(Image.fromarray(pixels.permute(1, 2, 0).numpy()))
        right, _ = score_metadata(row["metadata"], detections)
        boxes = departure_boxes(plan, detections_to_objects(detections, world_size))
        cases.append({"row": row, "wrong": not right, "boxes": boxes})
    return cases, counts


def editor_scores(cases: Sequence[dict], fixed: dict[str, dict[str, Sequence[Sequence[bool]]]]) -> dict:
    """fixed[region][kind][seed][i]: the oracle on the redraw of the i-th case of that kind ("wrong" or "right")
    -> per region and kind the share of redraws the oracle passes (`wrong_fixed`, `right_kept`) and their count,
    plus the case counts."""
    kinds = {"wrong": sum(c["wrong"] for c in cases)}
    kinds["right"] = len(cases) - kinds["wrong"]
    scores = {"cases": len(cases), **kinds,
              "no_departure": sum(c["wrong"] and not c["boxes"] for c in cases)}
    for region, by_kind in fixed.items():
        scores[region] = {}
        for kind, per_seed in by_kind.items():
            if any(len(s) != kinds[kind] for s in per_seed):
                raise ValueError(f"{region}/{kind}: one oracle result per {kind} case and seed "
                                 f"({kinds[kind]}), got {[len(s) for s in per_seed]}")
            flags = [ok for s in per_seed for ok in s]
            name = "wrong_fixed" if kind == "wrong" else "right_kept"
            scores[region][name] = sum(flags) / len(flags) if flags else None
            scores[region][f"{kind}_redraws"] = len(flags)
    return scores


WHOLE = Box(0, 0, COORD_MAX, COORD_MAX)


def redraw(policy, cases: Sequence[dict], root: Path, world_size: int, region: str, config, seed: int = 0,
           batch_size: int = 16) -> list[Image.Image]:
    """Each case's image redrawn from its plan (batch b with seed + b): only its departure boxes (`boxes`; a case
    without any, `no_departure`, is redrawn whole) or the whole image (`full`). The image goes in as its VQ
    encoder's codes."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; valid: {', '.join(REGIONS)}")
    out = []
    for b, i in enumerate(tqdm(range(0, len(cases), batch_size), desc=f"redraw ({region})", unit="batch")):
        batch = cases[i:i + batch_size]
        pixels = torch.stack([load_image(root / c["row"]["image"], world_size, policy.image_size) for c in batch])
        codes = encode_images(policy.base.model.vqmodel, pixels)  # (B, N)
        boxes = [c["boxes"] if region == "boxes" and c["boxes"] else [WHOLE] for c in batch]
        ro = edit(policy, [c["row"]["prompt"] for c in batch], [c["row"]["chain"] for c in batch], codes, boxes,
                  config, seed=seed + b)
        out += [Image.fromarray(p.numpy()) for p in policy.decode_images(ro.image_tokens)]  # (B, S, S, 3)
    return out
