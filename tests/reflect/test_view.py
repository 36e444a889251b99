"""The roles' `image_view`: an understanding context shows its image as vision features ("vision") or as the image's
own VQ codes through the generation embeddings ("codes"). Placement, persistence, sampling and scoring, the loop
showing the checker the current image's codes, and what a Reflection-GRPO batch carries."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from janus_rig.model.mixed import mixed_logprobs
from janus_rig.model.policy import ROLES_FILE, JanusPolicy
from janus_rig.model.prompts import place_codes
from janus_rig.reflect.loop import ReflectConfig, reflect
from janus_rig.reflect.prompts import encode_checker
from janus_rig.reflect.text import TextConfig, sample_text, score_text
from janus_rig.rollout import RolloutConfig
from tests.reflect.scripted import Scripted, edit, reflection

PROMPTS = ["a red circle left of a blue square", "a triangle", "two yellow triangles and a circle right of the square"]
FAST = RolloutConfig(group_size=2, max_chain_tokens=6, cfg_weight=3.0)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def codes_policy(policy):
    policy.image_view = "codes"
    return policy


def test_place_codes_writes_the_run_of_placeholders():
    ids, mask = place_codes([1, 2, 9, 9, 9, 3], 9, [40, 41, 42])
    assert ids == [1, 2, 40, 41, 42, 3] and mask == [False, False, True, True, True, False]
    with pytest.raises(ValueError, match="3 <image_placeholder> tokens but the image 2 codes"):
        place_codes([9, 9, 9], 9, [1, 2])


def test_image_view_is_saved_with_the_model_and_read_back(tiny_policy, tmp_path):
    assert tiny_policy.image_view == "vision"  # no roles.json: any stock Janus reads pixels
    codes_policy(tiny_policy).save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / ROLES_FILE).read_text()) == {"image_view": "codes"}
    assert JanusPolicy.load(tmp_path / "m").image_view == "codes"
    (tmp_path / "m" / ROLES_FILE).write_text('{"image_view": "pixels"}')
    with pytest.raises(ValueError, match=r"roles.json: image_view must be one of vision, codes, got 'pixels'"):
        JanusPolicy.load(tmp_path / "m")
    (tmp_path / "m" / ROLES_FILE).write_text("[1]")
    with pytest.raises(ValueError, match="roles.json: not a JSON object"):
        JanusPolicy.load(tmp_path / "m")


def test_show_images_in_each_view(tiny_policy):
    contexts = [encode_checker(tiny_policy, p, "A plan.") for p in PROMPTS[:2]]
    images = [Image.new("RGB", (64, 64), (90 * i, 20, 30)) for i in range(2)]
    N = tiny_policy.num_image_tokens
    codes = torch.arange(2 * N).reshape(2, N) % tiny_policy.codebook_size  # (2, N)
    ids, masks, pixels = tiny_policy.show_images(contexts, images, codes)
    assert ids == contexts and not any(map(any, masks)) and pixels.shape[0] == 2
    ids, masks, pixels = codes_policy(tiny_policy).show_images(contexts, images, codes)
    assert pixels is None and [sum(m) for m in masks] == [N, N]
    for row, mask, context, c in zip(ids, masks, contexts, codes.tolist()):
        assert [i for i, m in zip(row, mask) if m] == c
        assert [i for i, m in zip(row, mask) if not m] == [i for i in context if i != tiny_policy.tokens.image]
    with pytest.raises(ValueError, match="image_view 'codes' reads the images' VQ codes: pass codes"):
        tiny_policy.show_images(contexts, images)


def test_codes_view_sampling_is_scored_teacher_forced_and_reads_the_codes(tiny_policy):
    policy = codes_policy(tiny_policy)
    contexts = [encode_checker(policy, p, "A plan.") for p in PROMPTS]
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, policy.codebook_size, (3, policy.num_image_tokens), generator=g)  # (3, N)
    ids, masks, pixels = policy.show_images(contexts, None, codes)
    stops = list(range(40, 400))  # rows stop at different steps
    out = sample_text(policy, ids, pixels, stops, TextConfig(max_new_tokens=10, temperature=0.7),
                      torch.Generator().manual_seed(0), image_masks=masks)
    assert out.pixel_values is None and out.image_mask.sum(-1).tolist() == [policy.num_image_tokens] * 3
    assert not (out.image_mask & out.completion_mask).any()
    done = out.completion_mask
    with torch.no_grad():
        lp = mixed_logprobs(policy.model, out.input_ids, out.image_mask, out.attention_mask, done,
                            text_temperature=0.7)
    torch.testing.assert_close(out.logprobs[done], lp.logprobs[done], atol=1e-4, rtol=0)
    again = score_text(policy, ids, out.completion_ids, None, stops, temperature=0.7, image_masks=masks)
    assert torch.equal(again.image_mask, out.image_mask) and torch.equal(again.input_ids, out.input_ids)
    torch.testing.assert_close(again.logprobs, out.logprobs, atol=1e-4, rtol=0)
    # The codes matter: other codes, other log-probs for the same written tokens.
    other_ids = out.input_ids.masked_fill(out.image_mask, 0)
    with torch.no_grad():
        other = mixed_logprobs(policy.model, other_ids, out.image_mask, out.attention_mask, done,
                               text_temperature=0.7)
    assert not torch.allclose(other.logprobs[done], lp.logprobs[done], atol=1e-3)


def test_loop_shows_the_checker_the_current_codes(tiny_policy):
    policy = codes_policy(tiny_policy)
    checker = Scripted(lambda k, i: reflection("edit"))
    actor = Scripted(lambda k, i: edit())
    cfg = ReflectConfig(rounds=1, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8))
    result = reflect(policy, PROMPTS[:2], cfg, FAST, seed=1, checker=checker, actor=actor)
    assert torch.equal(checker.calls[0]["codes"], result.initial.image_tokens)
    assert torch.equal(actor.calls[0]["codes"], result.initial.image_tokens)
    edited = torch.stack([row[0].edited_tokens for row in result.traces])  # (4, N)
    assert torch.equal(checker.calls[1]["codes"], edited) and not torch.equal(edited, result.initial.image_tokens)
    # The real roles run in the codes view too (a random model: unreadable reflections, counted).
    result = reflect(policy, PROMPTS[:2], cfg, FAST, seed=0)
    assert result.counts["checks"] == 4 and result.rounds[0].checker.image_mask.any(-1).all()
    assert result.rounds[0].checker.pixel_values is None
