"""Subcommands of `janus-rig`; see janus_rig/cli.py for the contract each module follows."""
