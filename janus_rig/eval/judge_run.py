"""`janus-rig eval judge`: VLM-as-a-judge scores of a model's images, or a pairwise preference between two models.

Scores: each image gets GoT-R1's prompt -> image rubric (R_PI: describe, caption, reason, score 0-10, strict on
spatial terms; reward_models/judges/prompts.py), reported as the mean, median, spread and histogram over 0..10.

Versus (`run_versus`): both models draw the same number of samples for the same prompts with the same seeds; sample
k of model A is paired with sample k of model B, and the judge compares each pair twice, once in each order (A
shown first, then B first), which cancels a judge's position bias as GoT-R1 does when it compares reasoning
chains. Per pair the preference for A is the mean of the two answers (each 1, 0.5 or 0, read for A):

    A first: "1 is better" -> 1.0      B first: "2 is better" -> A preferred -> 1.0      preference 1.0  (a win)
    A first: "1 is better" -> 1.0      B first: "1 is better" -> A lost     -> 0.0      preference 0.5  (a tie,
                                                                                          inconsistent: position bias)

`consistency` is the share of pairs whose two answers agree; `first_shown_preference` the mean preference for
whichever candidate was shown first (0.5: no position bias). A pair with a failed answer in either order counts in
`pair_failures` and nowhere else. `kind="chain"` compares the two reasoning chains instead of the images.

Prompt files: text (one prompt per line), or JSONL with a "prompt" per line and GenEval metadata either in a
"metadata" field (ShapeWorld records) or as the line itself (GenEval's evaluation_metadata.jsonl); the oracle
judge needs the metadata, VLM judges only read the prompt.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from janus_rig.eval.summary import read_summary, write_summary
from janus_rig.gallery import write_gallery
from janus_rig.generate import generate, prompt_of, read_prompts
from janus_rig.lines import json_object, read_lines
from reward_models.judges import PairRequest, RubricRequest

RESULTS_FILE = "results.jsonl"
HISTOGRAM_BINS = 11  # scores 0..10
HIGH_SCORE = 0.8  # `share_high`: images the judge gives at least 8/10


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str
    metadata: dict | None = None


def read_prompt_records(path: str | Path) -> list[PromptRecord]:
    """Prompts (with metadata where the file has it); ValueError naming bad lines as FILE:LINE: problem."""
    if Path(path).suffix.lower() != ".jsonl":
        return [PromptRecord(f"{i:05d}", p) for i, p in enumerate(read_prompts(path))]

    def parse(text: str, number: int, ordinal: int) -> PromptRecord:
        row = json_object(text)
        metadata = row.get("metadata", row if "include" in row else None)
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("field 'metadata' must be an object")
        return PromptRecord(str(row.get("id", f"{ordinal:05d}")), prompt_of(row), metadata)

    return read_lines(path, parse, what="prompts")


# --- pure summaries ------------------------------------------------------------------------------------------------


def score_distribution(scores: list[float | None]) -> dict:
    """Mean, median, std, min, max, share >= HIGH_SCORE and a 0..10 histogram of the scores that are not None.

    >>> score_distribution([1.0, 0.5, None, 0.8])["histogram"][8], score_distribution([None])["scored"]
    (1, 0)
    """
    scored = [s for s in scores if s is not None]
    out = {"images": len(scores), "scored": len(scored), "failures": len(scores) - len(scored),
           "histogram": [0] * HISTOGRAM_BINS}
    for s in scored:
        out["histogram"][min(HISTOGRAM_BINS - 1, max(0, round(s * (HISTOGRAM_BINS - 1))))] += 1
    if scored:
        out.update(mean=statistics.fmean(scored), median=statistics.median(scored), std=statistics.pstdev(scored),
                   min=min(scored), max=max(scored), share_high=sum(s >= HIGH_SCORE for s in scored) / len(scored))
    return out


def combine_orders(a_first: float | None, b_first: float | None) -> tuple[float | None, bool | None]:
    """(preference for A, whether the two orders agree) from the judge's answer with A shown first (preference for
    A) and with B shown first (preference for B); (None, None) when either answer failed."""
    if a_first is None or b_first is None:
        return None, None
    for_a = 1.0 - b_first
    return (a_first + for_a) / 2, math.isclose(a_first, for_a)


def versus_metrics(rows: list[dict]) -> dict[str, float]:
    """Metrics over pair rows ({"a_first", "b_first", "preference", "consistent"}); see the module docstring."""
    answered = [r for r in rows if r["preference"] is not None]
    shown_first = [r[k] for r in rows for k in ("a_first", "b_first") if r[k] is not None]
    metrics = {
        "wins": float(sum(r["preference"] > 0.5 for r in answered)),
        "losses": float(sum(r["preference"] < 0.5 for r in answered)),
        "ties": float(sum(r["preference"] == 0.5 for r in answered)),
        "pair_failures": float(len(rows) - len(answered)),
    }
    if answered:
        metrics["preference"] = statistics.fmean(r["preference"] for r in answered)
        metrics["consistency"] = sum(r["consistent"] for r in answered) / len(answered)
    if shown_first:
        metrics["first_shown_preference"] = statistics.fmean(shown_first)
    return metrics


# --- asking the judge --------------------------------------------------------------------------------------------


def judge_scores(judge, prompts: list[str], images: list[Image.Image], metadata: list[dict | None],
                 batch_size: int = 32, progress: bool = True) -> list[float | None]:
    """R_PI (prompt -> image) per image, in [0, 1], or None where the judge failed."""
    out: list[float | None] = []
    for start in tqdm(range(0, len(images), batch_size), desc="judge", unit="batch", disable=not progress):
        stop = start + batch_size
        out += judge.score([RubricRequest("prompt_image", p, image=im, metadata=m)
                            for p, im, m in zip(prompts[start:stop], images[start:stop], metadata[start:stop])])
    return out


def judge_pairs(judge, kind: str, prompts: list[str], a: list, b: list, metadata: list[dict | None],
                batch_size: int = 32, progress: bool = True) -> list[dict]:
    """Each pair asked in both orders; per pair {"a_first", "b_first", "preference", "consistent"}."""
    requests = [PairRequest(kind, p, x, y, metadata=m) for p, x, y, m in zip(prompts, a, b, metadata)]
    requests += [PairRequest(kind, p, y, x, metadata=m) for p, x, y, m in zip(prompts, a, b, metadata)]
    answers: list[float | None] = []
    for start in tqdm(range(0, len(requests), batch_size), desc="compare", unit="batch", disable=not progress):
        answers += judge.compare(requests[start : start + batch_size])
    n = len(prompts)
    rows = []
    for a_first, b_first in zip(answers[:n], answers[n:]):
        preference, consistent = combine_orders(a_first, b_first)
        rows.append({"a_first": a_first, "b_first": b_first, "preference": preference, "consistent": consistent})
    return rows


# --- the runs ----------------------------------------------------------------------------------------------------


def _generate(policy, records: list[PromptRecord], out: Path, config, seed: int, batch_size: int, display_size: int,
              progress: bool) -> tuple[list[dict], list[Image.Image]]:
    traces = generate(policy, [r.prompt for r in records], out, config, seed=seed, batch_size=batch_size,
                      display_size=display_size, progress=progress)
    return traces, [Image.open(out / t["image"]).convert("RGB") for t in traces]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _judge_label(judge) -> str:
    return getattr(judge, "url", judge.name)


def run_judge(policy, records: list[PromptRecord], judge, out_dir: str | Path, config, *, seed: int = 0,
              batch_size: int = 4, judge_batch_size: int = 32, display_size: int = 256, model_name: str = "",
              header: dict | None = None, progress: bool = True) -> dict:
    """Generate, score every image with R_PI, write results.jsonl, summary.json (kind "judge"), index.html."""
    out = Path(out_dir)
    traces, images = _generate(policy, records, out, config, seed, batch_size, display_size, progress)
    owners = [records[t["prompt_index"]] for t in traces]
    scores = judge_scores(judge, [r.prompt for r in owners], images, [r.metadata for r in owners],
                          judge_batch_size, progress)
    _write_jsonl(out / RESULTS_FILE, [
        {"id": r.id, "prompt": r.prompt, "sample": t["sample"], "image": t["image"], "chain": t["chain"], "score": s}
        for r, t, s in zip(owners, traces, scores)])
    dist = score_distribution(scores)
    metrics = {k: dist[k] for k in ("mean", "median", "std", "share_high") if k in dist}
    metrics["judge_failures"] = float(dist["failures"])
    for trace, score in zip(traces, scores):
        trace["scores"] = {"R_PI": score if score is not None else "judge failed"}
    write_summary(out, kind="judge", model=model_name, metrics=metrics, samples=len(traces),
                  thumbnails=[t["image"] for t in traces],
                  extra={"judge": _judge_label(judge), "rubric": "prompt_image", "histogram": dist["histogram"],
                         "judge_stats": judge.stats.snapshot()})
    shown = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()}
    write_gallery(out, traces, {**(header or {}), **shown, "histogram 0..10": dist["histogram"]},
                  title="janus-rig eval judge", display_size=display_size)
    return read_summary(out)


def run_versus(load_policy, model_a: str, model_b: str, records: list[PromptRecord], judge, out_dir: str | Path,
               config, *, kind: str = "image", seed: int = 0, batch_size: int = 4, judge_batch_size: int = 32,
               display_size: int = 256, header: dict | None = None, progress: bool = True) -> dict:
    """Generate with model A into out/a and model B into out/b (one model in memory at a time, same seeds), compare
    every pair in both orders; write results.jsonl, summary.json (kind "judge-versus"), index.html."""
    if kind == "chain" and not config.chain:
        raise ValueError("comparing chains needs chains: drop --no-chain or compare images")
    out = Path(out_dir)
    sides = {}
    for side, model in (("a", model_a), ("b", model_b)):
        policy = load_policy(model)
        sides[side] = _generate(policy, records, out / side, config, seed, batch_size, display_size, progress)
        del policy  # one model in memory at a time
    (traces_a, images_a), (traces_b, images_b) = sides["a"], sides["b"]
    owners = [records[t["prompt_index"]] for t in traces_a]
    a, b = (images_a, images_b) if kind == "image" else ([t["chain"] for t in traces_a], [t["chain"] for t in traces_b])
    pairs = judge_pairs(judge, kind, [r.prompt for r in owners], a, b, [r.metadata for r in owners],
                        judge_batch_size, progress)
    rows = [{"id": r.id, "prompt": r.prompt, "sample": ta["sample"],
             "a": {"image": f"a/{ta['image']}", "chain": ta["chain"]},
             "b": {"image": f"b/{tb['image']}", "chain": tb["chain"]}, **pair}
            for r, ta, tb, pair in zip(owners, traces_a, traces_b, pairs)]
    _write_jsonl(out / RESULTS_FILE, rows)
    metrics = versus_metrics(pairs)
    cards = []
    for row, ta, tb in zip(rows, traces_a, traces_b):
        verdict = "judge failed" if row["preference"] is None else row["preference"]
        for side, trace in (("A", ta), ("B", tb)):
            cards.append({**trace, "sample": f"{side} {trace['sample']}", "image": row[side.lower()]["image"],
                          "overlay": f"{side.lower()}/{trace['overlay']}", "scores": {"preference for A": verdict}})
    write_summary(out, kind="judge-versus", model=model_a, metrics=metrics, samples=len(rows),
                  thumbnails=[path for row in rows for path in (row["a"]["image"], row["b"]["image"])],
                  extra={"versus": model_b, "compare": kind, "judge": _judge_label(judge),
                         "judge_stats": judge.stats.snapshot()})
    shown = {k: (f"{v:.4f}" if k in ("preference", "consistency", "first_shown_preference") else int(v))
             for k, v in metrics.items()}
    write_gallery(out, cards, {**(header or {}), "A": model_a, "B": model_b, "compared": kind, **shown},
                  title="janus-rig eval judge --versus", display_size=display_size)
    return read_summary(out)
