"""`--cfg`, the one flag for the classifier-free guidance weight, and its default: the model's own.

A model directory records the guidance it was trained and evaluated with (generation_config.json `guidance_scale`:
`JanusPolicy.guidance`, `read_guidance`), so `janus-rig generate --model checkpoints/shapeworld/sft` samples as the
model was measured, with no flag. (A leading underscore keeps this module out of the command list.)
"""

from __future__ import annotations

import argparse

HELP = ("classifier-free guidance weight (1.0: off; default: the model's, its generation_config.json "
        "guidance_scale)")


def add_cfg_argument(parser, help: str = HELP) -> None:
    parser.add_argument("--cfg", type=float, default=None, help=help)


def cfg_for(args: argparse.Namespace, model: str | None = None) -> float:
    """--cfg, or, when it was not given, the guidance `model` (default: --model) records. ValueError for a negative
    --cfg; read before the model loads."""
    from janus_rig.model.policy import read_guidance

    if args.cfg is not None:
        if not args.cfg >= 0:
            raise ValueError(f"--cfg must be >= 0 (1.0: no guidance), got {args.cfg}")
        return args.cfg
    return read_guidance(model or args.model)
