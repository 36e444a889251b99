"""Keyed draws: a rollout split over calls (prompts) or processes (samples of a prompt) equals the whole one."""

from __future__ import annotations

import pytest
import torch

from janus_rig.chain import Box
from janus_rig.rollout import Rollout, RolloutConfig, edit, sample

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle left of a blue square", "a triangle", "two yellow triangles and a circle right of the square",
           "a green triangle sits above the white circle"]
CONFIG = RolloutConfig(group_size=4, max_chain_tokens=10, cfg_weight=3.0)


def rows(ro: Rollout) -> list[dict]:
    """Each row as its own tokens and log-probs, free of the batch's padding."""
    out = []
    for r in range(ro.num_rows):
        real = ro.attention_mask[r].bool()
        done = ro.completion_mask[r]
        out.append(dict(ids=ro.input_ids[r][real].tolist(), chain=ro.chains[r], truncated=bool(ro.truncated[r]),
                        sampled=done[real].tolist(), logprobs=ro.logprobs[r][done], cond=ro.cond_logprobs[r][done]))
    return out


def assert_same_rows(got: list[dict], want: list[dict]):
    """Tokens exactly; log-probs to fp32 noise (another batch shape sums in another order)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g["ids"], g["chain"], g["truncated"], g["sampled"]) == (w["ids"], w["chain"], w["truncated"],
                                                                         w["sampled"])
        torch.testing.assert_close(g["logprobs"], w["logprobs"], atol=1e-5, rtol=0)
        torch.testing.assert_close(g["cond"], w["cond"], atol=1e-5, rtol=0)


def test_prompts_split_over_calls(ending_policy):
    whole = rows(sample(ending_policy, PROMPTS, CONFIG, seed=7))
    first = rows(sample(ending_policy, PROMPTS[:2], CONFIG, seed=7))
    second = rows(sample(ending_policy, PROMPTS[2:], CONFIG, seed=7, prompt_offset=2))
    assert len({len(r["ids"]) for r in whole}) > 2  # chains of different lengths: the batches really differ
    assert_same_rows(first + second, whole)
    # Without the offset the second half draws what the first prompts drew: a different rollout.
    again = rows(sample(ending_policy, PROMPTS[2:], CONFIG, seed=7))
    assert [r["ids"] for r in again] != [r["ids"] for r in second]


def test_samples_split_over_processes(ending_policy):
    """GRPO's layout: each of 2 processes samples 2 of every prompt's 4, with sample_offset = rank * 2."""
    whole = rows(sample(ending_policy, PROMPTS[:2], CONFIG, seed=3))  # prompt-major: (P, G)
    half = RolloutConfig(**{**vars(CONFIG), "group_size": 2})
    ranks = [rows(sample(ending_policy, PROMPTS[:2], half, seed=3, sample_offset=2 * k)) for k in range(2)]
    regrouped = [ranks[k][2 * p + j] for p in range(2) for k in range(2) for j in range(2)]  # (P, W, Gl)
    assert_same_rows(regrouped, whole)


def test_edits_split_over_calls(tiny_policy):
    chains = ["a <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|>",
              "a <|obj_start|>triangle<|obj_end|> <|box_start|>(500,10),(700,210)<|box_end|>"]
    config = RolloutConfig(group_size=2, cfg_weight=2.0)
    original = sample(tiny_policy, PROMPTS[:2], RolloutConfig(group_size=1, cfg_weight=2.0), chains=chains, seed=0)
    boxes = [[Box(0, 0, 500, 500)], [Box(250, 250, 1000, 1000)]]
    whole = rows(edit(tiny_policy, PROMPTS[:2], chains, original.image_tokens, boxes, config, seed=1))
    parts = [rows(edit(tiny_policy, PROMPTS[i : i + 1], chains[i : i + 1], original.image_tokens[i : i + 1],
                       boxes[i : i + 1], config, seed=1, prompt_offset=i)) for i in range(2)]
    assert_same_rows(parts[0] + parts[1], whole)


def test_offsets_must_be_global_indices(tiny_policy):
    with pytest.raises(ValueError, match="global indices"):
        sample(tiny_policy, PROMPTS[:1], RolloutConfig(group_size=1, max_chain_tokens=2), seed=0, prompt_offset=-1)
