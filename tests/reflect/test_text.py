"""Role text sampling after an understanding context: stops, banned tokens, seeding, log-probs = teacher-forced."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from janus_rig.model.mixed import mixed_logprobs
from janus_rig.model.tokens import role_token_ids
from janus_rig.chain.roles import REFLECT_END
from janus_rig.reflect.prompts import encode_checker
from janus_rig.reflect.text import TextConfig, sample_text

PROMPTS = ["a red circle left of a blue square", "a triangle", "two yellow triangles and a circle right of the square"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def inputs(policy):
    contexts = [encode_checker(policy, p, "A <|obj_start|>red circle<|obj_end|> <|box_start|>(1,2),(30,40)<|box_end|>.")
                for p in PROMPTS]
    images = [Image.new("RGB", (64, 64), (60 * i, 200, 30)) for i in range(len(PROMPTS))]
    return contexts, policy.pixel_values(images)


def run(policy, stops, seed=0, **config):
    contexts, pixels = inputs(policy)
    g = torch.Generator().manual_seed(seed)
    return sample_text(policy, contexts, pixels, stops, TextConfig(**config), g)


def test_log_probs_equal_teacher_forced_with_rows_leaving_early(tiny_policy):
    # Many stop ids: rows stop at different steps and leave the batch (the cache's select path).
    stops = list(range(40, 400))
    out = run(tiny_policy, stops, max_new_tokens=12, temperature=0.7, top_k=50)
    lengths = [len(c) for c in out.completion_ids]
    assert len(set(lengths)) > 1 and out.stopped.any()
    image_mask = torch.zeros_like(out.input_ids, dtype=torch.bool)
    with torch.no_grad():
        lp = mixed_logprobs(tiny_policy.model, out.input_ids, image_mask, out.attention_mask, out.completion_mask,
                            pixel_values=out.pixel_values, text_temperature=0.7)
    done = out.completion_mask
    assert int(done.sum()) == sum(lengths)
    torch.testing.assert_close(out.logprobs[done], lp.logprobs[done], atol=1e-4, rtol=0)
    assert (out.logprobs[~done] == 0).all()
    # The image matters: other pixels, other log-probs for the same tokens.
    with torch.no_grad():
        other = mixed_logprobs(tiny_policy.model, out.input_ids, image_mask, out.attention_mask, done,
                               pixel_values=-out.pixel_values, text_temperature=0.7)
    assert not torch.allclose(other.logprobs[done], lp.logprobs[done], atol=1e-3)


def test_stops_bans_and_seeding(tiny_policy):
    stop = role_token_ids(tiny_policy.tokenizer)[REFLECT_END]
    out = run(tiny_policy, [stop], max_new_tokens=30)
    t = tiny_policy.tokens
    for ids, stopped in zip(out.completion_ids, out.stopped.tolist()):
        assert (ids[-1] == stop) == stopped and stop not in ids[:-1]
        assert len(ids) == 30 or stopped
        assert not {t.bos, t.pad, t.image, t.boi, t.eoi, t.eos} & set(ids)
        assert max(ids) < len(tiny_policy.tokenizer)
    again = run(tiny_policy, [stop], max_new_tokens=30)
    assert again.completion_ids == out.completion_ids and again.texts == out.texts
    assert run(tiny_policy, [stop], seed=1, max_new_tokens=30).completion_ids != out.completion_ids


def test_config_is_checked():
    with pytest.raises(ValueError, match="max_new_tokens"):
        TextConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        TextConfig(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        TextConfig(top_p=1.5)


def test_bias_after_a_token_steers_the_next_one_and_nothing_else(tiny_policy):
    # Greedy text; then a huge bias on token Y right after token X: every X is followed by Y, the text up to the
    # first X is unchanged, and the log-probs are those of the biased distribution (Y drawn with log-prob ~0).
    contexts, pixels = inputs(tiny_policy)
    plain = sample_text(tiny_policy, contexts, pixels, [], TextConfig(max_new_tokens=10, top_k=1),
                        torch.Generator().manual_seed(0))
    after = plain.completion_ids[0][2]
    target = 500 if after != 500 else 501
    biased = sample_text(tiny_policy, contexts, pixels, [], TextConfig(max_new_tokens=10, top_k=1),
                         torch.Generator().manual_seed(0), bias_after=[(after, target, 1e4)])
    for row, (old, new) in enumerate(zip(plain.completion_ids, biased.completion_ids)):
        first = old.index(after) if after in old else len(old)
        assert new[: first + 1] == old[: first + 1]
        for i, token in enumerate(new[:-1]):
            if token == after:
                assert new[i + 1] == target
    written = biased.completion_ids[0]
    at = written.index(after) + 1  # the first biased draw in row 0
    assert written[at] == target and len(written) == 10
    assert abs(float(biased.logprobs[0, -10 + at])) < 1e-3  # (R, T): row 0's completion fills its last 10 columns
