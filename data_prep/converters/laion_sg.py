"""LAION-SG (scene-graph annotated LAION-Aesthetics) -> prompt + scene graph + evaluation records.

A LAION-SG row (its files are JSON lists of these):

    {"img_id": "482027", "name": "8040361340228797010.jpg", "caption_ori": "Yosemite Falls reflection in ...",
     "score": "6.67", "url": "http://...",
     "items": [{"item_id": 0, "label": "mountains", "attributes": ["tall", "rocky"], "global_item_id": 3201429},
               {"item_id": 1, "label": "river", "attributes": [], "global_item_id": 3201430}],
     "relations": [{"triple_id": 0, "item1": 1, "relation": "reflects", "item2": 0}]}

becomes one record per row, which `janus-rig eval sg-iou` reads (and GRPO / generation, as a prompt set):

    {"id": "482027", "prompt": "Yosemite Falls reflection in ...", "tag": "laion_sg", "metadata": null,
     "scene_graph": {"items": [...as given...], "relations": [...as given...],
                     "entities": ["river", "rocky tall mountains"],
                     "triples": [["river", "reflects", "rocky tall mountains"]]},
     "vocabulary": {"labels": ["mountains", "river"], "attributes": ["tall", "rocky"], "predicates": ["reflects"]},
     "source": {"file", "row", "name", "url", "score"}, "image"?: "path"}

The graph is read by the SG-IoU metric's own `reference_graph` (reward_models/scene_graph.py), so the entities and
triples written here are exactly the strings SG-IoU compares: attributes folded into the entity ("rocky tall
mountains"), normalised and de-duplicated. `image` is set only with an image root (the downloaded images, by `name`).

    OUT/<input stem>.jsonl    the records of each input file (train / val / test keep their own files)
    OUT/vocabulary.json       labels, attributes, predicates and entities with the number of kept rows each is in
    OUT/bad_rows.jsonl        {id, source, reason, detail} per rejected row
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data_prep.converters.common import (
    BAD_ROWS_FILE,
    RowError,
    RowReport,
    RowSource,
    SourceRow,
    check_prompt,
    default_id,
)
from reward_models.scene_graph import reference_graph

TAG = "laion_sg"
REQUIRED_FIELDS = ("img_id", "caption_ori", "items", "relations")
BAD_ROW_REASONS = (
    "not_json",  # a jsonl line (or a JSON list entry) that is not an object
    "not_utf8",  # a jsonl line that is not UTF-8 text
    "nested_too_deep",  # a row nested deeper than Python's JSON reader goes (about a thousand levels)
    "missing_field",  # img_id, caption_ori, items or relations absent / empty (relations may be an empty list)
    "bad_field",  # caption_ori that is not text
    "chain_token_in_prompt",  # caption_ori holding a chain token (<|obj_start|>, ...): prompts must not carry them
    "duplicate_id",  # an img_id an earlier row already has
    "bad_scene_graph",  # an item without a label, a repeated item_id, a relation end that is no item id, ...
    "missing_image",  # with an image root: the row's image file is not there
)


def convert_row(data: dict, row_id: str, file: str, index: int, image_root: Path | None, out: Path) -> dict:
    """One LAION-SG row -> its record; RowError names what is wrong."""
    for name in REQUIRED_FIELDS:
        value = data.get(name)
        if value is None or value == "" or (name != "relations" and value == []):
            raise RowError("missing_field", f"{name} is missing or empty")
    prompt = data["caption_ori"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise RowError("bad_field", f"caption_ori must be text, got {prompt!r}")
    check_prompt(prompt, "caption_ori")
    try:
        reference, vocabulary = reference_graph(data["items"], data["relations"])
    except ValueError as err:
        raise RowError("bad_scene_graph", str(err)) from None
    graph = reference.to_json()
    record = {
        "id": row_id, "prompt": " ".join(prompt.split()), "tag": TAG, "metadata": None,
        "scene_graph": {"items": data["items"], "relations": data["relations"], "entities": graph["entities"],
                        "triples": graph["triples"]},
        "vocabulary": vocabulary.to_json(),
        "source": {"file": file, "row": index, **{k: data.get(k) for k in ("name", "url", "score")}},
    }
    if image_root is not None:
        name = data.get("name")
        path = image_root / name if isinstance(name, str) and name else None
        if path is None or not path.is_file():
            raise RowError("missing_image", f"{path or 'no image name'} not found")
        record["image"] = os.path.relpath(path, out)  # relative to the records file, as `janus-rig reward` reads it
    return record


def _row_id(row: SourceRow) -> str:
    """img_id when usable, else the JSON key or FILESTEM-INDEX (a row without img_id is still reported by id)."""
    value = row.data.get("img_id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return row.key or default_id(row.file, row.index)


@dataclass
class LaionSGConfig:
    inputs: list[str]  # LAION-SG .json files (or .jsonl / .parquet with the same fields)
    out: str  # output directory
    image_root: str | None = None  # the downloaded images (by `name`); records then carry `image`
    limit: int = 0  # convert only the first N rows of each input (0: all)
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.inputs, (str, Path)):
            self.inputs = [str(self.inputs)]
        if not self.inputs:
            raise ValueError("no input files given")
        stems = [Path(p).stem for p in self.inputs]
        if len(set(stems)) != len(stems):
            raise ValueError(f"inputs {self.inputs} share a file stem: each writes OUT/<stem>.jsonl")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")


def convert_laion_sg(config: LaionSGConfig) -> dict:
    """Convert every input (see the module docstring); returns counts, bad-row reasons, paths and seconds."""
    start = time.perf_counter()
    out = Path(config.out)
    image_root = Path(config.image_root) if config.image_root else None
    if image_root is not None and not image_root.is_dir():
        raise FileNotFoundError(f"image root {image_root} is not a directory")
    report = RowReport()
    sources = [RowSource(path, report) for path in config.inputs]
    out.mkdir(parents=True, exist_ok=True)
    counts = {kind: Counter() for kind in ("labels", "attributes", "predicates", "entities")}
    seen: set[str] = set()
    paths = {}
    for source in sources:
        path = out / f"{source.path.stem}.jsonl"
        paths[source.path.stem] = str(path)
        with open(path, "w", encoding="utf-8") as f:
            for row in tqdm(source, desc=f"convert laion-sg {source.name}", unit="row", disable=not config.progress):
                if config.limit and row.index >= config.limit:
                    break
                row_id = _row_id(row)
                try:
                    if row_id in seen:
                        raise RowError("duplicate_id", f"row {row.index} repeats an earlier row's img_id")
                    record = convert_row(row.data, row_id, row.file, row.index, image_root, out)
                except RowError as err:
                    report.reject(row_id, row.file, err.reason, err.detail)
                    continue
                seen.add(row_id)
                for kind, words in (*record["vocabulary"].items(), ("entities", record["scene_graph"]["entities"])):
                    counts[kind].update(set(words))
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                report.kept[path.name] += 1
    report.write(out / BAD_ROWS_FILE)
    report.log(out / BAD_ROWS_FILE)
    vocab = {kind: dict(c.most_common()) for kind, c in counts.items()}
    (out / "vocabulary.json").write_text(json.dumps(vocab, indent=1, ensure_ascii=False) + "\n")
    paths.update(bad_rows=str(out / BAD_ROWS_FILE), vocabulary=str(out / "vocabulary.json"))
    return {"kept": dict(report.kept), "bad": len(report.bad), "bad_by_reason": report.counts(), "paths": paths,
            "seconds": round(time.perf_counter() - start, 2)}
