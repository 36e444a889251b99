"""The rollout sampler: log-probs equal teacher-forced scoring, tokens equal a plain reference loop, layout, modes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import DynamicCache

from janus_rig.model.mixed import build_uncond_ids, left_pad, mixed_logprobs, position_ids_from_mask
from janus_rig.rollout import Rollout, RolloutConfig, sample
from janus_rig.rollout import sampling

PROMPTS = ["a red circle left of a blue square", "a triangle"]  # different lengths: left padding is exercised
CHAIN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square."


def teacher_forced(policy, ro: Rollout, config: RolloutConfig, guided: bool):
    kwargs = dict(text_temperature=config.text_temperature, image_temperature=config.image_temperature)
    if guided:
        kwargs.update(cfg_weight=config.cfg_weight, uncond_input_ids=ro.uncond_input_ids)
    with torch.no_grad():
        return mixed_logprobs(policy.model, ro.input_ids, ro.image_mask, ro.attention_mask, ro.completion_mask,
                              **kwargs)


def boi_column(ro: Rollout) -> int:
    return int(ro.image_mask[0].float().argmax()) - 1


# --- the plain reference ---------------------------------------------------------------------------------------
@torch.no_grad()
def reference_sample(policy, prompts, config: RolloutConfig, seed: int):
    """The straightforward version: every row decodes every step (finished rows too, their output ignored)
    through transformers' language model with a DynamicCache; unconditional rows prefilled in full.
    Row (i, j) draws its number for step t of a phase from the key (seed, i, j) alone (one per row and step).
    -> chain ids, chain log-probs (incl. an emitted <boi>), codes (R, N), guided and cond log-probs (R, N)."""
    base, t = policy.base, policy.tokens
    lm = base.model.language_model
    G, C, N = config.group_size, config.max_chain_tokens, policy.num_image_tokens
    prompt_ids = [policy.encode_prompt(p, chain=config.chain) for p in prompts for _ in range(G)]
    R = len(prompt_ids)
    n = len(prompts)
    keys = sampling.row_keys(seed, torch.arange(n).repeat_interleave(G), torch.arange(G).repeat(n))  # (R,) (i, j)

    ids, attention = left_pad(prompt_ids, t.pad)
    cache = DynamicCache()
    out = lm(input_ids=ids, attention_mask=attention, position_ids=position_ids_from_mask(attention),
             cache=cache, use_cache=True)
    logits = base.lm_head(out.last_hidden_state[:, -1]).float()
    V = logits.shape[-1]
    banned = torch.zeros(V, dtype=torch.bool)
    banned[[t.bos, t.eos, t.pad, t.image, t.eoi]] = True
    banned[len(policy.tokenizer) :] = True
    chains, chain_lps, done = [[] for _ in range(R)], [[] for _ in range(R)], [False] * R
    for step in range(C):
        u = sampling.keyed_uniforms(keys, sampling.TEXT, C)[:, step]
        scaled = logits / config.text_temperature
        no = banned.clone()
        no[t.boi] = step < config.min_chain_tokens
        allowed = sampling.filter_logits(scaled.masked_fill(no, float("-inf")), config.text_top_k, config.text_top_p)
        token = sampling.sample(allowed, u)
        lp = sampling.gather_logprobs(scaled, token)
        for r in range(R):
            if not done[r]:
                chain_lps[r].append(float(lp[r]))
                if token[r] == t.boi:
                    done[r] = True
                else:
                    chains[r].append(int(token[r]))
        if all(done):
            break
        attention = torch.cat([attention, torch.ones(R, 1, dtype=torch.long)], 1)
        out = lm(input_ids=token[:, None], attention_mask=attention,
                 position_ids=position_ids_from_mask(attention)[:, -1:], cache=cache, use_cache=True)
        logits = base.lm_head(out.last_hidden_state[:, -1]).float()

    # Image phase: prompt + chain + <boi>, and BOS + pads + <boi> of the same length, prefilled from scratch.
    seqs = [p + c + [t.boi] for p, c in zip(prompt_ids, chains)]
    cond, attention = left_pad(seqs, t.pad)
    uncond = cond.clone()
    for r, s in enumerate(seqs):
        uncond[r, cond.shape[1] - len(s) + 1 : -1] = t.pad
    ids, attention = torch.cat([cond, uncond]), attention.repeat(2, 1)
    cache = DynamicCache()
    out = lm(input_ids=ids, attention_mask=attention, position_ids=position_ids_from_mask(attention),
             cache=cache, use_cache=True)
    codes, guided_lp, cond_lp = torch.zeros(R, N, dtype=torch.long), torch.zeros(R, N), torch.zeros(R, N)
    for i in range(N):
        h = base.model.generation_head(out.last_hidden_state[:, -1]).float()  # (2R, K)
        c = h[:R] / config.image_temperature
        guided = (h[R:] + config.cfg_weight * (h[:R] - h[R:])) / config.image_temperature
        u = sampling.keyed_uniforms(keys, sampling.IMAGE, N)[:, i]
        code = sampling.sample(sampling.top_k_filter(guided, config.image_top_k), u)
        codes[:, i] = code
        guided_lp[:, i] = sampling.gather_logprobs(guided, code)
        cond_lp[:, i] = sampling.gather_logprobs(c, code)
        embeds = base.prepare_embeddings_for_image_generation(code.repeat(2))[:, None]  # (2R, 1, D)
        attention = torch.cat([attention, torch.ones(2 * R, 1, dtype=torch.long)], 1)
        out = lm(inputs_embeds=embeds, attention_mask=attention,
                 position_ids=position_ids_from_mask(attention)[:, -1:], cache=cache, use_cache=True)
    return chains, chain_lps, done, codes, guided_lp, cond_lp


# --- tests -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [64, 2])  # 2: the chain cache grows several times during the text phase
def test_fast_path_equals_reference(ending_policy, monkeypatch, chunk):
    monkeypatch.setattr("janus_rig.rollout.sampler.CHAIN_CHUNK", chunk)
    config = RolloutConfig(group_size=4, max_chain_tokens=12, min_chain_tokens=2, text_temperature=0.9,
                           text_top_k=200, text_top_p=0.95, cfg_weight=3.0, image_temperature=1.1, image_top_k=100)
    ro = sample(ending_policy, PROMPTS, config, seed=5)
    chains, chain_lps, emitted, codes, guided_lp, cond_lp = reference_sample(ending_policy, PROMPTS, config, seed=5)
    lengths = [len(c) for c in chains]
    assert len(set(lengths)) > 2 and any(emitted) and not all(emitted)  # rows really finish at different steps
    assert torch.equal(ro.image_tokens, codes)
    assert ro.chains == [ending_policy.decode_text(c) for c in chains]
    assert ro.truncated.tolist() == [not e for e in emitted]
    boi = boi_column(ro)
    for r, n in enumerate(lengths):
        assert ro.input_ids[r, boi - n : boi].tolist() == chains[r]
        got = ro.logprobs[r, boi - n : boi + int(emitted[r])]
        torch.testing.assert_close(got, torch.tensor(chain_lps[r]), atol=1e-4, rtol=0)
    torch.testing.assert_close(ro.logprobs[ro.image_mask].view_as(guided_lp), guided_lp, atol=1e-4, rtol=0)
    torch.testing.assert_close(ro.cond_logprobs[ro.image_mask].view_as(cond_lp), cond_lp, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cfg_weight", [3.0, 1.0])
def test_logprobs_equal_teacher_forced(ending_policy, cfg_weight):
    config = RolloutConfig(group_size=3, max_chain_tokens=12, text_temperature=0.7, cfg_weight=cfg_weight,
                           image_temperature=1.3)
    ro = sample(ending_policy, PROMPTS, config, seed=1)
    assert ro.truncated.any() and not ro.truncated.all()
    done = ro.completion_mask
    guided = teacher_forced(ending_policy, ro, config, guided=True)
    torch.testing.assert_close(ro.logprobs[done], guided.logprobs[done], atol=1e-4, rtol=0)
    cond = teacher_forced(ending_policy, ro, config, guided=False)
    image = done & ro.image_mask
    torch.testing.assert_close(ro.cond_logprobs[image], cond.logprobs[image], atol=1e-4, rtol=0)
    if cfg_weight != 1.0:
        assert not torch.allclose(ro.logprobs[image], ro.cond_logprobs[image])
    assert (ro.logprobs[~done] == 0).all() and (ro.cond_logprobs[~image] == 0).all()


def test_layout_and_masks(ending_policy):
    config = RolloutConfig(group_size=3, max_chain_tokens=10)
    ro = sample(ending_policy, PROMPTS, config, seed=2)
    t, N = ending_policy.tokens, ending_policy.num_image_tokens
    R, T = ro.input_ids.shape
    assert R == 6 and ro.prompt_index.tolist() == [0, 0, 0, 1, 1, 1] and ro.prompts == PROMPTS
    boi = boi_column(ro)
    assert (ro.input_ids[:, boi] == t.boi).all() and (ro.input_ids[:, -1] == t.eoi).all() and T == boi + N + 2
    assert ro.image_mask.sum() == R * N and ro.image_mask[:, boi + 1 : boi + 1 + N].all()
    assert torch.equal(ro.image_tokens, ro.input_ids[:, boi + 1 : boi + 1 + N])
    for r in range(R):
        prompt = ending_policy.encode_prompt(PROMPTS[ro.prompt_index[r]])
        real = ro.input_ids[r][ro.attention_mask[r].bool()].tolist()
        assert real[: len(prompt)] == prompt  # left padded, then prompt, chain, <boi>, codes, <eoi>
        start = T - len(real)
        assert ro.attention_mask[r, start:].all() and not ro.attention_mask[r, :start].any()
        chain_cols = ro.completion_mask[r, :boi].nonzero().squeeze(-1).tolist()
        assert chain_cols == list(range(start + len(prompt), boi))  # every chain token was sampled
        assert bool(ro.completion_mask[r, boi]) == (not ro.truncated[r])  # an emitted <boi> is a sampled token
    assert not ro.completion_mask[:, -1].any()
    assert set(ro.timings) == {"text_s", "image_s", "total_s"}


def test_uncond_rows_are_bos_pads_boi(ending_policy):
    ro = sample(ending_policy, PROMPTS, RolloutConfig(group_size=2, max_chain_tokens=8), seed=0)
    t = ending_policy.tokens
    expected = build_uncond_ids(ro.input_ids, ro.image_mask, ro.attention_mask, t.bos, t.boi, t.pad)
    assert torch.equal(ro.uncond_input_ids, expected)
    boi = boi_column(ro)
    for r in range(ro.num_rows):
        real = ro.uncond_input_ids[r, :boi + 1][ro.attention_mask[r, : boi + 1].bool()].tolist()
        assert real[0] == t.bos and real[-1] == t.boi and set(real[1:-1]) <= {t.pad}


def test_seeded(tiny_policy):
    config = RolloutConfig(group_size=2, max_chain_tokens=6)
    a = sample(tiny_policy, PROMPTS, config, seed=3)
    b = sample(tiny_policy, PROMPTS, config, seed=3)
    c = sample(tiny_policy, PROMPTS, config, seed=4)
    assert torch.equal(a.input_ids, b.input_ids) and a.chains == b.chains
    assert not torch.equal(a.image_tokens, c.image_tokens) and a.chains != c.chains
    # A generator gives the seed (one number drawn from it): reproducible, and the global RNG is left alone.
    state = torch.random.get_rng_state()
    d = sample(tiny_policy, PROMPTS, config, generator=torch.Generator().manual_seed(3))
    e = sample(tiny_policy, PROMPTS, config, generator=torch.Generator().manual_seed(3))
    assert torch.equal(d.input_ids, e.input_ids) and torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="seed or generator"):
        sample(tiny_policy, PROMPTS, config, seed=3, generator=torch.Generator())


def test_truncated_chains_are_flagged(tiny_policy):
    config = RolloutConfig(group_size=2, max_chain_tokens=3)
    ro = sample(tiny_policy, PROMPTS, config, seed=0)  # a random model almost never emits <boi> in 3 tokens
    assert ro.truncated.all()
    boi = boi_column(ro)
    assert (ro.completion_mask[:, boi - 3 : boi]).all() and not ro.completion_mask[:, boi].any()
    assert (ro.logprobs[:, boi] == 0).all() and (ro.logprobs[:, boi - 3 : boi] < 0).all()
    assert ro.completion_mask[:, : boi - 3].sum() == 0


def test_min_chain_tokens_holds_back_boi(ending_policy):
    # 25 chances at ~5% for each of 8 rows: some row ends before the limit whatever the random init (p > 0.9999).
    ro = sample(ending_policy, PROMPTS, RolloutConfig(group_size=4, max_chain_tokens=30, min_chain_tokens=5), seed=0)
    lengths = ro.completion_mask[:, : boi_column(ro)].sum(-1)  # (R,) sampled chain tokens
    assert lengths.min() >= 5 and (~ro.truncated).any()


def test_chain_given_mode(ending_policy):
    config = RolloutConfig(group_size=2, cfg_weight=2.0)
    chains = [CHAIN, "a <|obj_start|>triangle<|obj_end|> <|box_start|>(500,10),(700,210)<|box_end|><begin_of_image>"]
    ro = sample(ending_policy, PROMPTS, config, chains=chains, seed=0)
    given = [CHAIN, CHAIN, chains[1].removesuffix("<begin_of_image>"), chains[1].removesuffix("<begin_of_image>")]
    assert ro.chains == given and not ro.truncated.any()
    boi = boi_column(ro)
    for r, chain in enumerate(given):
        ids = ending_policy.encode_text(chain)
        assert ro.input_ids[r, boi - len(ids) : boi].tolist() == ids
    assert torch.equal(ro.completion_mask, ro.image_mask)  # only the image was sampled
    lp = teacher_forced(ending_policy, ro, config, guided=True)
    torch.testing.assert_close(ro.logprobs[ro.image_mask], lp.logprobs[ro.image_mask], atol=1e-4, rtol=0)
    # One chain per row works too; the wrong count says what it expects.
    per_row = sample(ending_policy, PROMPTS, config, chains=given, seed=0)
    assert torch.equal(per_row.input_ids, ro.input_ids)
    with pytest.raises(ValueError, match="one chain per prompt"):
        sample(ending_policy, PROMPTS, config, chains=[CHAIN] * 3)


def test_no_chain_mode(tiny_policy):
    config = RolloutConfig(group_size=2, chain=False)
    ro = sample(tiny_policy, PROMPTS, config, seed=0)
    assert ro.chains == [""] * 4
    for r in range(4):
        prompt = tiny_policy.encode_prompt(PROMPTS[ro.prompt_index[r]], chain=False)
        real = ro.input_ids[r][ro.attention_mask[r].bool()].tolist()
        assert real[: len(prompt) + 1] == prompt + [tiny_policy.tokens.boi]
    assert torch.equal(ro.completion_mask, ro.image_mask)
    lp = teacher_forced(tiny_policy, ro, config, guided=True)
    torch.testing.assert_close(ro.logprobs[ro.image_mask], lp.logprobs[ro.image_mask], atol=1e-4, rtol=0)


def test_chains_only_mode_matches_the_full_rollout(ending_policy):
    """images=False samples the same chains with the same log-probs as a full rollout of the same seed, and stops."""
    config = RolloutConfig(group_size=3, max_chain_tokens=12, cfg_weight=3.0)
    full = sample(ending_policy, PROMPTS, config, seed=4)
    short = sample(ending_policy, PROMPTS, RolloutConfig(**{**vars(config), "images": False}), seed=4)
    assert short.chains == full.chains and torch.equal(short.truncated, full.truncated)
    assert short.image_tokens.shape == (6, 0) and not short.image_mask.any()
    t = ending_policy.tokens
    assert (short.input_ids[:, -2] == t.boi).all() and (short.input_ids[:, -1] == t.eoi).all()
    width = short.input_ids.shape[1] - 1  # up to and including <begin_of_image>
    boi = boi_column(full)
    for key in ("input_ids", "attention_mask", "completion_mask", "logprobs"):
        a, b = getattr(short, key)[:, :width], getattr(full, key)[:, boi + 1 - width : boi + 1]
        assert torch.equal(a, b), key
    lp = teacher_forced(ending_policy, short, config, guided=False)
    torch.testing.assert_close(short.logprobs[short.completion_mask], lp.logprobs[short.completion_mask], atol=1e-4,
                               rtol=0)


def test_lora_policy(tiny_policy):
    """A peft-wrapped policy: the sampler runs the LoRA layers injected into the base model's modules."""
    from janus_rig.model.policy import LoraSettings, apply_lora

    tiny_policy.model = apply_lora(tiny_policy.base, LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in tiny_policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # make the adapters matter (peft starts them at zero)
    config = RolloutConfig(group_size=2, max_chain_tokens=5, cfg_weight=2.0)
    ro = sample(tiny_policy, PROMPTS, config, seed=0)
    lp = teacher_forced(tiny_policy, ro, config, guided=True)
    torch.testing.assert_close(ro.logprobs[ro.completion_mask], lp.logprobs[ro.completion_mask], atol=1e-4, rtol=0)
    with tiny_policy.model.disable_adapter():
        plain = teacher_forced(tiny_policy, ro, config, guided=True)
    assert not torch.allclose(plain.logprobs[ro.completion_mask], lp.logprobs[ro.completion_mask], atol=1e-3)


def test_model_state_is_restored(tiny_policy):
    base = tiny_policy.base
    base.train()
    attn = base.model.language_model.config._attn_implementation
    sample(tiny_policy, PROMPTS[:1], RolloutConfig(group_size=1, max_chain_tokens=2), seed=0)
    assert base.training and base.model.language_model.config._attn_implementation == attn


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(group_size=0), "group_size"),
        (dict(max_chain_tokens=4, min_chain_tokens=5), "min_chain_tokens"),
        (dict(chain=False, min_chain_tokens=1, max_chain_tokens=2), "chain=False"),
        (dict(text_temperature=0.0), "text_temperature"),
        (dict(text_top_p=0.0), "text_top_p"),
        (dict(image_top_k=0), "image_top_k"),
        (dict(cfg_weight=-1.0), "cfg_weight"),
        (dict(chain=False, images=False), "nothing to sample"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RolloutConfig(**kwargs)


def test_bench_command(capsys):
    from janus_rig.cli import main

    assert main(["bench", "rollout", "--repeats", "1", "--group-size", "1", "--chain-tokens", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 8 and result["chain_tokens"] == 2 and result["ratio"] > 0
