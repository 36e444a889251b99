"""Pure sampling math: logit filters, CFG, keyed draws and log-prob gathering. No model, no state.

Draws are by inverse CDF: one uniform number per row and step picks the token whose cumulative probability
interval contains it, so a filtered token (probability exactly 0, an empty interval) can never be drawn.

The numbers come from a counter-based hash, not from a generator's running state: each row has a key (seed, prompt,
sample), its global index in the run, and its number for a step is a pure function of (key, phase, step):

    h(w1, ..., wn) = h_n,  h_0 = 0,  h_i = mix64((h_{i-1} xor w_i) + GOLDEN)   (mod 2^64)
    u(seed, prompt, sample, phase, step) = (h(seed, prompt, sample, phase, step) >> 40) / 2^24   in [0, 1)

with mix64 splitmix64's finaliser (a bijection of 64-bit words) and GOLDEN its increment. So a row draws the same
tokens whichever rows share its batch: finished rows leaving it, prompts split over calls or processes, samples of
one prompt split over processes. The top 24 bits are exactly a float32, as torch.rand's are.

Log-probs are those of the temperature-scaled distribution before any filter (top-k, top-p, suppressed tokens):
the numbers `janus_rig.model.mixed.mixed_logprobs` gives when a trainer re-scores the rollout. Filters only
restrict which tokens can be drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: u + w * (c - u). (B, K), (B, K) -> (B, K)."""
    return uncond + weight * (cond - uncond)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept too). (B, V) -> (B, V)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest tokens whose probability reaches p (always at least one). (B, V)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(-1)  # (B, V)
    before = probs.cumsum(-1) - probs  # (B, V) mass of the likelier tokens
    drop_sorted = before >= p  # (B, V); the first token has before = 0 < p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # (B, V) back in vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float = 1.0) -> torch.Tensor:
    """Top-k, then top-p, on temperature-scaled logits. (B, V) -> (B, V)."""
    return top_p_filter(top_k_filter(logits, top_k), top_p)


def uniforms(rows: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """(rows,) U[0, 1) from a generator, one per row of the whole batch (the reflection roles' text sampler; the
    rollout sampler draws keyed numbers, `keyed_uniforms`)."""
    return torch.rand(rows, generator=generator, device=device)


# --- keyed draws: splitmix64 on int64 tensors (additions and products wrap mod 2^64, as torch's int64 ops do) ----
def _int64(x: int) -> int:
    """The int64 with the low 64 bits of x (two's complement)."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


GOLDEN = _int64(0x9E3779B97F4A7C15)  # splitmix64's increment
_M1, _M2 = _int64(0xBF58476D1CE4E5B9), _int64(0x94D049BB133111EB)
TEXT, IMAGE = 0, 1  # the phase word: the chain's draws and the image codes' draws are separate streams
UNIFORM_BITS = 24  # float32 holds them exactly


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 words (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser: a bijection of 64-bit words with full avalanche. int64 (...) -> int64 (...)."""
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def absorb(state: torch.Tensor, word: torch.Tensor | int) -> torch.Tensor:
    """One more word into the hash: mix64((state xor word) + GOLDEN). Broadcasts; int64 -> int64."""
    return mix64((state ^ word) + GOLDEN)


def row_keys(seed: int, prompt_index: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
    """Each row's stream key h(seed, prompt, sample): any int seed (its low 64 bits), (R,), (R,) global indices
    -> (R,) int64."""
    h0 = torch.zeros_like(prompt_index, dtype=torch.long)  # (R,)
    return absorb(absorb(absorb(h0, _int64(seed)), prompt_index.long()), sample_index.long())  # (R,)


def keyed_uniforms(keys: torch.Tensor, phase: int, steps: int) -> torch.Tensor:
    """U[0, 1) for every row and step of one phase: (R,) int64 keys -> (R, steps) float32, u[r, t] a function of
    (keys[r], phase, t) alone."""
    state = absorb(keys, phase)[:, None]  # (R, 1)
    counter = torch.arange(steps, device=keys.device)[None]  # (1, S)
    bits = _shr(absorb(state, counter), 64 - UNIFORM_BITS)  # (R, S) in [0, 2^24)
    return bits.float() * 2.0**-UNIFORM_BITS


def sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row from softmax(logits) by inverse CDF. (B, V) logits, (B,) uniforms -> (B,) ids."""
    cdf = logits.float().softmax(-1).cumsum(-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1), 1 up to rounding
    x = (u[:, None] * total).minimum(torch.nextafter(total, torch.zeros_like(total)))  # (B, 1) in [0, total)
    # The first token whose cumulative probability exceeds x: it has probability > 0.
    return torch.searchsorted(cdf, x, right=True).squeeze(-1)  # (B,)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per row, in fp32. (B, V), (B,) -> (B,)."""
    return -F.cross_entropy(logits.float(), tokens, reduction="none")
