"""Roles that write scripted texts as real TextRollouts (teacher-forced log-probs), so a trainer can learn from
them: a random model writes no readable reflection, and these make every step of the loop happen."""

from __future__ import annotations

from janus_rig.chain import Box, ChainObject
from janus_rig.model.tokens import role_token_ids
from janus_rig.chain.roles import EDIT_END, NOTHING_SEEN, REFLECT_END, Verdict, format_edit, format_reflection
from janus_rig.reflect.prompts import encode_actor, encode_checker
from janus_rig.reflect.text import score_text

PLAN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square."
EDIT_BOXES = [ChainObject("red circle", Box(0, 0, 400, 400)), ChainObject("blue square", Box(625, 625, 1000, 875))]
STATEMENTS = ("red circle", "blue square")


def reflection(yes: int, decision: str) -> str:
    """Verdicts on STATEMENTS, the first `yes` of them true: verdict_score = yes / 2."""
    return format_reflection(NOTHING_SEEN, [Verdict(s, i < yes) for i, s in enumerate(STATEMENTS)], decision)


def edit_text() -> str:
    return format_edit(PLAN, EDIT_BOXES)


class Forced:
    """A role ("checker" or "actor") whose k-th call writes texts_for(k, i) for its i-th image."""

    def __init__(self, role: str, texts_for):
        self.role, self.texts_for = role, texts_for
        self.calls: list[list[str]] = []

    def __call__(self, policy, images, prompts, plans, *rest, codes=None):
        config = rest[-2]
        texts = [self.texts_for(len(self.calls), i) for i in range(len(images))]
        self.calls.append(texts)
        if self.role == "checker":
            contexts = [encode_checker(policy, p, c) for p, c in zip(prompts, plans)]
        else:
            contexts = [encode_actor(policy, p, c, r) for p, c, r in zip(prompts, plans, rest[0])]
        stop = role_token_ids(policy.tokenizer)[REFLECT_END if self.role == "checker" else EDIT_END]
        ids, masks, pixels = policy.show_images(contexts, images, codes)
        return score_text(policy, ids, [policy.encode_text(t) for t in texts], pixels, [stop], config.temperature,
                          image_masks=masks)


def before_yes(i: int) -> int:
    return i % 3  # rows of a group start at verdict scores 0, 0.5, 1, 0, ...


def edit_once():
    """Round 0: every row says edit with before_yes(i) true verdicts; round 1: all true, keep."""
    checker = Forced("checker", lambda k, i: reflection(before_yes(i), "edit") if k % 2 == 0 else
                     reflection(2, "keep"))
    return checker, Forced("actor", lambda k, i: edit_text())
