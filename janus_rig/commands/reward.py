"""`janus-rig reward`: score records with GoT-R1's dual-stage rewards, one output line per record.

    janus-rig reward --records val.jsonl --judge shapeworld --out rewards.jsonl
    janus-rig reward --records val.jsonl --judge http://127.0.0.1:8000/v1 --terms R_sem R_PI --combine sum

Records: {"id", "prompt", "chain", "image" (path relative to the records file), "metadata"}. Out:
{"id", "reward", "terms": {"R_sem", "R_spa", "R_RI", "R_PI", "R_PR", ...}}. A judge failure (timeout, a bad reply)
is a null term and reward, counted in the summary with its reason. A bad row (not UTF-8 or not JSON, a missing
field, an unreadable image, metadata the judge refuses, a term that raised on it) gets {"id", "reward": null,
"terms", "error"}, a line on stderr and a line {"id", "line", "reason"} in OUT's bad-rows file (rewards.jsonl ->
rewards.bad_rows.jsonl, written on every run); the other rows are scored. Exit status 0, or 3 when rows were bad.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from data_prep.converters.common import EXIT_SOME_BAD
from janus_rig.outputs import add_overwrite_argument, prepare_out_file
from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS

NAME = "reward"
HELP = "score records (prompt, chain, image, metadata) with the reward terms and a judge"
EXIT_BAD_ROWS = EXIT_SOME_BAD  # some rows could not be scored; the others were written (the converters' status too)


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
    parser.add_argument("--out", required=True,
                        help="output JSONL: id, reward, terms; bad rows go beside it (rewards.bad_rows.jsonl)")
    add_overwrite_argument(parser, text="replace an existing --out file (without it one is refused)")
    parser.epilog = (f"exit status: 0 when every row was read and scored (a judge failure is a null reward, counted "
                     f"in the summary), {EXIT_BAD_ROWS} when some rows were bad (listed with their reasons in the "
                     "bad-rows file; the good rows are written), 2 for a bad argument or records file")


def bad_rows_path(out: str | Path) -> Path:
    """Where the bad rows of `--out` go: rewards.jsonl -> rewards.bad_rows.jsonl (beside it, named after it, so
    two outputs in one folder keep their own)."""
    out = Path(out)
    return out.with_name(out.stem + ".bad_rows.jsonl")


def _load(record: dict, root: Path, judge):
    """(prompt, chain, image, metadata) of a record; ValueError saying what is wrong."""
    from PIL import Image

    from reward_models.judges import RubricRequest

    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key, kind in (("prompt", str), ("chain", str), ("image", str)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"'{key}' must be a string")
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    judge.check(RubricRequest("semantic", record["prompt"], chain=record["chain"], metadata=metadata))  # the oracle's
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
    lines = records_path.read_bytes().split(b"\n")  # decoded one by one: a line of bad UTF-8 is one bad row
    prepare_out_file(args.out, args.overwrite)
    judge = config.make_judge()
    rows_read, totals, bad_rows = 0, [], []

    def bad(record_id, number: int, reason: str) -> None:
        print(f"janus-rig reward: record {record_id} (line {number}): {reason}", file=sys.stderr)
        bad_rows.append({"id": record_id, "line": number, "reason": reason})

    try:
        with open(args.out, "w") as out:
            pending: list[tuple] = []  # (id, line number, loaded record or None, error), in input order

            def flush():
                loaded = [entry[2] for entry in pending if entry[2] is not None]
                result = None
                if loaded:
                    prompts, chains, images, metadata = (list(x) for x in zip(*loaded))
                    result = compute_rewards(prompts, chains, images, metadata, judge, config)
                scores = iter([] if result is None else zip(result.totals, result.terms, result.errors))
                for record_id, number, record, error in pending:
                    terms = {}
                    if record is not None:
                        total, terms, error = next(scores)
                        terms = {k: _clean(v) for k, v in terms.items()}
                        if error is None:
                            totals.append(total)
                            out.write(json.dumps({"id": record_id, "reward": total, "terms": terms}) + "\n")
                            continue
                        bad(record_id, number, error)  # a term raised on this row: its reward is unknown
                    out.write(json.dumps({"id": record_id, "reward": None, "terms": terms, "error": error}) + "\n")
                pending.clear()

            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                rows_read += 1
                record_id = f"line {number}"
                try:
                    record = json.loads(line)  # bytes: bad UTF-8 is a UnicodeDecodeError, a ValueError
                    record_id = record.get("id", record_id) if isinstance(record, dict) else record_id
                    pending.append((record_id, number, _load(record, records_path.parent, judge), None))
                except (ValueError, RecursionError) as err:  # RecursionError: JSON nested too deep to decode
                    reason = str(err) if isinstance(err, ValueError) else f"not JSON ({err})"
                    bad(record_id, number, reason)
                    pending.append((record_id, number, None, reason))
                if len(pending) >= args.batch_size:
                    flush()
            flush()
    finally:
        judge.close()
    bad_path = bad_rows_path(args.out)
    bad_path.write_text("".join(json.dumps(row) + "\n" for row in bad_rows))
    scored = [t for t in totals if t is not None]
    summary = {
        "records": rows_read, "bad_rows": len(bad_rows), "bad_rows_file": str(bad_path), "scored": len(scored),
        "reward_none": rows_read - len(bad_rows) - len(scored),
        "mean_reward": sum(scored) / len(scored) if scored else None,
        "judge": judge.stats.snapshot(), "judge_failure_reasons": judge.stats.reasons(),
    }
    print(json.dumps(summary))
    if bad_rows:
        print(f"janus-rig reward: {len(bad_rows)} of {rows_read} rows were bad ({bad_path}); exit status "
              f"{EXIT_BAD_ROWS}", file=sys.stderr)
        return EXIT_BAD_ROWS
    return 0
