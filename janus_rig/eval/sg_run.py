"""`janus-rig eval sg-iou`: generate images for scene-graph records, have a judge read each image's scene graph in
the record's vocabulary, and score SG-IoU, Entity-IoU and Relation-IoU (reward_models/scene_graph.py).

Records (JSONL, one per line) come in two shapes:

    ShapeWorld / converted:  {"id", "prompt", "scene_graph": {"items": [...], "relations": [...]}, "tag"?, "metadata"?}
    LAION-SG as released:    {"img_id" | "name", "caption_ori", "items": [...], "relations": [...]}

Attributes (`attributes`): "all" keeps the graph as annotated (LAION-SG's definition); "stated" keeps only the
attributes the prompt states, as whole words (ShapeWorld's graphs give every object its colour, but "a circle and
a square" asks for none: a green circle must not lose Entity-IoU). "auto" is "stated" for records with GenEval
metadata (ShapeWorld) and "all" otherwise.

Output folder (`run_sg_iou`):

    out/images/, overlays/, traces.jsonl     janus_rig.generate's samples
    out/results.jsonl                        per record: reference graph, vocabulary, per sample the graph found
                                             and its three scores, and the record's means
    out/summary.json                         kind "sg-iou" (janus_rig/eval/summary.py)
    out/index.html                           the gallery, each sample with its scores

Scores are means over images; an image the judge failed on (None) counts in `judge_failures`, not in the means;
SG-IoU and Relation-IoU count only records that have relations (see sg_iou.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from janus_rig.eval.summary import read_summary, write_summary
from janus_rig.gallery import write_gallery
from janus_rig.generate import generate
from janus_rig.lines import json_object, read_lines
from reward_models.judges import GraphRequest
from reward_models.scene_graph import (
    METRICS,
    SceneGraph,
    Vocabulary,
    mean_scores,
    normalize,
    reference_graph,
    sg_scores,
)


RESULTS_FILE = "results.jsonl"
ATTRIBUTE_RULES = ("auto", "all", "stated")
METRIC_LABELS = {"sg_iou": "SG-IoU", "entity_iou": "Entity-IoU", "relation_iou": "Relation-IoU"}


@dataclass(frozen=True)
class SGRecord:
    id: str
    prompt: str
    reference: SceneGraph
    vocabulary: Vocabulary
    tag: str | None = None
    metadata: dict | None = None
    attributes: str = "all"  # the attribute rule applied: "all" or "stated"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalize(text))


def stated_in(prompt: str):
    """attribute -> whether the prompt states it (its words appear in the prompt, in a row)."""
    words = _words(prompt)

    def stated(attribute: str) -> bool:
        needle = _words(attribute)
        return bool(needle) and any(words[i : i + len(needle)] == needle for i in range(len(words) - len(needle) + 1))

    return stated


def parse_record(record, attributes: str = "auto", fallback_id: str = "") -> SGRecord:
    """One record (either shape, see the module docstring) -> SGRecord; ValueError naming the bad field."""
    if attributes not in ATTRIBUTE_RULES:
        raise ValueError(f"unknown attribute rule {attributes!r}; valid: {', '.join(ATTRIBUTE_RULES)}")
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    if "scene_graph" in record:
        graph, prompt_key = record["scene_graph"], "prompt"
        if not isinstance(graph, dict):
            raise ValueError("field 'scene_graph' must be an object with 'items' and 'relations'")
    elif "items" in record:
        graph, prompt_key = record, "caption_ori" if "caption_ori" in record else "prompt"
    else:
        raise ValueError("no scene graph: expected a 'scene_graph' object (ShapeWorld) or LAION-SG's 'items'")
    prompt = record.get(prompt_key)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field {prompt_key!r} must be a non-empty string (the prompt to generate from)")
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("field 'metadata' must be an object")
    rule = attributes if attributes != "auto" else ("stated" if metadata is not None else "all")
    reference, vocabulary = reference_graph(graph.get("items"), graph.get("relations", []),
                                            keep_attribute=stated_in(prompt) if rule == "stated" else None)
    ids = (record[k] for k in ("id", "img_id", "name") if isinstance(record.get(k), (str, int)))
    record_id = next(ids, fallback_id)
    tag = record.get("tag") if isinstance(record.get("tag"), str) else None
    return SGRecord(str(record_id), prompt, reference, vocabulary, tag, metadata, rule)


def read_records(path: str | Path, attributes: str = "auto", limit: int | None = None) -> list[SGRecord]:
    """Records from a JSONL file; ValueError naming the bad lines as FILE:LINE: problem."""
    return read_lines(path, lambda text, number, ordinal: parse_record(json_object(text), attributes,
                                                                      fallback_id=f"line-{number}"),
                      what="records", limit=limit)


def score_graphs(records: list[SGRecord], images: list[list[Image.Image]], judge, paths: list[list[str]] | None = None,
                 batch_size: int = 32, progress: bool = True) -> list[dict]:
    """Ask the judge for every image's graph (images[i]: record i's samples); one result row per record."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} image lists for {len(records)} records")
    flat = [(i, k) for i, samples in enumerate(images) for k in range(len(samples))]
    graphs: list[SceneGraph | None] = []
    with tqdm(total=len(flat), desc="scene graphs", unit="img", disable=not progress) as bar:
        for start in range(0, len(flat), batch_size):
            chunk = flat[start : start + batch_size]
            graphs += judge.extract_graphs([GraphRequest(images[i][k], records[i].vocabulary) for i, k in chunk])
            bar.update(len(chunk))
    found = iter(graphs)
    rows = []
    for i, record in enumerate(records):
        samples = []
        for k in range(len(images[i])):
            graph = next(found)
            scores = sg_scores(graph, record.reference) if graph is not None else dict.fromkeys(METRICS)
            samples.append({"sample": k, **({"image": paths[i][k]} if paths else {}),
                            "graph": None if graph is None else graph.to_json(), **scores})
        means = mean_scores(samples)
        rows.append({"id": record.id, "prompt": record.prompt, "tag": record.tag, "attributes": record.attributes,
                     "reference": record.reference.to_json(), "vocabulary": record.vocabulary.to_json(),
                     **{name: mean for name, (mean, _) in means.items()}, "samples": samples})
    return rows


def summarize(rows: list[dict]) -> tuple[dict[str, float], dict]:
    """(metrics, details) over result rows: metrics are the three means over images (each only when some image
    defines it) and judge_failures; details the counts behind them and per-tag means."""
    samples = [s for row in rows for s in row["samples"]]
    means = mean_scores(samples)
    metrics = {name: mean for name, (mean, _) in means.items() if mean is not None}
    failures = sum(s["graph"] is None for s in samples)
    metrics["judge_failures"] = float(failures)
    per_tag = {}
    for tag in dict.fromkeys(row["tag"] for row in rows if row["tag"]):
        tagged = mean_scores(s for row in rows if row["tag"] == tag for s in row["samples"])
        per_tag[tag] = {name: mean for name, (mean, _) in tagged.items()}
        per_tag[tag]["images"] = sum(len(row["samples"]) for row in rows if row["tag"] == tag)
    details = {
        "counted": {name: n for name, (_, n) in means.items()},  # images each mean is over
        "records": len(rows),
        "records_with_relations": sum(bool(row["reference"]["triples"]) for row in rows),
        "dropped_names": sum(s["graph"]["dropped"] for s in samples if s["graph"] is not None),
        "per_tag_scores": per_tag,
    }
    return metrics, details


def write_results(out_dir: str | Path, rows: list[dict]) -> Path:
    path = Path(out_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def _gallery_scores(sample: dict) -> dict:
    scores = {METRIC_LABELS[m]: sample[m] for m in METRICS if sample[m] is not None}
    if sample["graph"] is None:
        scores["judge"] = "failed"
    else:
        scores["triples"] = "; ".join(" ".join(t) for t in sample["graph"]["triples"]) or "none"
    return scores


def run_sg_iou(policy, records: list[SGRecord], judge, out_dir: str | Path, config, *, seed: int = 0,
               batch_size: int = 4, judge_batch_size: int = 32, display_size: int = 256, model_name: str = "",
               header: dict | None = None, progress: bool = True) -> dict:
    """Generate `config.group_size` images per record, score them, write the output folder; -> the summary dict."""
    out = Path(out_dir)
    traces = generate(policy, [r.prompt for r in records], out, config, seed=seed, batch_size=batch_size,
                      display_size=display_size, progress=progress)
    by_record: list[list[dict]] = [[] for _ in records]
    for trace in traces:
        by_record[trace["prompt_index"]].append(trace)
    images = [[Image.open(out / t["image"]).convert("RGB") for t in group] for group in by_record]
    paths = [[t["image"] for t in group] for group in by_record]
    rows = score_graphs(records, images, judge, paths, batch_size=judge_batch_size, progress=progress)
    write_results(out, rows)
    metrics, details = summarize(rows)
    for group, row in zip(by_record, rows):
        for trace, sample in zip(group, row["samples"]):
            trace["scores"] = _gallery_scores(sample)
    rules = sorted({r.attributes for r in records})
    write_summary(out, kind="sg-iou", model=model_name, metrics=metrics, samples=len(traces),
                  thumbnails=[t["image"] for t in traces], extra={
                      **details, "judge": getattr(judge, "url", judge.name), "judge_stats": judge.stats.snapshot(),
                      "attributes": rules[0] if len(rules) == 1 else rules})
    page_header = {**(header or {}), **{METRIC_LABELS[m]: f"{metrics[m]:.4f} over {details['counted'][m]} images"
                                        for m in METRICS if m in metrics},
                   "judge failures": int(metrics["judge_failures"])}
    write_gallery(out, traces, page_header, title="janus-rig eval sg-iou", display_size=display_size)
    return read_summary(out)
