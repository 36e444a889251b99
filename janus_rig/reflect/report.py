"""Write a reflection loop out for people to look at: per row and round, the image, the checker's reflection, the
edit boxes drawn on the image and the edited image; traces.jsonl; the HTML gallery (`janus_rig.gallery`).

    out/images/0000_r0.png       row 0, the image the round-0 checker saw (native size)
    out/seen/0000_r0.png         the same, upscaled to display_size, with the boxes the checker says it sees
    out/edit_boxes/0000_r0.png   the same with the actor's edit boxes (rounds that edited)
    out/edited/0000_r0.png       the image after the round-0 edit (native size)
    out/traces.jsonl             one line per row and round (fields: `_trace`)
    out/index.html               one section per row, one card per round
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from data_prep.shapeworld.facts import oracle_verdicts
from janus_rig.chain import draw_boxes
from janus_rig.gallery import write_gallery
from janus_rig.reflect.loop import LoopResult, RoundTrace

DIRS = ("images", "seen", "edit_boxes", "edited")
TRACES_FILE = "traces.jsonl"


def _problems(parsed) -> list[dict]:
    return [] if parsed is None else [{"kind": p.kind, "position": p.position, "message": p.message}
                                      for p in parsed.problems]


def round_record(t: RoundTrace) -> dict:
    """What one round of one row said and did, as JSON: plan, reflection (verdicts, decision, problems), edit
    (revised chain, edit boxes, problems) and status. traces.jsonl and `eval geneval --reflect` keep it."""
    return {
        "round": t.round,
        "plan": t.plan,
        "reflection": t.reflection_text,
        "verdicts": [{"statement": v.statement, "holds": v.holds} for v in t.reflection.verdicts],
        "decision": t.reflection.decision,
        "reflection_problems": _problems(t.reflection),
        "edit": t.edit_text,
        "revised_chain": t.revised_chain,
        "edit_boxes": [{"name": o.name, "box": list(o.box.as_tuple())} for o in t.edit_boxes],
        "edit_problems": _problems(t.edit),
        "status": t.status,
        "checker_score": t.score,
    }


def _trace(out: Path, t: RoundTrace, prompt: str, prompt_index: int, sample: int, reward: float | None,
           truth, display_size: int) -> dict:
    name = f"{t.row:04d}_r{t.round}.png"
    size = (display_size, display_size)
    paths = {d: f"{d}/{name}" for d in DIRS}
    t.image.save(out / paths["images"])
    draw_boxes(t.image, t.reflection.seen.objects, size=size).save(out / paths["seen"])
    edited = t.edited_image is not None
    if edited:
        draw_boxes(t.image, t.edit_boxes, size=size).save(out / paths["edit_boxes"])
        t.edited_image.save(out / paths["edited"])
    trace = {
        "prompt": prompt, "prompt_index": prompt_index, "sample": sample, "row": t.row,
        **round_record(t),
        "reward": reward,
        "image": paths["images"], "seen": paths["seen"],
        "edit_overlay": paths["edit_boxes"] if edited else None, "edited_image": paths["edited"] if edited else None,
    }
    if truth is not None:
        trace["oracle"] = {"verdicts": [{"statement": v.statement, "holds": v.holds} for v in truth],
                           "correct": all(v.holds for v in truth)}
    return trace


def write_reflect_outputs(out_dir: str | Path, result: LoopResult, prompt_index: Sequence[int],
                          group_size: int, rewards: Sequence[float | None],
                          metadata: Sequence[dict | None] | None = None, display_size: int = 256) -> list[dict]:
    """Images, overlays and traces.jsonl under out_dir; returns the traces (row-major, then round).

    `rewards` has one entry per edit of `result.edits()`; `metadata` (per row, None where unknown) adds the
    oracle's verdicts on every checked image."""
    out = Path(out_dir)
    for d in DIRS:
        (out / d).mkdir(parents=True, exist_ok=True)
    reward_of = {(before.row, before.round): r for (before, _), r in zip(result.edits(), rewards)}
    traces = []
    with open(out / TRACES_FILE, "w", encoding="utf-8") as log:
        for r, row in enumerate(result.traces):
            chosen = result.chosen(r) if row else None
            for t in row:
                meta = metadata[t.row] if metadata is not None else None
                truth = oracle_verdicts(meta, t.image) if meta is not None else None
                trace = _trace(out, t, result.prompts[t.row], prompt_index[t.row], t.row % group_size,
                               reward_of.get((t.row, t.round)), truth, display_size)
                trace["final"] = t is chosen  # the row's result is this round's image (as its checker saw it)
                log.write(json.dumps(trace) + "\n")
                traces.append(trace)
    return traces


def gallery_cards(traces: list[dict]) -> list[dict]:
    """The gallery's view of the traces: one section per row (prompt + sample), one card per round."""
    cards = []
    for t in traces:
        more = [{"src": t["seen"], "alt": "what the checker sees"}]
        if t["edit_overlay"]:
            more += [{"src": t["edit_overlay"], "alt": "edit boxes"}, {"src": t["edited_image"], "alt": "edited"}]
        scores = {"status": t["status"]}
        if t.get("checker_score") is not None:
            scores["checker score"] = round(t["checker_score"], 3)
        if t.get("final"):
            scores["final image"] = True
        if t["reward"] is not None:
            scores["reward"] = t["reward"]
        if "oracle" in t:
            scores["oracle correct"] = t["oracle"]["correct"]
        problems = t["reflection_problems"] + t["edit_problems"]
        cards.append({
            "image": t["image"], "more_images": more, "label": f"round {t['round']}",
            "prompt": f"{t['prompt']}  (sample {t['sample']})", "prompt_index": t["row"],
            "chain": t["plan"], "reflection": t["reflection"], "edit": t["edit"],
            "scores": scores, "problems": problems,
        })
    return cards


def write_reflect_gallery(out_dir: str | Path, traces: list[dict], header: dict, display_size: int = 256) -> Path:
    return write_gallery(out_dir, gallery_cards(traces), header, title="janus-rig reflect", display_size=display_size)
