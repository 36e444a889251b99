"""The rollout sampler: prompts x G samples -> reasoning chains, image tokens, per-token log-probs and masks.

    config = RolloutConfig(group_size=8, cfg_weight=3.0)
    rollout = sample(policy, ["a red circle left of a blue square"], config, seed=0)
    rollout.chains[0]            # 'A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)...'
    policy.decode_images(rollout.image_tokens)   # (8, S, S, 3) uint8

Two phases, run by our own loop over the policy's transformers modules (embeddings, `language_model.layers`,
`rotary_emb`, `norm`, `lm_head`, `generation_head`) with preallocated caches (`cache.py`):

1. Text. Each prompt is prefilled once; its G rows attend to that one copy (`SharedPrefix`) and keep their own
   chain in a per-row `KVCache`. Every step feeds the last token of each active row and samples the next chain
   token; a row is done when it samples `<begin_of_image>`, or has it forced after `max_chain_tokens` (flagged
   `truncated`). A row that finishes leaves the decode batch at once: its chain cache is copied aside and the
   remaining rows' chains are copied into a smaller cache (`Block.select`), so no step computes a finished row.
   The chain cache starts `CHAIN_CHUNK` columns wide and doubles when full.
2. Image. The set-aside chains are placed into one image-phase cache, each shifted right so that every row's
   `<begin_of_image>` falls on the same column (the gap is masked); all rows then decode exactly N codes in
   lockstep, each at its own positions. CFG rows run in the same forward: rows [0, R) conditional, [R, 2R)
   unconditional. The conditional rows keep attending to the prompt prefix and their text-phase chain: prompt
   and chain are never prefilled again. An unconditional row is BOS + pads + `<begin_of_image>` as long as its
   conditional row (exactly `build_uncond_ids` of the final sequence); every such BOS + pads part is a prefix of
   the longest one, so that single row is prefilled once and shared by all unconditional rows, and the first
   image step (feeding `<begin_of_image>`) fills the rest.

With `config.images=False` phase 2 is skipped: rows end at `<begin_of_image>` with no codes (image_tokens is (R, 0)).

Chain-given mode (`chains=...`, or `config.chain=False` for no chain at all) skips phase 1: prompt + chain are
prefilled once per group of rows sharing them and phase 2 runs as above. `edit` is the same with a region lock:
image tokens whose patch lies outside the edit boxes are fed from the original image instead of being sampled.

Rows are ordered prompt-major (prompt 0's G samples first). Sequences are left-padded: every row's
`<begin_of_image>` sits at the same column, codes follow, then `<end_of_image>`.

Draws are keyed, not streamed (see `sampling`): row (prompt i, sample j) draws its chain and its codes from
(seed, prompt_offset + i, sample_offset + j) and the step alone. So the same seed gives the same tokens however rows
leave the batch, and a run gives the same rollouts however it is split: prompts [0, 4) in one call equal prompts
[0, 2) and [2, 4) with prompt_offset=2, and samples [0, 16) of a prompt equal 8 processes' [2k, 2k + 2) with
sample_offset=2k (up to floating-point differences between batch shapes, which may flip a near-tie draw).

Precision: `config.dtype` sets the compute dtype. One lower than the weights' (bf16 on an fp32 LoRA base) runs the
forwards under `torch.autocast` with the KV caches in it, the numbers a trainer's teacher-forced forward under
the same autocast gives; log-probs are computed from fp32 logits either way.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

from janus_rig.chain import Box
from janus_rig.model.mixed import build_uncond_ids, left_pad, position_ids_from_mask
from janus_rig.rollout import sampling
from janus_rig.rollout.cache import Block, DecodeCache, KVCache, SharedPrefix, rollout_attention_for
from janus_rig.rollout.config import RolloutConfig
from janus_rig.rollout.regions import token_masks


@dataclass
class Rollout:
    """R = len(prompts) x group_size rows, prompt-major; tensors on the policy's device."""

    input_ids: torch.Tensor  # (R, T) left-padded: prompt + chain + <boi> + N codes + <eoi>
    image_mask: torch.Tensor  # (R, T) bool: the N code positions
    attention_mask: torch.Tensor  # (R, T) long
    completion_mask: torch.Tensor  # (R, T) bool: sampled tokens (chain, an emitted <boi>, sampled codes)
    logprobs: torch.Tensor  # (R, T) fp32 log-prob under the distribution sampled from (image: guided); 0 elsewhere
    cond_logprobs: torch.Tensor  # (R, T) fp32 conditional-only log-prob of sampled codes; 0 elsewhere
    uncond_input_ids: torch.Tensor  # (R, T) the CFG rows, `build_uncond_ids` of input_ids
    image_tokens: torch.Tensor  # (R, N) codes in raster order
    chains: list[str]  # decoded chain text per row ('' without a chain)
    truncated: torch.Tensor  # (R,) bool: <boi> was forced at max_chain_tokens
    prompt_index: torch.Tensor  # (R,) long: row -> index into `prompts`
    prompts: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.input_ids.shape[0]


# --- the model, driven by our loop ---------------------------------------------------------------------------------
class Decoder:
    """The policy's transformers modules behind a minimal interface: embed, run the layers on a cache, heads."""

    def __init__(self, policy, max_positions: int, dtype: torch.dtype | None = None):
        """dtype: the compute dtype (None: the weights'); the caches are allocated in it."""
        base = policy.base
        lm = base.model.language_model
        cfg = lm.config
        self.layers = lm.layers[: cfg.num_hidden_layers]
        self.norm = lm.norm
        self.embed_tokens = base.get_input_embeddings()
        self.embed_codes = base.prepare_embeddings_for_image_generation
        self.lm_head = base.lm_head
        self.image_head = base.model.generation_head
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        weight = self.embed_tokens.weight
        self.weight_dtype, self.device = weight.dtype, weight.device
        self.dtype = dtype or weight.dtype
        # RoPE tables for every position this rollout can reach, from the model's own rotary embedding.
        positions = torch.arange(max_positions, device=self.device)[None]  # (1, P)
        cos, sin = lm.rotary_emb(weight[:1][None], positions)  # (1, P, hd) each
        self.cos, self.sin = cos[0], sin[0]  # (P, hd)

    def autocast(self):
        """The context the forwards run in: torch.autocast to the compute dtype when it is not the weights'."""
        if self.dtype == self.weight_dtype:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def cache(self, rows: int, width: int, zero: bool = False) -> KVCache:
        layers = len(self.layers)
        return KVCache.allocate(layers, rows, self.kv_heads, width, self.head_dim, self.dtype, self.device, zero)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache, mask: torch.Tensor | None = None):
        """(B, S, D) inputs at (B, S) positions -> (B, S, D) final hidden states.

        `cache` is a KVCache with a (B, 1, S, W) `mask` (prefill), or a DecodeCache (one token per row)."""
        rope = (self.cos[positions], self.sin[positions])  # (B, S, hd) each
        extra = {"rollout_cache": cache} if isinstance(cache, DecodeCache) else {}
        hidden = embeds
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rope, cache=cache, **extra)
        cache.advance(embeds.shape[1])
        return self.norm(hidden)  # (B, S, D)

    def prefill(self, seqs: list[list[int]], pad_id: int) -> tuple[KVCache, torch.Tensor]:
        """Left-padded text prefill. -> cache (B rows, max length columns), (B, D) last hidden states."""
        ids, attention = left_pad(seqs, pad_id)  # (B, P) each
        P = ids.shape[1]
        cache = self.cache(len(seqs), P)
        cache.keep[:] = attention.bool().to(self.device)  # (B, P)
        positions = position_ids_from_mask(cache.keep)  # (B, P)
        hidden = self.forward(self.embed_tokens(ids.to(self.device)), positions, cache, cache.prefill_mask(P))
        return cache, hidden[:, -1]  # (B, D)


@contextmanager
def eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _seed(seed: int | None, generator: torch.Generator | None) -> int:
    """The run's seed word: `seed`, one number drawn from `generator` (callers that thread one generator through
    several calls), or fresh entropy. The global RNG is left alone."""
    if generator is None:
        return torch.Generator().seed() if seed is None else seed
    if seed is not None:
        raise ValueError("give seed or generator, not both")
    return int(torch.randint(2**63 - 1, (1,), generator=generator, device=generator.device))


@dataclass
class _Group:
    """Rows that finished their chain together: the first `columns` columns of `cache`'s `src_rows`."""

    rows: torch.Tensor  # (n,) rows of the rollout
    cache: KVCache
    src_rows: torch.Tensor  # (n,) rows of `cache`
    columns: int


@dataclass
class _Text:
    """Everything the image phase and the Rollout need from the text phase."""

    chain_ids: list[list[int]]  # per row
    chain_logprobs: torch.Tensor  # (R, C + 1) chain tokens, then an emitted <boi>
    emitted: torch.Tensor  # (R,) bool: <boi> was sampled
    truncated: torch.Tensor  # (R,) bool: <boi> was forced
    sampled: bool  # the chain tokens were sampled (not given)
    prefix: SharedPrefix  # what rows attend to before their own chain: prompt (sampled) or prompt + chain (given)
    groups: list[_Group]  # own chain caches, sampled mode
    chain_width: int  # the longest own chain


CHAIN_CHUNK = 64  # initial width of the text-phase chain cache; it doubles when full (up to max_chain_tokens)


def banned_text_tokens(policy, vocab: int, device) -> torch.Tensor:
    """(V,) bool: ids a chain never samples when `suppress_special` (specials that are not chain text, and
    embedding rows beyond the tokenizer, which decode to nothing)."""
    t = policy.tokens
    banned = torch.zeros(vocab, dtype=torch.bool, device=device)
    banned[[t.bos, t.eos, t.pad, t.image, t.eoi]] = True
    banned[len(policy.tokenizer) :] = True
    return banned


def _sample_chains(policy, decoder: Decoder, prompt_ids: list[list[int]], config: RolloutConfig,
                   keys: torch.Tensor) -> _Text:
    """keys (R,): each row's stream key (`sampling.row_keys`)."""
    t, dev = policy.tokens, decoder.device
    G, C = config.group_size, config.max_chain_tokens
    R = len(prompt_ids) * G
    prompts, last = decoder.prefill(prompt_ids, t.pad)  # (n, D)
    prefix = SharedPrefix(prompts, G, prompts.keep.repeat_interleave(G, 0))
    own = decoder.cache(R, min(C, CHAIN_CHUNK))  # the chain tokens, column j = chain token j; grows as needed
    own.keep[:] = True
    block = Block(own, prefix)
    cache = DecodeCache([block])
    logits = decoder.lm_head(last).float().repeat_interleave(G, 0)  # (R, V)
    V = logits.shape[-1]
    banned = torch.zeros(V, dtype=torch.bool, device=dev)
    if config.suppress_special:
        banned = banned_text_tokens(policy, V, dev)
    banned_early = banned.clone()
    banned_early[t.boi] = True  # before min_chain_tokens
    start = prompts.keep.sum(-1).repeat_interleave(G)  # (R,) position of each row's first chain token
    uniforms = sampling.keyed_uniforms(keys, sampling.TEXT, C)  # (R, C): row r's number for chain token t

    chain = torch.full((R, C + 1), t.pad, dtype=torch.long, device=dev)  # (R, C + 1)
    chain_lp = torch.zeros(R, C + 1, device=dev)  # (R, C + 1)
    emitted = torch.zeros(R, dtype=torch.bool, device=dev)
    truncated = torch.zeros(R, dtype=torch.bool, device=dev)
    length = [0] * R
    active = torch.arange(R, device=dev)  # (A,) rows still writing their chain
    groups = []
    for step in range(C + 1):
        if step == C:  # the limit: <boi> is forced, not sampled
            chain[active, step] = t.boi
            truncated[active] = True
            groups.append(_Group(active, block.own, torch.arange(len(active), device=dev), step))
            for r in active.tolist():
                length[r] = step
            break
        u = uniforms[active, step]  # (A,)
        scaled = logits / config.text_temperature  # (A, V)
        allowed = scaled.masked_fill(banned_early if step < config.min_chain_tokens else banned, sampling.NEG_INF)
        allowed = sampling.filter_logits(allowed, config.text_top_k, config.text_top_p)  # (A, V)
        token = sampling.sample(allowed, u)  # (A,)
        chain[active, step] = token
        chain_lp[active, step] = sampling.gather_logprobs(scaled, token)
        done = token == t.boi  # (A,)
        if done.any():
            finished = done.nonzero().squeeze(-1)  # (F,) positions in the batch
            emitted[active[finished]] = True
            for r in active[finished].tolist():
                length[r] = step
            going = (~done).nonzero().squeeze(-1)  # (A',)
            if not len(going):
                groups.append(_Group(active, block.own, torch.arange(len(active), device=dev), step))
                break
            # Finished rows leave the batch: their chains are set aside (filled columns only) until the image
            # phase, the others move to a smaller cache.
            aside = block.own.select(finished, width=step)
            groups.append(_Group(active[finished], aside, torch.arange(len(finished), device=dev), step))
            block, active, token = block.select(going), active[going], token[going]
            cache = DecodeCache([block])
        if block.own.length == block.own.width:  # full: grow (copying the filled columns once)
            block = block.select(torch.arange(len(active), device=dev), width=min(C, 2 * block.own.width))
            cache = DecodeCache([block])
        embeds = decoder.embed_tokens(token)[:, None]  # (A, 1, D)
        positions = (start[active] + step)[:, None]  # (A, 1)
        hidden = decoder.forward(embeds, positions, cache)  # (A, 1, D)
        logits = decoder.lm_head(hidden[:, 0]).float()  # (A, V)

    chain_rows = chain.tolist()
    chain_ids = [row[:n] for row, n in zip(chain_rows, length)]
    return _Text(chain_ids, chain_lp, emitted, truncated, True, prefix, groups, max(length))


def _given_chains(policy, decoder: Decoder, prompt_ids, rows_prompt: list[int], chain_ids: list[list[int]],
                  group: int) -> _Text:
    """Prefill prompt + chain once per `group` consecutive rows sharing them; nothing is sampled."""
    R, dev = len(chain_ids), decoder.device
    seqs = [prompt_ids[rows_prompt[r]] + chain_ids[r] for r in range(0, R, group)]
    cache, _ = decoder.prefill(seqs, policy.tokens.pad)
    no = torch.zeros(R, dtype=torch.bool, device=dev)
    chain_lp = torch.zeros(R, max(map(len, chain_ids)) + 1, device=dev)
    prefix = SharedPrefix(cache, group, cache.keep.repeat_interleave(group, 0))
    return _Text(chain_ids, chain_lp, no, no.clone(), False, prefix, [], 0)


def _image_phase(policy, decoder: Decoder, text: _Text, seq_lens: torch.Tensor, config: RolloutConfig,
                 keys: torch.Tensor, force: torch.Tensor | None = None, forced: torch.Tensor | None = None):
    """Decode N codes for every row. seq_lens (R,): prompt + chain length, i.e. the position of <boi>.
    keys (R,): each row's stream key.
    force/forced (R, N): where force is True the code is forced[...] instead of sampled.
    -> codes (R, N), guided log-probs (R, N), cond log-probs (R, N)."""
    t, dev = policy.tokens, decoder.device
    R, N = len(seq_lens), policy.num_image_tokens
    # Conditional rows: the prefix (prompt, or prompt + given chain), then the own chain right-aligned so that
    # every row's <boi> falls on column `chain_width`; the gaps are masked (zeros: attention reads them).
    W = text.chain_width
    own = decoder.cache(R, W + N, zero=W > 0)
    for g in text.groups:
        own.place(g.rows, g.cache, g.src_rows, g.columns, W - g.columns)
    text.groups.clear()  # release the text-phase caches
    own.keep[:, W:] = True
    own.length = W
    blocks = [Block(own, text.prefix)]
    if config.guided:
        # Unconditional rows: BOS + pads as long as their conditional row, all prefixes of the longest one.
        longest = int(seq_lens.max())
        pads, _ = decoder.prefill([[t.bos] + [t.pad] * (longest - 1)], t.pad)
        keep = torch.arange(longest, device=dev) < seq_lens.to(dev)[:, None]  # (R, Lu)
        uncond = decoder.cache(R, N)
        uncond.keep[:] = True
        blocks.append(Block(uncond, SharedPrefix(pads, R, keep)))
    cache = DecodeCache(blocks)
    B = sum(b.rows for b in blocks)

    positions = seq_lens.to(dev).repeat(B // R)[:, None]  # (B, 1) the position of <boi>
    embeds = decoder.embed_tokens(torch.tensor([t.boi], device=dev)).expand(B, 1, -1)  # (B, 1, D)
    codes = torch.zeros(R, N, dtype=torch.long, device=dev)
    guided_lp = torch.zeros(R, N, device=dev)
    cond_lp = torch.zeros(R, N, device=dev)
    uniforms = sampling.keyed_uniforms(keys, sampling.IMAGE, N)  # (R, N)
    for i in range(N):
        hidden = decoder.forward(embeds, positions + i, cache)  # (B, 1, D)
        logits = decoder.image_head(hidden[:, 0]).float()  # (B, K)
        cond = logits[:R] / config.image_temperature  # (R, K)
        guided = cond
        if config.guided:
            guided = sampling.cfg_combine(logits[:R], logits[R:], config.cfg_weight) / config.image_temperature
        code = sampling.sample(sampling.top_k_filter(guided, config.image_top_k), uniforms[:, i])  # (R,)
        if force is not None:
            code = torch.where(force[:, i], forced[:, i], code)
        codes[:, i] = code
        guided_lp[:, i] = sampling.gather_logprobs(guided, code)
        cond_lp[:, i] = sampling.gather_logprobs(cond, code)
        if i + 1 < N:
            embeds = decoder.embed_codes(code).repeat(B // R, 1)[:, None]  # (B, 1, D)
    return codes, guided_lp, cond_lp


def _assemble(policy, prompts, rows_prompt, prompt_ids, text: _Text, codes, guided_lp, cond_lp,
              sampled_codes) -> Rollout:
    """Left-padded (R, T) sequences and masks. sampled_codes (R, N) bool: codes that were sampled (not forced)."""
    t = policy.tokens
    R, N = codes.shape
    seqs = [prompt_ids[p] + c for p, c in zip(rows_prompt.tolist(), text.chain_ids)]
    boi_col = max(map(len, seqs))
    T = boi_col + N + 2
    ids = torch.full((R, T), t.pad, dtype=torch.long)
    attention = torch.zeros(R, T, dtype=torch.long)
    completion = torch.zeros(R, T, dtype=torch.bool)
    logprobs = torch.zeros(R, T)
    chain_lp = text.chain_logprobs.cpu()
    emitted = text.emitted.cpu()
    for r, seq in enumerate(seqs):
        start, n = boi_col - len(seq), len(text.chain_ids[r])
        ids[r, start:boi_col] = torch.tensor(seq, dtype=torch.long)
        attention[r, start:] = 1
        completion[r, boi_col - n : boi_col] = text.sampled
        logprobs[r, boi_col - n : boi_col] = chain_lp[r, :n]
        if emitted[r]:
            completion[r, boi_col] = True
            logprobs[r, boi_col] = chain_lp[r, n]
    ids[:, boi_col] = t.boi
    ids[:, boi_col + 1 : boi_col + 1 + N] = codes.cpu()
    ids[:, -1] = t.eoi
    image_mask = torch.zeros(R, T, dtype=torch.bool)
    image_mask[:, boi_col + 1 : boi_col + 1 + N] = True
    sampled = sampled_codes.cpu()
    completion[:, boi_col + 1 : boi_col + 1 + N] = sampled
    logprobs[:, boi_col + 1 : boi_col + 1 + N] = guided_lp.cpu() * sampled
    cond = torch.zeros(R, T)
    cond[:, boi_col + 1 : boi_col + 1 + N] = cond_lp.cpu() * sampled
    dev = codes.device  # the policy's: where trainers will use these
    return Rollout(
        input_ids=ids.to(dev),
        image_mask=image_mask.to(dev),
        attention_mask=attention.to(dev),
        completion_mask=completion.to(dev),
        logprobs=logprobs.to(dev),
        cond_logprobs=cond.to(dev),
        uncond_input_ids=build_uncond_ids(ids, image_mask, attention, t.bos, t.boi, t.pad).to(dev),
        image_tokens=codes,
        chains=[policy.decode_text(c) for c in text.chain_ids],
        truncated=text.truncated,
        prompt_index=rows_prompt.to(dev),
        prompts=list(prompts),
    )


# --- public entry points ------------------------------------------------------------------------------------------
def _encode_chains(policy, chains: list[str]) -> list[list[int]]:
    """Chain text -> ids; a trailing <begin_of_image> (as in GoT-R1's examples) is dropped, any other refused."""
    out = []
    for text in chains:
        ids = policy.encode_text(text)
        if ids and ids[-1] == policy.tokens.boi:
            ids = ids[:-1]
        if policy.tokens.boi in ids:
            raise ValueError(f"a given chain holds <begin_of_image> before its end: {text!r}")
        out.append(ids)
    return out


@torch.no_grad()
def _run(policy, prompts, config: RolloutConfig, chains, seed: int, prompt_offset: int, sample_offset: int,
         force=None, forced=None) -> Rollout:
    if not prompts:
        raise ValueError("no prompts to sample")
    if prompt_offset < 0 or sample_offset < 0:
        raise ValueError(f"prompt_offset and sample_offset are global indices (>= 0), got {prompt_offset}, "
                         f"{sample_offset}")
    started = time.perf_counter()
    n, G = len(prompts), config.group_size
    rows_prompt = torch.arange(n).repeat_interleave(G)  # (R,)
    rows_sample = torch.arange(G).repeat(n)  # (R,) sample index within the prompt's group
    keys = sampling.row_keys(seed, rows_prompt + prompt_offset, rows_sample + sample_offset)  # (R,)
    prompt_ids = [policy.encode_prompt(p, chain=config.chain) for p in prompts]
    if chains is None and not config.chain:
        chains = [""] * n
    if chains is not None:
        if len(chains) not in (n, n * G):
            raise ValueError(
                f"got {len(chains)} chains for {n} prompts x group_size {G}: give one chain per prompt ({n}) "
                f"or one per row ({n * G})"
            )
        group = G if len(chains) == n else 1  # rows that share prompt + chain
        chain_ids = [ids for ids in _encode_chains(policy, chains) for _ in range(group)]
        longest = max(len(prompt_ids[p]) + len(c) for p, c in zip(rows_prompt.tolist(), chain_ids))
    else:
        longest = max(map(len, prompt_ids)) + config.max_chain_tokens
    weights = policy.base.get_input_embeddings().weight.dtype
    decoder = Decoder(policy, longest + policy.num_image_tokens + 1, config.compute_dtype(weights))
    keys = keys.to(decoder.device)
    with eval_mode(policy.model), rollout_attention_for(policy.base.model.language_model.config), decoder.autocast():
        if chains is None:
            text = _sample_chains(policy, decoder, prompt_ids, config, keys)
        else:
            text = _given_chains(policy, decoder, prompt_ids, rows_prompt.tolist(), chain_ids, group)
        text_done = time.perf_counter()
        seq_lens = torch.tensor([len(prompt_ids[p]) + len(c) for p, c in zip(rows_prompt.tolist(), text.chain_ids)])
        if config.images:
            codes, guided_lp, cond_lp = _image_phase(policy, decoder, text, seq_lens, config, keys, force, forced)
        else:  # chains only: every row ends at <begin_of_image> (+ <end_of_image>), no codes
            codes = torch.zeros(len(seq_lens), 0, dtype=torch.long, device=decoder.device)  # (R, 0)
            guided_lp = cond_lp = torch.zeros(len(seq_lens), 0, device=decoder.device)  # (R, 0)
    image_done = time.perf_counter()
    sampled = torch.ones_like(codes, dtype=torch.bool) if force is None else ~force
    rollout = _assemble(policy, prompts, rows_prompt, prompt_ids, text, codes, guided_lp, cond_lp, sampled)
    rollout.timings = {
        "text_s": text_done - started,
        "image_s": image_done - text_done,
        "total_s": time.perf_counter() - started,
    }
    return rollout


def sample(
    policy,
    prompts: list[str],
    config: RolloutConfig,
    chains: list[str] | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    prompt_offset: int = 0,
    sample_offset: int = 0,
) -> Rollout:
    """Sample `config.group_size` (chain, image) pairs per prompt.

    `chains` skips the text phase: one chain per prompt (shared by its rows) or one per row, e.g.
    "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of ...".
    With `config.chain=False` the prompt has no chain instruction and the image starts right after it.

    Row (i, j) draws from the key (seed, prompt_offset + i, sample_offset + j): give the global index of prompts[0]
    and of this call's first sample of each prompt when a run's prompts or samples are split over calls or
    processes. `generator` instead of `seed`: the seed is one number drawn from it (no seed: fresh entropy).
    """
    return _run(policy, prompts, config, chains, _seed(seed, generator), prompt_offset, sample_offset)


def edit(
    policy,
    prompts: list[str],
    chains: list[str],
    image_tokens: torch.Tensor,
    edit_boxes: list[list[Box]],
    config: RolloutConfig,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    prompt_offset: int = 0,
    sample_offset: int = 0,
) -> Rollout:
    """Regenerate only the regions in `edit_boxes`; `config.group_size` edits per image.

    Per image i: prompts[i], chains[i], image_tokens[i] (N codes), edit_boxes[i] (boxes on the 0..1000 grid).
    A token whose patch overlaps no box is fed its original value, never sampled; a token whose patch overlaps a
    box is sampled. Log-probs and completion_mask cover the sampled tokens only. No boxes: the original image.
    Seeding and offsets as in `sample`: edit j of image i draws from (seed, prompt_offset + i, sample_offset + j).
    """
    n = len(prompts)
    if not (len(chains) == len(edit_boxes) == image_tokens.shape[0] == n):
        raise ValueError(
            f"edit needs one chain, one box list and one image per prompt: {n} prompts, {len(chains)} chains, "
            f"{len(edit_boxes)} box lists, {image_tokens.shape[0]} images"
        )
    if not config.images:
        raise ValueError("edit redraws image regions: it needs config.images=True")
    N = policy.num_image_tokens
    if image_tokens.shape[1] != N:
        raise ValueError(f"image_tokens has {image_tokens.shape[1]} codes per image, the policy makes {N}")
    G = config.group_size
    inside = token_masks(edit_boxes, policy.grid[0])  # (n, N)
    force = (~inside).repeat_interleave(G, 0).to(policy.device)  # (R, N)
    forced = image_tokens.long().repeat_interleave(G, 0).to(policy.device)  # (R, N)
    return _run(policy, prompts, config, list(chains), _seed(seed, generator), prompt_offset, sample_offset, force,
                forced)
