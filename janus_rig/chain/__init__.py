"""The reasoning-chain format (GoT-R1 object spans with boxes): formatting, parsing, and drawing the boxes."""

from janus_rig.chain.chain import (
    BOX_END,
    BOX_START,
    CHAIN_TOKENS,
    COORD_MAX,
    OBJ_END,
    OBJ_START,
    PROBLEM_KINDS,
    Box,
    ChainFormatError,
    ChainObject,
    ChainProblem,
    WHOLE_IMAGE,
    ParsedChain,
    format_chain,
    format_span,
    parse_chain,
)
from janus_rig.chain.draw import PALETTE, draw_boxes

__all__ = [
    "BOX_END",
    "BOX_START",
    "CHAIN_TOKENS",
    "COORD_MAX",
    "OBJ_END",
    "OBJ_START",
    "PALETTE",
    "PROBLEM_KINDS",
    "Box",
    "ChainFormatError",
    "ChainObject",
    "ChainProblem",
    "ParsedChain",
    "WHOLE_IMAGE",
    "draw_boxes",
    "format_chain",
    "format_span",
    "parse_chain",
]
