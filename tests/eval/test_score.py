"""`janus-rig eval score` on a tiny GenEval-layout folder, bad folders included."""

from __future__ import annotations

import json

import pytest

from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.cli import main
from janus_rig.eval import prompt_dirs, read_metadata, sample_path, sample_paths, score_geneval_dir, write_prompt_dir

COLORS_META = {"tag": "colors", "prompt": "a red circle", "include": [{"class": "circle", "count": 1, "color": "red"}]}
POSITION_META = {
    "tag": "position", "prompt": "a red circle left of a blue square",
    "include": [{"class": "square", "count": 1, "color": "blue"},
                {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}],
}


def save(outdir, index, k, *objects):
    path = sample_path(outdir, index, k)
    render(Scene(64, tuple(SceneObject(*o) for o in objects))).save(path)
    return path


@pytest.fixture
def good_dir(tmp_path):
    write_prompt_dir(tmp_path, 0, COLORS_META)
    save(tmp_path, 0, 0, ("circle", "red", (4, 4, 20, 20)))
    save(tmp_path, 0, 1, ("circle", "blue", (4, 4, 20, 20)))
    write_prompt_dir(tmp_path, 1, POSITION_META)
    for k in range(4):  # 3 of 4 correct
        left, right = ("circle", "red", (4, 24, 20, 40)), ("square", "blue", (40, 24, 56, 40))
        save(tmp_path, 1, k, *(left, right) if k else (("circle", "red", (40, 24, 56, 40)), ("square", "blue", (4, 24, 20, 40))))
    return tmp_path


def test_layout_helpers(tmp_path):
    folder = write_prompt_dir(tmp_path, 7, COLORS_META)
    assert folder == tmp_path / "00007" and (folder / "samples").is_dir()
    assert (folder / "metadata.jsonl").read_text().count("\n") == 1
    assert read_metadata(folder) == COLORS_META
    assert sample_path(tmp_path, 7, 3) == tmp_path / "00007" / "samples" / "0003.png"
    (folder / "samples" / "notes.txt").write_text("x")
    save(tmp_path, 7, 10, ("circle", "red", (4, 4, 20, 20)))
    save(tmp_path, 7, 2, ("circle", "red", (4, 4, 20, 20)))
    assert [p.name for p in sample_paths(folder)] == ["0002.png", "0010.png"]
    (tmp_path / "notes").mkdir()
    assert prompt_dirs(tmp_path) == [folder]


def test_score_dir_accuracies_and_results(good_dir):
    summary = score_geneval_dir(good_dir)
    assert summary.per_tag == {"colors": (1, 2), "position": (3, 4)}
    assert summary.overall == pytest.approx((0.5 + 0.75) / 2)
    assert (summary.n_images, summary.n_prompts, summary.correct_prompts, summary.problems) == (6, 2, 2, [])
    lines = [json.loads(line) for line in (good_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    assert set(lines[0]) == {"filename", "tag", "prompt", "correct", "reason", "metadata", "details"}
    assert json.loads(lines[0]["metadata"]) == COLORS_META
    assert lines[0]["filename"] == str(sample_path(good_dir, 0, 0)) and lines[0]["correct"] is True
    assert lines[1]["reason"] == "expected red circle>=1, found 0 red; and 1 blue"
    (detail,) = json.loads(lines[1]["details"])["circle"]
    assert (detail["color"], detail["box"]) == ("blue", [4, 4, 20, 20]) and 0 < detail["score"] <= 1


def test_bad_folders_are_reported_not_raised(good_dir):
    (good_dir / "00002").mkdir()  # no metadata.jsonl
    write_prompt_dir(good_dir, 3, COLORS_META)
    (good_dir / "00003" / "metadata.jsonl").write_text("{not json")
    write_prompt_dir(good_dir, 4, {**COLORS_META, "include": [{"class": "dog", "count": 1}]})
    write_prompt_dir(good_dir, 5, COLORS_META)  # no samples
    write_prompt_dir(good_dir, 6, COLORS_META)
    sample_path(good_dir, 6, 0).write_bytes(b"\x89PNG broken")
    summary = score_geneval_dir(good_dir)
    assert len(summary.problems) == 5
    for index, what in [(2, "metadata"), (3, "malformed JSON"), (4, "not a ShapeWorld shape"), (5, "no samples"), (6, "unreadable")]:
        assert any(f"{index:05d}" in p and what in p for p in summary.problems), (index, summary.problems)
    # the unreadable image is scored as a failure; the rest are unchanged
    assert summary.per_tag == {"colors": (1, 3), "position": (3, 4)}


def test_cli_prints_table_and_flags_problems(good_dir, capsys):
    assert main(["eval", "score", str(good_dir)]) == 0
    out = capsys.readouterr().out
    assert "colors" in out and "0.5000" in out and "position" in out and "0.7500" in out and "0.6250" in out
    assert (good_dir / "results.jsonl").exists()
    (good_dir / "00009").mkdir()
    assert main(["eval", "score", str(good_dir), "--out", str(good_dir / "r" / "x.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "1 problem" in out and "00009" in out and (good_dir / "r" / "x.jsonl").exists()
    assert main(["eval", "score", str(good_dir / "missing")]) == 2


def test_chain_split_separates_plan_from_drawing():
    from janus_rig.eval.score import chain_split, chain_split_table

    samples = [("position", True, True), ("position", True, False), ("position", False, True),
               ("position", False, False), ("position", False, False), ("complex", False, False)]
    split = chain_split(samples)
    assert list(split) == ["position", "complex"]
    pos = split["position"]
    assert (pos["samples"], pos["chains_right"]) == (5, 2)
    assert pos["image_given_right_chain"] == 0.5 and pos["image_given_wrong_chain"] == 1 / 3
    # image accuracy is the mix of the two conditionals
    image = sum(ok for tag, _, ok in samples if tag == "position") / 5
    mix = pos["chain_accuracy"] * pos["image_given_right_chain"] + (1 - pos["chain_accuracy"]) * pos["image_given_wrong_chain"]
    assert abs(mix - image) < 1e-12
    assert split["complex"]["image_given_right_chain"] is None  # no right chain: undefined, not 0
    table = chain_split_table(split).splitlines()
    assert table[2].split() == ["complex", "0.0000", "-", "0.0000", "1"]
