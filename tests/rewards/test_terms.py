"""Reward terms on ShapeWorld records with the exact judge: true triples high, corrupted ones low, term by term."""

from __future__ import annotations

import importlib.util

import json
import statistics

import pytest

from janus_rig.chain import Box
from janus_rig.cli import main
from reward_models import REWARD_TERMS, RewardConfig, compute_rewards, make_judge
from reward_models.judges.base import Judge
from reward_models.terms import grounding_reward, matched_ious, prompt_image_reward, spatial_reward
from tests.rewards import World, variants

TERMS = ("R_sem", "R_spa", "R_RI", "R_PI", "R_PR")
# Which terms each corruption must pull down (the others read inputs the corruption does not touch).
AFFECTED = {
    "other chain": ("R_sem", "R_spa", "R_RI", "R_PR"),
    "other image": ("R_RI", "R_PI"),
    "boxes moved": ("R_spa", "R_RI", "R_PR"),
    "colours swapped": ("R_sem", "R_spa", "R_RI", "R_PR"),
}
UNAFFECTED = {
    "other chain": ("R_PI",),
    "other image": ("R_sem", "R_spa"),
    "boxes moved": ("R_sem", "R_PI"),
    "colours swapped": ("R_PI",),
}
MIN_SEPARATION = 0.25  # mean(true) - mean(corrupted) for every affected term (boxes moved: R_PR 1.0 -> 0.73)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("world"), n=80)


@pytest.fixture(scope="module")
def separation(world):
    judge = make_judge("shapeworld")
    config = RewardConfig()
    means = {}
    for name, (chains, images) in variants(world).items():
        result = compute_rewards(world.prompts, chains, images, world.metadata, judge, config)
        means[name] = {t: statistics.mean(row[t] for row in result.terms) for t in TERMS}
        means[name]["total"] = statistics.mean(result.totals)
    assert judge.stats.snapshot()["failures"] == 0
    return means


def test_true_triples_score_high(separation):
    assert all(separation["true"][t] >= 0.99 for t in (*TERMS, "total")), separation["true"]


@pytest.mark.parametrize("corruption", sorted(AFFECTED))
def test_corruptions_score_low_term_by_term(separation, corruption):
    true, bad = separation["true"], separation[corruption]
    for term in AFFECTED[corruption]:
        assert true[term] - bad[term] >= MIN_SEPARATION, (corruption, term, true[term], bad[term])
    for term in UNAFFECTED[corruption]:
        assert bad[term] == pytest.approx(true[term]), (corruption, term)
    assert bad["total"] <= 0.1


def test_decoded_arrays_score_exactly_like_pil_images(world):
    # a rollout's decoded images are (H, W, 3) uint8 arrays: every term must take them (R_RI once crashed on them)
    import numpy as np

    judge, config = make_judge("shapeworld"), RewardConfig(terms=["R_sem", "R_spa", "R_RI", "R_PI"])
    n = 12
    args = world.prompts[:n], world.chains[:n]
    pil = compute_rewards(*args, world.images[:n], world.metadata[:n], judge, config)
    arrays = compute_rewards(*args, [np.asarray(im) for im in world.images[:n]], world.metadata[:n], judge, config)
    assert arrays.terms == pil.terms and arrays.totals == pil.totals
    assert judge.stats.snapshot()["failures"] == 0
    with pytest.raises(ValueError, match="uint8 arrays"):
        compute_rewards(*args[:1], args[1][:1], [np.zeros((4, 4), np.float32)], world.metadata[:1], judge, config)


def test_matched_ious_is_one_to_one():
    a, b = Box(0, 0, 100, 100), Box(500, 500, 600, 600)
    assert matched_ious([("circle", a), ("circle", b)], {"circle": [b, a]}) == [1.0, 1.0]
    assert matched_ious([("circle", a), ("circle", a)], {"circle": [a]}) == [1.0, 0.0]
    assert matched_ious([("circle", a)], {"square": [a]}) == [0.0]
    assert matched_ious([("circle", a)], {}) == [0.0]


def test_grounding_edge_cases(world):
    judge = make_judge("shapeworld")
    chain, image = world.chains[0], world.images[0]
    values = grounding_reward(["p"] * 3, ["no objects at all", chain, chain], [image, None, image], None, judge)
    assert values[0] == 0.0  # a chain with no objects scores 0 without asking
    assert values[1] is None  # no image: cannot be computed
    assert values[2] == 1.0
    # A planned object that is not in the image counts 0 in the mean.
    extra = chain + " <|obj_start|>white triangle<|obj_end|> <|box_start|>(0,0),(100,100)<|box_end|>"
    planned = chain.count("<|obj_start|>")
    if "white triangle" not in chain:
        assert grounding_reward(["p"], [extra], [image], None, judge)[0] == pytest.approx(planned / (planned + 1))


def test_missing_inputs_give_none_not_nan(world):
    judge = make_judge("shapeworld")
    assert prompt_image_reward(["p"], ["c"], [None], [world.metadata[0]], judge) == [None]
    # The oracle without metadata cannot score: None, counted as bad_request.
    assert prompt_image_reward(["p"], ["c"], [world.images[0]], None, judge) == [None]
    assert judge.stats.snapshot()["failures/bad_request"] == 1
    assert spatial_reward(["p"], ["no boxes"], [None], None, judge) == [0.0]


class _Broken(Judge):
    name = "broken"

    def score(self, requests):
        return [float("nan"), 1.5, None, 0.5][: len(requests)] + [0.5] * max(0, len(requests) - 4)

    def ground(self, requests):
        return [None] * len(requests)


def test_judge_failures_and_bad_values_become_none(world):
    judge = _Broken()
    config = RewardConfig(terms=["R_sem", "R_RI"])
    result = compute_rewards(world.prompts[:4], world.chains[:4], world.images[:4], None, judge, config)
    assert [row["R_sem"] for row in result.terms] == [None, None, None, 0.5]
    assert all(row["R_RI"] is None for row in result.terms)
    assert result.totals == [None] * 4 and result.metrics["none/total"] == 4
    assert judge.stats.snapshot()["failures/out_of_range"] == 2  # NaN and 1.5


def test_a_term_is_added_with_one_decorator(world):
    @REWARD_TERMS.register("R_len_test")
    def length_reward(prompts, chains, images, metadata, judge):
        return [min(1.0, len(c) / 1000) for c in chains]

    try:
        config = RewardConfig(terms=["R_PI", "R_len_test"])
        result = compute_rewards(world.prompts[:2], world.chains[:2], world.images[:2], world.metadata[:2],
                                 make_judge("shapeworld"), config)
        assert all(row["R_len_test"] > 0 for row in result.terms)
    finally:
        REWARD_TERMS._items.pop("R_len_test")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip installed: test_aesthetic.py")
def test_aesthetic_without_open_clip_names_the_extra():
    from reward_models.aesthetic import AestheticScorer

    with pytest.raises(ImportError, match=r"clip"):
        AestheticScorer("/nonexistent")
    with pytest.raises(ValueError, match=r"clip|model_dir"):
        RewardConfig(terms=["R_PI", "aesthetic"], term_options={"aesthetic": {"model_dir": "/x"}})


def test_reward_command(world, tmp_path, capsys):
    records = world.dir / "command_records.jsonl"  # images are paths relative to the records file
    rows = world.records[:5]
    lines = [json.dumps(r) for r in rows] + ['{"id": "broken", "prompt": 3}', "not json"]
    records.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["reward", "--records", str(records), "--judge", "shapeworld", "--out", str(out), "--batch-size", "2"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["id"] for w in written] == [r["id"] for r in rows] + ["broken", "line 7"]
    assert all(w["reward"] == 1.0 and set(w["terms"]) == {"R_sem", "R_spa", "R_RI", "R_PI", "R_PR"} for w in written[:5])
    assert written[5]["reward"] is None and "prompt" in written[5]["error"]
    err = capsys.readouterr().err
    assert "record broken" in err and "Traceback" not in err
    # Switched-off terms and the sum combination reach the output.
    assert main(["reward", "--records", str(records), "--terms", "R_sem", "R_PI", "--combine", "sum", "--out", str(out)]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first["terms"]) == {"R_sem", "R_PI", "R_PR"}
    assert main(["reward", "--records", str(records), "--terms", "R_nope", "--out", str(out)]) == 2
