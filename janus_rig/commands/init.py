"""`janus-rig init`: write a random-init model directory from a preset."""

from __future__ import annotations

import argparse

from janus_rig.model.policy import DTYPES
from janus_rig.model.presets import list_presets
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "init"
HELP = "write a random-init model directory (weights, config, tokenizer, image processor, generation config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=list_presets(), help="architecture")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the ShapeWorld word tokenizer)")
    parser.add_argument("--vq", default=None, help="a trained VQ directory (`janus-rig vq train`) for the tiny preset")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weight dtype")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    parser.add_argument("--cfg", type=float, default=5.0, help="guidance scale stored in the generation config")


def run(args: argparse.Namespace) -> int:
    from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
    from janus_rig.model.init import init_policy

    prepare_out_dir(args.out, args.overwrite, inputs={"--tokenizer": args.tokenizer, "--vq": args.vq})
    tokenizer = args.tokenizer
    if tokenizer is None:
        if args.preset != "tiny":
            print(f"warning: preset {args.preset} without --tokenizer: the ShapeWorld word tokenizer (benchmarks only)")
        tokenizer = shapeworld_tokenizer()
    policy = init_policy(args.preset, args.out, tokenizer, args.vq, args.dtype, args.seed, args.cfg)
    n = sum(p.numel() for p in policy.base.parameters())
    print(f"wrote {args.preset} ({n / 1e6:.1f} M parameters, {policy.num_image_tokens} image tokens) to {args.out}")
    return 0
