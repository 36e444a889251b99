"""Shared by the trainer commands (`sft`, `grpo`): every config field becomes a flag with its help text.

Flags are recorded as typed, in order, and handed to trl's `TrlParser.parse_args_and_config` together with
`--config recipe.yaml`, so YAML < flags precedence and type checking are trl's. (A leading underscore keeps this
module out of the command list.)
"""

from __future__ import annotations

import argparse

ARGV = "recipe_argv"


class _Record(argparse.Action):
    """Appends each flag and its values, as typed, to `args.recipe_argv`."""

    def __call__(self, parser, namespace, values, option_string=None):
        argv = list(getattr(namespace, ARGV, None) or [])
        argv.append(option_string)
        if isinstance(values, str):
            argv.append(values)
        elif isinstance(values, list):
            argv.extend(values)
        setattr(namespace, ARGV, argv)


def add_recipe_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    from trl import TrlParser

    parser.add_argument("--config", default=None, help=f"YAML recipe of {config_cls.__name__} fields; flags override it")
    parser.set_defaults(**{ARGV: []})
    for action in TrlParser(config_cls)._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        default = "" if action.default in (None, argparse.SUPPRESS) else f" (default: {action.default})"
        text = (action.help or "").replace("%", "%%") + default.replace("%", "%%")
        parser.add_argument(*action.option_strings, dest=f"_recipe_{action.dest}", nargs=action.nargs,
                            const=action.const, action=_Record, default=argparse.SUPPRESS, help=text,
                            metavar=action.metavar or action.dest.upper())


def recipe_argv(args: argparse.Namespace) -> list[str]:
    """The argv for `parse_config`: `--config FILE` (if given) then the recorded flags."""
    return (["--config", args.config] if args.config else []) + list(getattr(args, ARGV))
