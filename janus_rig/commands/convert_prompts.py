"""`janus-rig convert prompts`: a benchmark's prompt file -> prompt-set JSON lines (id, prompt, tag, metadata).

    janus-rig convert prompts geneval --out prompts/geneval.jsonl
    janus-rig convert prompts t2i_compbench --split train --categories color shape spatial --out prompts/grpo.jsonl
"""

from __future__ import annotations

import argparse
import json

from janus_rig.outputs import add_overwrite_argument, prepare_out_file

NAME = "convert prompts"
HELP = "write a benchmark prompt set (GenEval, T2I-CompBench; bundled files) as JSON lines for GRPO and eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from data_prep.converters.prompt_sets import PROMPT_SET_DIR, PROMPT_SETS

    parser.add_argument("name", choices=PROMPT_SETS.names(), help="the prompt set")
    parser.add_argument("--out", required=True, help="output .jsonl file")
    add_overwrite_argument(parser, text="replace an existing --out file (without it one is refused)")
    parser.add_argument("--split", default=None,
                        help="t2i_compbench: train (700 per category) or val (300; default); geneval has one file")
    parser.add_argument("--categories", nargs="+", default=None,
                        help="only these categories (t2i_compbench) / tags (geneval)")
    parser.add_argument("--root", default=None, help=f"read the prompt files from here (default: {PROMPT_SET_DIR})")


def run(args: argparse.Namespace) -> int:
    from data_prep.converters.prompt_sets import convert_prompt_set, load_prompt_set

    load_prompt_set(args.name, args.split, args.categories, args.root)  # a bad split or category first: no --out yet
    prepare_out_file(args.out, args.overwrite)
    summary = convert_prompt_set(args.name, args.out, split=args.split, categories=args.categories, root=args.root)
    print(json.dumps(summary))
    return 0
