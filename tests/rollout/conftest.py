"""Rollout fixtures on top of the suite's tiny policy."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture
def ending_policy(tiny_policy):
    """The tiny policy with an lm_head bias that makes <begin_of_image> likely (~5% a step), so that chains end
    at different lengths, as a trained model's do. Sampler and teacher-forced scoring both use this head."""
    base = tiny_policy.base
    old = base.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[tiny_policy.tokens.boi] = math.log(0.05 * old.out_features)
    base.lm_head = head
    return tiny_policy
