"""The `janus-rig` command line.

Every module in `janus_rig/commands/` is one subcommand. It defines

    NAME = "eval score"          # words of the command; a space makes a group ("eval") with a subcommand ("score")
    HELP = "one line for --help"
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int | None

so adding a command never touches this file.

Flag spelling: a trainer's flags (`sft`, `grpo`, `reflect-grpo`, and the trainer flags `ablate` and `sweep` pass on)
are its config's field names, as trl, transformers and the YAML recipes spell them (`--num_generations`); every other
flag uses dashes (`--max-chain-tokens`). Every command also takes the other spelling; `--help` shows its own.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
import sys

from janus_rig import __version__, commands


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="janus-rig", description="Reasoning-driven image generation on Janus.")
    parser.add_argument("--version", action="version", version=f"janus-rig {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for module in _command_modules():
        words = module.NAME.split()
        if len(words) == 1:
            sub = top.add_parser(words[0], help=module.HELP, description=module.HELP)
        else:
            group, leaf = words
            if group not in groups:
                group_parser = top.add_parser(group, help=f"{group} commands")
                groups[group] = group_parser.add_subparsers(dest=f"{group}_command", metavar="COMMAND", required=True)
            sub = groups[group].add_parser(leaf, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        _accept_both_spellings(sub)
        sub.set_defaults(_run=module.run)
    return parser


def _accept_both_spellings(parser: argparse.ArgumentParser) -> None:
    """`--max_chain_tokens` works where `--max-chain-tokens` is the flag, and the reverse. The other spelling goes
    only into the parser's lookup table, not into the action's option_strings, so usage and --help list one."""
    for action in list(parser._actions):
        for option in action.option_strings:
            if option.startswith("--"):
                for alias in ("--" + option[2:].replace("-", "_"), "--" + option[2:].replace("_", "-")):
                    parser._option_string_actions.setdefault(alias, action)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # what was run, as a shell line: written into output manifests (e.g. an evaluation's summary.json)
    args.command_line = shlex.join(["janus-rig", *(sys.argv[1:] if argv is None else argv)])
    try:
        code = args._run(args)
    except (FileNotFoundError, ValueError, KeyError) as err:
        # Input problems (a missing directory, a bad record, an unknown preset) are the user's to fix:
        # say what is wrong in one line rather than a traceback.
        print(f"janus-rig {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
