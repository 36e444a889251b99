"""`janus-rig reflect-data`: reflection SFT data from a ShapeWorld world (perturbed scenes, checker and actor targets).

    janus-rig reflect-data --world runs/w --n 4000                # -> runs/w/reflect.jsonl + runs/w/reflect/images/

Row schema and how SFT reads it: docs/reflection.md.
"""

from __future__ import annotations

import argparse
import json

NAME = "reflect-data"
HELP = "write reflection training rows (perturbed ShapeWorld scenes with checker and actor targets) into a world"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", required=True, help="a `janus-rig world` directory")
    parser.add_argument("--n", type=int, required=True, help="rows to write")
    parser.add_argument("--split", default="train", choices=("train", "val"),
                        help="records to perturb; train writes reflect.jsonl, val reflect_val.jsonl")
    parser.add_argument("--keep-fraction", type=float, default=0.25,
                        help="share of unperturbed rows (the checker's target decision is keep)")
    parser.add_argument("--plan-errors", type=float, default=0.0,
                        help="share of moves shown with the plan the moved image follows (a wrong plan drawn "
                             "faithfully: the actor must revise it, not copy it)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from data_prep.shapeworld.perturb import write_reflect_data

    stats = write_reflect_data(args.world, args.n, seed=args.seed, split=args.split,
                               keep_fraction=args.keep_fraction, progress=not args.quiet,
                               plan_errors=args.plan_errors)
    print(json.dumps(stats))
    return 0
