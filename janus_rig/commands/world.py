"""`janus-rig world`: write the ShapeWorld dataset (records with chains, grounding records, bench, held-out prompt
split, settings)."""

from __future__ import annotations

import argparse
import json

from data_prep.shapeworld.chains import CHAIN_STYLES
from data_prep.shapeworld.sampler import TAGS
from data_prep.shapeworld.world import HELDOUT_PER_TAG
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "world"
HELP = ("write a ShapeWorld dataset: train/val records with chains, grounding records, a GenEval-style bench and a "
        "held-out prompt split")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--train", type=int, default=20000, help="training records (and grounding records)")
    parser.add_argument("--val", type=int, default=1000, help="validation records")
    parser.add_argument("--bench-per-tag", type=int, default=64, help="bench metadata lines per tag (seven tags)")
    parser.add_argument(
        "--heldout-per-tag", type=int, default=HELDOUT_PER_TAG,
        help="held-out metadata lines per tag, all seven tags (heldout/metadata.jsonl; 0: none): its position, "
        "complex and color_attr prompts never occur in train/val (color_attr: at most 90 minus --bench-per-tag), the "
        f"other tags' few prompts do (default: {HELDOUT_PER_TAG})",
    )
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
    from data_prep.shapeworld.world import parse_holdout, write_world

    parse_holdout(args.holdout)  # a mistyped combination is named before an output folder is emptied or refused
    prepare_out_dir(args.out, args.overwrite)
    stats = write_world(
        args.out, args.train, args.val, args.bench_per_tag, size=args.size, seed=args.seed,
        holdout=args.holdout, tags=args.tags, progress=not args.quiet,
        chains=args.chains, heldout_per_tag=args.heldout_per_tag,
    )
    print(json.dumps({k: stats[k] for k in ("counts", "bench_overlap", "heldout_overlap", "seconds")}))
    print(f"wrote the world to {args.out}")
    return 0
