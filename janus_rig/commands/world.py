"""`janus-rig world`: write the ShapeWorld dataset (records with chains, grounding records, bench, settings)."""

from __future__ import annotations

import argparse
import json

from data_prep.shapeworld.chains import CHAIN_STYLES
from data_prep.shapeworld.sampler import TAGS

NAME = "world"
HELP = "write a ShapeWorld dataset: train/val records with chains, grounding records, a GenEval-style bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=20000, help="training records (and grounding records)")
    parser.add_argument("--val", type=int, default=1000, help="validation records")
    parser.add_argument("--bench-per-tag", type=int, default=64, help="bench metadata lines per tag (seven tags)")
    parser.add_argument("--size", type=int, default=64, help="square canvas side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed writes the same world")
    parser.add_argument(
        "--holdout", default="", help="COLOR:SHAPE,... combinations kept out of train/val (never the bench)"
    )
    parser.add_argument("--tags", nargs="+", choices=TAGS, default=None, help="restrict train/val to these tags")
    parser.add_argument(
        "--chains", choices=CHAIN_STYLES, default="varied",
        help="training chains: varied orders and phrasings, or the prompt's own words and order with the boxes",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from data_prep.shapeworld.world import write_world

    stats = write_world(
        args.out, args.train, args.val, args.bench_per_tag, size=args.size, seed=args.seed,
        holdout=args.holdout, tags=args.tags, progress=not args.quiet,
        chains=args.chains,
    )
    print(json.dumps({k: stats[k] for k in ("counts", "bench_overlap", "seconds")}))
    print(f"wrote the world to {args.out}")
    return 0
