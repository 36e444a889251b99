"""`janus-rig sft`: supervised fine-tuning, prompt -> chain -> image (see docs/sft.md).

    janus-rig sft --config train/recipes/shapeworld_sft.yaml --max_steps 50 --output_dir runs/sft

Flags are every `SFTConfig` field (transformers' TrainingArguments plus ours); they are recorded as typed and
handed to trl's `TrlParser.parse_args_and_config`, so YAML < flags precedence and type checking are trl's.
"""

from __future__ import annotations

import argparse
import json

NAME = "sft"
HELP = "supervised fine-tuning on a ShapeWorld directory: prompt -> reasoning chain -> image (YAML recipe + flags)"


class _Record(argparse.Action):
    """Collects each flag as typed, in order, into `args.sft_argv` (the argv TrlParser then parses)."""

    def __call__(self, parser, namespace, values, option_string=None):
        argv = list(getattr(namespace, "sft_argv", None) or [])
        argv.append(option_string)
        if isinstance(values, str):
            argv.append(values)
        elif isinstance(values, list):
            argv.extend(values)
        namespace.sft_argv = argv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trl import TrlParser

    from train.sft.config import SFTConfig

    parser.add_argument("--config", default=None, help="YAML recipe of SFTConfig fields; flags override it")
    parser.set_defaults(sft_argv=[])
    for action in TrlParser(SFTConfig)._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        default = "" if action.default in (None, argparse.SUPPRESS) else f" (default: {action.default})"
        text = (action.help or "").replace("%", "%%") + default.replace("%", "%%")
        parser.add_argument(*action.option_strings, dest=f"_sft_{action.dest}", nargs=action.nargs,
                            const=action.const, action=_Record, default=argparse.SUPPRESS, help=text,
                            metavar=action.metavar or action.dest.upper())


def config_from_args(args: argparse.Namespace):
    from train.sft.config import parse_config

    return parse_config((["--config", args.config] if args.config else []) + list(args.sft_argv))


def run(args: argparse.Namespace) -> int:
    from train.sft.trainer import run_sft

    summary = run_sft(config_from_args(args))
    print(json.dumps(summary))
    return 0
