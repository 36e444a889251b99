"""`score_text`, what the scripted roles of these tests stand on: the TextRollout of given texts equals the one
`sample_text` returned when it wrote them (ids, masks, log-probs, stops)."""

from __future__ import annotations

import torch
from PIL import Image

from janus_rig.reflect.prompts import encode_checker
from janus_rig.reflect.text import TextConfig, sample_text, score_text

PROMPTS = ["a red circle left of a blue square", "a triangle", "two yellow triangles and a circle right of the square"]


def test_score_text_equals_what_sample_text_wrote(tiny_policy):
    torch.set_num_threads(1)
    contexts = [encode_checker(tiny_policy, p, "A plan.") for p in PROMPTS]
    pixels = tiny_policy.pixel_values([Image.new("RGB", (64, 64), (70 * i, 200, 30)) for i in range(3)])
    stops = list(range(40, 400))  # rows stop at different steps; some may run to the limit
    out = sample_text(tiny_policy, contexts, pixels, stops, TextConfig(max_new_tokens=10, temperature=0.7),
                      torch.Generator().manual_seed(0))
    again = score_text(tiny_policy, contexts, out.completion_ids, pixels, stops, temperature=0.7)
    assert torch.equal(again.input_ids, out.input_ids) and torch.equal(again.completion_mask, out.completion_mask)
    assert torch.equal(again.attention_mask, out.attention_mask) and again.texts == out.texts
    assert torch.equal(again.stopped, out.stopped) and again.completion_ids == out.completion_ids
    torch.testing.assert_close(again.logprobs, out.logprobs, atol=1e-4, rtol=0)
    hotter = score_text(tiny_policy, contexts, out.completion_ids, pixels, stops, temperature=2.0)
    assert not torch.allclose(hotter.logprobs[out.completion_mask], out.logprobs[out.completion_mask], atol=1e-3)
