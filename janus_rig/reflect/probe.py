"""Probes: the checker and the grounding question on rendered ShapeWorld images whose truth is known, apart from
the loop (where the checker reads the model's own drawings). `janus-rig eval checker` runs both.

    checker    WORLD/reflect_val.jsonl rows (`janus-rig reflect-data --split val`): the prompt, the plan and the
               rendered (perturbed) image in; the reflection scored against the row's true verdicts and decision,
               and its seen objects against the row's scene
    grounding  WORLD/val.jsonl records: "List every object in the image with its box." scored against the scene

Scoring (`checker_scores`, `grounding_scores`) is pure; `probe_checker` / `probe_grounding` run the model.
Each score comes with the constant answers it must beat: saying "yes" to every fact (`facts_holding`) and the
likelier decision for every image (`majority_decision`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from data_prep.shapeworld.facts import stated_facts
from data_prep.vq_cache import encode_images, load_image
from janus_rig.chain import Box, parse_chain
from janus_rig.chain.roles import DECISIONS, EDIT, ParsedReflection, Verdict, normalize_statement
from janus_rig.model.prompts import GROUNDING_QUESTION
from janus_rig.reflect.loop import check
from janus_rig.reflect.reward import SEEN_IOU, checker_accuracy, seen_objects, verdict_matches
from janus_rig.reflect.text import sample_text

PROBE_FIELDS = ("id", "image", "prompt", "chain", "decision", "verdicts", "metadata", "scene")


# --- input ---------------------------------------------------------------------------------------------------------
def _row_problem(row) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in PROBE_FIELDS if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    if row["decision"] not in DECISIONS:
        return f"decision must be one of {DECISIONS}, got {row['decision']!r}"
    verdicts = row["verdicts"]
    if not isinstance(verdicts, list) or not verdicts or not all(
            isinstance(v, dict) and isinstance(v.get("statement"), str) and isinstance(v.get("holds"), bool)
            for v in verdicts):
        return "verdicts must be a non-empty list of {statement: str, holds: bool}"
    scene = row["scene"]
    if not isinstance(scene, dict) or not isinstance(scene.get("size"), int) or not isinstance(
            scene.get("objects"), list):
        return "scene must hold size (int) and objects (list)"
    return None


def missing_fields(*fields: str):
    """A row check: the fields a row lacks (None when it has them all)."""
    def problem(row) -> str | None:
        missing = [k for k in fields if not isinstance(row, dict) or k not in row]
        return f"no {', '.join(missing)}" if missing else None
    return problem


def read_rows(path: str | Path, limit: int | None = None, check=_row_problem) -> list[dict]:
    """The first `limit` rows of a JSONL file, each passed through `check` (row -> problem or None; default: a
    checker probe row), ValueError naming the file, line and row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if limit is not None and len(rows) >= limit:
            break
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not JSON ({err.msg})") from None
        problem = check(row)
        if problem:
            row_id = row.get("id", "?") if isinstance(row, dict) else "?"
            raise ValueError(f"{path}:{n}: row {row_id}: {problem}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


# --- scoring (pure) ------------------------------------------------------------------------------------------------
def _scene_objects(scene: dict) -> list[SimpleNamespace]:
    """A scene's objects as detections (name "colour shape", pixel box), what `seen_objects` compares with."""
    return [SimpleNamespace(name=f"{o['color']} {o['shape']}", box=tuple(o["box"])) for o in scene["objects"]]


def checker_scores(reflections: Sequence[ParsedReflection], rows: Sequence[dict]) -> dict:
    """The checker against each row's truth: `checker_accuracy`'s metrics, the constant answers to beat, the
    objects it found (`seen_objects` on the row's scene) and, per fact kind (object, relation), how it answered
    true and false facts (`answers["relation/true->no"]`: true relations it called false; `none`: unanswered), and
    its decisions against the true ones (`decisions["edit->keep"]`: images that need an edit it left alone; on own
    rows, which say whether the plan was right, edits split into `edit/right_plan` and `edit/wrong_plan`)."""
    if len(reflections) != len(rows):
        raise ValueError(f"{len(reflections)} reflections but {len(rows)} rows")
    truths = [[Verdict(v["statement"], v["holds"]) for v in r["verdicts"]] for r in rows]
    _, metrics = checker_accuracy(reflections, truths)
    answers: Counter = Counter()
    decisions: Counter = Counter()
    objects = found = 0
    for reflection, truth, row in zip(reflections, truths, rows):
        plan = "" if row["decision"] != EDIT or "plan_right" not in row else (
            "/right_plan" if row["plan_right"] else "/wrong_plan")
        decisions[f"{row['decision']}{plan}->{reflection.decision or 'none'}"] += 1
        kinds = {normalize_statement(f.statement): f.kind for f in stated_facts(row["metadata"])}
        for t, match in zip(truth, verdict_matches(reflection, truth)):
            said = "none" if match is None else ("yes" if match == t.holds else "no")
            answers[f"{kinds.get(t.key, 'unknown')}/{str(t.holds).lower()}->{said}"] += 1
        o, f = seen_objects(row["scene"]["size"], _scene_objects(row["scene"]), reflection.seen.objects)
        objects, found = objects + o, found + f
    facts = sum(map(len, truths))
    edit_share = sum(r["decision"] == EDIT for r in rows) / len(rows)
    metrics.update({
        "facts_holding": sum(t.holds for truth in truths for t in truth) / facts,
        "edit_share": edit_share,
        "majority_decision": max(edit_share, 1 - edit_share),
        "said_edit": sum(r.decision == EDIT for r in reflections) / len(reflections),
        "seen_objects_found": found / objects if objects else 0.0,
        "answers": dict(sorted(answers.items())),
        "decisions": dict(sorted(decisions.items())),
    })
    return metrics


def grounding_scores(texts: Sequence[str], scenes: Sequence[dict]) -> dict:
    """Grounding answers against their scenes: `names_exact` (the answer names exactly the scene's objects),
    `objects_found` (scene objects named with a box at IoU >= SEEN_IOU), and the two halves of that: the name
    anywhere (`names_found`) and the box under any name (`boxes_found`). Unparseable answers find nothing."""
    if len(texts) != len(scenes):
        raise ValueError(f"{len(texts)} answers but {len(scenes)} scenes")
    exact = objects = found = names = boxes = unreadable = 0
    for text, scene in zip(texts, scenes):
        parsed = parse_chain(text)
        unreadable += bool(parsed.problems) and not parsed.objects
        got = [o for o in parsed.objects if o.box is not None]
        truth = _scene_objects(scene)
        exact += sorted(o.name for o in got) == sorted(d.name for d in truth)
        in_scene, seen = seen_objects(scene["size"], truth, got)
        objects, found = objects + in_scene, found + seen
        for d in truth:
            box = Box.from_pixels(*d.box, scene["size"], scene["size"])
            names += any(o.name == d.name for o in got)
            boxes += any(box.iou(o.box) >= SEEN_IOU for o in got)
    return {"images": len(texts), "names_exact": exact / len(texts), "objects_found": found / objects,
            "names_found": names / objects, "boxes_found": boxes / objects, "unreadable": unreadable}


# --- running the model ---------------------------------------------------------------------------------------------
def _show(policy, root: Path, world_size: int, images: Sequence[str]) -> tuple[list[Image.Image], torch.Tensor | None]:
    """Row images as PIL (the vision view) and, for the codes view, their (B, N) VQ codes (the VQ encoder's reading,
    as SFT's rows see them)."""
    pixels = torch.stack([load_image(root / p, world_size, policy.image_size) for p in images])  # (B, 3, S, S)
    pil = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]
    if policy.image_view != "codes":
        return pil, None
    return pil, encode_images(policy.base.model.vqmodel, pixels).to(policy.device)  # (B, N)


def _batches(policy, rows: Sequence[dict], root: Path, world_size: int, batch_size: int, desc: str):
    """(b, rows, images, codes) per batch of rows, with a progress bar."""
    for b, i in enumerate(tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch")):
        batch = rows[i:i + batch_size]
        yield (b, batch, *_show(policy, root, world_size, [r["image"] for r in batch]))


def probe_checker(policy, rows: Sequence[dict], root: Path, world_size: int, config, seed: int = 0,
                  batch_size: int = 32, verdict_bias: float = 0.0) -> list[str]:
    """The checker's reflection on every row's image (batch b sampled with seed + b; `verdict_bias`: check's)."""
    texts = []
    for b, batch, images, codes in _batches(policy, rows, root, world_size, batch_size, "checker"):
        out = check(policy, images, [r["prompt"] for r in batch], [r["chain"] for r in batch], config,
                    torch.Generator().manual_seed(seed + b), codes=codes, verdict_bias=verdict_bias)
        texts.extend(out.texts)
    return texts


def probe_grounding(policy, records: Sequence[dict], root: Path, world_size: int, config, seed: int = 0,
                    batch_size: int = 32) -> list[str]:
    """The answer to the grounding question on every record's image (stops at EOS, as SFT's grounding rows end)."""
    texts = []
    for b, batch, images, codes in _batches(policy, records, root, world_size, batch_size, "grounding"):
        contexts = [policy.encode_question(GROUNDING_QUESTION) for _ in batch]
        ids, masks, pixels = policy.show_images(contexts, images, codes)
        out = sample_text(policy, ids, pixels, [policy.tokens.eos], config, torch.Generator().manual_seed(seed + b),
                          image_masks=masks)
        texts.extend(out.texts)
    return texts
