"""Mixed-sequence forward: teacher-forced log-probs equal step-by-step KV-cached decoding on the same tokens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from janus_rig.model.mixed import (
    build_uncond_ids,
    drop_conditions,
    embed_mixed,
    mixed_logprobs,
    position_ids_from_mask,
    sft_loss,
)

CHAINS = [
    "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square.",
    "a <|obj_start|>green triangle<|obj_end|> <|box_start|>(500,10),(700,210)<|box_end|>",
]


def make_batch(policy, padding: str = "right", seed: int = 0):
    """Two GoT-style rows of different lengths: prompt, chain, <boi>, N codes, <eoi> (+ trailing text on row 0)."""
    g = torch.Generator().manual_seed(seed)
    t = policy.tokens
    rows, masks = [], []
    for i, chain in enumerate(CHAINS):
        prompt = policy.encode_prompt("a red circle left of a blue square" if i == 0 else "a triangle")
        codes = torch.randint(0, policy.codebook_size, (policy.num_image_tokens,), generator=g).tolist()
        tail = policy.encode_text(" left of") if i == 0 else []
        ids = prompt + policy.encode_text(chain) + [t.boi] + codes + [t.eoi] + tail
        image = [False] * (len(prompt) + len(policy.encode_text(chain)) + 1) + [True] * len(codes) + [False] * (1 + len(tail))
        rows.append(ids)
        masks.append(image)
    T = max(map(len, rows))
    input_ids = torch.full((2, T), t.pad)
    image_mask = torch.zeros(2, T, dtype=torch.bool)
    attention = torch.zeros(2, T, dtype=torch.long)
    for b, (ids, im) in enumerate(zip(rows, masks)):
        n = len(ids)
        sl = slice(0, n) if padding == "right" else slice(T - n, T)
        input_ids[b, sl] = torch.tensor(ids)
        image_mask[b, sl] = torch.tensor(im)
        attention[b, sl] = 1
    return input_ids, image_mask, attention


@torch.no_grad()
def stepwise_logprobs(policy, input_ids, image_mask, attention, cfg_weight=None, uncond=None, text_t=1.0, image_t=1.0):
    """Reference: feed one token at a time through a KV cache; score token t+1 from the step-t hidden state."""
    base = policy.base
    B, T = input_ids.shape
    ids, masks, attn = input_ids, image_mask, attention
    if cfg_weight is not None:  # cond rows first, uncond rows second, as transformers' CFG does
        ids, masks, attn = torch.cat([input_ids, uncond]), image_mask.repeat(2, 1), attention.repeat(2, 1)
    pos = position_ids_from_mask(attn)
    cache = DynamicCache()
    out = torch.zeros(B, T)
    for t in range(T - 1):
        emb = embed_mixed(base, ids[:, t : t + 1], masks[:, t : t + 1])  # (R, 1, D)
        h = base.model.language_model(
            inputs_embeds=emb, attention_mask=attn[:, : t + 1], position_ids=pos[:, t : t + 1],
            cache=cache, use_cache=True,
        ).last_hidden_state[:, -1]  # (R, D)
        for b in range(B):
            target = input_ids[b, t + 1]
            if image_mask[b, t + 1]:
                logits = base.model.generation_head(h[b])
                if cfg_weight is not None:
                    u = base.model.generation_head(h[B + b])
                    logits = u + cfg_weight * (logits - u)
                logits = logits / image_t
            else:
                logits = base.lm_head(h[b]) / text_t
            out[b, t + 1] = F.log_softmax(logits.float(), -1)[target]
    return out


@pytest.mark.parametrize("padding", ["right", "left"])
def test_teacher_forced_equals_stepwise_cond(tiny_policy, padding):
    ids, image_mask, attention = make_batch(tiny_policy, padding)
    with torch.no_grad():
        lp = mixed_logprobs(tiny_policy.model, ids, image_mask, attention, text_temperature=0.7, image_temperature=1.3)
    ref = stepwise_logprobs(tiny_policy, ids, image_mask, attention, text_t=0.7, image_t=1.3)
    scored = lp.scored
    assert scored.sum() == attention.sum() - 2  # every real token but each row's first
    assert lp.image_mask.sum() == 2 * tiny_policy.num_image_tokens
    assert lp.text_mask.sum() > 20
    torch.testing.assert_close(lp.logprobs[scored], ref[scored], atol=1e-5, rtol=0)
    assert (lp.logprobs[~scored] == 0).all()


@pytest.mark.parametrize("padding", ["right", "left"])
def test_teacher_forced_equals_stepwise_cfg(tiny_policy, padding):
    ids, image_mask, attention = make_batch(tiny_policy, padding)
    t = tiny_policy.tokens
    uncond = build_uncond_ids(ids, image_mask, attention, t.bos, t.boi, t.pad)
    with torch.no_grad():
        lp = mixed_logprobs(tiny_policy.model, ids, image_mask, attention, cfg_weight=3.0, uncond_input_ids=uncond)
        cond_only = mixed_logprobs(tiny_policy.model, ids, image_mask, attention)
    ref = stepwise_logprobs(tiny_policy, ids, image_mask, attention, cfg_weight=3.0, uncond=uncond)
    torch.testing.assert_close(lp.logprobs[lp.scored], ref[lp.scored], atol=1e-5, rtol=0)
    # CFG changes only image tokens.
    torch.testing.assert_close(lp.logprobs[lp.text_mask], cond_only.logprobs[lp.text_mask])
    assert not torch.allclose(lp.logprobs[lp.image_mask], cond_only.logprobs[lp.image_mask])


def test_uncond_rows_keep_only_bos_and_boi(tiny_policy):
    ids, image_mask, attention = make_batch(tiny_policy, "left")
    t = tiny_policy.tokens
    uncond = build_uncond_ids(ids, image_mask, attention, t.bos, t.boi, t.pad)
    for b in range(ids.shape[0]):
        real = attention[b].bool()
        first_code = int(image_mask[b].float().argmax())
        before = uncond[b, :first_code][real[:first_code]].tolist()
        assert before[0] == t.bos and before[-1] == t.boi
        assert set(before[1:-1]) == {t.pad}
        assert torch.equal(uncond[b, first_code:], ids[b, first_code:])  # codes and what follows untouched
        assert torch.equal(uncond[b][~real], ids[b][~real])  # padding untouched


def test_condition_dropout_makes_the_samplers_uncond_rows_and_trains_only_their_codes(tiny_policy):
    ids, image_mask, attention = make_batch(tiny_policy, "right")
    t = tiny_policy.tokens
    loss_mask = attention.bool() & (torch.arange(ids.shape[1]) > 3)  # some text targets, every code
    drop = torch.tensor([True, False])
    new_ids, new_mask = drop_conditions(ids, image_mask, attention, loss_mask, drop, t.bos, t.boi, t.pad)
    uncond = build_uncond_ids(ids, image_mask, attention, t.bos, t.boi, t.pad)
    assert torch.equal(new_ids[0], uncond[0]) and torch.equal(new_ids[1], ids[1])
    first_code = int(image_mask[0].float().argmax())
    assert not new_mask[0, :first_code].any()  # no text target in a dropped row
    assert torch.equal(new_mask[0, first_code:], loss_mask[0, first_code:])  # codes (and <eoi>) still trained
    assert torch.equal(new_mask[1], loss_mask[1])
    # a row without image codes (a grounding row) is never dropped
    no_image = torch.zeros_like(image_mask)
    same_ids, same_mask = drop_conditions(ids, no_image, attention, loss_mask, torch.ones(2, dtype=torch.bool),
                                          t.bos, t.boi, t.pad)
    assert torch.equal(same_ids, ids) and torch.equal(same_mask, loss_mask)
    # nor is a row that only reads its codes (a checker row of a codes-view policy: no loss on the codes)
    read_only = loss_mask & ~image_mask
    same_ids, same_mask = drop_conditions(ids, image_mask, attention, read_only, torch.ones(2, dtype=torch.bool),
                                          t.bos, t.boi, t.pad)
    assert torch.equal(same_ids, ids) and torch.equal(same_mask, read_only)


def test_uncond_requires_boi_before_codes(tiny_policy):
    ids, image_mask, attention = make_batch(tiny_policy)
    first = int(image_mask[0].float().argmax())
    ids[0, first - 1] = tiny_policy.tokens.eos
    t = tiny_policy.tokens
    with pytest.raises(ValueError, match="begin_of_image"):
        build_uncond_ids(ids, image_mask, attention, t.bos, t.boi, t.pad)


def test_sft_loss_weights_and_gradients(tiny_policy):
    ids, image_mask, attention = make_batch(tiny_policy)
    loss_mask = attention.bool()
    loss_mask[:, :10] = False  # the prompt is not a target
    model = tiny_policy.model
    loss, m = sft_loss(model, ids, image_mask, attention, loss_mask, text_weight=0.5, image_weight=2.0)
    assert m["image_tokens"] == 2 * tiny_policy.num_image_tokens
    assert loss.item() == pytest.approx(0.5 * m["text_nll"] + 2.0 * m["image_nll"], rel=1e-5)
    # Random init: image NLL is near log(codebook size).
    assert abs(m["image_nll"] - torch.log(torch.tensor(float(tiny_policy.codebook_size))).item()) < 1.0
    loss.backward()
    base = tiny_policy.base
    assert base.model.generation_head.vision_head.weight.grad.abs().sum() > 0
    assert base.lm_head.weight.grad.abs().sum() > 0
    assert base.model.generation_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in base.model.vqmodel.parameters())  # frozen by default
    # Only image targets: the text weight has no effect.
    only_image = loss_mask & image_mask
    l1, _ = sft_loss(model, ids, image_mask, attention, only_image, text_weight=0.0)
    l2, _ = sft_loss(model, ids, image_mask, attention, only_image, text_weight=5.0)
    assert l1.item() == pytest.approx(l2.item())


def test_understanding_placeholders_take_vision_features(tiny_policy):
    from PIL import Image

    ids = torch.tensor([tiny_policy.encode_question("List every object in the image with its box.")])
    image_mask = torch.zeros_like(ids, dtype=torch.bool)
    attention = torch.ones_like(ids)
    red = tiny_policy.pixel_values([Image.new("RGB", (64, 64), (220, 40, 40))])
    blue = tiny_policy.pixel_values([Image.new("RGB", (64, 64), (50, 90, 230))])
    with torch.no_grad():
        a = mixed_logprobs(tiny_policy.model, ids, image_mask, attention, pixel_values=red).logprobs
        b = mixed_logprobs(tiny_policy.model, ids, image_mask, attention, pixel_values=blue).logprobs
        # The same as transformers' own forward with pixel_values (it scatters features into placeholders).
        logits = tiny_policy.base(input_ids=ids, pixel_values=red, attention_mask=attention).logits
    ref = F.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    torch.testing.assert_close(a[0, 1:], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="placeholder"):
        mixed_logprobs(tiny_policy.model, ids[:, :-70], image_mask[:, :-70], attention[:, :-70], pixel_values=red)
