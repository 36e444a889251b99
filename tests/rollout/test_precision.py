"""Mixed-precision rollouts: `dtype: bf16` on fp32 weights computes like a bf16-autocast teacher-forced forward."""

from __future__ import annotations

import pytest
import torch

from janus_rig.model.mixed import mixed_logprobs
from janus_rig.rollout import RolloutConfig, sample
from janus_rig.rollout.cache import KVCache

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle left of a blue square", "a triangle"]


def teacher_forced(policy, ro, config, autocast: bool) -> torch.Tensor:
    """The GRPO trainer's scoring (`mixed_logprobs`, CFG-guided), under bf16 autocast or in fp32. -> (R, T)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return mixed_logprobs(policy.model, ro.input_ids, ro.image_mask, ro.attention_mask, ro.completion_mask,
                              text_temperature=config.text_temperature, image_temperature=config.image_temperature,
                              cfg_weight=config.cfg_weight, uncond_input_ids=ro.uncond_input_ids).logprobs


def test_bf16_rollout_of_fp32_weights(ending_policy, monkeypatch):
    allocated = []
    allocate = KVCache.allocate.__func__

    def spy(cls, *args, **kwargs):
        cache = allocate(cls, *args, **kwargs)
        allocated.extend(cache.keys + cache.values)
        return cache

    monkeypatch.setattr(KVCache, "allocate", classmethod(spy))
    config = RolloutConfig(group_size=3, max_chain_tokens=12, text_temperature=0.7, cfg_weight=2.0,
                           image_temperature=1.3, dtype="bf16")
    assert ending_policy.base.lm_head.weight.dtype == torch.float32
    ro = sample(ending_policy, PROMPTS, config, seed=1)
    assert allocated and {t.dtype for t in allocated} == {torch.bfloat16}  # every KV cache, both phases
    assert ro.logprobs.dtype == ro.cond_logprobs.dtype == torch.float32
    done = ro.completion_mask
    assert (done & ~ro.image_mask).any() and (done & ro.image_mask).any()
    # Tolerance: the rollout (a bf16 cache, attention split into prefix and own columns) and the teacher-forced
    # forward (one SDPA) round at different places, so a bf16 logit may land one ulp apart: 2^-7 of its size, 0.031
    # for this head's <begin_of_image> logit (~4), 0.045 in the log-prob after the text temperature 0.7. The image
    # logits of this random model are smaller (CFG with w = 2 scales their differences by up to 2w - 1 = 3; they stay
    # under 3e-3). So atol 0.05 per token, and most tokens agree far closer: mean under 2e-3 (fp32 against fp32
    # agrees to 1e-4, test_sampler).
    bf16 = teacher_forced(ending_policy, ro, config, autocast=True)
    torch.testing.assert_close(ro.logprobs[done], bf16[done], atol=5e-2, rtol=0)
    assert (ro.logprobs[done] - bf16[done]).abs().mean() < 2e-3
    # And the rollout really ran in bf16: fp32 scoring of the same tokens is off by more than fp32 noise.
    fp32 = teacher_forced(ending_policy, ro, config, autocast=False)
    assert (ro.logprobs[done] - fp32[done]).abs().max() > 1e-3


def test_dtype_setting():
    assert RolloutConfig().compute_dtype(torch.bfloat16) == torch.bfloat16  # auto: the weights'
    assert RolloutConfig(dtype="bf16").compute_dtype(torch.float32) == torch.bfloat16
    with pytest.raises(ValueError, match="autocast only lowers"):
        RolloutConfig(dtype="fp32").compute_dtype(torch.bfloat16)
    with pytest.raises(ValueError, match="valid: auto, bf16, fp16, fp32"):
        RolloutConfig(dtype="half")
