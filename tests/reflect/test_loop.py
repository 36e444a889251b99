"""The Generate-Reflect-Edit loop on the tiny random model: K rounds, malformed output counted, and every edit keeps
every image token outside its edit boxes (asserted on the token grids)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from janus_rig.reflect.loop import ReflectConfig, reflect
from janus_rig.reflect.text import TextConfig
from janus_rig.rollout import RolloutConfig, token_masks
from tests.reflect.scripted import EDIT_BOXES, PLAN, Scripted, edit, reflection

PROMPTS = ["a red circle left of a blue square", "a triangle"]
FAST = RolloutConfig(group_size=2, max_chain_tokens=6, cfg_weight=3.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def config(rounds=2, tokens=24):
    return ReflectConfig(rounds=rounds, checker=TextConfig(max_new_tokens=tokens),
                         actor=TextConfig(max_new_tokens=tokens))


def assert_context_kept(result, grid):
    edits = 0
    for row in result.traces:
        for k, t in enumerate(row):
            if t.status != "edited":
                assert t.edited_tokens is None
                continue
            edits += 1
            inside = token_masks([[o.box for o in t.edit_boxes]], grid)[0]  # (N,)
            assert torch.equal(t.edited_tokens[~inside], t.image_tokens[~inside])  # 100% of outside tokens
            assert row[k + 1].image_tokens.equal(t.edited_tokens) and row[k + 1].plan == t.revised_chain
    return edits


def test_random_model_runs_and_counts_malformed_output(tiny_policy):
    result = reflect(tiny_policy, PROMPTS, config(), FAST, seed=0)
    c = result.counts
    assert c["rows"] == 4 and len(result.traces) == 4 and result.final_tokens.shape == (4, tiny_policy.num_image_tokens)
    assert c["checks"] >= 4 and c["malformed_reflection"] + c["keep"] + c["edited"] + c["malformed_edit"] + \
        c["out_of_rounds"] == c["checks"]
    # A random model writes no readable reflection: each is counted, treated as keep, and the image is left alone.
    assert c["malformed_reflection"] == 4 and c["reflection/missing_decision"] == 4 and c["edits"] == 0
    assert torch.equal(result.final_tokens, result.initial.image_tokens)
    assert [t.status for row in result.traces for t in row] == ["malformed_reflection"] * 4


def test_k_rounds_of_edits_keep_the_context(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    actor = Scripted(lambda k, i: edit())
    result = reflect(tiny_policy, PROMPTS, config(rounds=2), FAST, seed=1, checker=checker, actor=actor)
    c = result.counts
    # K = 2: two edits per row, then one more check (round 2) that still says edit: out of rounds.
    assert len(checker.calls) == 3 and len(actor.calls) == 2 and len(result.rounds) == 3
    assert c["edits"] == 8 and c["out_of_rounds"] == 4 and c["checks"] == 12 and c["context_changed"] == 0
    assert [[t.status for t in row] for row in result.traces] == [["edited", "edited", "out_of_rounds"]] * 4
    assert assert_context_kept(result, tiny_policy.grid[0]) == 8
    # The checker saw the edited image and the revised plan; the edits resampled the inside tokens.
    assert checker.calls[1]["plans"] == [PLAN] * 4
    inside = token_masks([[o.box for o in result.traces[0][0].edit_boxes]], tiny_policy.grid[0])[0]
    assert (result.final_tokens[:, inside] != result.initial.image_tokens[:, inside]).any()
    assert len(list(result.edits())) == 8
    assert result.rounds[0].editor.image_tokens.shape == (4, tiny_policy.num_image_tokens)


@pytest.mark.parametrize("paste_back", [True, False])
def test_paste_back_keeps_every_outside_pixel(tiny_policy, paste_back):
    """With paste_back the edited image equals the image before the edit on every pixel of every patch outside the
    edit boxes, and the redrawn tokens' decoding inside; without it, it is the edited tokens' decoding."""
    import numpy as np

    from janus_rig.rollout.regions import pixel_mask

    checker, actor = Scripted(lambda k, i: reflection("edit")), Scripted(lambda k, i: edit())
    cfg = ReflectConfig(**{**vars(config(rounds=2)), "paste_back": paste_back})
    result = reflect(tiny_policy, PROMPTS, cfg, FAST, seed=1, checker=checker, actor=actor)
    size, grid = tiny_policy.image_size, tiny_policy.grid[0]
    decoded_differs = 0
    for row in result.traces:
        for t in (t for t in row if t.status == "edited"):
            inside = pixel_mask(token_masks([[o.box for o in t.edit_boxes]], grid)[0].reshape(grid, grid), size)
            before, after = np.asarray(t.image), np.asarray(t.edited_image)
            decoded = tiny_policy.decode_images(t.edited_tokens[None])[0].numpy().astype(int)  # (S, S, 3)
            near = lambda a, b: np.abs(a.astype(int) - b).max() <= 2  # decoding alone vs in a batch: rounding
            assert near(after[inside.numpy()], decoded[inside.numpy()])
            if paste_back:
                assert np.array_equal(after[~inside.numpy()], before[~inside.numpy()])  # exactly
            else:
                assert near(after, decoded)
            decoded_differs += not near(before[~inside.numpy()], decoded[~inside.numpy()])
    assert decoded_differs > 0  # the decoder does move outside pixels: what paste_back is for


def test_full_edit_region_redraws_the_whole_image(tiny_policy):
    """edit_region="full": the editor samples every image token from the revised chain (outside the actor's boxes
    too), the trace keeps the actor's boxes, and the next round sees the redrawn image."""
    checker, actor = Scripted(lambda k, i: reflection("edit")), Scripted(lambda k, i: edit())
    cfg = ReflectConfig(**{**vars(config(rounds=1)), "edit_region": "full"})
    result = reflect(tiny_policy, PROMPTS, cfg, FAST, seed=1, checker=checker, actor=actor)
    editor = result.rounds[0].editor
    assert editor.completion_mask[editor.image_mask].all()  # every code was sampled, none forced
    outside_changed = 0
    for row in result.traces:
        t = row[0]
        assert t.status == "edited" and [o.name for o in t.edit_boxes] == [o.name for o in EDIT_BOXES]
        inside = token_masks([[o.box for o in t.edit_boxes]], tiny_policy.grid[0])[0]  # (N,)
        outside_changed += int((t.edited_tokens[~inside] != t.image_tokens[~inside]).any())
        assert row[1].image_tokens.equal(t.edited_tokens) and row[1].plan == t.revised_chain
    assert outside_changed == 4 and result.counts["context_changed"] == 0  # nothing is "outside" a full redraw
    with pytest.raises(ValueError, match="edit_region"):
        ReflectConfig(edit_region="everywhere")


def test_keep_malformed_edits_and_rows_that_stop(tiny_policy):
    # Row 0 keeps at once; row 1 gets a garbled edit; rows 2, 3 are edited once and then keep.
    checker = Scripted(lambda k, i: reflection("keep" if (k == 0 and i == 0) or k == 1 else "edit"))
    actor = Scripted(lambda k, i: "<|edit_start|>redraw it<|edit_end|>" if i == 0 else edit())
    result = reflect(tiny_policy, PROMPTS, config(rounds=3), FAST, seed=2, checker=checker, actor=actor)
    statuses = [[t.status for t in row] for row in result.traces]
    assert statuses == [["keep"], ["malformed_edit"], ["edited", "keep"], ["edited", "keep"]]
    c = result.counts
    assert (c["keep"], c["malformed_edit"], c["edits"], c["edit/missing_boxes"]) == (3, 1, 2, 1)
    assert torch.equal(result.final_tokens[:2], result.initial.image_tokens[:2])
    assert assert_context_kept(result, tiny_policy.grid[0]) == 2
    assert result.rounds[0].actor_rows == [1, 2, 3] and result.rounds[0].editor_rows == [2, 3]


def test_real_actor_output_is_parsed_and_counted(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    result = reflect(tiny_policy, PROMPTS[:1], config(rounds=1, tokens=16), FAST, seed=3, checker=checker)
    c = result.counts
    assert c["malformed_edit"] + c["edits"] == 2 and c["edit/missing_start"] + c["edit/missing_boxes"] >= 1
    assert result.rounds[0].actor.completion_mask.any()  # the actor's samples are kept for training


def test_zero_rounds_checks_once_and_never_edits(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    result = reflect(tiny_policy, PROMPTS[:1], config(rounds=0), FAST, seed=4, checker=checker)
    assert result.counts["out_of_rounds"] == 2 and result.counts["edits"] == 0
    with pytest.raises(ValueError, match="rounds"):
        ReflectConfig(rounds=-1)


def test_untrusted_revised_chain_is_cleaned_and_initial_is_checked(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    sneaky = edit().replace(" left of", " <begin_of<begin_of_image>_image> left of")  # would end the chain early
    actor = Scripted(lambda k, i: sneaky)
    one = RolloutConfig(group_size=1, max_chain_tokens=4, cfg_weight=3.0)
    result = reflect(tiny_policy, PROMPTS[:1], config(rounds=1), one, seed=5, checker=checker, actor=actor)
    revised = result.traces[0][0].revised_chain
    assert result.counts["edits"] == 1 and "<begin_of_image>" not in revised and "red circle" in revised
    with pytest.raises(ValueError, match="rollout of `prompts`"):
        reflect(tiny_policy, PROMPTS[1:], config(), one, initial=result.initial, checker=checker, actor=actor)


def test_verdict_bias_is_the_model_checkers_threshold(tiny_policy):
    from janus_rig.reflect.confidence import verdict_ids
    from janus_rig.chain.roles import NO, VERDICT_SEPARATOR, YES

    sep, yes, no = verdict_ids(tiny_policy.tokenizer)
    assert tiny_policy.tokenizer.decode([sep, no]).endswith(f"{VERDICT_SEPARATOR.strip()} {NO}")
    assert tiny_policy.tokenizer.decode([sep, yes]).endswith(f"{VERDICT_SEPARATOR.strip()} {YES}")
    biased = ReflectConfig(rounds=1, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8),
                           verdict_bias=2.0)
    result = reflect(tiny_policy, PROMPTS[:1], biased, FAST, seed=0)  # the model's checker takes the bias
    assert result.counts["checks"] == 2
    with pytest.raises(ValueError, match="verdict_bias"):
        reflect(tiny_policy, PROMPTS[:1], biased, FAST, seed=0, checker=Scripted(lambda k, i: reflection("keep")))


@pytest.mark.parametrize("scores, chosen", [((0.9, 0.2, 0.5), 0), ((0.1, 0.2, 0.5), 2), ((0.5, 0.5, 0.5), 0),
                                            ((None, 0.3, None), 1)])
def test_final_best_keeps_the_image_the_checker_rates_highest(tiny_policy, monkeypatch, scores, chosen):
    """final="best": a row ends with the image of its best-scored round (the earliest on ties, unscored ones never
    before scored ones); every round's image after k rounds is the best of rounds 0..k."""
    import janus_rig.reflect.loop as loop

    monkeypatch.setattr(loop, "verdict_confidence", lambda policy, out, **kw: [scores[len(checker.calls) - 1]] *
                        len(out.texts))
    checker, actor = Scripted(lambda k, i: reflection("edit")), Scripted(lambda k, i: edit())
    best = ReflectConfig(**{**vars(config(rounds=2)), "final": "best"})
    result = reflect(tiny_policy, PROMPTS, best, FAST, seed=1, checker=checker, actor=actor)
    assert [t.score for t in result.traces[0]] == list(scores)
    for r, row in enumerate(result.traces):
        assert result.chosen(r) is row[chosen] and torch.equal(result.final_tokens[r], row[chosen].image_tokens)
        after = result.images_after_rounds(2)[r]
        assert after[2] is row[chosen].image
        assert after[0] is row[0].image and after[1] is row[chosen if chosen < 2 else 1].image
    last = reflect(tiny_policy, PROMPTS, config(rounds=2), FAST, seed=1, checker=Scripted(lambda k, i:
                   reflection("edit")), actor=Scripted(lambda k, i: edit()))
    assert all(t.score is None for row in last.traces for t in row)  # "last" scores nothing
    assert torch.equal(last.final_tokens[0], last.traces[0][-1].image_tokens)
    with pytest.raises(ValueError, match="unknown final"):
        ReflectConfig(final="first")
    with pytest.raises(ValueError, match="unknown rating"):
        ReflectConfig(final="best", rating="oracle")


def test_final_best_rates_with_the_configured_rating(tiny_policy, monkeypatch):
    """ReflectConfig.rating reaches the checker's score (`verdict_confidence`) for every round it rates."""
    import janus_rig.reflect.loop as loop

    ratings, rated_plans = [], []

    def confidence(policy, out, rating="verdicts", plans=None):
        ratings.append(rating)
        rated_plans.append(list(plans))
        return [0.5] * len(out.texts)

    monkeypatch.setattr(loop, "verdict_confidence", confidence)
    grounded = ReflectConfig(**{**vars(config(rounds=1)), "final": "best", "rating": "plan"})
    result = reflect(tiny_policy, PROMPTS[:1], grounded, FAST, seed=1,
                     checker=Scripted(lambda k, i: reflection("edit")), actor=Scripted(lambda k, i: edit()))
    assert ratings == ["plan", "plan"]
    # each round is rated against the chain its image was drawn from: the first plan, then the revised chain
    assert rated_plans == [[row[k].plan for row in result.traces] for k in range(2)]
    assert rated_plans[0] != rated_plans[1]


def test_final_best_under_a_bias_rates_with_an_unbiased_check(tiny_policy, monkeypatch):
    """With a verdict bias the score comes from a second, unbiased check of the same image, drawn on its own
    stream: the loop's own draws (images, reflections) are those of final "last"."""
    import janus_rig.reflect.loop as loop

    biases, generators = [], []

    def recording(*args, verdict_bias=0.0, **kwargs):
        biases.append(verdict_bias)
        generators.append(args[5])
        return loop_check(*args, verdict_bias=verdict_bias, **kwargs)

    loop_check = loop.check
    biased = ReflectConfig(rounds=1, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8),
                           verdict_bias=2.0)
    last = reflect(tiny_policy, PROMPTS[:1], biased, FAST, seed=3)
    monkeypatch.setattr(loop, "check", recording)
    best = reflect(tiny_policy, PROMPTS[:1], ReflectConfig(**{**vars(biased), "final": "best"}), FAST, seed=3,
                   checker=recording)  # the model's checker, recorded
    assert biases == [2.0, 0.0]  # one round (the random model's reflections are unreadable): biased, then unbiased
    assert generators[0] is not generators[1]  # the rating check draws from its own stream, not the loop's
    assert [t.reflection_text for row in best.traces for t in row] == \
        [t.reflection_text for row in last.traces for t in row]
    assert torch.equal(best.final_tokens, last.final_tokens)


def test_verdict_confidence_is_p_yes_among_yes_and_no(tiny_policy):
    """An image's score is the mean of P(yes) / (P(yes) + P(no)) at its verdicts, teacher-forced at temperature 1:
    checked against two scored texts that differ only in their one verdict's value."""
    from janus_rig.model.tokens import role_token_ids
    from janus_rig.reflect.confidence import verdict_confidence
    from janus_rig.chain.roles import NOTHING_SEEN, REFLECT_END, Verdict, format_reflection
    from janus_rig.reflect.prompts import encode_checker
    from janus_rig.reflect.text import score_text

    images = [Image.new("RGB", (tiny_policy.image_size,) * 2, c) for c in ("red", "blue")]
    contexts = [encode_checker(tiny_policy, PROMPTS[0], PLAN)] * 2
    ids, masks, pixels = tiny_policy.show_images(contexts, images)
    stop = role_token_ids(tiny_policy.tokenizer)[REFLECT_END]

    def scored(holds, n=1):
        text = format_reflection(NOTHING_SEEN, [Verdict(f"fact {i}", holds) for i in range(n)], "keep")
        completions = [tiny_policy.encode_text(text)] * 2
        return score_text(tiny_policy, ids, completions, pixels, [stop], image_masks=masks)

    said_yes, said_no = scored(True), scored(False)
    p_yes = verdict_confidence(tiny_policy, said_yes)
    assert p_yes == pytest.approx(verdict_confidence(tiny_policy, said_no), abs=1e-5)  # the same distribution
    differs = (said_yes.input_ids != said_no.input_ids).nonzero()  # (2, 2): one value position per row
    for r, t in differs.tolist():
        a, b = said_yes.logprobs[r, t].exp(), said_no.logprobs[r, t].exp()
        assert p_yes[r] == pytest.approx(float(a / (a + b)), abs=1e-4)
    assert p_yes[0] != pytest.approx(p_yes[1], abs=1e-6)  # each row reads its own image
    two = verdict_confidence(tiny_policy, scored(True, n=2))
    assert all(0 < s < 1 for s in two)
    none = score_text(tiny_policy, ids, [tiny_policy.encode_text("fact 0 yes, no verdict")] * 2, pixels, [stop],
                      image_masks=masks)
    assert verdict_confidence(tiny_policy, none) == [None, None]
    with pytest.raises(ValueError, match="unknown rating"):
        verdict_confidence(tiny_policy, none, rating="oracle")


@pytest.mark.parametrize("statement, expected", [
    ("red circle left of blue square", 1.0),  # the seen boxes say so
    ("Red circle  left of blue square.", 1.0),  # names matched as statements are
    ("blue square left of red circle", 0.0),  # they say the opposite
    ("red circle above blue square", 0.0),  # side by side: neither above nor below
    ("red circle left of green square", 0.0),  # the checker sees no green square with a box
    ("red circle below white triangle", 1.0),  # one of two white triangles is above it
    ("red circle", None), ("two blue squares", None),  # objects, not relations
])
def test_grounded_relation_answers_relations_on_the_seen_boxes(statement, expected):
    from janus_rig.chain.chain import Box, ChainObject
    from janus_rig.reflect.confidence import grounded_relation

    seen = [ChainObject("red circle", Box(0, 400, 200, 600)), ChainObject("blue square", Box(600, 400, 800, 600)),
            ChainObject("white triangle", Box(700, 700, 900, 900)), ChainObject("white triangle", Box(0, 0, 200, 200)),
            ChainObject("green square", None)]  # a span without a box locates nothing
    assert grounded_relation(statement, seen) == expected


def test_grounded_rating_replaces_relation_verdicts_with_the_seen_boxes(tiny_policy):
    """rating="grounded": object verdicts keep P(yes); a relation verdict scores 1 or 0 as the boxes the checker
    wrote for what it sees satisfy the relation, whatever value it wrote for it."""
    from janus_rig.model.tokens import role_token_ids
    from janus_rig.reflect.confidence import verdict_confidence
    from janus_rig.chain.roles import REFLECT_END, Verdict, format_reflection
    from janus_rig.reflect.prompts import encode_checker
    from janus_rig.reflect.text import score_text

    images = [Image.new("RGB", (tiny_policy.image_size,) * 2, "red")] * 3
    ids, masks, pixels = tiny_policy.show_images([encode_checker(tiny_policy, PROMPTS[0], PLAN)] * 3, images)
    stop = role_token_ids(tiny_policy.tokenizer)[REFLECT_END]
    seen = ("The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(0,400),(200,600)<|box_end|> and a "
            "<|obj_start|>blue square<|obj_end|> <|box_start|>(600,400),(800,600)<|box_end|>.")
    texts = [format_reflection(seen, [Verdict("red circle", True), *relation], "edit")
             for relation in ([Verdict("red circle left of blue square", False)],
                              [Verdict("red circle right of blue square", True)], [])]
    out = score_text(tiny_policy, ids, [tiny_policy.encode_text(t) for t in texts], pixels, [stop],
                     image_masks=masks)
    own = verdict_confidence(tiny_policy, out)
    grounded = verdict_confidence(tiny_policy, out, rating="grounded")
    p_object = own[2]  # the object verdict alone; every row has the same text before it
    assert grounded == pytest.approx([(p_object + 1) / 2, p_object / 2, p_object], abs=1e-5)
    assert own[0] != pytest.approx(grounded[0], abs=1e-3)  # the checker's own P(yes) for the relation differs
    # rating="plan": the same relations answered on the boxes of the chain each image was drawn from, not on the
    # seen boxes: this plan puts the circle right of the square, the opposite of what the checker says it sees;
    # the third row (no relation verdict, no parseable plan) is left alone
    plan = ("a <|obj_start|>blue square<|obj_end|> <|box_start|>(0,400),(200,600)<|box_end|> left of a "
            "<|obj_start|>red circle<|obj_end|> <|box_start|>(600,400),(800,600)<|box_end|>.")
    plans = [plan, plan, "not a chain"]
    planned = verdict_confidence(tiny_policy, out, rating="plan", plans=plans)
    assert planned == pytest.approx([p_object / 2, (p_object + 1) / 2, p_object], abs=1e-5)
    with pytest.raises(ValueError, match="one plan per checked row"):
        verdict_confidence(tiny_policy, out, rating="plan", plans=plans[:2])
