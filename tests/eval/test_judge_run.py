"""`janus-rig eval judge`: the score distribution, both-order pairwise preferences (position bias cancelled and
measured), prompt files, counted failures of a random hf judge, and the command end to end on the tiny policy."""

from __future__ import annotations

import json

import pytest

from janus_rig.cli import main
from janus_rig.eval.judge_run import (
    combine_orders,
    judge_pairs,
    judge_scores,
    read_prompt_records,
    score_distribution,
    versus_metrics,
)
from janus_rig.eval.summary import read_summary
from reward_models.judges import Judge, make_judge
from tests.rewards import World, build_tiny_qwen


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("judge_world"), n=30)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_score_distribution_hand_worked():
    dist = score_distribution([1.0, 0.5, None, 0.8, 0.84, 0.0])
    assert dist["images"] == 6 and dist["scored"] == 5 and dist["failures"] == 1
    assert dist["histogram"] == [1, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1]  # 0.84 rounds to 8
    assert dist["mean"] == pytest.approx(3.14 / 5) and dist["median"] == 0.8
    assert dist["share_high"] == pytest.approx(3 / 5) and dist["min"] == 0.0 and dist["max"] == 1.0
    assert "mean" not in score_distribution([None, None])


@pytest.mark.parametrize("a_first, b_first, preference, consistent", [
    (1.0, 0.0, 1.0, True),    # A wins in both orders
    (0.0, 1.0, 0.0, True),    # B wins in both orders
    (1.0, 1.0, 0.5, False),   # the first shown always wins: pure position bias -> a tie
    (0.5, 0.5, 0.5, True),
    (1.0, 0.5, 0.75, False),
    (None, 0.0, None, None),  # a failed order voids the pair
])
def test_both_orders_combine(a_first, b_first, preference, consistent):
    assert combine_orders(a_first, b_first) == (preference, consistent)


class FirstShownJudge(Judge):
    """Always prefers whichever candidate it sees first; fails on prompts containing 'fail'."""

    name = "first-shown"

    def compare(self, requests):
        return [None if "fail" in r.prompt else 1.0 for r in requests]


def test_a_position_biased_judge_yields_ties_and_is_measured():
    rows = judge_pairs(FirstShownJudge(), "chain", ["p", "q", "fail"], ["a1", "a2", "a3"], ["b1", "b2", "b3"],
                       [None] * 3, batch_size=2, progress=False)
    metrics = versus_metrics(rows)
    assert metrics == {"wins": 0.0, "losses": 0.0, "ties": 2.0, "pair_failures": 1.0, "preference": 0.5,
                       "consistency": 0.0, "first_shown_preference": 1.0}


def test_oracle_prefers_the_right_images_in_both_orders(world):
    n = len(world.records)
    right, wrong = world.images, [world.images[world.other(i)] for i in range(n)]
    rows = judge_pairs(make_judge("shapeworld"), "image", world.prompts, right, wrong, world.metadata,
                       batch_size=16, progress=False)
    metrics = versus_metrics(rows)
    assert metrics["wins"] >= 0.8 * n and metrics["losses"] == 0 and metrics["pair_failures"] == 0
    assert metrics["consistency"] == 1.0 and metrics["first_shown_preference"] == 0.5  # an oracle has no position bias
    swapped = versus_metrics(judge_pairs(make_judge("shapeworld"), "image", world.prompts, wrong, right,
                                         world.metadata, progress=False))
    assert swapped["preference"] == pytest.approx(1 - metrics["preference"])


def test_prompt_files(tmp_path, world):
    text = tmp_path / "prompts.txt"
    text.write_text("# a comment\na red circle\n\nthree squares\n")
    records = read_prompt_records(text)
    assert [(r.prompt, r.metadata) for r in records] == [("a red circle", None), ("three squares", None)]
    geneval = tmp_path / "metadata.jsonl"
    geneval.write_text(json.dumps(world.metadata[0]) + "\n" + json.dumps(world.records[1]) + "\n")
    first, second = read_prompt_records(geneval)
    assert first.metadata == world.metadata[0] and second.metadata == world.metadata[1] and second.id == "val-000001"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n[1]\n{"prompt": "x", "metadata": 3}\n{"id": 4}\n')
    expected = (rf"{bad}:2: not a JSON object; {bad}:3: field 'metadata' must be an object; "
                rf"{bad}:4: no \"prompt\" string")
    with pytest.raises(ValueError, match=expected):
        read_prompt_records(bad)


def test_a_random_hf_judge_costs_counted_failures_not_a_crash(world, tmp_path):
    judge = make_judge("hf", model=build_tiny_qwen(tmp_path / "qwen"), batch_size=4, max_new_tokens=8)
    scores = judge_scores(judge, world.prompts[:4], world.images[:4], [None] * 4, batch_size=4, progress=False)
    stats = judge.stats.snapshot()
    assert len(scores) == 4 and stats["requests"] == 4
    assert stats["failures"] == sum(s is None for s in scores) >= 1 and stats["failures/error"] == 0
    assert all(s is None or 0.0 <= s <= 1.0 for s in scores)
    judge.close()


def _run(tiny_policy_dir, prompts, out, *extra):
    return main(["eval", "judge", "--model", str(tiny_policy_dir), "--prompts", str(prompts), "--out", str(out),
                 "--max-chain-tokens", "4", "--batch-size", "3", "--display-size", "64", *extra])


def test_eval_judge_command_scores_and_versus(tiny_policy_dir, world, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in world.records[:3]))
    assert _run(tiny_policy_dir, prompts, tmp_path / "scores", "--samples", "2") == 0
    summary = read_summary(tmp_path / "scores")
    assert summary["kind"] == "judge" and summary["samples"] == 6 and sum(summary["histogram"]) == 6
    assert summary["metrics"]["judge_failures"] == 0 and 0.0 <= summary["metrics"]["mean"] <= 1.0
    lines = (tmp_path / "scores" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["score"] is not None for line in lines)

    # the same model twice, same seeds: identical samples, so every pair is a tie, in both orders
    assert _run(tiny_policy_dir, prompts, tmp_path / "versus", "--versus", str(tiny_policy_dir)) == 0
    versus = read_summary(tmp_path / "versus")
    assert versus["kind"] == "judge-versus" and versus["compare"] == "image"
    assert versus["versus"] == str(tiny_policy_dir)
    assert versus["metrics"]["ties"] == versus["samples"] == 3 and versus["metrics"]["preference"] == 0.5
    rows = [json.loads(line) for line in (tmp_path / "versus" / "results.jsonl").read_text().splitlines()]
    assert all((tmp_path / "versus" / r["a"]["image"]).is_file() and r["a"]["chain"] == r["b"]["chain"] for r in rows)
    assert "preference for A" in (tmp_path / "versus" / "index.html").read_text()
    assert _run(tiny_policy_dir, prompts, tmp_path / "x", "--compare", "chain") == 2  # chains need --versus
