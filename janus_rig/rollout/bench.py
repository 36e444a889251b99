"""Rollout speed: our sampler against transformers' own generate path, on the same prompts, side by side.

Both paths produce the same work: G samples per prompt, a chain of exactly `chain_tokens` tokens (the end of
the chain is suppressed until then), `<begin_of_image>`, then N image tokens with CFG. transformers' path is
`generate` for the chain, then `generate(generation_mode="image")` on prompt + chain + `<begin_of_image>`.
Runs alternate (ours, theirs, ours, ...) so that a noisy machine slows both alike; medians are reported.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from janus_rig.model.init import init_policy
from janus_rig.model.mixed import left_pad
from janus_rig.model.prompts import template_texts
from janus_rig.model.tokenizer import build_word_tokenizer
from janus_rig.rollout.config import RolloutConfig
from janus_rig.rollout.sampler import sample

BENCH_PROMPTS = (
    "a red circle left of a blue square",
    "a green triangle above a white circle",
    "two yellow squares",
    "a blue circle below a purple triangle",
    "a red square right of a green circle",
    "three purple triangles",
    "a white square below a blue triangle",
    "a yellow circle above a red square",
)


@dataclass
class BenchResult:
    rows: int
    chain_tokens: int
    image_tokens: int
    cfg_weight: float
    threads: int
    ours_s: list[float] = field(default_factory=list)
    transformers_s: list[float] = field(default_factory=list)
    ours_text_s: list[float] = field(default_factory=list)  # the sampler's own phase timings
    ours_image_s: list[float] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.rows * (self.chain_tokens + self.image_tokens)

    def summary(self) -> dict:
        ours, theirs = statistics.median(self.ours_s), statistics.median(self.transformers_s)
        return {
            **asdict(self),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "ours_text_median_s": statistics.median(self.ours_text_s),
            "ours_image_median_s": statistics.median(self.ours_image_s),
            "ours_median_s": ours,
            "transformers_median_s": theirs,
            "ours_tokens_per_s": self.tokens / ours,
            "transformers_tokens_per_s": self.tokens / theirs,
            "ratio": theirs / ours,
        }


def bench_policy(tokenizer=None):
    """The tiny preset, random init (speed does not depend on the weights); without `tokenizer`, a word tokenizer of
    the prompt templates and BENCH_PROMPTS."""
    if tokenizer is None:
        tokenizer = build_word_tokenizer([*template_texts(), *BENCH_PROMPTS])
    return init_policy("tiny", tokenizer=tokenizer, seed=0)


def _ours(policy, prompts, config: RolloutConfig, seed: int, result: BenchResult | None = None) -> torch.Tensor:
    rollout = sample(policy, list(prompts), config, seed=seed)
    if result is not None:
        result.ours_text_s.append(rollout.timings["text_s"])
        result.ours_image_s.append(rollout.timings["image_s"])
    return rollout.image_tokens


@torch.no_grad()
def _transformers(policy, prompts, group_size: int, chain_tokens: int, cfg_weight: float, seed: int) -> torch.Tensor:
    model, t = policy.base, policy.tokens
    torch.manual_seed(seed)
    ids, attention = left_pad([policy.encode_prompt(p) for p in prompts], t.pad)  # (B, P) each
    P = ids.shape[1]
    # Same sampling as ours: no top-k, the tokens our chain never samples suppressed, <boi> held back.
    suppress = [t.bos, t.eos, t.pad, t.image, t.eoi, t.boi]
    chains = model.generate(
        ids.to(policy.device), attention_mask=attention.to(policy.device), generation_mode="text",
        do_sample=True, top_k=0, max_new_tokens=chain_tokens, min_new_tokens=chain_tokens,
        num_return_sequences=group_size, suppress_tokens=suppress, pad_token_id=t.pad, eos_token_id=t.eos,
    )  # (R, P + C)
    R = chains.shape[0]
    seq = torch.cat([chains, torch.full((R, 1), t.boi, device=chains.device)], 1)  # (R, P + C + 1)
    mask = torch.cat([attention.to(chains.device).repeat_interleave(group_size, 0), torch.ones_like(seq[:, P:])], 1)
    return model.generate(seq, attention_mask=mask, generation_mode="image", do_sample=True, top_k=0,
                          guidance_scale=cfg_weight)  # (R, N)


def run_bench(policy, prompts=BENCH_PROMPTS, group_size: int = 4, chain_tokens: int = 40, cfg_weight: float = 5.0,
              repeats: int = 5, progress=None) -> BenchResult:
    config = RolloutConfig(group_size=group_size, max_chain_tokens=chain_tokens, min_chain_tokens=chain_tokens,
                           cfg_weight=cfg_weight)
    result = BenchResult(len(prompts) * group_size, chain_tokens, policy.num_image_tokens, cfg_weight,
                         torch.get_num_threads())
    paths = {
        "ours_s": lambda seed, record=None: _ours(policy, prompts, config, seed, record),
        "transformers_s": lambda seed, record=None: _transformers(policy, prompts, group_size, chain_tokens,
                                                                  cfg_weight, seed),
    }
    for run in paths.values():  # warm-up: first-call allocations, lazy imports
        run(repeats)
    for rep in range(repeats):
        for name, run in paths.items():
            started = time.perf_counter()
            out = run(rep, result)
            getattr(result, name).append(time.perf_counter() - started)
            assert out.shape == (result.rows, result.image_tokens)
        if progress is not None:
            progress(rep, result)
    return result
