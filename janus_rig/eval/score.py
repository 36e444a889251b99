"""Score a GenEval-layout folder with the exact ShapeWorld oracle, writing GenEval's results.jsonl.

Each line of DIR/results.jsonl has GenEval's fields: filename, tag, prompt, correct, reason, metadata (the record
as a JSON string) and details (the detections as a JSON string: {shape: [{"color", "box", "score"}, ...]}).
Accuracy per tag is the share of correct images; overall is the mean of the tag accuracies (GenEval's score).

Bad input never raises: a prompt folder whose metadata.jsonl is missing or malformed, or that has no samples, is
listed in `problems` (its images cannot be scored); an unreadable image is listed too and scored as incorrect.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import score_metadata, validate_metadata
from janus_rig.eval.geneval_layout import prompt_dirs, read_metadata, sample_paths

RESULTS_FILE = "results.jsonl"


@dataclass
class ScoreSummary:
    per_tag: dict[str, tuple[int, int]]  # tag -> (correct images, images), in order of first appearance
    n_prompts: int
    correct_prompts: int  # prompts with at least one correct image
    problems: list[str] = field(default_factory=list)  # "path: what is wrong", one per bad folder or image
    results_path: Path | None = None
    records: list[dict] = field(default_factory=list)  # the results.jsonl lines, in file order

    def accuracy(self, tag: str) -> float:
        correct, total = self.per_tag[tag]
        return correct / total

    @property
    def overall(self) -> float:
        """Mean of the tag accuracies (GenEval's overall score); 0 when nothing was scored."""
        return sum(map(self.accuracy, self.per_tag)) / len(self.per_tag) if self.per_tag else 0.0

    @property
    def n_images(self) -> int:
        return sum(total for _, total in self.per_tag.values())

    @property
    def correct_images(self) -> int:
        return sum(correct for correct, _ in self.per_tag.values())

    def metrics(self) -> dict[str, float]:
        """summary.json's metrics: {"overall": ..., <tag>: accuracy, ...}."""
        return {"overall": self.overall, **{tag: self.accuracy(tag) for tag in self.per_tag}}

    def per_tag_records(self) -> dict[str, dict]:
        """summary.json's per_tag: {tag: {"accuracy", "correct", "total"}}."""
        return {tag: {"accuracy": c / t, "correct": c, "total": t} for tag, (c, t) in self.per_tag.items()}

    def table(self) -> str:
        """The per-tag table (GenEval's summary_scores.py, as numbers), overall last."""
        lines = [f"{'tag':<16}{'accuracy':>10}{'correct':>10}{'images':>8}"]
        lines += [f"{tag:<16}{c / t:>10.4f}{c:>10}{t:>8}" for tag, (c, t) in self.per_tag.items()]
        lines.append(f"{'overall':<16}{self.overall:>10.4f}   (mean over {len(self.per_tag)} tags)")
        return "\n".join(lines)


def chain_split(samples: Iterable[tuple[str, bool, bool]]) -> dict[str, dict]:
    """Where a tag's failures come from, the plan or the drawing: (tag, chain right, image right) per sample ->
    {tag: {"samples", "chains_right", "chain_accuracy", "image_given_right_chain", "image_given_wrong_chain"}}.

    A chain is right when the oracle passes it as a plan (`oracle.check_chain`); the two conditional accuracies
    are None when no sample of the tag has a right (resp. wrong) chain. Image accuracy is their mix:
    chain_accuracy x image_given_right_chain + (1 - chain_accuracy) x image_given_wrong_chain.

    >>> split = chain_split([("position", True, True), ("position", True, False), ("position", False, False)])
    >>> split["position"]["chain_accuracy"], split["position"]["image_given_right_chain"]
    (0.6666666666666666, 0.5)
    """
    counts: dict[str, list[int]] = {}  # tag -> [samples, right chains, right images | right chain, .. | wrong chain]
    for tag, chain_ok, image_ok in samples:
        c = counts.setdefault(tag, [0, 0, 0, 0])
        c[0] += 1
        c[1] += chain_ok
        c[2 if chain_ok else 3] += image_ok
    return {tag: {"samples": n, "chains_right": right, "chain_accuracy": right / n,
                  "image_given_right_chain": good / right if right else None,
                  "image_given_wrong_chain": lucky / (n - right) if n > right else None}
            for tag, (n, right, good, lucky) in counts.items()}


def chain_split_table(split: dict[str, dict]) -> str:
    """The split as a table: per tag, how often the chain is right and how often the image is, given each."""
    def pct(value):
        return f"{value:>10.4f}" if value is not None else f"{'-':>10}"

    lines = [f"{'tag':<16}{'chain ok':>10}{'img|ok':>10}{'img|wrong':>10}{'samples':>8}"]
    lines += [f"{tag:<16}{pct(s['chain_accuracy'])}{pct(s['image_given_right_chain'])}"
              f"{pct(s['image_given_wrong_chain'])}{s['samples']:>8}" for tag, s in split.items()]
    return "\n".join(lines)


def _details(dets) -> str:
    grouped = defaultdict(list)
    for d in dets:
        grouped[d.shape].append({"color": d.color, "box": list(d.box), "score": d.score})
    return json.dumps(grouped)


def score_image(path: Path, metadata: dict) -> tuple[dict, str | None]:
    """(GenEval result record, problem or None) for one image file."""
    record = {"filename": str(path), "tag": metadata["tag"], "prompt": metadata["prompt"]}
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        problem = f"{path}: unreadable image ({err})"
        record.update(correct=False, reason=problem, metadata=json.dumps(metadata), details="{}")
        return record, problem
    dets = detect(rgb)
    correct, reason = score_metadata(metadata, dets)
    record.update(correct=correct, reason=reason, metadata=json.dumps(metadata), details=_details(dets))
    return record, None


def score_geneval_dir(directory: str | Path, outfile: str | Path | None = None) -> ScoreSummary:
    """Score every sample under a GenEval-layout folder; write results.jsonl (default DIR/results.jsonl)."""
    directory = Path(directory)
    folders = prompt_dirs(directory)  # FileNotFoundError for a missing directory: nothing to score at all
    records, problems = [], []
    per_tag: dict[str, list[int]] = {}
    n_prompts = correct_prompts = 0
    for folder in folders:
        try:
            metadata = read_metadata(folder)
            validate_metadata(metadata)
        except ValueError as err:
            text = str(err)
            problems.append(text if text.startswith(str(folder)) else f"{folder / 'metadata.jsonl'}: {text}")
            continue
        samples = sample_paths(folder)
        if not samples:
            problems.append(f"{folder}: no samples (expected samples/0000.png, ...)")
            continue
        n_prompts += 1
        any_correct = False
        counts = per_tag.setdefault(metadata["tag"], [0, 0])
        for path in samples:
            record, problem = score_image(path, metadata)
            if problem:
                problems.append(problem)
            records.append(record)
            counts[0] += record["correct"]
            counts[1] += 1
            any_correct |= record["correct"]
        correct_prompts += any_correct
    results_path = Path(outfile) if outfile is not None else directory / "results.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with open(results_path, "w") as fp:
        for record in records:
            fp.write(json.dumps(record) + "\n")
    return ScoreSummary(
        per_tag={tag: (c, t) for tag, (c, t) in per_tag.items()},
        n_prompts=n_prompts,
        correct_prompts=correct_prompts,
        problems=problems,
        results_path=results_path,
        records=records,
    )
