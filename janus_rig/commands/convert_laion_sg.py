"""`janus-rig convert laion-sg`: LAION-SG rows -> prompt + scene graph + vocabulary records (SG-IoU evaluation).

    janus-rig convert laion-sg LAION-SG/test.json --out runs/laion_sg
    janus-rig convert laion-sg LAION-SG/val.json --out runs/laion_sg --image-root LAION-SG/data
"""

from __future__ import annotations

import argparse
import json

from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "convert laion-sg"
HELP = "convert LAION-SG rows into evaluation records (prompt, scene graph with triples, vocabulary)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="LAION-SG .json files (or .jsonl / .parquet)")
    parser.add_argument("--out", required=True, help="output directory: <input stem>.jsonl, vocabulary.json, "
                                                     "bad_rows.jsonl (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--image-root", default=None,
                        help="folder of the downloaded images (by the rows' `name`); records then carry `image`")
    parser.add_argument("--limit", type=int, default=0, help="convert only the first N rows of each input (0: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from data_prep.converters.common import exit_status
    from data_prep.converters.laion_sg import LaionSGConfig, convert_laion_sg

    prepare_out_dir(args.out, args.overwrite, inputs={"INPUT": args.inputs, "--image-root": args.image_root})
    summary = convert_laion_sg(LaionSGConfig(inputs=args.inputs, out=args.out, image_root=args.image_root,
                                             limit=args.limit, progress=not args.quiet))
    print(json.dumps({k: summary[k] for k in ("kept", "bad", "bad_by_reason", "seconds")}))
    print(f"kept {sum(summary['kept'].values())} rows, {summary['bad']} bad rows ({summary['paths']['bad_rows']}); "
          f"records in {args.out}")
    code = exit_status(sum(summary["kept"].values()), summary["bad"])
    if code == 1:
        print("no row was converted: see the bad-row reasons above")
    elif code:
        print(f"{summary['bad']} bad rows left out: exit status {code}")
    return code
