"""Pure sampling math: filters never let a disallowed token through, draws follow softmax, CFG and log-probs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_rig.rollout import sampling


def _logits(seed: int, rows: int, vocab: int) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def _draw(logits: torch.Tensor, seed: int) -> torch.Tensor:
    return sampling.sample(logits, sampling.uniforms(logits.shape[0], torch.Generator().manual_seed(seed)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(1, 300), k=st.integers(1, 40))
def test_top_k_never_samples_outside_the_k_largest(seed, vocab, k):
    logits = _logits(seed, 16, vocab)  # (16, V) continuous: no ties
    filtered = sampling.top_k_filter(logits, k)
    allowed = logits.topk(min(k, vocab), dim=-1).indices  # (16, k)
    assert torch.isfinite(filtered).sum(-1).eq(min(k, vocab)).all()
    tokens = _draw(filtered, seed)
    assert (allowed == tokens[:, None]).any(-1).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(1, 300), p=st.floats(0.01, 1.0))
def test_top_p_never_samples_outside_the_nucleus(seed, vocab, p):
    logits = _logits(seed, 16, vocab)
    filtered = sampling.top_p_filter(logits, p)
    probs = logits.softmax(-1)
    for row in range(16):
        kept = torch.isfinite(filtered[row])
        order = probs[row].argsort(descending=True)
        n = int(kept.sum())
        assert kept[order[:n]].all()  # the kept set is the n likeliest tokens
        assert probs[row, order[: n - 1]].sum() < p + 1e-6  # and no smaller set reaches p
        assert n == vocab or probs[row, order[:n]].sum() >= p - 1e-6
    tokens = _draw(filtered, seed)
    assert torch.isfinite(filtered.gather(-1, tokens[:, None])).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 50))
def test_masked_tokens_are_never_drawn(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, vocab, generator=g)
    banned = torch.rand(64, vocab, generator=g) < 0.7
    banned[:, 0] = False  # at least one allowed token per row
    tokens = _draw(logits.masked_fill(banned, float("-inf")), seed)
    assert not banned.gather(-1, tokens[:, None]).any()


def test_extreme_uniforms_stay_in_the_allowed_set():
    logits = torch.tensor([[float("-inf"), 0.0, float("-inf"), 1.0, float("-inf")]] * 3)
    u = torch.tensor([0.0, 0.5, 1.0 - 2**-24])
    tokens = sampling.sample(logits, u)
    assert tokens.tolist() == [1, 3, 3]


def test_draws_follow_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    n = 40_000
    tokens = sampling.sample(logits.expand(n, -1), sampling.uniforms(n, torch.Generator().manual_seed(0)))
    freq = torch.bincount(tokens, minlength=5).float() / n
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.01, rtol=0)


def test_cfg_combine_and_logprobs():
    c, u = torch.randn(4, 10), torch.randn(4, 10)
    torch.testing.assert_close(sampling.cfg_combine(c, u, 3.0), u + 3.0 * (c - u))
    torch.testing.assert_close(sampling.cfg_combine(c, u, 1.0), c)
    tokens = torch.tensor([0, 3, 9, 5])
    ref = F.log_softmax(c, -1)[torch.arange(4), tokens]
    torch.testing.assert_close(sampling.gather_logprobs(c, tokens), ref)


def test_filters_are_identity_when_off():
    logits = torch.randn(3, 7)
    assert sampling.filter_logits(logits, None, 1.0) is logits
    assert sampling.top_k_filter(logits, 7) is logits


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_keeps_ties_at_the_threshold(k):
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    kept = torch.isfinite(sampling.top_k_filter(logits, k)).sum()
    assert kept == 3 and math.isfinite(logits.max())
