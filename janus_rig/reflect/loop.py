"""The Generate-Reflect-Edit loop in one model (RL-RIG's roles, all played by the policy):

    generate  rollout sample: caption -> chain -> image tokens                   (janus_rig.rollout.sample)
    check     understanding context: image + caption + plan -> reflection         (checker, prompts.py + text.py)
              (the image as vision features or as its VQ codes: the policy's `image_view`)
    act       on `edit`: image + caption + plan + reflection -> revised chain + edit boxes      (actor)
    edit      region-locked rollout: only tokens inside the edit boxes are redrawn, conditioned on the revised
              chain; every other image token is kept as it was                  (janus_rig.rollout.edit)
              and, with `paste_back`, every pixel of a patch outside the boxes too (paste_outside);
              with `edit_region="full"` every token is redrawn from the revised chain (the boxes are still read)

Rounds: round k checks every row still open; a row whose checker says keep is done. With `rounds` = K, at most
K edits happen per row (rounds 0..K-1); the image after the K-th edit is checked once more (round K) so that
every edit has a check after it (its reward), and no edit follows that check (`out_of_rounds` if it says edit).
A row ends with its last image, or with `final="best"` with the image its checker rated likeliest right
(`janus_rig.reflect.confidence`): an edit the checker likes less than what it replaced is undone.

Model output is untrusted, and each failure ends the row without touching its image:
- a reflection whose decision cannot be read counts `malformed_reflection` and is treated as keep (never edit on
  an unreadable verdict);
- an edit without a usable edit box counts `malformed_edit` (the image stays as it is); an edit with boxes but a
  blank revised chain redraws the boxes from the current plan (`empty_chain` among the edit problems).
Every problem of every parse is also counted by kind (`counts["reflection/<kind>"]`, `counts["edit/<kind>"]`).

    result = reflect(policy, ["a red circle left of a blue square"], ReflectConfig(rounds=2), RolloutConfig(), seed=0)
    result.traces[0]          # row 0: one RoundTrace per round (image, reflection, edit, edited image, status)
    result.final_tokens       # (R, N) every row's result: its last image (or, with final="best", the best-rated)
    list(result.edits())      # (before-check, after-check) pairs: what edit rewards compare
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
from PIL import Image

from janus_rig.chain import WHOLE_IMAGE, ChainObject
from janus_rig.model.tokens import BOI, BOS, EOI, EOS, IMAGE, PAD, role_token_ids
from janus_rig.chain.roles import (
    ALL_PROBLEM_KINDS,
    EDIT_END,
    KEEP,
    REFLECT_END,
    ParsedEdit,
    ParsedReflection,
    parse_edit,
    parse_reflection,
)
from janus_rig.reflect.confidence import RATINGS, verdict_confidence, verdict_ids
from janus_rig.reflect.prompts import encode_actor, encode_checker
from janus_rig.reflect.text import TextConfig, TextRollout, sample_text
from janus_rig.rollout import Rollout, RolloutConfig, edit, sample, token_masks
from janus_rig.registry import Registry
from janus_rig.rollout.regions import pixel_mask

STATUSES = ("keep", "edited", "malformed_reflection", "malformed_edit", "out_of_rounds")
EDIT_REGIONS = ("boxes", "full")


@dataclass
class ReflectConfig:
    rounds: int = field(default=2, metadata={"help": "K: edits per image at most; the loop stops when the checker "
                                                     "says keep"})
    checker: TextConfig = field(default_factory=lambda: TextConfig(max_new_tokens=256),
                                metadata={"help": "how the checker's reflection is sampled"})
    actor: TextConfig = field(default_factory=lambda: TextConfig(max_new_tokens=256),
                              metadata={"help": "how the actor's edit is sampled"})
    paste_back: bool = field(default=True, metadata={
        "help": "the edited image keeps the pixels of every patch outside the edit boxes from the image before the "
                "edit (the tokens there are kept anyway, but the VQ decoder mixes neighbouring patches, so decoding "
                "them again moves untouched objects slightly); false shows the edited tokens' decoding as is"})
    edit_region: str = field(default="boxes", metadata={
        "help": "boxes: the editor redraws only the patches under the actor's edit boxes (region-locked); full: it "
                "redraws the whole image from the revised chain (the edit must still give usable boxes; they are "
                "kept in the trace). On ShapeWorld a full redraw fixes more wrong drawings than region-locked "
                "redraws of the oracle's own boxes (docs/lab/notebook.md section 5)"})
    verdict_bias: float = field(default=0.0, metadata={
        "help": "the checker's threshold on its verdicts: added to the logit of `no` right after each verdict's "
                "`: ` (> 0: it calls a stated fact false more readily, so it flags more images). 0 leaves it as "
                "trained. Applies to the model's checker (`check`), not to a checker passed in"})
    final: str = field(default="last", metadata={
        "help": "which image a row ends with: last: the image after its last round; best: of the images the "
                "checker saw in the row, the one it scores likeliest right (its mean P(yes) over its verdicts, "
                "unbiased: janus_rig/reflect/confidence.py; the earlier image on ties), so an edit that the checker "
                "rates worse than the image it replaced is undone"})
    rating: str = field(default="verdicts", metadata={
        "help": "how final=best scores an image: verdicts: the mean of the checker's P(yes) over its verdicts; "
                "grounded: the same with each relation verdict answered on the boxes the checker wrote for what it "
                "sees (GenEval's position rule; confidence.grounded_relation); plan: the same rule on the boxes of the "
                "chain the image was drawn from (GoT-R1's reasoning check; the object verdicts still read the image)"})

    def __post_init__(self):
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0 (0: check once, never edit), got {self.rounds}")
        if self.edit_region not in EDIT_REGIONS:
            raise ValueError(f"unknown edit_region {self.edit_region!r}; valid: {', '.join(EDIT_REGIONS)}")
        if self.final not in FINALS:
            raise ValueError(f"unknown final {self.final!r}; valid: {', '.join(FINALS)}")
        if self.rating not in RATINGS:
            raise ValueError(f"unknown rating {self.rating!r}; valid: {', '.join(RATINGS)}")


# --- the roles -----------------------------------------------------------------------------------------------------
def check(policy, images: list[Image.Image], prompts: list[str], plans: list[str], config: TextConfig,
          generator: torch.Generator, codes: torch.Tensor | None = None, verdict_bias: float = 0.0) -> TextRollout:
    """The checker: one reflection per image, ended by <|reflect_end|>. It reads `images` or their (B, N) VQ
    `codes`, as the policy's `image_view` says; `verdict_bias` is added to the logit of `no` in every verdict."""
    contexts = [encode_checker(policy, p, c) for p, c in zip(prompts, plans)]
    stop = role_token_ids(policy.tokenizer)[REFLECT_END]
    sep, _, no = verdict_ids(policy.tokenizer)
    bias = ((sep, no, verdict_bias),) if verdict_bias else ()
    ids, masks, pixels = policy.show_images(contexts, images, codes)
    return sample_text(policy, ids, pixels, [stop], config, generator, image_masks=masks, bias_after=bias)


def act(policy, images: list[Image.Image], prompts: list[str], plans: list[str], reflections: list[str],
        config: TextConfig, generator: torch.Generator, codes: torch.Tensor | None = None) -> TextRollout:
    """The actor: one edit per image, ended by <|edit_end|>; it sees the image as the checker does."""
    contexts = [encode_actor(policy, p, c, r) for p, c, r in zip(prompts, plans, reflections)]
    stop = role_token_ids(policy.tokenizer)[EDIT_END]
    ids, masks, pixels = policy.show_images(contexts, images, codes)
    return sample_text(policy, ids, pixels, [stop], config, generator, image_masks=masks)


CheckFn = Callable[..., TextRollout]  # check's signature; anything with `.texts` works (tests script the roles)
ActFn = Callable[..., TextRollout]


# --- traces --------------------------------------------------------------------------------------------------------
@dataclass
class RoundTrace:
    """One row in one round."""

    row: int
    round: int
    plan: str  # the chain the image was drawn from, shown to the checker
    image_tokens: torch.Tensor  # (N,) the image the checker saw
    image: Image.Image
    reflection_text: str
    reflection: ParsedReflection
    status: str  # one of STATUSES
    edit_text: str | None = None
    edit: ParsedEdit | None = None
    revised_chain: str | None = None  # the chain the editor drew from
    edit_boxes: list[ChainObject] = field(default_factory=list)
    edited_tokens: torch.Tensor | None = None  # (N,)
    edited_image: Image.Image | None = None
    score: float | None = None  # the checker's confidence that `image` is right (final="best"; None: not scored)


# --- which image a row ends with ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinalPick:
    """How a row's result is chosen among the images its checks saw (`ReflectConfig.final`)."""

    choose: Callable[[list[RoundTrace]], RoundTrace]  # a row's traces (round order) -> the chosen one
    rated: bool  # the loop must score every checked image (`RoundTrace.score`) for `choose`


FINALS: Registry[FinalPick] = Registry("final pick")
FINALS.register("last")(FinalPick(lambda traces: traces[-1], rated=False))
# the best-scored image: the earliest on ties, unscored (unreadable) ones never before a scored one
FINALS.register("best")(FinalPick(lambda traces: max(traces, key=lambda t: (t.score is not None, t.score or 0.0,
                                                                               -t.round)), rated=True))


@dataclass
class RoundBatch:
    """What the model wrote in one round, batched: the inputs of a Reflection-GRPO update."""

    round: int
    rows: list[int]  # rows checked
    checker: TextRollout  # len(rows) rows
    actor_rows: list[int] = field(default_factory=list)  # rows the actor wrote for
    actor: TextRollout | None = None
    editor_rows: list[int] = field(default_factory=list)  # rows edited
    editor: Rollout | None = None


@dataclass
class LoopResult:
    prompts: list[str]  # per row
    initial: Rollout  # the generation
    rounds: list[RoundBatch]
    traces: list[list[RoundTrace]]  # per row, per round it took part in
    final_tokens: torch.Tensor  # (R, N) every row's result: its chosen image
    counts: dict[str, int]
    final: str = "last"  # ReflectConfig.final

    def chosen(self, row: int, rounds: int | None = None) -> RoundTrace:
        """The round whose image is `row`'s result after `rounds` rounds (all by default): the last one, or with
        final "best" the one whose image the checker scored highest (the earliest on ties; unscored ones last)."""
        traces = self.traces[row] if rounds is None else self.traces[row][: rounds + 1]
        return FINALS.get(self.final).choose(traces)

    def images_after_rounds(self, rounds: int) -> list[list[Image.Image]]:
        """Per row, its image after 0, 1, .., `rounds` rounds (rounds + 1 images): after k rounds is what round k's
        checker saw, the image after k edits (with final "best": the best of those up to k); a row that stopped
        earlier keeps its last image."""
        return [[self.chosen(r, k).image for k in range(rounds + 1)] for r in range(len(self.traces))]

    def edits(self):
        """(before, after) RoundTrace pairs, one per edit: `before` decided edit and was edited, `after` is the
        check of the edited image (the next round's trace of the same row)."""
        for row in self.traces:
            for before, after in zip(row, row[1:]):
                if before.status == "edited":
                    yield before, after


# --- the loop ------------------------------------------------------------------------------------------------------
_NOT_CHAIN_TEXT = (BOI, EOI, IMAGE, BOS, EOS, PAD)


def _editor_chain(revised: str, plan: str) -> str:
    """The revised chain as the editor may read it: Janus specials removed (untrusted text), blank -> the plan."""
    while any(token in revised for token in _NOT_CHAIN_TEXT):  # until stable: removals can join new ones
        for token in _NOT_CHAIN_TEXT:
            revised = revised.replace(token, "")
    return revised.strip() or plan


def paste_outside(before: Image.Image, after: Image.Image, inside: torch.Tensor) -> Image.Image:
    """`after` inside the (g, g) patch mask `inside`, `before` everywhere else (same size, RGB)."""
    keep = pixel_mask(~inside, before.size[0]).numpy()  # (S, S) True: outside the edit region
    pixels = np.array(after.convert("RGB"))  # (S, S, 3)
    pixels[keep] = np.asarray(before.convert("RGB"))[keep]
    return Image.fromarray(pixels)


def _to_images(policy, tokens: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(p.numpy()) for p in policy.decode_images(tokens)]  # (B, S, S, 3) uint8


def _count_problems(counts: Counter, prefix: str, parsed) -> None:
    for kind, n in parsed.problem_counts().items():
        counts[f"{prefix}/{kind}"] += n


def reflect(
    policy,
    prompts: list[str],
    config: ReflectConfig,
    rollout_config: RolloutConfig,
    *,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    initial: Rollout | None = None,
    checker: CheckFn = check,
    actor: ActFn = act,
) -> LoopResult:
    """Run the loop on `rollout_config.group_size` samples per prompt (or on `initial`, a rollout of `prompts`)."""
    if config.verdict_bias:
        if checker is not check:
            raise ValueError("verdict_bias sets the model checker's threshold; a checker passed in decides alone")
        checker = partial(check, verdict_bias=config.verdict_bias)
    # final "best" under a verdict bias re-checks each image unbiased, on a stream of its own (seeded 0) so that the
    # loop's draws stay those of final "last"
    rating_generator = torch.Generator(device=policy.device).manual_seed(0)
    given_seed = seed if generator is None else None
    if generator is None:
        generator = torch.Generator(device=policy.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
    if initial is None:  # with a seed: the very draws of `sample(..., seed=seed)`, i.e. of plain generation
        initial = (sample(policy, prompts, rollout_config, seed=given_seed) if given_seed is not None
                   else sample(policy, prompts, rollout_config, generator=generator))
    elif list(initial.prompts) != list(prompts):
        raise ValueError("`initial` must be a rollout of `prompts` (its rows index into them)")
    row_prompts = [prompts[i] for i in initial.prompt_index.tolist()]
    R = initial.num_rows
    tokens = initial.image_tokens.clone()  # (R, N)
    plans = list(initial.chains)
    images = _to_images(policy, tokens)
    edit_config = replace(rollout_config, group_size=1)
    counts = Counter({k: 0 for k in ("rows", "checks", "edits", "context_changed", "truncated_reflections",
                                     "truncated_edits", *STATUSES)})
    counts.update({f"{role}/{kind}": 0 for role in ("reflection", "edit") for kind in ALL_PROBLEM_KINDS})
    counts["rows"] = R
    traces: list[list[RoundTrace]] = [[] for _ in range(R)]
    batches = []
    open_rows = list(range(R))
    for k in range(config.rounds + 1):
        if not open_rows:
            break
        out = checker(policy, [images[r] for r in open_rows], [row_prompts[r] for r in open_rows],
                      [plans[r] for r in open_rows], config.checker, generator, codes=tokens[open_rows])
        batch = RoundBatch(k, list(open_rows), out)
        batches.append(batch)
        counts["checks"] += len(open_rows)
        counts["truncated_reflections"] += int((~_stopped(out)).sum())
        scores = [None] * len(open_rows)
        if FINALS.get(config.final).rated:
            scores = _rate(policy, out, [images[r] for r in open_rows], [row_prompts[r] for r in open_rows],
                           [plans[r] for r in open_rows], tokens[open_rows], config, rating_generator)
        wants_edit = []
        for r, text, score in zip(open_rows, out.texts, scores):
            parsed = parse_reflection(text)
            _count_problems(counts, "reflection", parsed)
            if parsed.decision is None:
                status = "malformed_reflection"
            elif parsed.decision == KEEP:
                status = "keep"
            elif k == config.rounds:
                status = "out_of_rounds"
            else:
                status = "edited"  # provisional: the actor may still fail
                wants_edit.append(r)
            traces[r].append(RoundTrace(r, k, plans[r], tokens[r].clone(), images[r], text, parsed, status,
                                        score=score))
        if wants_edit:
            _act_and_edit(policy, wants_edit, batch, traces, row_prompts, plans, tokens, images, config,
                          edit_config, generator, actor, counts)
        for r in batch.rows:
            counts[traces[r][-1].status] += 1
        open_rows = [r for r in batch.rows if traces[r][-1].status == "edited"]
    counts["edits"] = counts["edited"]
    result = LoopResult(row_prompts, initial, batches, traces, tokens, dict(counts), config.final)
    for r in range(R):
        result.final_tokens[r] = result.chosen(r).image_tokens
    return result


def _rate(policy, out, images, prompts, plans, codes, config, generator) -> list[float | None]:
    """The checker's confidence that each image is right (final "best"; `verdict_confidence`), read from the
    reflection `out` it wrote, or, where a verdict bias steered that, from an unbiased check of the same images.
    A reflection whose decision cannot be read rates nothing (None)."""
    if config.verdict_bias:
        out = check(policy, images, prompts, plans, config.checker, generator, codes=codes)
    scores = verdict_confidence(policy, out, rating=config.rating, plans=plans)
    return [None if parse_reflection(text).decision is None else s for text, s in zip(out.texts, scores)]


def _stopped(out) -> torch.Tensor:
    stopped = getattr(out, "stopped", None)
    return torch.ones(len(out.texts), dtype=torch.bool) if stopped is None else stopped


def _act_and_edit(policy, rows, batch, traces, prompts, plans, tokens, images, config, edit_config, generator,
                  actor, counts) -> None:
    """Actor for the rows that want an edit, then one batched region-locked edit of those with usable boxes."""
    out = actor(policy, [images[r] for r in rows], [prompts[r] for r in rows], [plans[r] for r in rows],
                [traces[r][-1].reflection_text for r in rows], config.actor, generator, codes=tokens[rows])
    batch.actor_rows, batch.actor = list(rows), out
    counts["truncated_edits"] += int((~_stopped(out)).sum())
    usable = []
    for r, text in zip(rows, out.texts):
        parsed = parse_edit(text)
        _count_problems(counts, "edit", parsed)
        trace = traces[r][-1]
        trace.edit_text, trace.edit = text, parsed
        if not parsed.usable:
            trace.status = "malformed_edit"
            continue
        trace.revised_chain = _editor_chain(parsed.chain_text, plans[r])
        trace.edit_boxes = list(parsed.boxes)
        usable.append(r)
    if not usable:
        return
    before = tokens[usable]  # (E, N)
    if config.edit_region == "full":
        boxes = [[WHOLE_IMAGE] for _ in usable]
    else:
        boxes = [[o.box for o in traces[r][-1].edit_boxes] for r in usable]
    ro = edit(policy, [prompts[r] for r in usable], [traces[r][-1].revised_chain for r in usable], before, boxes,
              edit_config, generator=generator)
    batch.editor_rows, batch.editor = list(usable), ro
    inside = token_masks(boxes, policy.grid[0]).to(before.device)  # (E, N)
    changed_outside = (ro.image_tokens.to(before.device) != before) & ~inside  # (E, N); empty by construction
    counts["context_changed"] += int(changed_outside.any(-1).sum())
    edited_images = _to_images(policy, ro.image_tokens)
    if config.paste_back:
        edited_images = [paste_outside(images[r], edited, inside[j].reshape(policy.grid).cpu())
                         for j, (r, edited) in enumerate(zip(usable, edited_images))]
    for j, r in enumerate(usable):
        tokens[r] = ro.image_tokens[j].to(tokens.device)
        plans[r] = traces[r][-1].revised_chain
        images[r] = edited_images[j]
        trace = traces[r][-1]
        trace.edited_tokens, trace.edited_image = tokens[r].clone(), images[r]


