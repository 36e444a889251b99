"""How sure the checker is that an image is right: its own probability of `yes` in every verdict it wrote.

A reflection's decision is one bit; its verdicts carry a graded score. For each verdict the checker wrote, the score
is P(yes) / (P(yes) + P(no)) at the verdict's value, teacher-forced on the text it wrote, under the model at
temperature 1 (so a near-greedy draw is re-read as the model sees it); an image's score is the mean over its
verdicts. `ReflectConfig.final = "best"` keeps, of the images the checker saw in a row, the one it scores highest;
where a verdict bias steered the reflection, the loop scores an unbiased check of the image instead (`loop._rate`).

With `rating="grounded"` a relation verdict ("A left of B") is not read from the checker's P(yes) but from the
boxes it wrote for what it sees: 1 if GenEval's position rule (data_prep/shapeworld/relations.py) holds between a
box it calls A and one it calls B, 0 if it does not or either is missing (`grounded_relation`). Object verdicts keep
P(yes). The checker's perception (its seen chain) is its own; the rule is only the definition of the relation
words. On ShapeWorld its relation verdicts barely follow its own boxes (docs/lab/notebook.md section 5).

With `rating="plan"` a relation verdict is answered by the same rule on the boxes of the chain the image was drawn
from (its plan, or the revised chain of the edit that drew it): GoT-R1's reasoning-stage check (does the layout
satisfy what the prompt states) inside the pick, while the object verdicts still read the image. The checker's
verdicts say which relations to check; a plan that breaks one rates the image 0 on it, however it looks. After GRPO
the checker's seen boxes misread more drawings than the plans break relations (docs/lab/notebook.md section 5).

    sep, yes, no = verdict_ids(policy.tokenizer)
    scores = verdict_confidence(policy, check(policy, images, prompts, plans, config, generator))  # [0.93, None, ...]
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from data_prep.shapeworld.relations import RELATIONS, holds
from janus_rig.chain.chain import ChainObject, parse_chain
from janus_rig.model.mixed import mixed_hidden_states
from janus_rig.chain.roles import NO, VERDICT_SEPARATOR, YES, normalize_statement, parse_reflection
from janus_rig.rollout.sampler import eval_mode

RATINGS = ("verdicts", "grounded", "plan")
_RELATION = re.compile(r"(.+?) (" + "|".join(RELATIONS) + r") (.+)")


def grounded_relation(statement: str, seen: Sequence[ChainObject]) -> float | None:
    """A relation statement ("red circle left of blue square") answered on the seen objects' boxes: 1.0 if some
    object named A and some named B (names compared as statements are) satisfy GenEval's rule, else 0.0; None
    for a statement that is no relation. Unlike `facts.chain_verdicts` it needs no GenEval metadata (the names are
    the statement's own), so it works on any prompt the checker wrote verdicts for.

    >>> from janus_rig.chain.chain import Box
    >>> seen = [ChainObject("red circle", Box(0, 0, 100, 100)), ChainObject("blue square", Box(500, 0, 600, 100))]
    >>> grounded_relation("red circle left of blue square", seen), grounded_relation("red circle", seen)
    (1.0, None)
    """
    m = _RELATION.fullmatch(normalize_statement(statement))
    if m is None:
        return None
    a, relation, b = m.groups()
    boxes = {}
    for o in seen:
        if o.box is not None:
            boxes.setdefault(normalize_statement(o.name), []).append(o.box.as_tuple())
    return float(any(holds(relation, x, y) for x in boxes.get(a, ()) for y in boxes.get(b, ())))


def verdict_ids(tokenizer) -> tuple[int, int, int]:
    """(separator, yes, no): the token that ends a verdict's statement and the tokens of `yes` and `no` after it
    (ValueError if the tokenizer does not write `: yes` / `: no` as one separator token and one value token)."""
    yes, no = (tokenizer.encode(f"fact{VERDICT_SEPARATOR}{v}", add_special_tokens=False) for v in (YES, NO))
    if len(yes) != len(no) or yes[:-1] != no[:-1] or len(no) < 2:
        raise ValueError(f"verdict scores need `{VERDICT_SEPARATOR}{YES}` and `{VERDICT_SEPARATOR}{NO}` to differ "
                         f"in their last token only; this tokenizer writes {yes} and {no}")
    return no[-2], yes[-1], no[-1]


@torch.no_grad()
def verdict_confidence(policy, out, batch_size: int = 32, rating: str = "verdicts",
                       plans: Sequence[str] | None = None) -> list[float | None]:
    """Per row of a checker's TextRollout `out`: the mean over its written verdicts of P(yes) / (P(yes) + P(no))
    at temperature 1, no bias; None for a row that wrote no verdict value. `rating="grounded"` answers relation
    verdicts on the row's seen boxes instead (`grounded_relation`), `rating="plan"` on the boxes of the row's chain
    in `plans` (one per row: the chain its image was drawn from), where its text parses into as many verdicts as it
    wrote values."""
    if rating not in RATINGS:
        raise ValueError(f"unknown rating {rating!r}; valid: {', '.join(RATINGS)}")
    if rating == "plan" and (plans is None or len(plans) != len(out.texts)):
        raise ValueError(f"rating 'plan' needs one plan per checked row ({len(out.texts)}), got "
                         f"{'none' if plans is None else len(plans)}")
    sep, yes, no = verdict_ids(policy.tokenizer)
    scores: list[float | None] = []
    for lo in range(0, out.input_ids.shape[0], batch_size):
        rows = slice(lo, lo + batch_size)
        ids = out.input_ids[rows]  # (B, T)
        value = (out.completion_mask[rows][:, 1:] & (ids[:, :-1] == sep)
                 & ((ids[:, 1:] == yes) | (ids[:, 1:] == no)))  # (B, T-1): token t+1 is a verdict's value
        n = value.sum(-1)  # (B,)
        if not value.any():
            scores += [None] * ids.shape[0]
            continue
        pixels = None if out.pixel_values is None else out.pixel_values[rows]
        if pixels is not None:
            pixels = pixels.to(ids.device, next(policy.base.parameters()).dtype)
        with eval_mode(policy.model):
            hidden = mixed_hidden_states(policy.model, ids, out.image_mask[rows], out.attention_mask[rows],
                                         pixels)  # (B, T, D)
        logits = policy.base.lm_head(hidden[:, :-1][value]).float()[:, [yes, no]]  # (M, 2)
        p_yes = logits.softmax(-1)[:, 0].cpu()  # (M,)
        row_of = value.nonzero()[:, 0].cpu().tolist()  # (M,)
        per_row: list[list[float]] = [[] for _ in range(ids.shape[0])]
        for r, p in zip(row_of, p_yes.tolist()):
            per_row[r].append(p)
        if rating == "grounded":
            per_row = [_ground(text, ps) for text, ps in zip(out.texts[rows], per_row)]
        elif rating == "plan":
            per_row = [_ground(text, ps, parse_chain(plan).objects)
                       for text, ps, plan in zip(out.texts[rows], per_row, plans[rows])]
        scores += [sum(ps) / len(ps) if ps else None for ps in per_row]
    return scores


def _ground(text: str, p_yes: list[float], objects: Sequence[ChainObject] | None = None) -> list[float]:
    """A reflection's verdict scores with its relation verdicts answered on `objects` (default: its seen boxes);
    unchanged where the parsed verdicts do not line up one to one with the values written."""
    parsed = parse_reflection(text)
    if len(parsed.verdicts) != len(p_yes):
        return p_yes
    objects = parsed.seen.objects if objects is None else objects
    grounded = (grounded_relation(v.statement, objects) for v in parsed.verdicts)
    return [p if g is None else g for p, g in zip(p_yes, grounded)]
