"""`janus-rig eval editor`: the editor alone, on ShapeWorld images whose plan is right: how often a redraw fixes
a wrong image (region-locked on the oracle's boxes, or the whole image) and how often a full redraw keeps a right
one — the loop's ceiling for a perfect checker and an actor that keeps right plans.

    janus-rig reflect-data --world W --n 256 --split val                                  # perturbed val renders
    janus-rig reflect-data --world W --n 256 --split val --own M --own-share 1 --name own_val  # its own drawings
    janus-rig eval editor --model M --world W --rows W/own_val.jsonl --seeds 3 --out E      # E/summary.json

Cases, regions and scores: janus_rig/reflect/probe_editor.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from janus_rig.commands._sampling import add_sampling_arguments, rollout_config
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "eval editor"
HELP = "the editor alone: redraws of images whose plan is right, region-locked and whole, scored by the oracle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from janus_rig.commands.eval_checker import add_probe_arguments

    add_probe_arguments(parser, "policy directory", "reflect-data rows")
    parser.add_argument("--regions", default="boxes,full", help="comma-separated: boxes (region-locked on the "
                        "oracle's departure boxes), full (the whole image)")
    parser.add_argument("--seeds", type=int, default=1, help="redraws of each image per region")
    add_sampling_arguments(parser, image_only=True, cfg_help="classifier-free guidance weight of the redraws "
                           "(default: the model's)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per sampler call (part of the seeding)")
    parser.add_argument("--seed", type=int, default=0, help="redraw s (of --seeds) of batch b is sampled with seed + 1000 * s + b")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)


def _regions(text: str) -> list[str]:
    from janus_rig.reflect.probe_editor import REGIONS

    regions = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in regions if r not in REGIONS]
    if bad or not regions:
        raise ValueError(f"--regions: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(REGIONS)}")
    return regions


def run(args: argparse.Namespace) -> int:
    import torch

    from data_prep.shapeworld.detect import detect
    from data_prep.shapeworld.oracle import score_metadata
    from janus_rig.model.policy import JanusPolicy
    from janus_rig.reflect.probe import missing_fields, read_rows
    from janus_rig.reflect.probe_editor import edit_cases, editor_scores, redraw
    from train.sft.data import WorldInfo

    started = time.perf_counter()
    if args.limit < 1 or args.seeds < 1 or args.batch_size < 1:
        raise ValueError("--limit, --seeds and --batch-size must be >= 1")
    regions = _regions(args.regions)
    world = WorldInfo.read(args.world)
    rows_path = Path(args.rows) if args.rows else world.root / "reflect_val.jsonl"
    rows = read_rows(rows_path, args.limit, check=missing_fields("id", "image", "prompt", "chain", "metadata"))
    cases, counts = edit_cases(rows, world.root, world.size)  # before the model loads: the oracle needs no model
    if not cases:
        raise ValueError(f"{rows_path}: no row has a right plan ({counts}); nothing for the editor to redraw")
    config = rollout_config(args, 1)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--world": args.world})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = JanusPolicy.load(args.model, dtype=args.dtype, device=device)

    by_kind = {"wrong": [c for c in cases if c["wrong"]], "right": [c for c in cases if not c["wrong"]]}
    fixed: dict = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "redraws.jsonl").open("w", encoding="utf-8") as f:
        for region in regions:
            fixed[region] = {}
            for kind in ("wrong", "right") if region == "full" else ("wrong",):
                fixed[region][kind] = []
                for s in range(args.seeds):
                    images = redraw(policy, by_kind[kind], world.root, world.size, region, config,
                                    seed=args.seed + 1000 * s, batch_size=args.batch_size) if by_kind[kind] else []
                    oks = [score_metadata(c["row"]["metadata"], detect(im))[0] for c, im in zip(by_kind[kind], images)]
                    fixed[region][kind].append(oks)
                    for c, ok in zip(by_kind[kind], oks):
                        f.write(json.dumps({"id": c["row"]["id"], "region": region, "seed": s, "was": kind,
                                            "boxes": [b.as_tuple() for b in c["boxes"]], "right_after": ok}) + "\n")
    summary = {"model": args.model, "rows": str(rows_path), "cfg": config.cfg_weight,
               "command": getattr(args, "command_line", None),
               **counts, **editor_scores(cases, fixed), "seconds": round(time.perf_counter() - started, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print(f"editor on {len(cases)} images of {rows_path} with a right plan ({summary['wrong']} wrong, "
          f"{summary['right']} right; {counts['plan_wrong']} wrong and {counts['plan_unreadable']} unreadable plans "
          f"skipped):")
    for region in regions:
        r = summary[region]
        line = f"  {region}: wrong images fixed {_pct(r.get('wrong_fixed'))} of {r['wrong_redraws']} redraws"
        if "right_kept" in r:
            line += f", right images kept {_pct(r['right_kept'])} of {r['right_redraws']}"
        print(line)
    print(f"in {summary['seconds']:.1f} s; {out}/summary.json, {out}/redraws.jsonl")
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"
