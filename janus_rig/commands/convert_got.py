"""`janus-rig convert got`: GoT rows (LAHR-GoT, JourneyDB-GoT, ...) -> a records directory `janus-rig sft` reads.

    janus-rig convert got lahr-00000.parquet lahr-00001.parquet --out runs/lahr --fields prompt=caption,chain=got
    janus-rig convert got rows.json --out runs/mine --fields chain=cot,image=path,boxes=objects --box-space pixel
"""

from __future__ import annotations

import argparse
import json

from data_prep.converters.got import BOX_FORMATS, BOX_SPACES, FIELDS, FITS, IMAGE_FORMATS
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "convert got"
HELP = "convert GoT-style rows (prompt, reasoning chain with boxes, image) into SFT records + resized images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "field names for --fields:\n" + "\n".join(f"  {k:<11} {v}" for k, v in FIELDS.items())
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=".json, .jsonl or .parquet files")
    parser.add_argument("--out", required=True, help="output directory (train/val/grounding.jsonl, images/, ...); a "
                        "used one is refused without --overwrite")
    add_overwrite_argument(parser)
    parser.add_argument("--fields", default="", metavar="NAME=FIELD,...",
                        help="which source field holds what, e.g. prompt=caption,chain=cot,image=image_path,"
                             "boxes=bboxes (default: prompt, chain, image); a.b reaches nested fields")
    parser.add_argument("--image-root", default=None, help="image paths are relative to this (default: each "
                                                           "input's folder)")
    parser.add_argument("--image-size", type=int, default=384, help="written images are SIZE x SIZE: the model's "
                                                                    "resolution (Janus-Pro: 384)")
    parser.add_argument("--fit", choices=FITS, default="stretch",
                        help="stretch: per-axis resize (grid boxes keep their numbers); pad: letterbox on grey")
    parser.add_argument("--box-space", choices=BOX_SPACES, default="grid",
                        help="a boxes field's coordinates: grid 0..1000, pixel (of the image, or width/height "
                             "fields), unit 0..1; span chains are always on the 0..1000 grid")
    parser.add_argument("--box-format", choices=BOX_FORMATS, default="xyxy", help="a boxes field's box layout")
    parser.add_argument("--image-format", choices=list(IMAGE_FORMATS), default="jpg", help="written image files")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="share of rows in val.jsonl, chosen by a hash of the id (stable across runs)")
    parser.add_argument("--tag", default="got", help="every record's tag")
    parser.add_argument("--limit", type=int, default=0, help="convert only the first N rows (0: all)")
    parser.add_argument("--workers", type=int, default=1, help="processes for image reading and writing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from data_prep.converters.common import exit_status
    from data_prep.converters.got import GotConfig, convert_got

    config = GotConfig(
        inputs=args.inputs, out=args.out, fields=args.fields, image_root=args.image_root, image_size=args.image_size,
        fit=args.fit, box_space=args.box_space, box_format=args.box_format, image_format=args.image_format,
        val_fraction=args.val_fraction, tag=args.tag, limit=args.limit, workers=args.workers,
        progress=not args.quiet,
    )
    prepare_out_dir(args.out, args.overwrite, inputs={"INPUT": args.inputs, "--image-root": args.image_root})
    summary = convert_got(config)
    print(json.dumps({k: summary[k] for k in ("counts", "bad_by_reason", "seconds")}))
    counts = summary["counts"]
    print(f"kept {counts['train']} train + {counts['val']} val rows, {counts['bad']} bad rows "
          f"({summary['paths']['bad_rows']}); records in {args.out}")
    code = exit_status(counts["train"] + counts["val"], counts["bad"])
    if code == 1:
        print("no row was converted: see the bad-row reasons above")
    elif code:
        print(f"{counts['bad']} bad rows left out: exit status {code}")
    return code
