"""Subcommands of `janus-rig`; see janus_rig/cli.py for the contract each module follows.

Command modules import their stack (models, trainers, judges, data) inside run() and their other functions, not at
the top: the CLI imports every command module to build its parser, so a module-level import here is paid by every
`janus-rig` call, `--help` included. This package is the one place where function-level imports need no reason on
their line (tests/test_imports_at_top.py).
"""
