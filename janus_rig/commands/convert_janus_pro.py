"""`janus-rig convert janus-pro`: a deepseek-layout Janus / Janus-Pro / GoT-R1 directory -> transformers' format.

    janus-rig convert janus-pro ~/models/Janus-Pro-1B --out models/janus-pro-1b
    janus-rig convert janus-pro ~/models/GoT-R1-7B --out models/got-r1-7b --dtype bfloat16

The output loads in janus-rig (`--model DIR`) and in stock transformers (`JanusForConditionalGeneration`).
What maps to what, and why some tensors are dropped: `janus_rig.model.deepseek`; the report:
DIR/conversion_report.json.
"""

from __future__ import annotations

import argparse

from janus_rig.model.policy import DTYPES
from janus_rig.outputs import add_overwrite_argument

NAME = "convert janus-pro"
HELP = "convert a deepseek-layout Janus / Janus-Pro / GoT-R1 checkpoint directory into transformers' format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="directory in deepseek's layout (config.json with model_type "
                        "multi_modality, safetensors or .bin weights, tokenizer, preprocessor_config.json)")
    parser.add_argument("--out", required=True, help="output directory (transformers' Janus format)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                        help="cast floating-point weights (default: keep the source's dtype)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from janus_rig.model.convert import check_source, convert_deepseek
    from janus_rig.outputs import prepare_out_dir

    check_source(args.source)  # a wrong source is named before the output folder is touched
    out = prepare_out_dir(args.out, args.overwrite, inputs={"SRC": args.source})
    report = convert_deepseek(args.source, out, dtype=args.dtype)
    print(report.summary())
    for note in report.notes:
        print(f"note: {note}")
    return 0
