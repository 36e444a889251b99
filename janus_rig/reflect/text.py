"""Text sampling after any context, image-understanding contexts included: how the checker and actor write.

The rollout sampler writes a chain after a generation prompt and then image tokens; the roles instead write text
after an understanding prompt whose `<image_placeholder>` tokens are vision features (or the image's VQ codes, for a
policy whose `image_view` is "codes"). This is that text phase on
the same machinery: the rollout's `Decoder` over the policy's modules, its caches (the context is one
`SharedPrefix` per row, the written text a per-row `KVCache`; finished rows leave the batch), and the pure draws
of `janus_rig.rollout.sampling` (seeded per row and step, log-probs of the temperature-scaled distribution).

    out = sample_text(policy, [encode_checker(policy, prompt, chain)], pixel_values, stop_ids=[end_id],
                      config=TextConfig(max_new_tokens=256), generator=g)
    out.texts[0]   # '<|reflect_start|>The image shows ...<|reflect_end|>'

The returned batch re-scores teacher-forced with `mixed_logprobs(model, out.input_ids, out.image_mask,
out.attention_mask, out.completion_mask, pixel_values=out.pixel_values, text_temperature=T)` (tests/reflect/test_text.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from janus_rig.model.mixed import embed_mixed, left_pad, mixed_logprobs, position_ids_from_mask
from janus_rig.rollout import sampling
from janus_rig.rollout.cache import Block, DecodeCache, SharedPrefix, rollout_attention_for
from janus_rig.rollout.sampler import Decoder, banned_text_tokens, eval_mode


@dataclass
class TextConfig:
    max_new_tokens: int = field(default=256, metadata={"help": "tokens a role may write before it is cut off"})
    temperature: float = field(default=1.0, metadata={"help": "divides the logits"})
    top_k: int | None = field(default=None, metadata={"help": "sample from the k likeliest tokens"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1.0: off)"})

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}; for near-greedy use 1e-3")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None (off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}; 1.0 turns it off")


@dataclass
class TextRollout:
    """R rows: context + written text, left-padded so that every row ends at the last column."""

    input_ids: torch.Tensor  # (R, T) context then completion
    attention_mask: torch.Tensor  # (R, T) long
    completion_mask: torch.Tensor  # (R, T) bool: the written tokens (a stop token included)
    logprobs: torch.Tensor  # (R, T) fp32 log-prob of each written token; 0 elsewhere
    pixel_values: torch.Tensor | None  # (R, 3, S, S) the images the contexts show (image_view vision), or None
    image_mask: torch.Tensor  # (R, T) bool: positions holding VQ codes (image_view codes; all False otherwise)
    completion_ids: list[list[int]]
    texts: list[str]  # decoded completions (role and chain tokens kept)
    stopped: torch.Tensor  # (R,) bool: ended by a stop token; False: cut at max_new_tokens


@torch.no_grad()
def sample_text(
    policy,
    contexts: list[list[int]],
    pixel_values: torch.Tensor | None,
    stop_ids: Sequence[int],
    config: TextConfig,
    generator: torch.Generator,
    image_masks: list[list[bool]] | None = None,
    bias_after: Sequence[tuple[int, int, float]] = (),
) -> TextRollout:
    """Write text after each context until a stop id (kept in the text) or max_new_tokens.

    contexts: token lists; their `<image_placeholder>` tokens take the features of `pixel_values` (B, 3, S, S),
    in row order; where `image_masks` (one per context) is True the id is a VQ code read through the generation
    embeddings (`JanusPolicy.show_images` builds both). Tokens that are never text (BOS, pad, image placeholders, begin/end of image, rows beyond the
    tokenizer) are never drawn; EOS is drawn only when it is a stop id.

    bias_after: (after, token, bias) triples: right after a row writes `after`, `bias` is added to the logit of
    `token` (before the temperature), e.g. the checker's threshold on its verdicts (`ReflectConfig.verdict_bias`).
    The log-probs returned are those of the biased distribution the tokens were drawn from.
    """
    if not contexts:
        raise ValueError("no contexts to continue")
    t = policy.tokens
    R, C = len(contexts), config.max_new_tokens
    with eval_mode(policy.model), rollout_attention_for(policy.base.model.language_model.config):
        decoder = Decoder(policy, max(map(len, contexts)) + C + 1)
        dev = decoder.device
        ids, attention = left_pad(contexts, t.pad)  # (R, P) each
        codes_at = _left_pad_masks(image_masks, contexts)  # (R, P)
        P = ids.shape[1]
        pixels = None if pixel_values is None else pixel_values.to(dev, decoder.dtype)
        embeds = embed_mixed(policy.model, ids.to(dev), codes_at.to(dev), pixels)
        prefix = decoder.cache(R, P)
        prefix.keep[:] = attention.bool().to(dev)
        hidden = decoder.forward(embeds, position_ids_from_mask(prefix.keep), prefix, prefix.prefill_mask(P))
        logits = decoder.lm_head(hidden[:, -1]).float()  # (R, V)
        own = decoder.cache(R, C)
        own.keep[:] = True
        block = Block(own, SharedPrefix(prefix, 1, prefix.keep))
        cache = DecodeCache([block])

        V = logits.shape[-1]
        stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
        banned = banned_text_tokens(policy, V, dev)
        banned[t.boi] = True
        banned[stops] = False
        start = prefix.keep.sum(-1)  # (R,) position of each row's first written token
        written = torch.full((R, C), t.pad, dtype=torch.long, device=dev)  # (R, C)
        written_lp = torch.zeros(R, C, device=dev)  # (R, C)
        length = torch.full((R,), C, dtype=torch.long)
        stopped = torch.zeros(R, dtype=torch.bool)
        active = torch.arange(R, device=dev)  # (A,)
        for step in range(C):
            u = sampling.uniforms(R, generator, dev)[active]  # (A,), drawn for all rows
            if step and bias_after:
                logits = _biased(logits, written[active, step - 1], bias_after)
            scaled = logits / config.temperature  # (A, V)
            allowed = sampling.filter_logits(scaled.masked_fill(banned, sampling.NEG_INF), config.top_k, config.top_p)
            token = sampling.sample(allowed, u)  # (A,)
            written[active, step] = token
            written_lp[active, step] = sampling.gather_logprobs(scaled, token)
            done = torch.isin(token, stops)  # (A,)
            finished = active[done].cpu()
            length[finished], stopped[finished] = step + 1, True
            going = (~done).nonzero().squeeze(-1)  # (A',)
            if step + 1 == C or not len(going):
                break
            if done.any():  # finished rows leave the batch
                block, active, token = block.select(going), active[going], token[going]
                cache = DecodeCache([block])
            hidden = decoder.forward(decoder.embed_tokens(token)[:, None], (start[active] + step)[:, None], cache)
            logits = decoder.lm_head(hidden[:, 0]).float()  # (A, V)

    completion_ids = [row[:n] for row, n in zip(written.tolist(), length.tolist())]
    return _assemble(policy, contexts, completion_ids, written_lp.cpu(), pixel_values, stopped, image_masks)


def _biased(logits: torch.Tensor, last: torch.Tensor, bias_after: Sequence[tuple[int, int, float]]) -> torch.Tensor:
    """(A, V) logits with each triple's bias added to `token` in the rows whose `last` (A,) token is `after`."""
    logits = logits.clone()
    for after, token, bias in bias_after:
        logits[last == after, token] += bias
    return logits


def _left_pad_masks(image_masks: list[list[bool]] | None, seqs: list[list[int]]) -> torch.Tensor:
    """(R, T) bool: each row's image mask left-padded like `left_pad(seqs)` (all False without masks)."""
    T = max(map(len, seqs))
    out = torch.zeros(len(seqs), T, dtype=torch.bool)
    if image_masks is None:
        return out
    if len(image_masks) != len(seqs) or any(len(m) != len(s) for m, s in zip(image_masks, seqs)):
        raise ValueError("image_masks must give one mask per context, as long as the context")
    for r, mask in enumerate(image_masks):
        out[r, T - len(mask) :] = torch.tensor(mask, dtype=torch.bool)
    return out


@torch.no_grad()
def score_text(
    policy,
    contexts: list[list[int]],
    completions: list[list[int]],
    pixel_values: torch.Tensor | None,
    stop_ids: Sequence[int],
    temperature: float = 1.0,
    image_masks: list[list[bool]] | None = None,
) -> TextRollout:
    """The TextRollout that `sample_text` returns had it written `completions` (token lists) after `contexts`: each
    written token's log-prob under the policy at `temperature`, teacher-forced in one forward; `stopped` where a
    completion ends with a stop id. For fixed texts in place of samples (scripted roles in tests, replayed edits)."""
    if len(contexts) != len(completions) or not contexts:
        raise ValueError(f"score_text needs one completion per context: {len(contexts)} contexts, "
                         f"{len(completions)} completions")
    full = [c + w for c, w in zip(contexts, completions)]
    ids, attention = left_pad(full, policy.tokens.pad)  # (R, T) each
    codes_at = _left_pad_masks(None if image_masks is None else
                               [m + [False] * len(w) for m, w in zip(image_masks, completions)], full)  # (R, T)
    T = ids.shape[1]
    written = torch.zeros_like(ids, dtype=torch.bool)  # (R, T)
    for r, w in enumerate(completions):
        written[r, T - len(w) :] = True
    dev = policy.device
    pixels = None if pixel_values is None else pixel_values.to(dev, next(policy.base.parameters()).dtype)
    with eval_mode(policy.model):
        lp = mixed_logprobs(policy.model, ids.to(dev), codes_at.to(dev), attention.to(dev),
                            written.to(dev), pixel_values=pixels, text_temperature=temperature).logprobs  # (R, T)
    C = max(map(len, completions))
    written_lp = torch.zeros(len(completions), C)  # (R, C) in writing order, as sample_text keeps them
    for r, w in enumerate(completions):
        written_lp[r, : len(w)] = lp[r, T - len(w) :].cpu()
    stops = set(stop_ids)
    stopped = torch.tensor([bool(w) and w[-1] in stops for w in completions])
    return _assemble(policy, contexts, [list(w) for w in completions], written_lp, pixel_values, stopped, image_masks)


def _assemble(policy, contexts, completion_ids, written_lp, pixel_values, stopped, image_masks) -> TextRollout:
    full = [c + w for c, w in zip(contexts, completion_ids)]
    ids, attention = left_pad(full, policy.tokens.pad)  # (R, T)
    codes_at = _left_pad_masks(None if image_masks is None else
                               [m + [False] * len(w) for m, w in zip(image_masks, completion_ids)], full)
    T = ids.shape[1]
    completion = torch.zeros_like(ids, dtype=torch.bool)
    logprobs = torch.zeros(ids.shape)
    for r, w in enumerate(completion_ids):
        completion[r, T - len(w) :] = True
        logprobs[r, T - len(w) :] = written_lp[r, : len(w)]
    dev = policy.device
    return TextRollout(
        input_ids=ids.to(dev),
        attention_mask=attention.to(dev),
        completion_mask=completion.to(dev),
        logprobs=logprobs.to(dev),
        pixel_values=pixel_values,
        image_mask=codes_at.to(dev),
        completion_ids=completion_ids,
        texts=[policy.decode_text(w) for w in completion_ids],
        stopped=stopped,
    )
