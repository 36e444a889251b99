"""Reward terms on ShapeWorld records with the exact judge: true triples high, corrupted ones low, term by term."""

from __future__ import annotations

import importlib.util

import json
import statistics

import pytest

from janus_rig.chain import Box
from janus_rig.cli import main
from janus_rig.commands.reward import EXIT_BAD_ROWS
from reward_models import REWARD_TERMS, RewardConfig, compute_rewards, make_judge
from reward_models.judges.base import Judge
from reward_models.terms import grounding_reward, matched_ious, prompt_image_reward, spatial_reward
from tests.rewards import World, hostile, variants
from tests.rewards.hostile import HostileServer

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
    argv = ["reward", "--records", str(records), "--judge", "shapeworld", "--out", str(out), "--batch-size", "2"]
    assert main(argv) == EXIT_BAD_ROWS  # two bad rows: said by the exit status, listed beside the output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["id"] for w in written] == [r["id"] for r in rows] + ["broken", "line 7"]
    assert all(w["reward"] == 1.0 and set(w["terms"]) == {"R_sem", "R_spa", "R_RI", "R_PI", "R_PR"} for w in written[:5])
    assert written[5]["reward"] is None and "prompt" in written[5]["error"]
    assert [(b["id"], b["line"]) for b in _read(tmp_path / "out.bad_rows.jsonl")] == [("broken", 6), ("line 7", 7)]
    captured = capsys.readouterr()
    assert "record broken" in captured.err and "Traceback" not in captured.err
    assert json.loads(captured.out.splitlines()[-1])["bad_rows"] == 2
    # Switched-off terms and the sum combination reach the output.
    assert main(["reward", "--records", str(records), "--terms", "R_sem", "R_PI", "--combine", "sum", "--out", str(out),
                 "--overwrite"]) == 3
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first["terms"]) == {"R_sem", "R_PI", "R_PR"}
    assert main(["reward", "--records", str(records), "--terms", "R_nope", "--out", str(out)]) == 2


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reward_command_with_malformed_rows_and_metadata(world, tmp_path, capsys):
    rows = world.records[:3]
    bad_color = {**rows[0], "id": "color-list", "metadata": {"include": [{"class": "circle", "count": 1,
                                                                          "color": ["red"]}]}}
    bad_color_dict = {**rows[0], "id": "color-dict", "metadata": {"include": [{"class": "circle", "count": 1,
                                                                               "color": {"r": 1}}]}}
    records = world.dir / "malformed_records.jsonl"
    records.write_bytes(b"\n".join([json.dumps(rows[0]).encode(), json.dumps(bad_color).encode(),
                                     json.dumps(bad_color_dict).encode(), b'{"id": "\xff\xfe"}',
                                     b"[" * 50_000 + b"]" * 50_000, json.dumps(rows[1]).encode(),
                                     json.dumps(rows[2]).encode()]) + b"\n")
    out = tmp_path / "rewards.jsonl"
    assert main(["reward", "--records", str(records), "--out", str(out), "--batch-size", "2"]) == EXIT_BAD_ROWS
    written = _read(out)
    assert [w["reward"] for w in written] == [1.0, None, None, None, None, 1.0, 1.0]  # the good rows are scored
    bad = _read(tmp_path / "rewards.bad_rows.jsonl")
    assert [(b["id"], b["line"]) for b in bad] == [("color-list", 2), ("color-dict", 3), ("line 4", 4), ("line 5", 5)]
    assert all("colour" in b["reason"] for b in bad[:2])  # the oracle names the field
    assert "utf-8" in bad[2]["reason"] and "JSON" in bad[3]["reason"]
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "4 of 7 rows were bad" in captured.err
    summary = json.loads(captured.out.splitlines()[-1])
    assert (summary["records"], summary["bad_rows"], summary["scored"]) == (7, 4, 3)


def test_reward_command_against_a_judge_that_answers_garbage(world, tmp_path, capsys):
    records = world.dir / "garbage_records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in world.records[:3]))
    out = tmp_path / "rewards.jsonl"
    with HostileServer([hostile.GARBAGE]) as server:
        argv = ["reward", "--records", str(records), "--judge", server.url, "--model", "m", "--terms", "R_sem", "R_PI",
                "--judge-option", "structured=false", "--judge-option", "retries=0", "--out", str(out)]
        assert main(argv) == 0  # every row was read; the judge's failures are null rewards, counted
    assert [w["reward"] for w in _read(out)] == [None] * 3
    assert (tmp_path / "rewards.bad_rows.jsonl").read_text() == ""
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["reward_none"] == 3 and summary["judge"]["failures/http_error"] == 6
    assert "not an HTTP reply" in summary["judge_failure_reasons"]["http_error"]


def _picky(prompts, chains, images, metadata, judge):
    """1.0, but a ValueError for any batch holding a chain marked BAD, a TypeError (a bug) for one marked BUG."""
    if any("BUG" in c for c in chains):
        raise TypeError("a bug in the term")
    if any("BAD" in c for c in chains):
        raise ValueError("cannot score a BAD chain")
    return [1.0] * len(chains)


@pytest.fixture
def picky_term():
    REWARD_TERMS.register("R_picky_test")(_picky)
    yield "R_picky_test"
    REWARD_TERMS._items.pop("R_picky_test")


def test_a_term_that_raises_on_one_sample_costs_only_that_sample(world, picky_term, caplog):
    config = RewardConfig(terms=["R_sem", picky_term])
    chains = list(world.chains[:4])
    chains[1] += " BAD"
    chains[2] += " BUG"
    result = compute_rewards(world.prompts[:4], chains, world.images[:4], world.metadata[:4], make_judge("shapeworld"),
                             config)
    assert result.totals == [1.0, None, None, 1.0]
    assert result.errors[0] is None and result.errors[3] is None
    assert "ValueError: cannot score a BAD chain" in result.errors[1] and "TypeError" in result.errors[2]
    assert result.metrics["errors/R_picky_test"] == 2 and result.metrics["errors/R_sem"] == 0
    assert result.terms[1]["R_sem"] == 1.0 and result.terms[1]["R_picky_test"] is None
    bug_logs = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(bug_logs) == 1 and bug_logs[0].exc_info  # a bug is logged with its traceback, not swallowed


def test_a_term_bug_on_every_sample_is_raised(world, picky_term):
    config = RewardConfig(terms=[picky_term])
    with pytest.raises(TypeError, match="a bug in the term"):
        compute_rewards(world.prompts[:2], [c + " BUG" for c in world.chains[:2]], world.images[:2],
                        world.metadata[:2], make_judge("shapeworld"), config)
    # ... while bad input on every sample is None everywhere, counted.
    result = compute_rewards(world.prompts[:2], [c + " BAD" for c in world.chains[:2]], world.images[:2],
                             world.metadata[:2], make_judge("shapeworld"), config)
    assert result.totals == [None, None] and result.metrics["errors/R_picky_test"] == 2


def test_reward_command_lists_a_row_a_term_cannot_score(world, picky_term, tmp_path):
    rows = [dict(r) for r in world.records[:3]]
    rows[1]["chain"] += " BAD"
    records = world.dir / "picky_records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rewards.jsonl"
    assert main(["reward", "--records", str(records), "--terms", "R_sem", picky_term, "--out", str(out)]) == 3
    written = _read(out)
    assert [w["reward"] for w in written] == [1.0, None, 1.0] and written[1]["terms"]["R_sem"] == 1.0
    bad = _read(tmp_path / "rewards.bad_rows.jsonl")
    assert [(b["id"], b["line"]) for b in bad] == [(rows[1]["id"], 2)]
    assert "cannot score a BAD chain" in bad[0]["reason"]
