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


# --- keyed draws ---------------------------------------------------------------------------------------------------
MASK64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    """splitmix64's finaliser on Python ints (the plain version)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _plain_uniform(*words: int) -> float:
    h = 0
    for w in words:
        h = _mix64(((h ^ (w & MASK64)) + 0x9E3779B97F4A7C15) & MASK64)
    return (h >> 40) / 2**24


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3, -7, 2**64 - 1, 2**70 + 5])
def test_keyed_uniforms_equal_plain_splitmix64(seed):
    """The int64 tensor version (wrapping products, masked shifts) is splitmix64 on unsigned 64-bit words."""
    prompts, samples = torch.tensor([0, 1, 17, 123_456_789]), torch.tensor([0, 3, 1, 2**33])
    keys = sampling.row_keys(seed, prompts, samples)
    for phase in (sampling.TEXT, sampling.IMAGE):
        u = sampling.keyed_uniforms(keys, phase, 7)  # (4, 7)
        assert u.dtype == torch.float32
        want = [[_plain_uniform(seed, p, s, phase, t) for t in range(7)] for p, s in zip(prompts.tolist(),
                                                                                      samples.tolist())]
        assert u.tolist() == want


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_keyed_uniforms_look_uniform_and_independent():
    """64 prompts x 64 samples x 64 steps: uniform on [0, 1) and uncorrelated along every key word (5 sigma)."""
    n = 64
    keys = sampling.row_keys(0, torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n))  # (n * n,)
    u = sampling.keyed_uniforms(keys, sampling.TEXT, n).double()  # (n * n, n)
    N = u.numel()
    assert 0 <= u.min() and u.max() < 1 and torch.equal(u * 2**24, (u * 2**24).round())  # 24-bit grid
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / N)
    counts = torch.histc(u, bins=n, min=0, max=1)
    chi2 = float(((counts - N / n) ** 2 / (N / n)).sum())
    assert chi2 < (n - 1) + 5 * math.sqrt(2 * (n - 1))
    cube = u.view(n, n, n)  # (prompt, sample, step)
    limit = 5 / math.sqrt(N)
    assert abs(_corr(cube[:, :, 1:], cube[:, :, :-1])) < limit  # consecutive steps
    assert abs(_corr(cube[:, 1:], cube[:, :-1])) < limit  # neighbouring samples of a prompt
    assert abs(_corr(cube[1:], cube[:-1])) < limit  # the same sample of neighbouring prompts
    image = sampling.keyed_uniforms(keys, sampling.IMAGE, n).double()
    other_seed = sampling.keyed_uniforms(sampling.row_keys(1, torch.arange(n).repeat_interleave(n),
                                                           torch.arange(n).repeat(n)), sampling.TEXT, n).double()
    assert abs(_corr(u, image)) < limit and abs(_corr(u, other_seed)) < limit


def test_keyed_draws_follow_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    n = 40_000
    u = sampling.keyed_uniforms(sampling.row_keys(0, torch.zeros(n, dtype=torch.long), torch.arange(n)),
                                sampling.IMAGE, 1)[:, 0]
    freq = torch.bincount(sampling.sample(logits.expand(n, -1), u), minlength=5).float() / n
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.01, rtol=0)
