"""Prompt sets: the bundled GenEval / T2I-CompBench files convert to rows that recover every prompt, in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.converters.prompt_sets import PROMPT_SET_DIR, PROMPT_SETS, convert_prompt_set, load_prompt_set
from tests.converters.conftest import read_jsonl

SHARED = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"  # where the copies came from, if present
T2I = PROMPT_SET_DIR / "t2i_compbench"
CATEGORIES = ["3d_spatial", "color", "complex", "non_spatial", "numeracy", "shape", "spatial", "texture"]


def test_bundled_files_and_licenses():
    assert (PROMPT_SET_DIR / "README.md").is_file()
    for folder in ("geneval", "t2i_compbench"):
        license_text = (PROMPT_SET_DIR / folder / "LICENSE").read_text()
        assert license_text.startswith("MIT License")
    assert sorted(p.name[: -len("_val.txt")] for p in T2I.glob("*_val.txt")) == CATEGORIES
    assert sorted(p.name[: -len("_train.txt")] for p in T2I.glob("*_train.txt")) == CATEGORIES


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared benchmark folder is not on this machine")
def test_bundled_files_are_exact_copies():
    for source in SHARED.rglob("*"):
        if source.is_file():
            assert (PROMPT_SET_DIR / source.relative_to(SHARED)).read_bytes() == source.read_bytes(), source


def test_geneval_recovers_all_553_lines():
    lines = (PROMPT_SET_DIR / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
    rows = load_prompt_set("geneval")
    assert len(rows) == len(lines) == 553
    assert [r["metadata"] for r in rows] == [json.loads(line) for line in lines]
    assert [r["prompt"] for r in rows] == [json.loads(line)["prompt"] for line in lines]
    assert [r["source"]["index"] for r in rows] == list(range(553))  # the GenEval output folder <index:05d>
    assert rows[42]["id"] == "geneval-00042" and len({r["id"] for r in rows}) == 553
    tags = {r["tag"] for r in rows}
    assert tags == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    position = load_prompt_set("geneval", categories=["position"])
    assert len(position) == 100 and all(r["metadata"]["tag"] == "position" for r in position)


@pytest.mark.parametrize("split, per_category", [("val", 300), ("train", 700)])
def test_t2i_compbench_recovers_every_line(split, per_category):
    rows = load_prompt_set("t2i_compbench", split=split)
    assert len(rows) == per_category * len(CATEGORIES)
    for category in CATEGORIES:
        lines = (T2I / f"{category}_{split}.txt").read_text().splitlines()
        mine = [r for r in rows if r["tag"] == category]
        assert [r["prompt"] for r in mine] == lines and len(lines) == per_category  # duplicates kept
        assert all(r["metadata"] is None and r["source"]["split"] == split for r in mine)
    assert len({r["id"] for r in rows}) == len(rows)
    assert rows[0]["id"] == f"t2i_compbench-3d_spatial-{split}-0000"


def test_filters_and_errors_name_the_valid_choices(tmp_path):
    assert {r["tag"] for r in load_prompt_set("t2i_compbench", categories=["color", "shape"])} == {"color", "shape"}
    with pytest.raises(ValueError, match="no val prompts for colour; categories: 3d_spatial, color"):
        load_prompt_set("t2i_compbench", categories=["colour"])
    with pytest.raises(ValueError, match="split 'test' is not one of train, val"):
        load_prompt_set("t2i_compbench", split="test")
    with pytest.raises(ValueError, match="no 'train' split"):
        load_prompt_set("geneval", split="train")
    with pytest.raises(KeyError, match="unknown prompt set 'dpg'; valid names: geneval, t2i_compbench"):
        load_prompt_set("dpg")
    assert "geneval" in PROMPT_SETS


@pytest.mark.parametrize("content, message", [
    ('{"tag": "colors", "include": [], "prompt": "a red cup"}\n{"tag": "colors"\n', r"metadata.jsonl:2: not JSON"),
    ('{"tag": "colors", "include": [], "prompt": "a red cup"}\n\n', r"metadata.jsonl:2: blank line"),
    ('{"tag": "colors", "prompt": "a red cup"}\n', r"metadata.jsonl:1: a GenEval line needs"),
])
def test_malformed_lines_stop_with_file_and_line(tmp_path, content, message):
    (tmp_path / "geneval").mkdir()
    (tmp_path / "geneval" / "evaluation_metadata.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prompt_set("geneval", root=tmp_path)


def test_convert_writes_jsonl(tmp_path):
    summary = convert_prompt_set("t2i_compbench", tmp_path / "sets" / "val.jsonl", categories=["spatial"])
    rows = read_jsonl(tmp_path / "sets" / "val.jsonl")
    assert summary == {"prompts": 300, "by_tag": {"spatial": 300}, "out": str(tmp_path / "sets" / "val.jsonl")}
    assert rows == load_prompt_set("t2i_compbench", categories=["spatial"])
