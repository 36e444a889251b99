"""Pure sampling math: logit filters, CFG, seeded draws and log-prob gathering. No model, no state.

Draws are by inverse CDF: one uniform number per row and step picks the token whose cumulative probability
interval contains it, so a filtered token (probability exactly 0, an empty interval) can never be drawn. The
numbers are drawn for every row of the batch at every step, whether or not the row still samples, so a row's
tokens depend only on (seed, row, step): dropping finished rows from the batch draws the same tokens.

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
    """(rows,) U[0, 1), one per row of the whole batch."""
    return torch.rand(rows, generator=generator, device=device)


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
