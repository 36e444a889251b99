"""Shared by the trainer commands (`sft`, `grpo`, `reflect-grpo`, `ablate`): every config field becomes a flag with its
help text.

Flags are recorded in order, under the spelling trl expects (the field's name: `--num_generations`, whichever spelling
was typed), and handed to trl's `TrlParser.parse_args_and_config` together with `--config recipe.yaml`, so YAML <
flags precedence and type checking are trl's. `--help` lists the config's own fields first, in the groups its
`FLAG_GROUPS` declare, then TrainingArguments'. (A leading underscore keeps this module out of the command list.)
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from transformers import TrainingArguments
from trl import TrlParser

ARGV = "recipe_argv"
DEST = "_recipe_"  # prefix of the recorded flags' dests
TRAINING_ARGUMENTS = "TrainingArguments (transformers)"
UNGROUPED = "other"  # a field no FLAG_GROUPS names still gets its flag; tests/test_cli_help.py fails on it


def flag_groups(config_cls: type) -> dict[str, list[str]]:
    """Help group -> field names, from the `FLAG_GROUPS` of `config_cls` and of each base (the subclass's groups
    first; a title used by several classes is one group), e.g. GRPOConfig -> {"data": ["world", ...], "model":
    ["model_name_or_path", "model_dtype", ...], ...}. A field's group is declared once, in the class that declares
    the field."""
    names = {f.name for f in fields(config_cls)}
    groups: dict[str, list[str]] = {}
    home: dict[str, str] = {}
    for cls in config_cls.__mro__:
        for title, members in vars(cls).get("FLAG_GROUPS", {}).items():
            for name in members:
                if name not in names:
                    raise ValueError(f"{cls.__name__}.FLAG_GROUPS[{title!r}] names {name!r}, which is no field of "
                                     f"{config_cls.__name__}")
                if name in home:
                    raise ValueError(f"{config_cls.__name__}: field {name!r} is in the flag groups {home[name]!r} and "
                                     f"{title!r}: keep it in one")
                home[name] = title
            groups.setdefault(title, []).extend(members)
    return groups


def own_fields(config_cls: type) -> list[str]:
    """The config's fields that are not TrainingArguments' (those keep transformers' group, even where we changed a
    default)."""
    inherited = {f.name for f in fields(TrainingArguments)} if issubclass(config_cls, TrainingArguments) else set()
    return [f.name for f in fields(config_cls) if f.name not in inherited]


def ungrouped_fields(config_cls: type) -> list[str]:
    grouped = {name for members in flag_groups(config_cls).values() for name in members}
    return [name for name in own_fields(config_cls) if name not in grouped]


class _Record(argparse.Action):
    """Appends the flag, as trl spells it, and its values as typed, to `args.recipe_argv`."""

    def __call__(self, parser, namespace, values, option_string=None):
        argv = list(getattr(namespace, ARGV, None) or [])
        argv.append(self.option_strings[0])
        if isinstance(values, str):
            argv.append(values)
        elif isinstance(values, list):
            argv.extend(values)
        setattr(namespace, ARGV, argv)


class _HelpFormatter(argparse.HelpFormatter):
    """The usage line names the command's own options and `[--FIELD VALUE ...]` for the config's fields (one by one,
    they made a usage of ~280 lines, printed again with every error)."""

    def _format_usage(self, usage, actions, groups, prefix):
        if usage is not None:
            return super()._format_usage(usage, actions, groups, prefix)
        own = [a for a in actions if not a.dest.startswith(DEST)]
        return super()._format_usage(usage, own, groups, prefix).rstrip("\n") + " [--FIELD VALUE ...]\n\n"


def add_recipe_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    parser.formatter_class = _HelpFormatter
    parser.add_argument("--config", default=None, help=f"YAML recipe of {config_cls.__name__} fields; flags override it")
    parser.set_defaults(**{ARGV: []})
    by_field: dict[str, list[argparse.Action]] = {}  # a boolean field has two flags: --chain, --no_chain
    for action in TrlParser(config_cls)._actions:
        if action.option_strings and "-h" not in action.option_strings:
            by_field.setdefault(action.dest, []).append(action)
    groups = flag_groups(config_cls)
    left = ungrouped_fields(config_cls)
    if left:
        groups[UNGROUPED] = left
    grouped = {name for members in groups.values() for name in members}
    groups[TRAINING_ARGUMENTS] = [name for name in by_field if name not in grouped]
    for title, names in groups.items():
        group = parser.add_argument_group(title)
        for name in names:
            for action in by_field.get(name, []):
                _add_flag(group, action)


def _add_flag(group, action: argparse.Action) -> None:
    # trl also registers `--num-generations` for `--num_generations`; the CLI adds the other spelling of every flag
    # itself (janus_rig/cli.py), so --help shows one
    default = "" if action.default in (None, argparse.SUPPRESS) else f" (default: {action.default})"
    text = (action.help or "").replace("%", "%%") + default.replace("%", "%%")
    group.add_argument(action.option_strings[0], dest=f"{DEST}{action.dest}", nargs=action.nargs, const=action.const,
                       action=_Record, default=argparse.SUPPRESS, help=text,
                       metavar=action.metavar or action.dest.upper())


def recipe_argv(args: argparse.Namespace) -> list[str]:
    """The argv for `parse_config`: `--config FILE` (if given) then the recorded flags."""
    return (["--config", args.config] if args.config else []) + list(getattr(args, ARGV))
