"""The sampling flags every command that draws images shares, and the one place their RolloutConfig is built.

    --cfg                 the classifier-free guidance weight; default: the model's own (its generation_config.json
                          `guidance_scale`: `JanusPolicy.guidance`, `read_guidance`), so a model samples as it was
                          measured with no flag
    --temperature         the chain's sampling temperature
    --image-temperature   the image tokens'
    --max-chain-tokens    chain tokens before <begin_of_image> is forced
    --no-chain            no reasoning chain: the image follows the prompt

Defaults are RolloutConfig's (one default per concept). A command adds the flags it needs (`add_sampling_arguments`)
and builds its config with `rollout_config(args, group_size)`. (A leading underscore keeps this module out of the
command list.)
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from janus_rig.rollout.config import RolloutConfig

CFG_HELP = ("classifier-free guidance weight (1.0: off; default: the model's, its generation_config.json "
            "guidance_scale)")
_DEFAULTS = {f.name: f.default for f in fields(RolloutConfig)}
# flag -> (RolloutConfig field, argparse keywords)
SAMPLING_FLAGS = {
    "temperature": ("text_temperature", dict(type=float, help="chain (text) sampling temperature")),
    "image_temperature": ("image_temperature", dict(type=float, help="image-token sampling temperature")),
    "max_chain_tokens": ("max_chain_tokens", dict(
        type=int, help="chain tokens before <begin_of_image> is forced (the sample is flagged truncated)")),
}


def add_cfg_argument(parser, help: str = CFG_HELP) -> None:
    parser.add_argument("--cfg", type=float, default=None, help=help)


def add_sampling_arguments(parser, *, chain: bool = True, image_only: bool = False, cfg_help: str = CFG_HELP) -> None:
    """--cfg, --temperature, --image-temperature, --max-chain-tokens and (with `chain`) --no-chain on `parser` (or an
    argument group); `image_only`: --cfg and --image-temperature alone (commands that redraw given chains)."""
    add_cfg_argument(parser, cfg_help)
    for name, (field_name, kwargs) in SAMPLING_FLAGS.items():
        if image_only and name != "image_temperature":
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", default=_DEFAULTS[field_name], **kwargs)
    if chain and not image_only:
        parser.add_argument("--no-chain", action="store_true", help="no reasoning chain: the image follows the prompt")


def cfg_for(args: argparse.Namespace, model: str | None = None) -> float:
    """--cfg, or, when it was not given, the guidance `model` (default: --model) records. ValueError for a negative
    --cfg; read before the model loads."""
    from janus_rig.model.policy import read_guidance  # the policy module loads torch and transformers

    if args.cfg is not None:
        if not args.cfg >= 0:
            raise ValueError(f"--cfg must be >= 0 (1.0: no guidance), got {args.cfg}")
        return args.cfg
    return read_guidance(model or args.model)


def rollout_config(args: argparse.Namespace, group_size: int, model: str | None = None) -> RolloutConfig:
    """The RolloutConfig of `group_size` samples per prompt from the sampling flags `args` has (the others keep
    RolloutConfig's defaults) and the guidance of `model` (default: --model). ValueError naming a bad value."""
    if group_size < 1:
        raise ValueError(f"samples per prompt must be >= 1, got {group_size}")
    values = {field_name: getattr(args, name) for name, (field_name, _) in SAMPLING_FLAGS.items() if hasattr(args, name)}
    if hasattr(args, "no_chain"):
        values["chain"] = not args.no_chain
    return RolloutConfig(group_size=group_size, cfg_weight=cfg_for(args, model), **values)
