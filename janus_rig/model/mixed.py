"""Mixed-sequence forward: sequences that interleave text tokens and image codes, as one Janus LM sees them.

A mixed sequence is a (B, T) id tensor plus a (B, T) bool `image_mask`: where the mask is True the id is a VQ
codebook index (0..K-1), elsewhere a text token id. For GoT-R1 generation a row reads

    BOS  User: ... Assistant:  <chain text with spans>  <begin_of_image>  c_1 ... c_N  <end_of_image>

Inputs: text ids go through the LM's token embeddings, image codes through `generation_embeddings` +
`generation_aligner`, `<image_placeholder>` ids (understanding) are replaced by vision features when
`pixel_values` are given. Targets: token t is predicted from position t-1, through `lm_head` when t is text and
through `generation_head` (over the codebook) when t is an image code. So `<begin_of_image>` predicts the first
code, and the last code predicts `<end_of_image>` through lm_head.

Positions come from the attention mask (cumsum - 1), so left-padded rows (rollout) and right-padded rows
(training) give the same numbers as unpadded ones.

Everything here is a pure function; trainers and the sampler call them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from janus_rig.model.policy import unwrap


@dataclass
class TokenLogprobs:
    logprobs: torch.Tensor  # (B, T) log p(token t | tokens < t); 0 where not scored
    scored: torch.Tensor  # (B, T) bool: positions that were scored
    is_image: torch.Tensor  # (B, T) bool: the token is an image code

    @property
    def text_mask(self) -> torch.Tensor:
        return self.scored & ~self.is_image  # (B, T)

    @property
    def image_mask(self) -> torch.Tensor:
        return self.scored & self.is_image  # (B, T)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B, T) positions counting only attended tokens (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (B, T) ids left-padded with pad_id, and the (B, T) 0/1 attention mask (rollout's layout)."""
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros(len(seqs), T, dtype=torch.long)  # (B, T)
    for b, seq in enumerate(seqs):
        ids[b, T - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        attention[b, T - len(seq) :] = 1
    return ids, attention


def embed_mixed(
    model, input_ids: torch.Tensor, image_mask: torch.Tensor, pixel_values: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T) ids + (B, T) image mask -> (B, T, D) input embeddings."""
    model = unwrap(model)
    text_ids = input_ids.masked_fill(image_mask, 0)  # codes are not text ids; row 0 is a placeholder, replaced below
    embeds = model.get_input_embeddings()(text_ids)  # (B, T, D)
    if image_mask.any():
        codes = input_ids[image_mask]  # (N,)
        image_embeds = model.prepare_embeddings_for_image_generation(codes)  # (N, D)
        embeds = embeds.index_put((image_mask,), image_embeds.to(embeds.dtype))
    if pixel_values is not None:
        placeholder = (input_ids == model.config.image_token_id) & ~image_mask  # (B, T)
        features = model.model.get_image_features(pixel_values).pooler_output  # (B_img, N_img, D)
        features = features.reshape(-1, embeds.shape[-1])  # (B_img * N_img, D)
        if features.shape[0] != int(placeholder.sum()):
            raise ValueError(
                f"{int(placeholder.sum())} <image_placeholder> tokens but {features.shape[0]} vision features"
            )
        embeds = embeds.index_put((placeholder,), features.to(embeds.dtype))
    return embeds


def mixed_hidden_states(
    model,
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) -> (B, T, D) last hidden states of the language model."""
    base = unwrap(model)
    embeds = embed_mixed(model, input_ids, image_mask, pixel_values)  # (B, T, D)
    out = base.model.language_model(
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    return out.last_hidden_state  # (B, T, D)


def default_score_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Score every attended token except each row's first (nothing predicts it)."""
    mask = attention_mask.bool()  # (B, T)
    return mask & (position_ids_from_mask(attention_mask) > 0)


def build_uncond_ids(
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    bos_id: int,
    boi_id: int,
    pad_id: int,
) -> torch.Tensor:
    """The CFG unconditional rows: BOS and the `<begin_of_image>` before the image are kept, every text token
    between them (prompt AND reasoning chain) becomes pad; image codes and anything after them are unchanged.
    The length and attention mask stay those of the conditional row (pads are attended, as in Janus).

    (B, T) -> (B, T). Rows without image codes are returned unchanged.
    """
    B, T = input_ids.shape
    pos = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
    has_image = image_mask.any(-1)  # (B,)
    first_code = torch.where(has_image, image_mask.float().argmax(-1), torch.full_like(has_image, T, dtype=torch.long))
    boi_at = (first_code - 1).clamp(min=0)  # (B,)
    rows = has_image.nonzero().squeeze(-1)
    if rows.numel():
        opener = input_ids[rows, boi_at[rows]]  # (R,)
        if ((opener != boi_id) | image_mask[rows, boi_at[rows]]).any() or (first_code[rows] == 0).any():
            raise ValueError("every image segment must be opened by <begin_of_image> right before its first code")
    attended = attention_mask.bool()
    first_real = attended.float().argmax(-1, keepdim=True)  # (B, 1)
    keep_bos = (pos == first_real) & (input_ids == bos_id)  # (B, T)
    replace = attended & ~image_mask & ~keep_bos & (pos < boi_at.unsqueeze(-1))  # (B, T)
    return input_ids.masked_fill(replace, pad_id)


def mixed_logprobs(
    model,
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    score_mask: torch.Tensor | None = None,
    *,
    pixel_values: torch.Tensor | None = None,
    text_temperature: float = 1.0,
    image_temperature: float = 1.0,
    cfg_weight: float | None = None,
    uncond_input_ids: torch.Tensor | None = None,
) -> TokenLogprobs:
    """Per-token log-probs of every scored token of a mixed batch, teacher-forced in one forward.

    With `cfg_weight`, image tokens are scored under the guided distribution
    softmax((u + w * (c - u)) / image_temperature), c/u the conditional/unconditional generation-head logits;
    `uncond_input_ids` comes from `build_uncond_ids`. Without it, image tokens are scored cond-only.
    Temperatures divide the logits, as the sampler does, so the numbers are those of the distribution sampled from.
    """
    base = unwrap(model)
    if score_mask is None:
        score_mask = default_score_mask(attention_mask)
    hidden = mixed_hidden_states(model, input_ids, image_mask, attention_mask, pixel_values)  # (B, T, D)
    prev = hidden[:, :-1]  # (B, T-1, D): row t predicts token t+1
    target = input_ids[:, 1:]  # (B, T-1)
    scored = score_mask[:, 1:]  # (B, T-1)
    text_sel = scored & ~image_mask[:, 1:]  # (B, T-1)
    image_sel = scored & image_mask[:, 1:]  # (B, T-1)

    out = hidden.new_zeros(target.shape, dtype=torch.float32)  # (B, T-1)
    if text_sel.any():
        logits = base.lm_head(prev[text_sel]).float() / text_temperature  # (Nt, V)
        out = out.index_put((text_sel,), -F.cross_entropy(logits, target[text_sel], reduction="none"))
    if image_sel.any():
        logits = base.model.generation_head(prev[image_sel]).float()  # (Ni, K)
        if cfg_weight is not None:
            if uncond_input_ids is None:
                raise ValueError("cfg_weight needs uncond_input_ids (see build_uncond_ids)")
            uncond_hidden = mixed_hidden_states(model, uncond_input_ids, image_mask, attention_mask)  # (B, T, D)
            uncond = base.model.generation_head(uncond_hidden[:, :-1][image_sel]).float()  # (Ni, K)
            logits = uncond + cfg_weight * (logits - uncond)  # (Ni, K)
        logits = logits / image_temperature
        out = out.index_put((image_sel,), -F.cross_entropy(logits, target[image_sel], reduction="none"))

    pad = out.new_zeros(out.shape[0], 1)  # token 0 of each row is never scored
    return TokenLogprobs(
        logprobs=torch.cat([pad, out], dim=1),  # (B, T)
        scored=torch.cat([pad.bool(), scored], dim=1),  # (B, T)
        is_image=image_mask,
    )


def target_counts(loss_mask: torch.Tensor, image_mask: torch.Tensor) -> tuple[int, int]:
    """(text, image) targets `sft_loss` scores in a batch: loss_mask's positions but the first (as mixed_logprobs)."""
    scored = loss_mask[:, 1:].bool()  # (B, T-1)
    is_image = image_mask[:, 1:]  # (B, T-1)
    return int((scored & ~is_image).sum()), int((scored & is_image).sum())


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values where mask; 0 (with a gradient path) when the mask is empty."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def drop_conditions(
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    drop: torch.Tensor,
    bos_id: int,
    boi_id: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition dropout (Janus' classifier-free-guidance training): the rows in `drop` that learn image codes
    (an image the model reads, in a checker's context, is not one) become the sampler's unconditional rows (`build_uncond_ids`: BOS + pads + `<begin_of_image>`) and keep their loss
    only on the codes and what follows them; other rows are unchanged. Without it the unconditional branch of CFG
    is a context the model never saw, and guidance extrapolates away from the plan.

    (B, T) tensors and drop (B,) bool -> (input_ids, loss_mask), both (B, T).
    """
    drop = drop & (image_mask & loss_mask).any(-1)  # (B,): only rows that learn to draw an image
    if not drop.any():
        return input_ids, loss_mask
    uncond = build_uncond_ids(input_ids, image_mask, attention_mask, bos_id, boi_id, pad_id)  # (B, T)
    T = input_ids.shape[1]
    first_code = image_mask.float().argmax(-1, keepdim=True)  # (B, 1)
    from_codes = torch.arange(T, device=input_ids.device).expand_as(input_ids) >= first_code  # (B, T)
    rows = drop[:, None]  # (B, 1)
    return torch.where(rows, uncond, input_ids), torch.where(rows, loss_mask & from_codes, loss_mask)


def sft_loss(
    model,
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    text_weight: float = 1.0,
    image_weight: float = 1.0,
    pixel_values: torch.Tensor | None = None,
    num_items: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over text and image targets, each averaged over its own tokens, then weighted.

    loss_mask (B, T) marks the target tokens (e.g. chain + image + <end_of_image>, not the prompt).
    `num_items` (text, image): divide the two sums by these instead of this batch's own token counts. A trainer
    passes its share of the whole optimizer step's counts (`target_counts` over every micro-batch and process), so
    the step's gradient is the token mean over the step however it is split. The logged NLLs stay this batch's means.
    """
    lp = mixed_logprobs(model, input_ids, image_mask, attention_mask, loss_mask, pixel_values=pixel_values)
    text_nll = -masked_mean(lp.logprobs, lp.text_mask)  # scalar
    image_nll = -masked_mean(lp.logprobs, lp.image_mask)  # scalar
    if num_items is None:
        loss = text_weight * text_nll + image_weight * image_nll
    else:
        text_sum = -(lp.logprobs * lp.text_mask).sum()  # scalar
        image_sum = -(lp.logprobs * lp.image_mask).sum()  # scalar
        loss = text_weight * text_sum / (num_items[0] or 1.0) + image_weight * image_sum / (num_items[1] or 1.0)
    metrics = {
        "loss": loss.item(),
        "text_nll": text_nll.item(),
        "image_nll": image_nll.item(),
        "text_tokens": int(lp.text_mask.sum()),
        "image_tokens": int(lp.image_mask.sum()),
    }
    return loss, metrics
