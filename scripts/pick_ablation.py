"""What the checker's pick adds over picks that never look at the image, from a `janus-rig reflect` run.

    .venv/bin/python scripts/pick_ablation.py --traces R/traces.jsonl --metadata pc128.jsonl

The run must end rows with the checker's pick (`--final best`); with `--actor fresh-plan` each row holds drawings of
up to K + 1 plans. Per tag of the metadata (one GenEval line per prompt, the file given to `reflect --prompts`) it
prints the share of rows whose image is right (the oracle's verdict, recorded in traces.jsonl) for:

- first: the first drawing (the model alone);
- chosen: the image the loop ended with (the checker's pick);
- plan, first: the first drawing whose plan satisfies the caption by GenEval's rules on its boxes
  (`check_chain_layout`; a rule on the chain alone, the image unseen);
- plan, random: a uniform pick among those drawings (expected value; all drawings where no plan satisfies it);
- any right: a row with some right drawing (a perfect pick).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from data_prep.shapeworld.oracle import check_chain_layout
from janus_rig.chain import parse_chain

COLUMNS = ("first", "chosen", "plan, first", "plan, random", "any right")


def read_jsonl(path: Path, what: str) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SystemExit(f"{path}:{n}: {what} line is not JSON ({err.msg})") from None
    return rows


def picks(rounds: list[dict], meta: dict) -> dict[str, float]:
    """One row's rounds (sorted) -> 1/0 (expected value for the random pick) per column."""
    right = [bool(t["oracle"]["correct"]) for t in rounds]
    planned = [check_chain_layout(parse_chain(t["plan"]).objects, meta)[0] for t in rounds]
    good = [i for i, ok in enumerate(planned) if ok] or list(range(len(rounds)))
    chosen = [i for i, t in enumerate(rounds) if t.get("final")]
    if len(chosen) != 1:
        raise SystemExit(f"row {rounds[0]['row']}: {len(chosen)} rounds marked final (run reflect with --final best)")
    return {"first": right[0], "chosen": right[chosen[0]], "plan, first": right[good[0]],
            "plan, random": sum(right[i] for i in good) / len(good), "any right": any(right)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=Path, required=True, help="R/traces.jsonl of a `janus-rig reflect` run")
    parser.add_argument("--metadata", type=Path, required=True, help="the .jsonl given to `reflect --prompts`")
    args = parser.parse_args(argv)
    meta = read_jsonl(args.metadata, "metadata")
    rows = defaultdict(list)
    for t in read_jsonl(args.traces, "trace"):
        if "oracle" not in t:
            raise SystemExit(f"{args.traces}: row {t.get('row')} has no oracle verdict (prompts without metadata)")
        if not 0 <= t["prompt_index"] < len(meta):
            raise SystemExit(f"{args.traces}: row {t['row']}: prompt_index {t['prompt_index']} is not a line of "
                             f"{args.metadata} ({len(meta)} lines)")
        rows[t["row"]].append(t)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rounds in rows.values():
        rounds.sort(key=lambda t: t["round"])
        m = meta[rounds[0]["prompt_index"]]
        if m.get("prompt") != rounds[0]["prompt"]:
            raise SystemExit(f"row {rounds[0]['row']}: its prompt is not line {rounds[0]['prompt_index'] + 1} of "
                             f"{args.metadata}; give the file the run was given")
        for tag in (m.get("tag", "?"), "all"):
            totals[tag]["rows"] += 1
            for k, v in picks(rounds, m).items():
                totals[tag][k] += v
    print("| tag | rows | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 2) + "|")
    for tag, t in sorted(totals.items(), key=lambda kv: kv[0] == "all"):
        print(f"| {tag} | {int(t['rows'])} | " + " | ".join(f"{100 * t[c] / t['rows']:.1f} %" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
