"""`janus-rig grpo`: GoT-R1 stage 2, GRPO on chain + image tokens with the dual-stage rewards (see docs/grpo.md).

    janus-rig grpo --config train/recipes/shapeworld_grpo.yaml --max_steps 20 --output_dir runs/grpo
    accelerate launch --num_processes 2 -m janus_rig.cli grpo --config ...   # several processes

Flags are every `GRPOConfig` field (transformers' TrainingArguments plus ours), parsed after the YAML recipe.
"""

from __future__ import annotations

import argparse
import json

from janus_rig.commands._recipe import add_recipe_arguments, recipe_argv

NAME = "grpo"
HELP = "GRPO on a policy's reasoning chains and images, rewarded by a judge (YAML recipe + flags)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.grpo.config import GRPOConfig

    add_recipe_arguments(parser, GRPOConfig)


def config_from_args(args: argparse.Namespace):
    from train.grpo.config import parse_config

    return parse_config(recipe_argv(args))


def run(args: argparse.Namespace) -> int:
    from train.grpo.trainer import run_grpo

    summary = run_grpo(config_from_args(args))
    print(json.dumps(summary))
    return 0
