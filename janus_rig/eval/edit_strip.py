"""What the reflection loop did, as numbers and as one picture, from `eval geneval --reflect K`'s sample records.

    flag_metrics(traces)  -> {"flagged_right@r0": .., "flagged_wrong@r0": .., "edited": ..}
    edit_strip(out, traces)  -> out/edit_strip.png: one row per edited sample: before | edit boxes | after

The first check is where a loop wins or loses: it gains when the checker flags the images the oracle judges wrong
and leaves the right ones. `flagged_right@r0` and `flagged_wrong@r0` are the shares of right and of wrong first
images (by the oracle, round 0) whose first check said "edit"; `edited` is the share of samples edited at least once.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from janus_rig.chain import Box, ChainObject, draw_boxes
from janus_rig.chain.roles import EDIT

EDIT_STRIP = "edit_strip.png"
EDITED = "edited"  # a round's status when its actor's edit was drawn (janus_rig.reflect.report.round_record)
RIGHT, WRONG = (40, 150, 60), (200, 40, 40)  # the frame of an image the oracle judges right / wrong


def _first_round(trace: dict) -> dict | None:
    rounds = trace.get("reflect")
    return rounds[0] if isinstance(rounds, list) and rounds and isinstance(rounds[0], dict) else None


def flag_metrics(traces: list[dict]) -> dict[str, float]:
    """The first check's decisions against the oracle's verdict on the first image (`scores["correct@r0"]`), over
    the samples that carry both; {} when none does (not a reflecting run, or not oracle-scored)."""
    right, wrong, edited, n = [], [], 0, 0
    for trace in traces:
        first, correct = _first_round(trace), trace.get("scores", {}).get("correct@r0")
        if first is None or correct is None:
            continue
        n += 1
        (right if correct else wrong).append(first.get("decision") == EDIT)
        edited += any(r.get("status") == EDITED for r in trace["reflect"] if isinstance(r, dict))
    if not n:
        return {}
    share = lambda flags: sum(flags) / len(flags) if flags else 0.0  # noqa: E731
    return {"flagged_right@r0": share(right), "flagged_wrong@r0": share(wrong), "edited": edited / n}


def _edit_boxes(record: dict) -> list[ChainObject]:
    objects = []
    for item in record.get("edit_boxes") or []:
        try:
            objects.append(ChainObject(str(item["name"]), Box(*(int(v) for v in item["box"]))))
        except (KeyError, TypeError, ValueError):
            continue  # a record this run wrote itself; an unreadable box is left out of the picture, not fatal
    return objects


def _framed(image: Image.Image, tile: int, correct: bool | None) -> Image.Image:
    framed = image.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)
    if correct is not None:
        ImageDraw.Draw(framed).rectangle((0, 0, tile - 1, tile - 1), outline=RIGHT if correct else WRONG, width=3)
    return framed


def edit_strip(out_dir: str | Path, traces: list[dict], n: int = 6, tile: int = 128) -> Path | None:
    """out_dir/edit_strip.png: for up to n samples with an edit (those whose edit the oracle turned from wrong to
    right first), the image before the first edit, the same with the actor's edit boxes, and the image after it,
    framed green / red by the oracle; the prompt below. None when no sample was edited."""
    out = Path(out_dir)
    rows = []
    for trace in traces:
        rounds = trace.get("reflect") or []
        folder = Path(trace.get("image", "")).parent.parent  # <prompt folder>/samples/<k>.png
        j = next((i for i, r in enumerate(rounds) if isinstance(r, dict) and r.get("status") == EDITED), None)
        paths = trace.get("round_images") or []
        if j is None or j + 1 >= len(paths):
            continue
        scores = trace.get("scores", {})
        before, after = scores.get(f"correct@r{j}"), scores.get(f"correct@r{j + 1}")
        rows.append((not (before is False and after is True), len(rows), trace, folder, paths, j, before, after))
    if not rows:
        return None
    rows = sorted(rows)[:n]  # fixes first, then in sample order
    caption = 16
    strip = Image.new("RGB", (3 * tile, len(rows) * (tile + caption)), (255, 255, 255))
    pen = ImageDraw.Draw(strip)
    for r, (_, _, trace, folder, paths, j, before, after) in enumerate(rows):
        y = r * (tile + caption)
        with Image.open(out / folder / paths[j]) as first, Image.open(out / folder / paths[j + 1]) as second:
            strip.paste(_framed(first, tile, before), (0, y))
            boxes = draw_boxes(first, _edit_boxes(trace["reflect"][j]), size=(tile, tile))
            strip.paste(boxes, (tile, y))
            strip.paste(_framed(second, tile, after), (2 * tile, y))
        pen.text((2, y + tile + 2), str(trace.get("prompt", ""))[: (3 * tile) // 6], fill=(60, 60, 60))
    path = out / EDIT_STRIP
    strip.save(path)
    return path
