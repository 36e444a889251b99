"""GRPO's math as pure functions: group advantages, the clipped surrogate per loss type, k3 KL.

Names and formulas follow trl's GRPOTrainer (`scale_rewards`, `loss_type`, `epsilon`/`epsilon_high`,
`importance_sampling_level`, `beta`), so a trl user reads them without a glossary. Every function returns
`(value, metrics)`; the trainer only orchestrates. tests/grpo/test_algos.py checks each against a plain-loop version
and the loss against trl's own `_compute_loss`.

Shapes: N samples = num_groups * G, prompt-major (a group's G samples are contiguous); T completion positions.
"""

from __future__ import annotations

from typing import Callable

import torch

from janus_rig.registry import Registry

SCALE_REWARDS = ("group", "batch", "none")
ADVANTAGE_EPS = 1e-4  # trl's: keeps zero-variance groups at advantage 0 instead of NaN


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale_rewards: str = "group",
    valid: torch.Tensor | None = None,
    std_floor: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(N,) rewards -> (N,) advantages: reward minus its group's mean, divided by a std (+1e-4) per `scale_rewards`.

    `std_floor` (ours; 0 = trl's behaviour) divides by max(std, std_floor) instead: a group whose rewards differ by
    a thousandth (sparse product rewards that are ~0 everywhere) then gets advantages of a thousandth, not +-1.

    `valid` (N,) bool marks samples whose reward could be computed; invalid ones get advantage 0 and take no part
    in their group's statistics. A group whose rewards are all equal gets advantage 0 (no NaN).
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    n = rewards.numel()
    if n % group_size:
        raise ValueError(f"{n} rewards do not split into groups of {group_size}")
    valid = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid.bool()
    r = torch.where(valid, rewards, torch.zeros_like(rewards)).view(-1, group_size)  # (M, G)
    v = valid.view(-1, group_size).to(r.dtype)  # (M, G)
    count = v.sum(-1, keepdim=True)  # (M, 1)
    mean = (r * v).sum(-1, keepdim=True) / count.clamp(min=1)  # (M, 1)
    # Unbiased std, as torch.std (trl's), over the valid members; 0 for groups of fewer than two.
    var = (((r - mean) ** 2) * v).sum(-1, keepdim=True) / (count - 1).clamp(min=1)  # (M, 1)
    std = var.sqrt()  # (M, 1)
    centred = (r - mean) * v  # (M, G)
    if std_floor < 0:
        raise ValueError(f"std_floor must be >= 0, got {std_floor}")
    if scale_rewards == "group":
        adv = centred / (std.clamp(min=std_floor) + ADVANTAGE_EPS)
    elif scale_rewards == "batch":
        flat = rewards[valid]
        batch_std = flat.std() if flat.numel() > 1 else rewards.new_zeros(())
        adv = centred / (batch_std.clamp(min=std_floor) + ADVANTAGE_EPS)
    else:
        adv = centred
    adv = adv.reshape(n)  # (N,)
    zero_std = (std.squeeze(-1) < 1e-6).float()  # (M,)
    metrics = {
        "reward_mean": float((rewards * valid).sum() / valid.sum().clamp(min=1)),
        "reward_std_in_group": float(std.mean()),
        "frac_zero_std_groups": float(zero_std.mean()),
        "frac_invalid_rewards": float(1 - valid.float().mean()),
    }
    return adv, metrics


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: exp(ref - logp) - (ref - logp) - 1 >= 0. (B, T) -> (B, T)."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def importance_log_weights(
    logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    """log(pi / pi_old) per token (B, T), or its masked mean per sequence (GSPO) broadcast as (B, 1)."""
    log_ratio = logps - old_logps  # (B, T)
    if level == "token":
        return log_ratio
    if level == "sequence":
        return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    raise ValueError(f"importance_sampling_level must be 'token' or 'sequence', got {level!r}")


# --- aggregation of per-token losses, one per loss type -----------------------------------------------------------
Aggregator = Callable[..., torch.Tensor]
LOSS_TYPES: Registry = Registry("GRPO loss type")


@LOSS_TYPES.register("grpo")
def _grpo(per_token: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    """Mean over each sequence's tokens, then over sequences (the original GRPO; favours short completions)."""
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


@LOSS_TYPES.register("bnpo")
def _bnpo(per_token: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    """Mean over all tokens of the local batch."""
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


@LOSS_TYPES.register("dr_grpo")
def _dr_grpo(per_token: torch.Tensor, mask: torch.Tensor, max_completion_length: int | None = None, **_) -> torch.Tensor:
    """Sum over tokens divided by a constant (batch size x max completion length): no length bias (Dr. GRPO)."""
    if max_completion_length is None:
        raise ValueError("loss_type 'dr_grpo' needs max_completion_length")
    return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)


@LOSS_TYPES.register("dapo")
def _dapo(per_token: torch.Tensor, mask: torch.Tensor, num_items_in_batch: float | None = None, **_) -> torch.Tensor:
    """Sum over tokens divided by the token count of the whole (global) batch (DAPO)."""
    total = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch, dtype=per_token.dtype)
    return (per_token * mask).sum() / total.clamp(min=1.0)


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "dapo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    importance_sampling_level: str = "token",
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,
    max_completion_length: int | None = None,
    num_items_in_batch: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate (+ beta * k3 KL) aggregated per `loss_type`.

    logps/old_logps/ref_logps (B, T) of the completion tokens, advantages (B,), mask (B, T) of the tokens optimised
    (chain and/or image tokens). With one on-policy step old_logps == logps.detach(): the ratio is 1 and the
    gradient is the plain policy gradient A * grad log pi.
    """
    mask = mask.to(logps.dtype)
    aggregate = LOSS_TYPES.get(loss_type)
    log_w = importance_log_weights(logps, old_logps, mask, importance_sampling_level)  # (B, T) or (B, 1)
    coef_1 = torch.exp(log_w)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages.unsqueeze(1)  # (B, 1)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)  # (B, T) or (B, 1), broadcast below
    per_token = per_token.expand_as(logps)  # (B, T)
    kl = None
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps")
        kl = k3_kl(logps, ref_logps)  # (B, T)
        per_token = per_token + beta * kl
    loss = aggregate(per_token, mask, max_completion_length=max_completion_length, num_items_in_batch=num_items_in_batch)

    with torch.no_grad():
        ratio = coef_1.expand_as(logps)
        low = ((ratio < 1 - epsilon_low) & (adv < 0)).to(mask.dtype)  # (B, T) clipped below
        high = ((ratio > 1 + epsilon_high) & (adv > 0)).to(mask.dtype)  # (B, T) clipped above
        denom = mask.sum().clamp(min=1.0)
        metrics = {
            "clip_ratio/low": float((low * mask).sum() / denom),
            "clip_ratio/high": float((high * mask).sum() / denom),
            "clip_ratio/region": float(((low + high) * mask).sum() / denom),
            "ratio_mean": float((ratio * mask).sum() / denom),
        }
        if kl is not None:
            metrics["kl"] = float((kl * mask).sum() / denom)
    return loss, metrics
