"""GRPO math: each pure function against a plain-loop version, and the loss against trl's own `_compute_loss`."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer

from train.grpo.algos import LOSS_TYPES, group_advantages, k3_kl, policy_loss


def loop_advantages(rewards, G, scale, valid, floor=0.0):
    n = len(rewards)
    out = [0.0] * n
    batch = [r for r, v in zip(rewards, valid) if v]
    bmean = sum(batch) / len(batch)
    bstd = math.sqrt(sum((r - bmean) ** 2 for r in batch) / (len(batch) - 1)) if len(batch) > 1 else 0.0
    for g in range(0, n, G):
        members = [(i, rewards[i]) for i in range(g, g + G) if valid[i]]
        if not members:
            continue
        mean = sum(r for _, r in members) / len(members)
        std = math.sqrt(sum((r - mean) ** 2 for _, r in members) / (len(members) - 1)) if len(members) > 1 else 0.0
        for i, r in members:
            d = {"group": max(std, floor) + 1e-4, "batch": max(bstd, floor) + 1e-4, "none": 1.0}[scale]
            out[i] = (r - mean) / d
    return out


@pytest.mark.parametrize("floor", [0.0, 0.3])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_match_plain_loop(scale, floor):
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(24, generator=g, dtype=torch.float64)
    rewards[:6] *= 1e-3  # one near-constant group: the floor is what scales it
    valid = torch.rand(24, generator=g) > 0.2
    adv, metrics = group_advantages(rewards, 6, scale, valid, std_floor=floor)
    ref = loop_advantages(rewards.tolist(), 6, scale, valid.tolist(), floor)
    torch.testing.assert_close(adv, torch.tensor(ref, dtype=torch.float64))
    assert (adv[~valid] == 0).all()


def test_std_floor_keeps_tiny_differences_tiny():
    rewards = torch.tensor([0.001, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    plain = group_advantages(rewards, 4)[0]
    floored = group_advantages(rewards, 4, std_floor=0.1)[0]
    assert plain[0] > 1.0  # trl's scaling: a difference of 1e-3 becomes a full-size advantage
    assert floored[0] < 0.01  # with the floor it stays small ...
    torch.testing.assert_close(floored[4:], plain[4:])  # ... and a group with real spread is unchanged
    with pytest.raises(ValueError, match="std_floor"):
        group_advantages(rewards, 4, std_floor=-1.0)


def test_zero_variance_groups_give_zero_not_nan():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.5, 1.0])
    adv, metrics = group_advantages(rewards, 3)
    assert torch.isfinite(adv).all()
    assert (adv[:3] == 0).all()
    assert metrics["frac_zero_std_groups"] == 0.5
    lone = group_advantages(rewards, 3, valid=torch.tensor([True, False, False, True, True, True]))[0]
    assert lone[0] == 0 and torch.isfinite(lone).all()  # a group with one valid sample has no spread
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(rewards, 4)


def test_k3_kl_nonnegative_and_zero_at_equality():
    a = torch.randn(4, 7)
    assert (k3_kl(a, a) == 0).all()
    b = a + torch.randn(4, 7)
    kl = k3_kl(a, b)
    assert (kl >= 0).all()
    ref = [[math.exp(y - x) - (y - x) - 1 for x, y in zip(r1, r2)] for r1, r2 in zip(a.tolist(), b.tolist())]
    torch.testing.assert_close(kl, torch.tensor(ref))


def loop_loss(logps, old, adv, mask, loss_type, eps_lo, eps_hi, level, beta, ref, max_len):
    B, T = len(logps), len(logps[0])
    per = [[0.0] * T for _ in range(B)]
    for b in range(B):
        n = sum(mask[b])
        seq = sum((logps[b][t] - old[b][t]) * mask[b][t] for t in range(T)) / max(n, 1)
        for t in range(T):
            lw = seq if level == "sequence" else logps[b][t] - old[b][t]
            c1 = math.exp(lw)
            c2 = min(max(c1, 1 - eps_lo), 1 + eps_hi)
            per[b][t] = -min(c1 * adv[b], c2 * adv[b])
            if beta:
                d = ref[b][t] - logps[b][t]
                per[b][t] += beta * (math.exp(d) - d - 1)
    masked = [[per[b][t] * mask[b][t] for t in range(T)] for b in range(B)]
    total_tokens = sum(map(sum, mask))
    if loss_type == "grpo":
        return sum(sum(masked[b]) / max(sum(mask[b]), 1) for b in range(B)) / B
    if loss_type == "bnpo":
        return sum(map(sum, masked)) / max(total_tokens, 1)
    if loss_type == "dr_grpo":
        return sum(map(sum, masked)) / (B * max_len)
    return sum(map(sum, masked)) / max(total_tokens, 1)  # dapo, one process


def random_case(seed=0, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    old = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3  # off-policy so clipping bites
    ref = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.2
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = (torch.rand(B, T, generator=g) > 0.3).double()
    mask[0] = 0  # an empty row
    return logps, old, ref, adv, mask


CASES = [(lt, lvl, beta) for lt in ("grpo", "bnpo", "dr_grpo", "dapo") for lvl in ("token", "sequence") for beta in (0.0, 0.04)]


@pytest.mark.parametrize("loss_type,level,beta", CASES)
def test_policy_loss_matches_plain_loop(loss_type, level, beta):
    logps, old, ref, adv, mask = random_case()
    loss, metrics = policy_loss(
        logps, old, adv, mask, loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28,
        importance_sampling_level=level, beta=beta, ref_logps=ref, max_completion_length=9,
    )
    expected = loop_loss(logps.tolist(), old.tolist(), adv.tolist(), mask.tolist(), loss_type, 0.2, 0.28, level, beta,
                         ref.tolist(), 9)
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    if level == "token":  # per-token ratios are noisy enough to clip; sequence means of the noise are not
        assert 0 < metrics["clip_ratio/region"] < 1


def trl_loss(logps, old, ref, adv, mask, loss_type, level, beta, eps_lo, eps_hi, max_len):
    """trl's GRPOTrainer._compute_loss on a stub trainer whose model returns our log-probs."""
    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        top_entropy_quantile=1.0, aux_loss_enabled=False, off_policy_mask_threshold=None,
        importance_sampling_level=level, beta=beta, loss_type=loss_type, epsilon_low=eps_lo, epsilon_high=eps_hi,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        use_vllm=False, model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        max_completion_length=max_len, _entropy_bonus_enabled=False,
        accelerator=SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction: x,
                                    gather_for_metrics=lambda x: x),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    B, T = logps.shape
    inputs = {
        "prompt_ids": torch.zeros(B, 0, dtype=torch.long), "prompt_mask": torch.zeros(B, 0, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref, "num_items_in_batch": mask.sum(),
    }
    return GRPOTrainer._compute_loss(stub, None, inputs)


@pytest.mark.parametrize("loss_type,level,beta", CASES)
def test_policy_loss_and_gradient_match_trl(loss_type, level, beta):
    logps, old, ref, adv, mask = random_case(1)
    ours_in = logps.clone().requires_grad_(True)
    trl_in = logps.clone().requires_grad_(True)
    ours, _ = policy_loss(ours_in, old, adv, mask, loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28,
                          importance_sampling_level=level, beta=beta, ref_logps=ref, max_completion_length=9,
                          num_items_in_batch=mask.sum())
    theirs = trl_loss(trl_in, old, ref, adv, mask, loss_type, level, beta, 0.2, 0.28, 9)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_in.grad, trl_in.grad)


def test_on_policy_step_is_plain_policy_gradient():
    """num_iterations = 1: old = logps.detach(), the ratio is 1 and grad = -A * grad(logp) / tokens."""
    logps, _, _, adv, mask = random_case(2)
    x = logps.clone().requires_grad_(True)
    loss, metrics = policy_loss(x, x.detach(), adv, mask, loss_type="bnpo")
    loss.backward()
    expected = -adv.unsqueeze(1) * mask / mask.sum()
    torch.testing.assert_close(x.grad, expected)
    assert metrics["clip_ratio/region"] == 0 and metrics["ratio_mean"] == pytest.approx(1.0)


def test_registry_errors_list_valid_names():
    logps, old, _, adv, mask = random_case()
    with pytest.raises(KeyError, match="valid names: bnpo, dapo, dr_grpo, grpo"):
        policy_loss(logps, old, adv, mask, loss_type="ppo")
    with pytest.raises(ValueError, match="ref_logps"):
        policy_loss(logps, old, adv, mask, beta=0.1)
    assert set(LOSS_TYPES.names()) == {"grpo", "bnpo", "dr_grpo", "dapo"}
