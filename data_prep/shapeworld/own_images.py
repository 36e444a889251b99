"""Checker rows on the model's own images: the policy draws a chain and an image for a world prompt, and the oracle
writes what the checker should say about that image.

Perturbed renders (`perturb.py`) are crisp; the images the checker meets in the loop are the policy's own VQ
decodings (blurred edges, off shades, shapes half drawn). A checker trained on renders alone reads its own images
worse (docs/results.md §5), so `janus-rig reflect-data --own MODEL --own-share S` makes S of the rows from the
model's own drawings:

- chain: the plan the model wrote (what the loop's checker is shown);
- image: the decoded image (resized to the world's size if the model draws at another size);
- scene: what the ShapeWorld detector finds in it; reflection: that scene's grounding chain, the true verdict of
  every stated fact on the image (`facts.oracle_verdicts`) and the decision, keep iff all hold;
- no actor target (`"actor": false`, `"edit": null`): an own image has no known right edit, so these rows teach the
  checker only (`janus_rig.reflect.data`) and the editor phase leaves them out.

Rows whose chain is not a well-formed chain are skipped and counted (`own_bad_chain`): the checker is shown the
plan, and a row must be readable strictly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from PIL import Image

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.perturb import seen_chain
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.chain import ChainFormatError, parse_chain
from janus_rig.reflect.facts import oracle_verdicts
from janus_rig.reflect.format import EDIT, KEEP, format_reflection

OWN = "own"  # the `perturbation.kind` of an own-image row


def own_example(record: dict, chain: str, image: Image.Image, size: int) -> tuple[dict, Image.Image]:
    """The reflect.jsonl row (without id/image) for the model's `chain` and decoded `image` of a world record's
    prompt, and the image at the world's `size`. Raises ChainFormatError for a chain that does not parse."""
    parse_chain(chain, strict=True)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    detections = detect(image)
    scene = Scene(size, tuple(SceneObject(d.shape, d.color, tuple(d.box)) for d in detections))
    verdicts = oracle_verdicts(record["metadata"], detections)
    decision = KEEP if all(v.holds for v in verdicts) else EDIT
    row = {
        "source": record["id"],
        "tag": record.get("tag"),
        "prompt": record["prompt"],
        "metadata": record["metadata"],
        "chain": chain,
        "scene": scene.to_json(),
        "perturbation": {"kind": OWN, "object": None, "note": "the model's own image"},
        "plan_error": False,
        "verdicts": [{"statement": v.statement, "holds": v.holds} for v in verdicts],
        "decision": decision,
        "reflection": format_reflection(seen_chain(scene), verdicts, decision),
        "actor": False,
        "edit": None,
        "edit_boxes": [],
    }
    return row, image


def own_examples(policy, records: list[dict], n: int, rng: random.Random, size: int, *, cfg_weight: float = 3.0,
                 batch_size: int = 32, seed: int = 0) -> Iterator[tuple[dict, Image.Image] | tuple[None, str]]:
    """n draws of `policy` (one chain and image per prompt) for records picked with replacement by `rng`: yields
    (row, image) per usable draw, (None, reason) per skipped one."""
    from janus_rig.rollout import RolloutConfig, sample

    config = RolloutConfig(group_size=1, cfg_weight=cfg_weight)
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    picked = [rng.choice(records) for _ in range(n)]
    for start in range(0, n, batch_size):
        batch = picked[start:start + batch_size]
        rollout = sample(policy, [r["prompt"] for r in batch], config, generator=generator)
        pixels = policy.decode_images(rollout.image_tokens)  # (B, S, S, 3) uint8
        for record, chain, px in zip(batch, rollout.chains, pixels):
            try:
                yield own_example(record, chain, Image.fromarray(px.numpy()), size)
            except ChainFormatError:
                yield None, "own_bad_chain"
