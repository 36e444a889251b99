"""Scripted checker and actor for loop tests: they answer by a script instead of sampling the random model."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from janus_rig.chain import Box, ChainObject
from janus_rig.chain.roles import NOTHING_SEEN, Verdict, format_edit, format_reflection

PLAN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square."
EDIT_BOXES = [ChainObject("red circle", Box(0, 0, 400, 400)), ChainObject("blue square", Box(625, 625, 1000, 875))]


def reflection(decision: str, yes: int = 1, no: int = 1) -> str:
    verdicts = [Verdict(f"fact {i}", True) for i in range(yes)] + [Verdict(f"fact {yes + i}", False) for i in range(no)]
    return format_reflection(NOTHING_SEEN, verdicts, decision)


def edit(chain: str = PLAN, boxes=EDIT_BOXES) -> str:
    return format_edit(chain, boxes)


class Scripted:
    """A role whose k-th call answers texts_for(k, i) for the i-th image of the call; records what it was shown."""

    def __init__(self, texts_for):
        self.texts_for = texts_for
        self.calls: list[dict] = []

    def __call__(self, policy, images, prompts, plans, *rest, codes=None):
        k = len(self.calls)
        self.calls.append({"images": images, "prompts": prompts, "plans": plans, "rest": rest[:-2], "codes": codes})
        texts = [self.texts_for(k, i) for i in range(len(images))]
        return SimpleNamespace(texts=texts, stopped=torch.ones(len(texts), dtype=torch.bool))
