"""`janus-rig grpo`: GoT-R1 stage 2, GRPO on chain + image tokens with the dual-stage rewards (see docs/grpo.md).

    janus-rig grpo --config train/recipes/shapeworld_grpo.yaml --max_steps 20 --output_dir runs/grpo
    accelerate launch --num_processes 2 -m janus_rig.cli grpo --config ...   # several processes

Flags are every `GRPOConfig` field (transformers' TrainingArguments plus ours); they are recorded as typed and
handed to trl's `TrlParser.parse_args_and_config`, so YAML < flags precedence and type checking are trl's
(the same mechanism as `janus-rig sft`).
"""

from __future__ import annotations

import argparse
import json

NAME = "grpo"
HELP = "GRPO on a policy's reasoning chains and images, rewarded by a judge (YAML recipe + flags)"


class _Record(argparse.Action):
    """Collects each flag as typed, in order, into `args.grpo_argv` (the argv TrlParser then parses)."""

    def __call__(self, parser, namespace, values, option_string=None):
        argv = list(getattr(namespace, "grpo_argv", None) or [])
        argv.append(option_string)
        if isinstance(values, str):
            argv.append(values)
        elif isinstance(values, list):
            argv.extend(values)
        namespace.grpo_argv = argv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trl import TrlParser

    from train.grpo.config import GRPOConfig

    parser.add_argument("--config", default=None, help="YAML recipe of GRPOConfig fields; flags override it")
    parser.set_defaults(grpo_argv=[])
    for action in TrlParser(GRPOConfig)._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        default = "" if action.default in (None, argparse.SUPPRESS) else f" (default: {action.default})"
        text = (action.help or "").replace("%", "%%") + default.replace("%", "%%")
        parser.add_argument(*action.option_strings, dest=f"_grpo_{action.dest}", nargs=action.nargs,
                            const=action.const, action=_Record, default=argparse.SUPPRESS, help=text,
                            metavar=action.metavar or action.dest.upper())


def config_from_args(args: argparse.Namespace):
    from train.grpo.config import parse_config

    return parse_config((["--config", args.config] if args.config else []) + list(args.grpo_argv))


def run(args: argparse.Namespace) -> int:
    from train.grpo.trainer import run_grpo

    summary = run_grpo(config_from_args(args))
    print(json.dumps(summary))
    return 0
