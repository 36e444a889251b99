"""`janus-rig sft`: supervised fine-tuning, prompt -> chain -> image (see docs/sft.md).

    janus-rig sft --config train/recipes/shapeworld_sft.yaml --max_steps 50 --output_dir runs/sft

Flags are every `SFTConfig` field (transformers' TrainingArguments plus ours), parsed after the YAML recipe.
"""

from __future__ import annotations

import argparse
import json

from janus_rig.commands._recipe import add_recipe_arguments, recipe_argv

NAME = "sft"
HELP = "supervised fine-tuning on a ShapeWorld directory: prompt -> reasoning chain -> image (YAML recipe + flags)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.sft.config import SFTConfig

    add_recipe_arguments(parser, SFTConfig)


def config_from_args(args: argparse.Namespace):
    from train.sft.config import parse_config

    return parse_config(recipe_argv(args))


def run(args: argparse.Namespace) -> int:
    from train.sft.trainer import run_sft

    summary = run_sft(config_from_args(args))
    print(json.dumps(summary))
    return 0
