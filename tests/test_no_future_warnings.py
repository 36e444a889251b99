"""No FutureWarning from our own calls into transformers. Our rollout drives transformers' decoder layers itself, so
a renamed keyword (5.24: the layers' `past_key_values` became `cache`) reaches us as a FutureWarning first and as a
silently dropped argument later; here every path that calls the layers runs with FutureWarning as an error."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from janus_rig.model.mixed import mixed_logprobs
from janus_rig.model.policy import JanusPolicy
from janus_rig.reflect.prompts import encode_checker
from janus_rig.reflect.text import TextConfig, sample_text
from janus_rig.rollout import RolloutConfig, sample

PROMPTS = ["a red circle left of a blue square", "a triangle"]  # different lengths: padded rows

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def future_warnings_fail():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        yield


@pytest.mark.usefixtures("future_warnings_fail")
def test_load_rollout_and_teacher_forced_forward(tiny_policy_dir):
    policy = JanusPolicy.load(tiny_policy_dir, attn_implementation="sdpa")
    config = RolloutConfig(group_size=2, max_chain_tokens=4, cfg_weight=2.0)
    rollout = sample(policy, PROMPTS, config, seed=0)  # our Decoder over transformers' layers, both phases
    with torch.no_grad():  # what the trainers score the rollout with: transformers' LlamaModel.forward
        scored = mixed_logprobs(policy.model, rollout.input_ids, rollout.image_mask, rollout.attention_mask,
                                rollout.completion_mask, cfg_weight=config.cfg_weight,
                                uncond_input_ids=rollout.uncond_input_ids)
    done = rollout.completion_mask  # (R, T)
    torch.testing.assert_close(rollout.logprobs[done], scored.logprobs[done], atol=1e-4, rtol=0)  # the cache was used


@pytest.mark.usefixtures("future_warnings_fail")
def test_role_text_sampling(tiny_policy):
    contexts = [encode_checker(tiny_policy, p, "A <|obj_start|>red circle<|obj_end|>.") for p in PROMPTS]
    pixels = tiny_policy.pixel_values([Image.new("RGB", (64, 64), (200, 30 * i, 30)) for i in range(len(PROMPTS))])
    out = sample_text(tiny_policy, contexts, pixels, [tiny_policy.tokens.eos], TextConfig(max_new_tokens=4),
                      torch.Generator().manual_seed(0))
    assert out.completion_mask.any()
