"""`janus-rig reflect-grpo`: RL-RIG's Reflection-GRPO, one phase per run (see docs/reflection.md, "Training").

    janus-rig reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml     # checker + actor
    janus-rig reflect-grpo --config train/recipes/shapeworld_reflect_editor.yaml    # the editor
    janus-rig reflect-grpo --config ... --phase editor --reward judge --judge shapeworld --max_steps 20

Flags are every `ReflectGRPOConfig` field (the GRPO ones plus phase, reward, rounds, ...), parsed after the YAML
recipe, as `janus-rig grpo` parses its own.
"""

from __future__ import annotations

import argparse
import json

from janus_rig.commands._recipe import add_recipe_arguments, recipe_argv

NAME = "reflect-grpo"
HELP = ("Reflection-GRPO: train the checker + actor (phase actor) or the region-locked editor (phase editor) "
        "with group-relative rewards of edits (YAML recipe + flags)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.reflect.config import ReflectGRPOConfig

    add_recipe_arguments(parser, ReflectGRPOConfig)


def config_from_args(args: argparse.Namespace):
    from train.reflect.config import parse_config

    return parse_config(recipe_argv(args))


def run(args: argparse.Namespace) -> int:
    from train.reflect.trainer import run_reflect_grpo

    summary = run_reflect_grpo(config_from_args(args))
    print(json.dumps(summary))
    return 0
