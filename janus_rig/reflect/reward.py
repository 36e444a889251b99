"""Rewards of an edit, and how good the checker is: pure functions over parsed reflections and verdicts.

RL-RIG's reward is intrinsic (no external verifier): an edit is good when the model's own checker thinks better
of the edited image than of the image before it,

    reward = verdict_score(check after the edit) - verdict_score(check before the edit)     in [-1, 1]

where `verdict_score` is the fraction of a reflection's verdicts that say yes. Any judge can replace the checker
(`judge_rewards`: the judge's prompt-image score after minus before; `shapeworld`, `hf` or an `http` URL), and
the oracle always measures the truth for reporting (`oracle_report`): the checker's accuracy per verdict against
the oracle's, how many images were correct before and after the loop, and whether the objects outside the edit
boxes survived each edit (`outside_objects_kept`).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.facts import chain_verdicts, oracle_verdicts
from data_prep.shapeworld.oracle import check_chain
from janus_rig.chain import Box, ChainObject, parse_chain
from janus_rig.chain.roles import EDIT, KEEP, ParsedReflection, Verdict
from janus_rig.rollout.regions import patch_mask
from reward_models.judges import RubricRequest

INTRINSIC = "intrinsic"
UNREADABLE_SCORE = 0.0  # a reflection without a readable verdict thinks nothing of its image: the lowest score


def verdict_score(reflection: ParsedReflection) -> float | None:
    """Fraction of the verdicts that say yes; None when the reflection has none."""
    if not reflection.verdicts:
        return None
    return sum(v.holds for v in reflection.verdicts) / len(reflection.verdicts)


def intrinsic_reward(before: ParsedReflection, after: ParsedReflection,
                     unreadable: float = UNREADABLE_SCORE) -> float:
    """verdict_score(after) - verdict_score(before); a reflection without verdicts scores `unreadable`.

    >>> from janus_rig.chain.roles import parse_reflection
    >>> b = parse_reflection("<|verdict|>red circle: yes<|verdict|>red circle left of blue square: no")
    >>> a = parse_reflection("<|verdict|>red circle: yes<|verdict|>red circle left of blue square: yes")
    >>> intrinsic_reward(b, a)
    0.5
    """
    scores = [verdict_score(r) for r in (before, after)]
    b, a = (unreadable if s is None else s for s in scores)
    return a - b


def judge_rewards(judge, prompts: Sequence[str], before: Sequence, after: Sequence,
                  metadata: Sequence[dict | None] | None = None) -> list[float | None]:
    """The judge's prompt-image score (0..1) of each edited image minus that of the image before; None where the
    judge could not answer either question. Images are PIL; metadata feeds structured judges (shapeworld)."""
    n = len(prompts)
    if not len(before) == len(after) == n:
        raise ValueError(f"judge_rewards needs one before and one after image per prompt: {n} prompts, "
                         f"{len(before)} before, {len(after)} after")
    meta = list(metadata) if metadata is not None else [None] * n
    requests = [RubricRequest("prompt_image", p, image=im, metadata=m)
                for images in (before, after) for p, im, m in zip(prompts, images, meta)]
    scores = judge.score(requests) if requests else []
    return [None if b is None or a is None else a - b for b, a in zip(scores[:n], scores[n:])]


def verdict_matches(reflection: ParsedReflection, truths: Sequence[Verdict]) -> list[bool | None]:
    """Per true verdict: whether the reflection's verdict on the same statement agrees (None: not answered).
    Statements match after `normalize_statement`; the first verdict on a statement counts."""
    said: dict[str, bool] = {}
    for v in reflection.verdicts:
        said.setdefault(v.key, v.holds)
    return [None if t.key not in said else said[t.key] == t.holds for t in truths]


def true_decision(truths: Sequence[Verdict]) -> str:
    return KEEP if all(t.holds for t in truths) else EDIT


def checker_accuracy(reflections: Sequence[ParsedReflection],
                     truths: Sequence[Sequence[Verdict]]) -> tuple[float, dict[str, float]]:
    """Accuracy of the checker against the truth, per stated fact (an unanswered fact counts as wrong).

    Returns (verdict_accuracy, metrics): verdict_accuracy, verdict_coverage (share of facts answered),
    answered_accuracy (accuracy on the answered ones), decision_accuracy (keep iff every fact holds), counts.
    """
    if len(reflections) != len(truths):
        raise ValueError(f"{len(reflections)} reflections but {len(truths)} truth lists")
    facts = answered = correct = decisions_right = 0
    for reflection, truth in zip(reflections, truths):
        matches = verdict_matches(reflection, truth)
        facts += len(matches)
        answered += sum(m is not None for m in matches)
        correct += sum(m is True for m in matches)
        decisions_right += reflection.decision == true_decision(truth)
    accuracy = correct / facts if facts else 0.0
    metrics = {
        "verdict_accuracy": accuracy,
        "verdict_coverage": answered / facts if facts else 0.0,
        "answered_accuracy": correct / answered if answered else 0.0,
        "decision_accuracy": decisions_right / len(reflections) if reflections else 0.0,
        "facts": facts,
        "checks": len(reflections),
    }
    return accuracy, metrics


# --- over a loop ---------------------------------------------------------------------------------------------------
def edit_rewards(result, source: str = INTRINSIC, judge=None,
                 metadata: Sequence[dict | None] | None = None) -> list[float | None]:
    """One reward per edit of `result.edits()` (a LoopResult), in that order.

    source "intrinsic": the model's own checker (`intrinsic_reward`); any other source needs `judge` (a Judge from
    `reward_models.judges.make_judge`, e.g. "shapeworld", "hf", an http URL) and uses `judge_rewards`.
    `metadata` is per row of the loop (structured judges read it).
    """
    pairs = list(result.edits())
    if source == INTRINSIC:
        return [intrinsic_reward(before.reflection, after.reflection) for before, after in pairs]
    if judge is None:
        raise ValueError(f"edit reward source {source!r} needs a judge (make_judge({source!r}))")
    rows = [before.row for before, _ in pairs]
    meta = [metadata[r] for r in rows] if metadata is not None else None
    return judge_rewards(judge, [result.prompts[r] for r in rows], [b.image for b, _ in pairs],
                         [b.edited_image for b, _ in pairs], meta)


KEPT_IOU = 0.5  # an outside object is still there when the same colour and shape is detected at IoU >= this


def outside_objects_kept(before: Image.Image, after: Image.Image, edit_boxes: Sequence[ChainObject],
                         grid: int) -> tuple[int, int, int]:
    """(objects outside, of them still there, of them pixel-identical) for one edit, by the ShapeWorld detector.

    An object of the image before the edit is outside when its pixel box overlaps no patch of the edit boxes (the
    patches the editor may redraw, `janus_rig.rollout.regions`). It is still there when the image after the edit
    has a detection of the same colour and shape at IoU >= KEPT_IOU with it, and identical when that detection has
    the very same box. The editor keeps every outside token by construction, but the VQ decoder mixes neighbouring
    patches (convolutions, and attention in its middle block), so pixels outside a redrawn patch can still move.
    """
    redrawn = patch_mask([o.box for o in edit_boxes], grid)  # (g, g)
    size = before.size[0]  # PIL images, square
    found = detect(after)
    outside = kept = identical = 0
    for d in detect(before):
        box = Box.from_pixels(*d.box, size, size)
        if (patch_mask([box], grid) & redrawn).any():
            continue
        outside += 1
        same = [a.box for a in found if a.name == d.name]
        kept += any(box.iou(Box.from_pixels(*other, size, size)) >= KEPT_IOU for other in same)
        identical += d.box in same
    return outside, kept, identical


SEEN_IOU = 0.5  # a checker sees a detected object when it names its colour and shape with a box at IoU >= this


def seen_objects(size: int, detections, seen: Sequence[ChainObject]) -> tuple[int, int]:
    """(objects detected, of them named in `seen` with a box at IoU >= SEEN_IOU) on a square image of `size` px."""
    boxes = [o.box for o in seen if o.box is not None]
    names = [o.name for o in seen if o.box is not None]
    found = 0
    for d in detections:
        box = Box.from_pixels(*d.box, size, size)
        found += any(n == d.name and box.iou(b) >= SEEN_IOU for n, b in zip(names, boxes))
    return len(detections), found


def plan_ok(chain: str, metadata: dict) -> bool:
    """Whether a chain names exactly the prompt's objects and lays them out as it states (`oracle.check_chain`)."""
    return check_chain(parse_chain(chain).objects, metadata)


def oracle_report(result, metadata: Sequence[dict | None]) -> dict[str, float]:
    """The oracle's truth about a loop (rows without metadata are left out): checker accuracy over every check,
    the share of images that were correct at the start and at the end, and the share of edits after which more
    stated facts held than before.

    The checker's perception apart from its verdict-writing: `seen_verdict_accuracy` answers every stated fact on
    the objects its reflection says it sees (`facts.chain_verdicts`) and scores those answers against the truth;
    `facts_holding` (the share of stated facts that are true) is the base rate both accuracies compare with;
    `seen_objects_found` is the share of the objects the detector finds that the reflection names with a box at
    IoU >= SEEN_IOU (its grounding, before any relation is read off the boxes). The
    actor's plans: `edit_plan_ok` / `edit_revised_plan_ok`, the share of edits whose plan before / revised chain
    is right for the prompt (`plan_ok`).

    Where the first check's decisions fall (`first_flags`): the starting images split into right ones, wrong ones
    drawn from a right plan (`fixable`: a redraw of the same plan can fix them) and wrong plans; per group its size
    and the share the checker says "edit" on. A loop gains when it flags the fixable ones and leaves the right ones."""
    if len(metadata) != len(result.traces):
        raise ValueError(f"oracle_report needs one metadata record per row: {len(result.traces)} rows, "
                         f"{len(metadata)} records")
    reflections, truths, start, end = [], [], [], []
    seen_right = holding = objects = objects_seen = 0
    truth_of = {}  # (row, round) -> the truth about the image that round's checker saw
    for row, meta in zip(result.traces, metadata):
        if meta is None or not row:
            continue
        for trace in row:
            detections = detect(trace.image)  # once per image: the truth and the grounding read the same objects
            truth = oracle_verdicts(meta, detections)
            o, f = seen_objects(trace.image.size[0], detections, trace.reflection.seen.objects)
            objects, objects_seen = objects + o, objects_seen + f
            truth_of[trace.row, trace.round] = truth
            reflections.append(trace.reflection)
            truths.append(truth)
            seen = chain_verdicts(meta, trace.reflection.seen.objects)
            seen_right += sum(a.holds == t.holds for a, t in zip(seen, truth))
            holding += sum(t.holds for t in truth)
        last = result.chosen(row[0].row)
        edited = last is row[-1] and last.edited_image is not None
        final = oracle_verdicts(meta, last.edited_image) if edited else truth_of[last.row, last.round]
        start.append(all(t.holds for t in truth_of[row[0].row, 0]))
        end.append(all(t.holds for t in final))
    _, metrics = checker_accuracy(reflections, truths)
    outside = kept = identical = 0
    for row in result.traces:
        for trace in row:
            if trace.edited_image is not None and trace.edit_boxes:
                grid = int(round(trace.image_tokens.numel() ** 0.5))
                o, k, i = outside_objects_kept(trace.image, trace.edited_image, trace.edit_boxes, grid)
                outside, kept, identical = outside + o, kept + k, identical + i
    improved = [sum(t.holds for t in truth_of[a.row, a.round]) > sum(t.holds for t in truth_of[b.row, b.round])
                for b, a in result.edits() if (b.row, b.round) in truth_of]
    # The actor's plan against the one it replaces: right objects and layout for the prompt (the oracle's rules).
    plans_ok = [(plan_ok(b.plan, metadata[b.row]), plan_ok(b.revised_chain or "", metadata[b.row]))
                for b, _ in result.edits() if (b.row, b.round) in truth_of]
    facts = sum(map(len, truths))
    metrics.update(first_flags(result, metadata, truth_of))
    metrics.update({
        "seen_verdict_accuracy": seen_right / facts if facts else 0.0,
        "facts_holding": holding / facts if facts else 0.0,
        "seen_objects_found": objects_seen / objects if objects else 0.0,
        "correct_before": sum(start) / len(start) if start else 0.0,
        "correct_after": sum(end) / len(end) if end else 0.0,
        "edits_improved": sum(improved) / len(improved) if improved else 0.0,
        "edits": len(improved),
        "edit_plan_ok": sum(p for p, _ in plans_ok) / len(plans_ok) if plans_ok else 0.0,
        "edit_revised_plan_ok": sum(q for _, q in plans_ok) / len(plans_ok) if plans_ok else 0.0,
        "outside_objects": outside,
        "outside_objects_kept": kept / outside if outside else 1.0,
        "outside_objects_identical": identical / outside if outside else 1.0,
    })
    return metrics


FIRST_GROUPS = ("right", "fixable", "wrong_plan")


def first_flags(result, metadata: Sequence[dict | None], truth_of: dict) -> dict[str, float]:
    """`first_<group>` (images) and `first_<group>_flagged` (the share of them the first checker says "edit" on) for
    the groups of FIRST_GROUPS; `truth_of[(row, 0)]` is the truth about each row's starting image."""
    groups = {g: [] for g in FIRST_GROUPS}
    for row in result.traces:
        if not row or (row[0].row, 0) not in truth_of:
            continue
        first = row[0]
        if all(t.holds for t in truth_of[first.row, 0]):
            group = "right"
        else:
            group = "fixable" if plan_ok(first.plan, metadata[first.row]) else "wrong_plan"
        groups[group].append(first.reflection.decision == EDIT)
    out = {}
    for group, flags in groups.items():
        out[f"first_{group}"] = len(flags)
        out[f"first_{group}_flagged"] = sum(flags) / len(flags) if flags else 0.0
    return out
