"""`janus-rig eval checker`: the checker and the grounding question on ShapeWorld images whose truth is known,
apart from the loop: perturbed val renders, or (`--rows`) a model's own drawings of held-out prompts scored by the
oracle (`reflect-data --own M --own-share 1 --name own_val`).

    janus-rig reflect-data --world W --n 256 --split val          # W/reflect_val.jsonl: perturbed val renders
    janus-rig eval checker --model M --world W --out E              # E/summary.json, E/checks.jsonl
    janus-rig eval checker --model M --world W --role-top-k 1 --limit 256 --grounding-limit 64 --out E

Probes and scores: janus_rig/reflect/probe.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "eval checker"
HELP = "the checker (verdicts, decision, objects found) and grounding on ShapeWorld images vs the truth"


def add_probe_arguments(parser: argparse.ArgumentParser, model_help: str, rows: str) -> None:
    """The model and the rows a probe reads (shared by `eval checker` and `eval editor`)."""
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--world", required=True, help="a `janus-rig world` directory (images are relative to it)")
    parser.add_argument("--rows", default=None, metavar="FILE",
                        help=f"{rows} (default: WORLD/reflect_val.jsonl, `janus-rig reflect-data --split val`; a "
                        "model's own drawings: `reflect-data --own M --own-share 1 --name own_val`)")
    parser.add_argument("--limit", type=int, default=256, help=f"{rows} to read (the first N)")


def add_role_sampling_arguments(parser) -> None:
    """How the checker samples in the probe (the loop's own settings: janus_rig/reflect/settings.py)."""
    parser.add_argument("--role-temperature", type=float, default=1.0, help="checker sampling temperature")
    parser.add_argument("--role-top-k", type=int, default=None,
                        help="the checker samples from its k likeliest tokens (1: greedy; default: off)")
    parser.add_argument("--verdict-bias", type=float, default=0.0,
                        help="the checker's threshold: added to the logit of `no` in each verdict (> 0: flags more)")


def role_text_config(args: argparse.Namespace, max_new_tokens: int):
    """The checker's TextConfig from the role sampling arguments (ValueError naming the bad setting)."""
    from janus_rig.reflect.text import TextConfig

    return TextConfig(max_new_tokens=max_new_tokens, temperature=args.role_temperature, top_k=args.role_top_k)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_probe_arguments(parser, "policy directory with the role tokens (a role-SFT model)", "checker rows")
    parser.add_argument("--grounding-limit", type=int, default=64,
                        help="WORLD/val.jsonl images for the grounding question (0: skip)")
    parser.add_argument("--grounding-temperature", type=float, default=0.3, help="grounding answer temperature")
    add_role_sampling_arguments(parser)
    parser.add_argument("--max-reflection-tokens", type=int, default=256, help="checker tokens before it is cut off")
    parser.add_argument("--batch-size", type=int, default=32, help="images per sampler call (part of the seeding)")
    parser.add_argument("--seed", type=int, default=0, help="batch b is sampled with seed + b")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from janus_rig.model.policy import JanusPolicy
    from janus_rig.chain.roles import Verdict, parse_reflection
    from janus_rig.reflect.probe import (checker_scores, grounding_scores, missing_fields, probe_checker,
                                         probe_grounding, read_rows)
    from janus_rig.reflect.prompts import ensure_role_tokens
    from janus_rig.reflect.reward import verdict_matches
    from janus_rig.reflect.text import TextConfig
    from train.sft.data import WorldInfo

    started = time.perf_counter()
    if args.limit < 1 or args.grounding_limit < 0 or args.batch_size < 1:
        raise ValueError("--limit and --batch-size must be >= 1, --grounding-limit >= 0")
    world = WorldInfo.read(args.world)
    rows_path = Path(args.rows) if args.rows else world.root / "reflect_val.jsonl"
    rows = read_rows(rows_path, args.limit)  # cheap checks before the model loads
    records = (read_rows(world.root / "val.jsonl", args.grounding_limit, check=missing_fields("image", "scene"))
               if args.grounding_limit else [])
    config = role_text_config(args, args.max_reflection_tokens)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--world": args.world})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = JanusPolicy.load(args.model, dtype=args.dtype, device=device)
    if ensure_role_tokens(policy):
        print(f"warning: {args.model} had no role tokens (added untrained): it has not learned the checker's format")

    texts = probe_checker(policy, rows, world.root, world.size, config, seed=args.seed, batch_size=args.batch_size,
                          verdict_bias=args.verdict_bias)
    reflections = [parse_reflection(t) for t in texts]
    summary = {"model": args.model, "image_view": policy.image_view, "rows": str(rows_path),
               "command": getattr(args, "command_line", None), "verdict_bias": args.verdict_bias,
               "checker": checker_scores(reflections, rows)}
    if records:
        answers = probe_grounding(policy, records, world.root, world.size,
                                  TextConfig(max_new_tokens=160, temperature=args.grounding_temperature),
                                  seed=args.seed, batch_size=args.batch_size)
        summary["grounding"] = grounding_scores(answers, [r["scene"] for r in records])
    summary["seconds"] = round(time.perf_counter() - started, 2)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "checks.jsonl").open("w", encoding="utf-8") as f:
        for row, text, parsed in zip(rows, texts, reflections):
            truth = [Verdict(v["statement"], v["holds"]) for v in row["verdicts"]]
            f.write(json.dumps({"id": row["id"], "image": row["image"], "decision": row["decision"],
                                "said": parsed.decision, "verdicts_right": verdict_matches(parsed, truth),
                                "problems": {k: n for k, n in parsed.problem_counts().items() if n},
                                "reflection": text}) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    c = summary["checker"]
    print(f"checker on {c['checks']} images of {rows_path} ({policy.image_view} view):")
    print(f"  verdicts right {c['verdict_accuracy']:.1%} (all 'yes': {c['facts_holding']:.1%}), "
          f"answered {c['verdict_coverage']:.1%}")
    print(f"  decision right {c['decision_accuracy']:.1%} (the likelier one for all: {c['majority_decision']:.1%}), "
          f"said edit {c['said_edit']:.1%} (truth {c['edit_share']:.1%})")
    print(f"  objects found {c['seen_objects_found']:.1%}")
    if records:
        g = summary["grounding"]
        print(f"grounding on {g['images']} images: names exact {g['names_exact']:.1%}, objects found "
              f"{g['objects_found']:.1%} (names {g['names_found']:.1%}, boxes {g['boxes_found']:.1%})")
    print(f"in {summary['seconds']:.1f} s; {out}/summary.json, {out}/checks.jsonl")
    return 0
