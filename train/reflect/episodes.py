"""Reflection-GRPO's episodes as plain functions: what each phase samples turned into rewards and into the
sequences the loss reads. The trainer (trainer.py) only calls them in order; the GRPO math is train/grpo/algos.py.

Actor phase. A group is G rows of the loop on copies of one first image (`repeat_rows`); row r is one episode:

    check 0 -> [act -> edit -> check 1 -> ... ]          statuses per round: janus_rig.reflect.loop
    reward(r) = score(after the last edit) - score(first image)            (0 for a row that never edited)

with score the checker's `verdict_score` of that check (intrinsic) or a judge's prompt-image score. Per edit that
is RL-RIG's after-minus-before; over an episode of several edits the per-edit rewards add up to exactly this
(each edit's "after" is the next edit's "before"). The optimised tokens (`actor_batch`) are every edit the actor
wrote and, with `train_checker`, every reflection that decided something: each check but the one after a row's
last edit, which only scores it (optimising that one would reward the checker for praising edits).

With the loop's final "best" (`ReflectConfig.final`) an episode ends with the image its checker rates likeliest
right, and the reward is the score of that pick minus the first image's: a flag costs nothing when the pick keeps
the first image, and every check is optimised, the one after the last edit included, since each rates an image the
pick chooses among (praising a bad edit now loses reward).

With `first_images: own` a group's episodes each draw their own first image, so the group compares whole loops;
`reward: outcome` then scores the image each ends with (not relative to its first), and `train_plan` adds each
episode's first chain to the optimised tokens: RL-RIG's end-to-end variant, where the plan learns from how the
loop ends, not only from its own drawing.

Editor phase (`editor_batch`): a group is G redraws of one fixed edit; the optimised tokens are the redrawn image
tokens (inside the edit boxes; every other token is fed from the image, never sampled), as the rollout's
`completion_mask` marks them.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import torch
from PIL import Image

from data_prep.shapeworld.facts import oracle_verdicts
from data_prep.shapeworld.oracle import score_metadata
from janus_rig.model.mixed import left_pad
from janus_rig.reflect.loop import FINALS, LoopResult
from janus_rig.reflect.reward import INTRINSIC, intrinsic_reward, judge_rewards, true_decision, verdict_matches
from janus_rig.rollout import Rollout
from train.grpo.trainer import old_logprobs

MALFORMED = ("malformed_reflection", "malformed_edit")


def repeat_rows(rollout: Rollout, times: int) -> Rollout:
    """Every row `times` times in a row (R -> R * times rows, prompt-major kept): the G copies of a first image."""
    index = torch.arange(rollout.num_rows).repeat_interleave(times)  # (R * times,)
    tensors = {f.name: getattr(rollout, f.name)[index.to(getattr(rollout, f.name).device)]
               for f in fields(Rollout) if isinstance(getattr(rollout, f.name), torch.Tensor)}
    return replace(rollout, **tensors, chains=[rollout.chains[i] for i in index.tolist()])


# --- scores and rewards ---------------------------------------------------------------------------------------------
def fact_score(meta: dict, image: Image.Image) -> float:
    """The oracle's share of the caption's stated facts that hold in the image (0..1)."""
    truth = oracle_verdicts(meta, image)
    return sum(v.holds for v in truth) / len(truth) if truth else 0.0


def oracle_correct(meta: dict, image: Image.Image) -> bool:
    """GenEval's verdict on the whole caption (what `accuracy` counts)."""
    return bool(score_metadata(meta, np.asarray(image))[0])


def episode_rewards(result: LoopResult, source: str = INTRINSIC, judge=None,
                    metadata: list[dict | None] | None = None) -> list[float | None]:
    """Per row: score of the image it ends with (after its last edit; final "best": the checker's pick) minus score
    of its first image (0 without an edit); None where the judge could not score. source: "intrinsic" (the row's
    own checks of the two) or any other name with `judge`."""
    rows = result.traces
    ends = [result.chosen(r) for r in range(len(rows))]
    if source == INTRINSIC:
        return [intrinsic_reward(row[0].reflection, end.reflection) for row, end in zip(rows, ends)]
    if judge is None:
        raise ValueError(f"episode reward source {source!r} needs a judge")
    rewards: list[float | None] = [0.0] * len(rows)
    # a second check follows only an edit; where the pick kept the first image there is nothing to score
    edited = [r for r, row in enumerate(rows) if len(row) > 1 and ends[r] is not row[0]]
    if edited:
        meta = [metadata[r] for r in edited] if metadata is not None else None
        scores = judge_rewards(judge, [result.prompts[r] for r in edited], [rows[r][0].image for r in edited],
                               [ends[r].image for r in edited], meta)
        for r, score in zip(edited, scores):
            rewards[r] = score
    return rewards


def verdict_rewards(result: LoopResult, metadata: list[dict | None]) -> list[float | None]:
    """Per row: how right its first reflection is about its first image, by the oracle (None without metadata):
    half the share of the caption's stated facts whose verdict it gets right (an unanswered fact counts wrong),
    half whether its decision is the right one (keep iff every fact holds). The checker's own accuracy as a
    reward: what `reward: verdicts` trains, with no edit in the episode."""
    rewards: list[float | None] = []
    for row, meta in zip(result.traces, metadata):
        if meta is None:
            rewards.append(None)
            continue
        first = row[0]
        truths = oracle_verdicts(meta, first.image)
        matches = verdict_matches(first.reflection, truths)
        facts = sum(m is True for m in matches) / len(matches) if matches else 0.0
        rewards.append(0.5 * facts + 0.5 * float(first.reflection.decision == true_decision(truths)))
    return rewards


def outcome_rewards(result: LoopResult, metadata: list[dict | None]) -> list[float | None]:
    """Per row: the oracle's `fact_score` of the image the episode ends with (`LoopResult.chosen`), not relative to
    its first image (None without metadata). With `first_images: own` a group compares whole episodes, the first
    drawing included; with shared first images it ranks the rows as after-minus-before does."""
    return [None if meta is None else fact_score(meta, result.chosen(r).image) for r, meta in enumerate(metadata)]


def oracle_rewards(result: LoopResult, metadata: list[dict | None]) -> list[float | None]:
    """Per row: the oracle's `fact_score` of the image it ends with (`LoopResult.chosen`) minus its first (None
    without metadata)."""
    ends = [result.chosen(r) for r in range(len(result.traces))]
    return [None if meta is None else 0.0 if end is row[0] else
            fact_score(meta, end.image) - fact_score(meta, row[0].image)
            for row, end, meta in zip(result.traces, ends, metadata)]


def malformed_rows(result: LoopResult) -> list[bool]:
    """Rows where a reflection or an edit could not be read (the loop stopped them)."""
    return [any(t.status in MALFORMED for t in row) for row in result.traces]


# --- the optimised sequences ----------------------------------------------------------------------------------------
def deciding_checks(result: LoopResult) -> set[tuple[int, int]]:
    """(row, round) of every check that decided something: all but the check after a row's last edit, which with
    final "best" decides too (it rates an image the pick chooses among)."""
    return {(t.row, t.round) for row in result.traces for t in row
            if len(row) == 1 or t.round < len(row) - 1 or FINALS.get(result.final).rated}


def actor_sequences(result: LoopResult, train_checker: bool, train_actor: bool = True
                    ) -> list[tuple[int, object, int, bool]]:
    """(row, TextRollout, index in it, is a reflection) of each optimised text: the deciding reflections (with
    train_checker), then per round the edits (with train_actor: false where a fixed actor wrote them, which has no
    log-probs)."""
    chosen = deciding_checks(result) if train_checker else set()
    picks = []
    for batch in result.rounds:
        picks += [(r, batch.checker, j, True) for j, r in enumerate(batch.rows) if (r, batch.round) in chosen]
        if batch.actor is not None and train_actor:
            picks += [(r, batch.actor, j, False) for j, r in enumerate(batch.actor_rows)]
    return picks


def actor_batch(result: LoopResult, advantages: torch.Tensor, valid: torch.Tensor, train_checker: bool,
                pad_id: int, mask_truncated: bool = False, dtype: torch.dtype | None = None,
                train_actor: bool = True, verdicts_from: int | None = None,
                plans: Rollout | None = None) -> dict[str, torch.Tensor]:
    """The texts of `actor_sequences`, left-padded into one batch of S sequences, each with its row's advantage:

        input_ids, attention_mask, loss_mask (the written tokens), old_logps (as sampled)   (S, T)
        image_mask (S, T) the image codes each text looked at (image_view codes; else all False); advantages (S,);
        pixel_values (S, 3, H, W) the image each text looked at (image_view vision; else absent)

    With no optimised text (every row kept or was unreadable and train_checker is off), the first reflection is
    the one row, with an empty loss mask (a zero loss). Texts of rows whose reward is not `valid` (R,) carry no
    loss; `mask_truncated` empties the mask of texts cut off at their token limit too. With `verdicts_from` (the
    <|verdict|> token's id) a reflection's mask starts at its first verdict: its seen chain is not optimised.
    `plans`: the episodes' own first images (R rows, `first_images: own`), whose chains join the batch with their
    episode's advantage (`train_plan`): the loss reads the chain tokens (and an emitted <begin_of_image>), never
    the image codes."""
    picks = actor_sequences(result, train_checker, train_actor)
    empty = not picks and plans is None
    if empty:
        picks = [(result.rounds[0].rows[0], result.rounds[0].checker, 0, True)]
    ids, masks, olds, pixels, codes_at, rows = [], [], [], [], [], []
    for r, out, j, reflection in picks:
        keep = out.attention_mask[j].bool()  # (T_j,) the sequence without its left padding
        ids.append(out.input_ids[j][keep].tolist())
        mask = out.completion_mask[j][keep].cpu()
        if reflection and verdicts_from is not None:
            mask = mask & ((out.input_ids[j][keep].cpu() == verdicts_from).cumsum(0) > 0)
        if empty or not bool(valid[r]) or (mask_truncated and not bool(out.stopped[j])):
            mask = torch.zeros_like(mask)
        masks.append(mask)
        olds.append(out.logprobs[j][keep].float().cpu())
        codes_at.append(out.image_mask[j][keep].cpu())
        if out.pixel_values is not None:
            pixels.append(out.pixel_values[j])
        rows.append(r)
    for r in range(0 if plans is None else plans.num_rows):
        keep = plans.attention_mask[r].bool()  # (T_r,)
        at = plans.image_mask[r][keep].cpu()
        mask = plans.completion_mask[r][keep].cpu() & ~at  # the chain, not the codes
        if not bool(valid[r]) or (mask_truncated and bool(plans.truncated[r])):
            mask = torch.zeros_like(mask)
        ids.append(plans.input_ids[r][keep].tolist())
        masks.append(mask)
        olds.append(plans.logprobs[r][keep].float().cpu())
        codes_at.append(at)
        rows.append(r)
    input_ids, attention = left_pad(ids, pad_id)  # (S, T) each
    S, T = input_ids.shape
    loss_mask = torch.zeros(S, T, dtype=torch.bool)
    old = torch.zeros(S, T)
    image_mask = torch.zeros(S, T, dtype=torch.bool)
    for s, (mask, lp, at) in enumerate(zip(masks, olds, codes_at)):
        loss_mask[s, T - len(mask) :] = mask
        old[s, T - len(lp) :] = lp
        image_mask[s, T - len(at) :] = at
    batch = {"input_ids": input_ids, "image_mask": image_mask, "attention_mask": attention, "loss_mask": loss_mask,
             "old_logps": old, "advantages": advantages.cpu()[torch.tensor(rows)]}
    if pixels:
        if len(pixels) != S:
            raise ValueError("some texts looked at pixels and some at codes (a plan reads no image; train_plan needs "
                             "a policy with image_view codes): one batch has one kind of row")
        pixel_values = torch.stack(pixels).cpu()  # (S, 3, H, W)
        batch["pixel_values"] = pixel_values if dtype is None else pixel_values.to(dtype)
    return batch


def editor_batch(rollout: Rollout, advantages: torch.Tensor, valid: torch.Tensor, image_logprob: str,
                 ) -> dict[str, torch.Tensor]:
    """The redraws of an edit rollout as GRPO rows: the loss on the sampled image tokens (those inside the edit
    boxes; `completion_mask`), old log-probs per `image_logprob` (cond: conditional branch; cfg: guided, with the
    unconditional rows); rows whose reward is invalid carry no loss. (R, T) tensors, advantages (R,)."""
    mask = rollout.completion_mask & rollout.image_mask & valid.to(rollout.completion_mask.device)[:, None]
    batch = {"input_ids": rollout.input_ids, "image_mask": rollout.image_mask,
             "attention_mask": rollout.attention_mask, "loss_mask": mask,
             "old_logps": old_logprobs(rollout.logprobs, rollout.cond_logprobs, rollout.image_mask, image_logprob),
             "advantages": advantages}
    if image_logprob == "cfg":
        batch["uncond_input_ids"] = rollout.uncond_input_ids
    return {k: v.cpu() for k, v in batch.items()}
