"""`janus-rig reward`: score records with GoT-R1's dual-stage rewards, one output line per record.

    janus-rig reward --records val.jsonl --judge shapeworld --out rewards.jsonl
    janus-rig reward --records val.jsonl --judge http://127.0.0.1:8000/v1 --terms R_sem R_PI --combine sum

Records: {"id", "prompt", "chain", "image" (path relative to the records file), "metadata"}. Out:
{"id", "reward", "terms": {"R_sem", "R_spa", "R_RI", "R_PI", "R_PR", ...}}; a record that cannot be read gets
{"id", "reward": null, "terms": {}, "error": "..."} and a line on stderr, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS

NAME = "reward"
HELP = "score records (prompt, chain, image, metadata) with the reward terms and a judge"


def _key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare string


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", required=True, help="JSONL records: id, prompt, chain, image, metadata")
    parser.add_argument("--judge", default="shapeworld", help="judge name (shapeworld, hf) or a URL http://host:port/v1")
    parser.add_argument("--model", default=None, help="hf: local model directory; http: the server's model id")
    parser.add_argument("--terms", nargs="+", default=list(DEFAULT_TERMS),
                        help=f"enabled terms ({', '.join(REWARD_TERMS.names())})")
    parser.add_argument("--combine", default="product", help="product (GoT-R1) or sum")
    parser.add_argument("--weight", action="append", type=_key_value, default=[], metavar="TERM=W",
                        help="a factor's weight (R_PR, R_RI, ...), repeatable")
    parser.add_argument("--judge-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="judge keyword argument, repeatable (timeout=30, concurrency=16, device=cuda, ...)")
    parser.add_argument("--term-option", action="append", type=_key_value, default=[], metavar="TERM.KEY=VALUE",
                        help="term keyword argument, repeatable (R_spa.canvas=448, aesthetic.model_dir=DIR)")
    parser.add_argument("--batch-size", type=int, default=32, help="records per judge batch")
    parser.add_argument("--out", required=True, help="output JSONL: id, reward, terms")


def _load(record: dict, root: Path):
    """(prompt, chain, image, metadata) of a record; ValueError saying what is wrong."""
    from PIL import Image

    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key, kind in (("prompt", str), ("chain", str), ("image", str)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"'{key}' must be a string")
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    path = root / record["image"]
    try:
        with Image.open(path) as image:
            picture = image.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return record["prompt"], record["chain"], picture, metadata


def _clean(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run(args: argparse.Namespace) -> int:
    from reward_models import RewardConfig, compute_rewards

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    term_options: dict[str, dict] = {}
    for key, value in args.term_option:
        term, _, option = key.partition(".")
        if not option:
            raise ValueError(f"--term-option {key}=...: write TERM.KEY=VALUE")
        term_options.setdefault(term, {})[option] = value
    config = RewardConfig(
        terms=args.terms, combine=args.combine, weights=dict(args.weight), judge=args.judge, judge_model=args.model,
        judge_options=dict(args.judge_option), term_options=term_options,
    )
    records_path = Path(args.records)
    lines = records_path.read_text().splitlines()
    judge = config.make_judge()
    good, bad, totals = 0, 0, []
    try:
        with open(args.out, "w") as out:
            pending: list[tuple[str, tuple | None, str]] = []  # (id, loaded record or None, error), in input order

            def flush():
                loaded = [entry[1] for entry in pending if entry[1] is not None]
                result = None
                if loaded:
                    prompts, chains, images, metadata = (list(x) for x in zip(*loaded))
                    result = compute_rewards(prompts, chains, images, metadata, judge, config)
                scores = iter([] if result is None else zip(result.totals, result.terms))
                for record_id, record, error in pending:
                    if record is None:
                        row = {"id": record_id, "reward": None, "terms": {}, "error": error}
                    else:
                        total, terms = next(scores)
                        totals.append(total)
                        row = {"id": record_id, "reward": total, "terms": {k: _clean(v) for k, v in terms.items()}}
                    out.write(json.dumps(row) + "\n")
                pending.clear()

            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                record_id = f"line {number}"
                try:
                    record = json.loads(line)
                    record_id = record.get("id", record_id) if isinstance(record, dict) else record_id
                    pending.append((record_id, _load(record, records_path.parent), ""))
                    good += 1
                except ValueError as err:
                    bad += 1
                    print(f"janus-rig reward: record {record_id}: {err}", file=sys.stderr)
                    pending.append((record_id, None, str(err)))
                if len(pending) >= args.batch_size:
                    flush()
            flush()
    finally:
        judge.close()
    scored = [t for t in totals if t is not None]
    summary = {
        "records": good + bad, "bad_records": bad, "scored": len(scored), "reward_none": len(totals) - len(scored),
        "mean_reward": sum(scored) / len(scored) if scored else None, "judge": judge.stats.snapshot(),
    }
    print(json.dumps(summary))
    return 0
