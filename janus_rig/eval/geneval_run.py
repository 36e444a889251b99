"""`janus-rig eval geneval`: K samples per GenEval metadata line, written in GenEval's own layout, then scored.

    entries = read_geneval_metadata("WORLD/bench/metadata.jsonl", limit=8, tags=["position"])
    oracle = choose_oracle(entries, "auto")   # Oracle(use=True, why="every metadata line is a ShapeWorld record")
    run = run_geneval(policy, entries, "runs/eval/geneval", RolloutConfig(group_size=4), oracle=oracle.use)
    write_geneval_outputs("runs/eval/geneval", run, model="runs/quickstart/grpo", header={...}, oracle=oracle)

The folder (geneval_layout.py has the names):

    OUT/00012/metadata.jsonl       the metadata line, as GenEval's generation script writes it
    OUT/00012/samples/0000.png     sample k of that line (what GenEval's evaluate_images.py scores)
    OUT/00012/chains.jsonl         one line per sample: its chain, parsed objects and problems, seed, timings
    OUT/00012/overlays/0000.png    the sample upscaled to display_size with the chain's planned boxes drawn
    OUT/results.jsonl              GenEval's result lines, when the oracle scored the run (ShapeWorld prompts)
    OUT/index.html, OUT/summary.json

A folder's number is its metadata line's index in the file (0-based, blank lines not counted), also under
--limit/--tags, so 00012 is always line 12 of the metadata file it came from.

Generation goes through a `GenerateFn` (default `sample_once`: one rollout per batch, chain then image). A
generate-reflect-edit loop plugs in as another GenerateFn returning the final Draws
(`janus_rig.eval.reflect_generate.reflect_generate`, `eval geneval --reflect K`); the writers here and in
t2i_compbench_layout.py do not change. Draws that carry `round_images` (the image after 0..K rounds) also get

    OUT/00012/rounds/0000_r1.png   sample 0 after 1 round (r0: before any edit; the last round is samples/0000.png)

and, when the oracle scores, the accuracy after each round in the summary's metrics (`overall@r0`,
`position@r1`, ...: the figure of accuracy against rounds). `draw_samples` batches and seeds exactly like
`janus_rig.generate`: batch b is drawn with seed + b, so the same prompts, settings, seed and batch size give the
same chains and images.

Oracle-scored runs also split each tag's accuracy into the plan and the drawing (`score.chain_split`, summary.json's
`chain_split`, a table on the console): how often the sample's chain is a right plan (`oracle.check_chain`), and how
often the image is right given a right / a wrong chain. With `--reflect` both are the final draw's (`Draw.chain`: the
last round's plan).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from data_prep.shapeworld.oracle import check_chain, validate_metadata
from janus_rig.chain import ParsedChain, draw_boxes, parse_chain
from janus_rig.eval.edit_strip import edit_strip, flag_metrics
from janus_rig.eval.geneval_layout import (
    CHAINS_FILE,
    OVERLAYS_DIR,
    SAMPLES_DIR,
    overlay_path,
    prompt_dir,
    sample_path,
    write_prompt_dir,
)
from janus_rig.eval.score import ScoreSummary, chain_split, score_geneval_dir, score_image
from janus_rig.eval.summary import MAX_THUMBNAILS, write_summary
from janus_rig.gallery import write_gallery
from janus_rig.lines import json_object, read_lines
from janus_rig.outputs import prepare_out_dir
from janus_rig.rollout.config import RolloutConfig
from janus_rig.rollout.sampler import sample

ROUNDS_DIR = "rounds"  # per prompt folder: a reflecting GenerateFn's image after each round
ORACLE_MODES = ("auto", "on", "off")


def official_score_commands(out_dir: str | Path) -> list[str]:
    """GenEval's own scorer on our folder, run from a GenEval checkout (needs its Mask2Former and CLIP models)."""
    out = Path(out_dir).resolve()
    return [f"cd geneval && python evaluation/evaluate_images.py {out} --outfile {out}/results.jsonl "
            "--model-path <mask2former checkpoint dir>",
            f"cd geneval/evaluation && python summary_scores.py {out}/results.jsonl"]


# --- generation, shared by every benchmark writer ----------------------------------------------------------------
@dataclass
class Draw:
    """One generated sample."""

    prompt_index: int  # into the prompt list given to draw_samples (local to the batch inside a GenerateFn)
    sample: int  # k in 0..group_size-1
    image: Image.Image  # at the model's native size
    chain: str  # '' without a chain
    truncated: bool  # <begin_of_image> was forced at max_chain_tokens
    seed: int  # of the batch it was drawn in
    timings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # kept in the sample's chain record, e.g. a reflection loop's rounds
    round_images: list = field(default_factory=list)  # reflection: the image after 0, 1, .., K rounds (PIL)


GenerateFn = Callable[[object, list[str], RolloutConfig, int], list[Draw]]
"""(policy, the prompts of one batch, config, seed) -> config.group_size Draws per prompt, prompt-major, with
prompt_index local to the batch."""


def sample_once(policy, prompts: list[str], config: RolloutConfig, seed: int) -> list[Draw]:
    """The default GenerateFn: one rollout (chain, then image) per sample."""
    rollout = sample(policy, prompts, config, seed=seed)
    decode_start = time.perf_counter()
    pixels = policy.decode_images(rollout.image_tokens)  # (R, S, S, 3) uint8
    timings = {"text_s": rollout.timings["text_s"], "image_s": rollout.timings["image_s"],
               "decode_s": time.perf_counter() - decode_start}  # of the whole batch
    truncated = rollout.truncated.tolist()
    return [
        Draw(prompt_index=p, sample=r % config.group_size,  # rows are prompt-major
             image=Image.fromarray(pixels[r].numpy()), chain=rollout.chains[r], truncated=truncated[r], seed=seed,
             timings=timings)
        for r, p in enumerate(rollout.prompt_index.tolist())
    ]


def draw_samples(policy, prompts: list[str], config: RolloutConfig, *, seed: int = 0, batch_size: int = 4,
                 generate_fn: GenerateFn = sample_once, progress: bool = True,
                 desc: str = "generate") -> Iterator[Draw]:
    """Yield config.group_size Draws per prompt, prompt-major; batch_size prompts per generate_fn call, batch b
    drawn with seed + b. Draws' prompt_index index `prompts`."""
    if not prompts:
        raise ValueError("no prompts to generate from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(prompts), batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not progress)):
        batch = prompts[start : start + batch_size]
        draws = generate_fn(policy, batch, config, seed + b)
        if len(draws) != len(batch) * config.group_size:
            raise RuntimeError(f"generate_fn returned {len(draws)} samples for {len(batch)} prompts x "
                               f"{config.group_size}; it must return group_size per prompt")
        for draw in draws:
            yield dataclasses.replace(draw, prompt_index=start + draw.prompt_index)


def chain_fields(chain: str, parsed: ParsedChain) -> dict:
    """What every sample keeps of its chain: the text, its objects (name, box on 0..1000) and parse problems."""
    return {
        "chain": chain,
        "objects": [{"name": o.name, "box": list(o.box.as_tuple()) if o.box else None} for o in parsed.objects],
        "problems": [{"kind": p.kind, "position": p.position, "message": p.message} for p in parsed.problems],
    }


def save_draw(draw: Draw, image_file: Path, overlay_file: Path, display_size: int) -> dict:
    """Write the sample and its overlay; return its record (chain fields, truncated, seed, timings, extra)."""
    parsed = parse_chain(draw.chain)  # lenient: a garbled chain still gives its readable objects and its problems
    for path in (image_file, overlay_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    draw.image.save(image_file)
    draw_boxes(draw.image, parsed.objects, size=(display_size, display_size)).save(overlay_file)
    return {**chain_fields(draw.chain, parsed), "truncated": draw.truncated, "seed": draw.seed,
            "timings": draw.timings, **draw.extra}


# --- GenEval metadata in ----------------------------------------------------------------------------------------
@dataclass
class Entry:
    index: int  # the line's index among the file's metadata lines: its folder <index:05d>
    line: int  # 1-based line number in the file, for messages
    metadata: dict


def read_geneval_metadata(path: str | Path, limit: int | None = None, tags: list[str] | None = None) -> list[Entry]:
    """GenEval metadata lines of `path`: those with a tag in `tags` (all when None), then the first `limit`.

        {"tag": "position", "include": [{"class": "dog", "count": 1}, ...], "prompt": "a photo of a dog right of a cup"}

    ValueError naming FILE:LINE for a line that is not a JSON object with "tag" and "prompt" strings, or when
    nothing is selected; FileNotFoundError when the file is missing.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")

    def parse(text: str, number: int, ordinal: int) -> Entry:
        metadata = json_object(text)
        missing = [k for k in ("tag", "prompt") if not isinstance(metadata.get(k), str) or not metadata[k].strip()]
        if missing:
            raise ValueError(f"no {' or '.join(repr(k) for k in missing)} string")
        return Entry(ordinal, number, metadata)

    entries = read_lines(path, parse, what="metadata lines")
    if tags:
        present = list(dict.fromkeys(e.metadata["tag"] for e in entries))
        unknown = [t for t in tags if t not in present]
        if unknown:
            raise ValueError(f"--tags {', '.join(unknown)}: not a tag of {path} (its tags: {', '.join(present)})")
        entries = [e for e in entries if e.metadata["tag"] in tags]
    return entries[:limit]


@dataclass
class Oracle:
    use: bool
    why: str  # one line for the output: which it did and why


def choose_oracle(entries: list[Entry], mode: str = "auto", source: str | Path = "metadata") -> Oracle:
    """Score with the ShapeWorld oracle? "on" demands it (ValueError naming the first line it cannot score),
    "off" refuses it, "auto" uses it exactly when every selected line is a ShapeWorld record."""
    if mode not in ORACLE_MODES:
        raise ValueError(f"oracle mode {mode!r} is not one of {', '.join(ORACLE_MODES)}")
    if mode == "off":
        return Oracle(False, "off (--oracle off): images written for GenEval's own scorer")
    for entry in entries:
        try:
            validate_metadata(entry.metadata)
        except ValueError as err:
            first = f"{source}:{entry.line}: {err}"
            if mode == "on":
                raise ValueError(f"--oracle on, but the ShapeWorld oracle cannot score {first}") from None
            return Oracle(False, f"off (not ShapeWorld prompts: {first}); images written for GenEval's own scorer")
    return Oracle(True, f"on ({'--oracle on' if mode == 'on' else 'auto'}: every selected metadata line is a "
                        "ShapeWorld record)")


# --- the run ----------------------------------------------------------------------------------------------------
@dataclass
class GenevalRun:
    traces: list[dict]  # one per sample, for the gallery: paths relative to the output folder
    score: ScoreSummary | None  # None when not oracle-scored
    entries: list[Entry]
    samples_per_prompt: int
    # "overall@r0", "<tag>@r1", ..., and the first check's flags ("flagged_right@r0", ...; edit_strip.py)
    round_metrics: dict[str, float] = field(default_factory=dict)  # oracle-scored reflecting runs only
    chain_split: dict[str, dict] = field(default_factory=dict)  # tag -> `score.chain_split` (oracle-scored)


def check_fresh(out_dir: str | Path) -> None:
    """A run writes into a new or empty folder: GenEval's scorer reads every prompt folder there, so a second run
    would be scored with the first (ValueError otherwise; `eval geneval --overwrite` empties it first)."""
    prepare_out_dir(out_dir, overwrite=False)


def run_geneval(policy, entries: list[Entry], out_dir: str | Path, config: RolloutConfig, *, seed: int = 0,
                batch_size: int = 4, oracle: bool = False, generate_fn: GenerateFn = sample_once,
                display_size: int = 256, progress: bool = True) -> GenevalRun:
    """Generate config.group_size samples per entry into GenEval's layout under out_dir; oracle-score them when
    `oracle` (writes out_dir/results.jsonl). Gallery and summary: `write_geneval_outputs`."""
    if display_size < 1:
        raise ValueError(f"display_size must be >= 1 pixel, got {display_size}")
    check_fresh(out_dir)
    out = Path(out_dir)
    for entry in entries:
        write_prompt_dir(out, entry.index, entry.metadata)
    traces = []
    prompts = [e.metadata["prompt"] for e in entries]
    per_round: dict[int, dict[str, list[int]]] = {}  # round -> tag -> [correct, images]
    for draw in draw_samples(policy, prompts, config, seed=seed, batch_size=batch_size, generate_fn=generate_fn,
                             progress=progress, desc="geneval"):
        entry = entries[draw.prompt_index]
        k = draw.sample
        record = save_draw(draw, sample_path(out, entry.index, k), overlay_path(out, entry.index, k), display_size)
        record = {"sample": k, "image": f"{SAMPLES_DIR}/{k:04d}.png", "overlay": f"{OVERLAYS_DIR}/{k:04d}.png",
                  "prompt": entry.metadata["prompt"], **record}
        folder = prompt_dir(out, entry.index)
        round_correct = _save_rounds(draw, folder, k, entry.metadata if oracle else None, record)
        with open(folder / CHAINS_FILE, "a", encoding="utf-8") as fp:
            fp.write(json.dumps(record) + "\n")
        trace = {**record, "prompt_index": entry.index, "tag": entry.metadata["tag"],
                 "image": f"{folder.name}/{record['image']}", "overlay": f"{folder.name}/{record['overlay']}"}
        if record.get("round_images"):
            trace["more_images"] = [{"src": f"{folder.name}/{rel}", "alt": f"after {j} rounds"}
                                    for j, rel in enumerate(record["round_images"][:-1])]
        for j, correct in enumerate(round_correct):
            counts = per_round.setdefault(j, {}).setdefault(entry.metadata["tag"], [0, 0])
            counts[0] += correct
            counts[1] += 1
            trace.setdefault("scores", {})[f"correct@r{j}"] = correct
        traces.append(trace)
    score = score_geneval_dir(out) if oracle else None
    split = []  # (tag, chain right, image right) per scored sample
    if score is not None:
        verdicts = {Path(r["filename"]).resolve(): r for r in score.records}
        metadata = {e.index: e.metadata for e in entries}
        for trace in traces:
            result = verdicts.get((out / trace["image"]).resolve())
            if result is not None:
                reason = {"reason": result["reason"]} if result["reason"] else {}
                chain_ok = check_chain(parse_chain(trace["chain"]).objects, metadata[trace["prompt_index"]])
                trace["scores"] = {"correct": result["correct"], "chain_ok": chain_ok, **reason,
                                   **trace.get("scores", {})}
                split.append((trace["tag"], chain_ok, result["correct"]))
    return GenevalRun(traces, score, entries, config.group_size, {**round_metrics(per_round), **flag_metrics(traces)},
                      chain_split(split))


def _save_rounds(draw: Draw, folder: Path, k: int, metadata: dict | None, record: dict) -> list[bool]:
    """Write a reflecting draw's image after each round to FOLDER/rounds/<k>_r<j>.png (paths into
    record["round_images"]); with metadata, the oracle's verdict on each (GenEval's rule, as the samples)."""
    if not draw.round_images:
        return []
    (folder / ROUNDS_DIR).mkdir(parents=True, exist_ok=True)
    record["round_images"] = [f"{ROUNDS_DIR}/{k:04d}_r{j}.png" for j in range(len(draw.round_images))]
    correct = []
    for image, rel in zip(draw.round_images, record["round_images"]):
        image.save(folder / rel)
        if metadata is not None:
            correct.append(bool(score_image(folder / rel, metadata)[0]["correct"]))
    return correct


def round_metrics(per_round: dict[int, dict[str, list[int]]]) -> dict[str, float]:
    """{round: {tag: [correct, images]}} -> {"overall@r0": .., "<tag>@r0": .., "overall@r1": ..}: GenEval's
    accuracy (overall = mean over tags) of the images after each round."""
    metrics = {}
    for j, per_tag in sorted(per_round.items()):
        summary = ScoreSummary(per_tag={tag: (c, t) for tag, (c, t) in per_tag.items()}, n_prompts=0,
                               correct_prompts=0)
        metrics.update({f"{name}@r{j}": value for name, value in summary.metrics().items()})
    return metrics


def thumbnails(traces: list[dict], n: int = MAX_THUMBNAILS) -> list[str]:
    """Up to n sample paths for a thumbnail strip: the first sample of successive prompts, tags taken in turn."""
    by_tag: dict[str, list[str]] = {}
    for t in traces:
        if t["sample"] == 0:
            by_tag.setdefault(t.get("tag", ""), []).append(t["image"])
    picked, queues = [], [list(q) for q in by_tag.values()]
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def write_geneval_outputs(out_dir: str | Path, run: GenevalRun, *, model: str, header: dict, oracle: Oracle,
                          metadata_file: str | Path, reflect_rounds: int = 0, command: str | None = None) -> Path:
    """Write out_dir/index.html (samples, chains, overlays, oracle verdicts) and out_dir/summary.json
    (kind "geneval"; metrics overall + per tag when oracle-scored, else none). -> the gallery's path."""
    out = Path(out_dir)
    score = run.score
    extra = {"oracle": oracle.why, "metadata": str(metadata_file), "prompts": len(run.entries),
             "samples_per_prompt": run.samples_per_prompt, "scored": score is not None}
    if score is None:
        extra["score_with"] = official_score_commands(out)
    else:
        extra.update(correct_prompts=score.correct_prompts, problems=score.problems, chain_split=run.chain_split)
    if reflect_rounds:
        strip = edit_strip(out, run.traces)
        extra["edit_strip"] = strip and strip.name  # before | edit boxes | after, for up to 6 edited samples
    write_summary(out, kind="geneval", model=model, samples=len(run.traces),
                  metrics={**score.metrics(), **run.round_metrics} if score else {},
                  per_tag=score.per_tag_records() if score else None,
                  thumbnails=thumbnails(run.traces), reflect_rounds=reflect_rounds, command=command, extra=extra)
    return write_gallery(out, run.traces, {**header, "oracle": oracle.why}, title="janus-rig eval geneval")
