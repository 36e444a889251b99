"""Region-locked edits: tokens outside the edit boxes are kept, inside ones are resampled; box -> patch mapping."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_rig.chain import Box
from janus_rig.model.mixed import mixed_logprobs
from janus_rig.rollout import RolloutConfig, edit, patch_mask, sample, token_masks

PROMPTS = ["a red circle left of a blue square", "a triangle"]
CHAINS = [
    "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square.",
    "a <|obj_start|>triangle<|obj_end|> <|box_start|>(500,10),(700,210)<|box_end|>",
]
BOXES = [[Box(0, 0, 400, 400)], [Box(500, 500, 1000, 1000), Box(0, 875, 125, 1000)]]


def originals(policy, config):
    return sample(policy, PROMPTS, RolloutConfig(group_size=1, cfg_weight=config.cfg_weight), chains=CHAINS, seed=0)


def test_outside_tokens_kept_inside_tokens_sampled(tiny_policy):
    config = RolloutConfig(group_size=8, cfg_weight=3.0, image_temperature=1.2)
    original = originals(tiny_policy, config).image_tokens  # (2, N)
    ro = edit(tiny_policy, PROMPTS, CHAINS, original, BOXES, config, seed=1)
    inside = token_masks(BOXES, tiny_policy.grid[0]).repeat_interleave(8, 0)  # (16, N)
    before = original.repeat_interleave(8, 0)  # (16, N)
    assert torch.equal(ro.image_tokens[~inside], before[~inside])  # every outside token, every row
    changed = (ro.image_tokens != before) & inside
    assert changed.any(0)[inside[0]].float().mean() > 0.9  # over 8 draws nearly every inside token moved
    assert ro.chains == [c for c in CHAINS for _ in range(8)] and ro.prompt_index.tolist() == [0] * 8 + [1] * 8
    # Log-probs and completion mask only where sampled.
    sampled = torch.zeros_like(ro.completion_mask)
    sampled[ro.image_mask] = inside.flatten()
    assert torch.equal(ro.completion_mask, sampled)
    assert (ro.logprobs[~sampled] == 0).all() and (ro.cond_logprobs[~sampled] == 0).all()


def test_edit_logprobs_equal_teacher_forced(tiny_policy):
    config = RolloutConfig(group_size=2, cfg_weight=3.0, image_temperature=0.8)
    original = originals(tiny_policy, config).image_tokens
    ro = edit(tiny_policy, PROMPTS, CHAINS, original, BOXES, config, seed=2)
    done = ro.completion_mask
    with torch.no_grad():
        guided = mixed_logprobs(tiny_policy.model, ro.input_ids, ro.image_mask, ro.attention_mask, done,
                                image_temperature=0.8, cfg_weight=3.0, uncond_input_ids=ro.uncond_input_ids)
        cond = mixed_logprobs(tiny_policy.model, ro.input_ids, ro.image_mask, ro.attention_mask, done,
                              image_temperature=0.8)
    torch.testing.assert_close(ro.logprobs[done], guided.logprobs[done], atol=1e-4, rtol=0)
    torch.testing.assert_close(ro.cond_logprobs[done], cond.logprobs[done], atol=1e-4, rtol=0)


def test_no_boxes_returns_the_original(tiny_policy):
    config = RolloutConfig(group_size=3)
    original = originals(tiny_policy, config).image_tokens
    ro = edit(tiny_policy, PROMPTS, CHAINS, original, [[], []], config, seed=3)
    assert torch.equal(ro.image_tokens, original.repeat_interleave(3, 0))
    assert not ro.completion_mask.any() and (ro.logprobs == 0).all()


def test_whole_image_box_is_a_fresh_sample(tiny_policy):
    config = RolloutConfig(group_size=1)
    original = originals(tiny_policy, config).image_tokens
    everything = [[Box(0, 0, 1000, 1000)]] * 2
    ro = edit(tiny_policy, PROMPTS, CHAINS, original, everything, config, seed=4)
    fresh = sample(tiny_policy, PROMPTS, config, chains=CHAINS, seed=4)
    assert torch.equal(ro.image_tokens, fresh.image_tokens) and torch.equal(ro.completion_mask, fresh.completion_mask)


def test_edit_checks_its_inputs(tiny_policy):
    config = RolloutConfig(group_size=1)
    original = originals(tiny_policy, config).image_tokens
    with pytest.raises(ValueError, match="one chain, one box list and one image per prompt"):
        edit(tiny_policy, PROMPTS, CHAINS[:1], original, BOXES, config)
    with pytest.raises(ValueError, match="codes per image"):
        edit(tiny_policy, PROMPTS, CHAINS, original[:, :5], BOXES, config)


# --- boxes -> patches ------------------------------------------------------------------------------------------
def test_patch_mask_examples():
    top_left = [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert patch_mask([Box(0, 0, 500, 250)], 4).int().tolist() == top_left
    assert patch_mask([Box(0, 0, 1000, 1000)], 8).all()
    assert not patch_mask([], 8).any()
    # A box ending exactly on a patch edge does not reach the next patch; one unit past it does.
    assert patch_mask([Box(0, 0, 125, 125)], 8).sum() == 1
    assert patch_mask([Box(0, 0, 126, 125)], 8).sum() == 2
    # A thin box inside one patch still marks it.
    assert patch_mask([Box(300, 300, 301, 301)], 8).nonzero().tolist() == [[2, 2]]
    # Token order is raster: row-major over the (g, g) grid.
    assert token_masks([[Box(875, 0, 1000, 125)]], 8)[0].nonzero().squeeze(-1).tolist() == [7]


@settings(max_examples=100, deadline=None)
@given(
    x=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True),
    y=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True),
    grid=st.sampled_from([1, 3, 7, 8, 24]),
)
def test_patch_inside_iff_positive_overlap(x, y, grid):
    box = Box(min(x), min(y), max(x), max(y))
    edges = torch.arange(grid + 1, dtype=torch.float64) * 1000 / grid  # (g + 1,) patch borders
    overlap_x = (edges[1:].clamp(max=box.x2) - edges[:-1].clamp(min=box.x1)) > 1e-9  # (g,) per column
    overlap_y = (edges[1:].clamp(max=box.y2) - edges[:-1].clamp(min=box.y1)) > 1e-9  # (g,) per row
    assert torch.equal(patch_mask([box], grid), overlap_y[:, None] & overlap_x[None, :])
