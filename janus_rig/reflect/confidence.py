"""How sure the checker is that an image is right: its own probability of `yes` in every verdict it wrote.

A reflection's decision is one bit; its verdicts carry a graded score. For each verdict the checker wrote, the score
is P(yes) / (P(yes) + P(no)) at the verdict's value, teacher-forced on the text it wrote, under the model at
temperature 1 (so a near-greedy draw is re-read as the model sees it); an image's score is the mean over its
verdicts. `ReflectConfig.final = "best"` keeps, of the images the checker saw in a row, the one it scores highest;
where a verdict bias steered the reflection, the loop scores an unbiased check of the image instead (`loop._rate`).

    sep, yes, no = verdict_ids(policy.tokenizer)
    scores = verdict_confidence(policy, check(policy, images, prompts, plans, config, generator))  # [0.93, None, ...]
"""

from __future__ import annotations

import torch

from janus_rig.model.mixed import mixed_hidden_states
from janus_rig.reflect.format import NO, VERDICT_SEPARATOR, YES
from janus_rig.rollout.sampler import eval_mode


def verdict_ids(tokenizer) -> tuple[int, int, int]:
    """(separator, yes, no): the token that ends a verdict's statement and the tokens of `yes` and `no` after it
    (ValueError if the tokenizer does not write `: yes` / `: no` as one separator token and one value token)."""
    yes, no = (tokenizer.encode(f"fact{VERDICT_SEPARATOR}{v}", add_special_tokens=False) for v in (YES, NO))
    if len(yes) != len(no) or yes[:-1] != no[:-1] or len(no) < 2:
        raise ValueError(f"verdict scores need `{VERDICT_SEPARATOR}{YES}` and `{VERDICT_SEPARATOR}{NO}` to differ "
                         f"in their last token only; this tokenizer writes {yes} and {no}")
    return no[-2], yes[-1], no[-1]


@torch.no_grad()
def verdict_confidence(policy, out, batch_size: int = 32) -> list[float | None]:
    """Per row of a checker's TextRollout `out`: the mean over its written verdicts of P(yes) / (P(yes) + P(no))
    at temperature 1, no bias; None for a row that wrote no verdict value."""
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
        row_of = value.nonzero()[:, 0].cpu()  # (M,)
        sums = torch.zeros(ids.shape[0]).index_add_(0, row_of, p_yes)  # (B,)
        scores += [float(s / k) if k else None for s, k in zip(sums, n.tolist())]
    return scores
