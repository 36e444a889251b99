"""`janus-rig vq train`: train the tiny preset's VQ on a ShapeWorld directory (see docs/vq.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields
from pathlib import Path

from train.vq.config import VQTrainConfig

NAME = "vq train"
HELP = "train the tiny preset's JanusVQVAE on a ShapeWorld directory; writes the VQ, metrics.json and recon/"


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from janus_rig.commands._recipe import UNGROUPED, flag_groups, ungrouped_fields

    parser.add_argument("--config", default=None, help="YAML recipe of VQTrainConfig fields; flags override it")
    by_name = {f.name: f for f in fields(VQTrainConfig)}
    groups = flag_groups(VQTrainConfig)
    left = ungrouped_fields(VQTrainConfig)
    if left:
        groups[UNGROUPED] = left
    for title, names in groups.items():
        group = parser.add_argument_group(title)
        for f in (by_name[name] for name in names):
            boolean = f.type in (bool, "bool")
            default = f.default if f.default is not MISSING else None
            # a bare boolean flag means true (`--overwrite`), as in the other commands; `--hflip false` still works
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_bool if boolean else type(f.default),
                               default=None, nargs="?" if boolean else None, const=True if boolean else None,
                               help=f"{f.metadata['help']} (default: {default!r})")


def config_from_args(args: argparse.Namespace) -> VQTrainConfig:
    values: dict = {}
    if args.config:
        import yaml

        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {path} not found")
        values = yaml.safe_load(path.read_text()) or {}
        unknown = set(values) - {f.name for f in fields(VQTrainConfig)}
        if unknown:
            raise ValueError(f"{path}: unknown fields {sorted(unknown)}; valid: {sorted(VQTrainConfig.help())}")
    values.update({f.name: getattr(args, f.name) for f in fields(VQTrainConfig) if getattr(args, f.name) is not None})
    return VQTrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from janus_rig.outputs import prepare_out_dir
    from train.vq.trainer import train_vq

    config = config_from_args(args)
    if not config.world or not config.out:
        raise ValueError("both --world DIR and --out DIR are required")
    prepare_out_dir(config.out, config.overwrite, inputs={"--world": config.world})
    metrics = train_vq(config)
    keys = ("steps", "train_time_s", "wall_time_s", "train_mse", "val_mse", "codes_alive", "codes_used_val",
            "same_verdict", "same_objects")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0
