"""GoT-R1's dual-stage reward terms, each a plain function over a batch:

    term(prompts, chains, images, metadata, judge, **options) -> list[float | None]

`prompts` and `chains` are strings, `images` PIL images (or None where there is none), `metadata` the records'
GenEval metadata (or None: only oracle judges read it). Every value is in [0, 1], or None when it cannot be
computed (the judge failed or an input is missing); never NaN.

    R_sem  prompt -> chain, semantic: the judge reads the prompt and the chain text.
    R_spa  prompt -> chain, spatial: the chain's boxes drawn on a blank canvas (names at each box's top-left)
           are judged as a picture with the prompt. A chain with no box scores 0 without asking.
    R_RI   chain -> image: each planned object is grounded in the image; the reward is the mean IoU of planned
           and grounded boxes over the planned objects with a box, a missed object counting 0. Objects of the same
           name are matched one-to-one (greedily by IoU), so two planned circles need two circles.
           A chain with no box scores 0.
    R_PI   prompt -> image: the judge scores the image against the prompt.
    aesthetic  (optional) an open_clip preference model from a local directory (aesthetic.py).

Add a term with one decorator line:

    @REWARD_TERMS.register("R_count")
    def count_reward(prompts, chains, images, metadata, judge): ...

A term that never reads `images` says so with `count_reward.reads_image = False` (R_sem and R_spa do): when
every term of a chain-only GRPO run reads no image, its rollouts stop after the chain (`reads_image`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from janus_rig.chain import Box, draw_boxes, parse_chain
from janus_rig.registry import Registry
from reward_models.aesthetic import load_scorer
from reward_models.judges.base import GroundRequest, Judge, RubricRequest

REWARD_TERMS: Registry = Registry("reward term")
DEFAULT_TERMS = ("R_sem", "R_spa", "R_RI", "R_PI")
# Side of the blank canvas R_spa draws the layout on: large enough for the default font's labels to be legible,
# a multiple of 28 so that Qwen2.5-VL sees it without resampling.
SPATIAL_CANVAS = 448


def _batch_metadata(metadata: Sequence[dict | None] | None, n: int) -> list[dict | None]:
    return [None] * n if metadata is None else list(metadata)


def _checked(values: Sequence[float | None], judge: Judge) -> list[float | None]:
    """None for anything that is not a finite number in [0, 1] (counted as the judge's out_of_range failure)."""
    out = []
    for value in values:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)  # a judge may answer anything
        ok = number and math.isfinite(value) and 0.0 <= value <= 1.0
        if value is not None and not ok:
            judge.stats.fail("out_of_range", f"judge answered {value!r}, not a score in [0, 1]")
        out.append(float(value) if ok else None)
    return out


def matched_ious(planned: Sequence[tuple[str, Box]], found: dict[str, list[Box]]) -> list[float]:
    """IoU per planned (name, box): greedy one-to-one matching with the boxes found for that name, best IoU first.

    >>> a, b = Box(0, 0, 100, 100), Box(500, 500, 600, 600)
    >>> matched_ious([("circle", a), ("circle", b)], {"circle": [a]})
    [1.0, 0.0]
    """
    pairs = sorted(
        ((box.iou(other), i, j) for i, (name, box) in enumerate(planned) for j, other in enumerate(found.get(name, []))),
        key=lambda p: -p[0],
    )
    ious, used = [0.0] * len(planned), set()
    taken = [False] * len(planned)
    for iou, i, j in pairs:
        key = (planned[i][0], j)
        if taken[i] or key in used or iou <= 0.0:
            continue
        taken[i], ious[i] = True, iou
        used.add(key)
    return ious


@REWARD_TERMS.register("R_sem")
def semantic_reward(prompts, chains, images, metadata, judge: Judge) -> list[float | None]:
    meta = _batch_metadata(metadata, len(prompts))
    requests = [RubricRequest("semantic", p, chain=c, metadata=m) for p, c, m in zip(prompts, chains, meta)]
    return _checked(judge.score(requests), judge)


@REWARD_TERMS.register("R_spa")
def spatial_reward(prompts, chains, images, metadata, judge: Judge, *, canvas: int = SPATIAL_CANVAS) -> list[float | None]:
    meta = _batch_metadata(metadata, len(prompts))
    out: list[float | None] = [0.0] * len(prompts)
    asked, requests = [], []
    for i, (prompt, chain, m) in enumerate(zip(prompts, chains, meta)):
        boxed = [o for o in parse_chain(chain).objects if o.box is not None]
        if boxed:
            picture = draw_boxes(None, boxed, size=(canvas, canvas))
            asked.append(i)
            requests.append(RubricRequest("spatial", prompt, chain=chain, image=picture, metadata=m))
    for i, value in zip(asked, _checked(judge.score(requests), judge) if requests else []):
        out[i] = value
    return out


semantic_reward.reads_image = spatial_reward.reads_image = False  # their picture is the chain's layout


def reads_image(name: str) -> bool:
    """Whether the registered term `name` reads the sampled images (a term that does not say is assumed to)."""
    return getattr(REWARD_TERMS.get(name), "reads_image", True)


@REWARD_TERMS.register("R_RI")
def grounding_reward(prompts, chains, images, metadata, judge: Judge) -> list[float | None]:
    out: list[float | None] = [None] * len(prompts)
    plans: dict[int, list[tuple[str, Box]]] = {}
    requests, owners = [], []  # one grounding question per distinct name per image
    for i, (chain, image) in enumerate(zip(chains, images)):
        planned = [(o.name, o.box) for o in parse_chain(chain).objects if o.box is not None]
        if not planned:
            out[i] = 0.0
            continue
        if image is None:
            continue  # no image: cannot be computed
        plans[i] = planned
        for name in dict.fromkeys(name for name, _ in planned):
            requests.append(GroundRequest(image, name))
            owners.append((i, name))
    answers = judge.ground(requests) if requests else []
    found: dict[int, dict[str, list[Box]] | None] = {i: {} for i in plans}
    for (i, name), boxes in zip(owners, answers):
        if boxes is None or found[i] is None:
            found[i] = None  # one failed question and the record's R_RI is unknown
        else:
            found[i][name] = list(boxes)
    for i, planned in plans.items():
        if found[i] is not None:
            ious = matched_ious(planned, found[i])
            out[i] = sum(ious) / len(ious)
    return out


@REWARD_TERMS.register("R_PI")
def prompt_image_reward(prompts, chains, images, metadata, judge: Judge) -> list[float | None]:
    meta = _batch_metadata(metadata, len(prompts))
    out: list[float | None] = [None] * len(prompts)
    asked = [i for i, image in enumerate(images) if image is not None]
    requests = [RubricRequest("prompt_image", prompts[i], image=images[i], metadata=meta[i]) for i in asked]
    for i, value in zip(asked, _checked(judge.score(requests), judge) if requests else []):
        out[i] = value
    return out


@REWARD_TERMS.register("aesthetic")
def aesthetic_reward(prompts, chains, images, metadata, judge: Judge, *, model_dir: str | None = None) -> list[float | None]:
    """An open_clip preference score of image and prompt (HPS v2.1 in GoT-R1 v2), needs the `clip` extra."""
    if model_dir is None:
        raise ValueError("the aesthetic term needs term option model_dir (a local open_clip model directory)")
    scorer = load_scorer(model_dir)
    out: list[float | None] = [None] * len(prompts)
    asked = [i for i, image in enumerate(images) if isinstance(image, Image.Image)]
    for i, value in zip(asked, scorer([images[i] for i in asked], [prompts[i] for i in asked])):
        out[i] = value
    return out
