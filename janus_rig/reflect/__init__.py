"""Reflection inside the one model (RL-RIG's Generate-Reflect-Edit): the checker and actor formats, their prompts,
the loop, rewards. Only the formats are imported here: the tokenizer imports them, and the loop imports the model.

    from janus_rig.reflect.loop import ReflectConfig, reflect     # generate -> check -> act -> edit, K rounds
"""

from janus_rig.reflect.format import (
    ALL_PROBLEM_KINDS,
    DECISIONS,
    EDIT,
    KEEP,
    ROLE_PROBLEM_KINDS,
    ROLE_TOKENS,
    ParsedEdit,
    ParsedReflection,
    RoleFormatError,
    Verdict,
    format_edit,
    format_reflection,
    parse_edit,
    parse_reflection,
)

__all__ = [
    "ALL_PROBLEM_KINDS",
    "DECISIONS",
    "EDIT",
    "KEEP",
    "ROLE_PROBLEM_KINDS",
    "ROLE_TOKENS",
    "ParsedEdit",
    "ParsedReflection",
    "RoleFormatError",
    "Verdict",
    "format_edit",
    "format_reflection",
    "parse_edit",
    "parse_reflection",
]
