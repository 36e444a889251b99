import json

import pytest
from PIL import Image

from data_prep.shapeworld.prompts import DISJOINT_TAGS
from data_prep.shapeworld.sampler import TAGS
from data_prep.shapeworld.scene import Scene
from data_prep.shapeworld.world import TAG_WEIGHTS, make_bench, parse_holdout, tag_counts, write_world
from janus_rig.cli import main

RECORD_KEYS = {"id", "tag", "prompt", "chain", "image", "metadata", "scene", "scene_graph"}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    stats = write_world(out, train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False)
    return out, stats


def test_files_and_counts(world):
    out, stats = world
    train, val = _rows(out / "train.jsonl"), _rows(out / "val.jsonl")
    grounding, bench = _rows(out / "grounding.jsonl"), _rows(out / "bench" / "metadata.jsonl")
    assert (len(train), len(val), len(grounding), len(bench)) == (70, 14, 70, 8 * len(TAGS))
    assert stats["counts"] == {"train": 70, "val": 14, "grounding": 70, "bench": 56}
    assert train[0]["id"] == "train-000000" and train[0]["image"] == "images/train-000000.png"
    for row in train + val:
        assert set(row) == RECORD_KEYS
        assert row["metadata"]["prompt"] == row["prompt"] and row["metadata"]["tag"] == row["tag"]
        image = Image.open(out / row["image"])
        assert image.size == (32, 32) and image.mode == "RGB"
        scene = Scene.from_json(row["scene"])
        assert [i["label"] for i in row["scene_graph"]["items"]] == [o.shape for o in scene.objects]
    assert [g["id"] for g in grounding] == [r["id"] for r in train]
    assert {r["tag"] for r in train} == set(TAGS)
    ids = [i["global_item_id"] for r in train + val for i in r["scene_graph"]["items"]]
    assert ids == list(range(len(ids)))
    settings = json.loads((out / "world.json").read_text())
    assert settings["size"] == 32 and settings["seed"] == 3 and settings["holdout"] == []
    assert settings["counts"] == {"train": 70, "val": 14, "bench_per_tag": 8}
    assert settings["tag_counts"]["train"] == tag_counts(70)


def test_bench_schema_and_disjointness(world):
    out, stats = world
    bench = _rows(out / "bench" / "metadata.jsonl")
    for line in bench:
        assert set(line) <= {"tag", "include", "exclude", "prompt"}
    assert [line["tag"] for line in bench] == [t for t in TAGS for _ in range(8)]
    records = _rows(out / "train.jsonl") + _rows(out / "val.jsonl")
    for tag in DISJOINT_TAGS:
        bench_prompts = {line["prompt"] for line in bench if line["tag"] == tag}
        assert len(bench_prompts) == 8  # distinct within the tag
        assert not bench_prompts & {r["prompt"] for r in records if r["tag"] == tag}
        assert stats["bench_overlap"]["train"][tag] == 0
    single = [line["prompt"] for line in bench if line["tag"] == "single_object"]
    assert set(single) == {"a circle", "a square", "a triangle"}  # the tiny space is cycled, not repeated at random
    overlap = sum(r["prompt"] in single for r in _rows(out / "train.jsonl") if r["tag"] == "single_object")
    assert stats["bench_overlap"]["train"]["single_object"] == overlap


def test_deterministic_under_seed(world, tmp_path):
    out, _ = world
    write_world(tmp_path / "a", train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False)
    for name in ("train.jsonl", "val.jsonl", "grounding.jsonl", "bench/metadata.jsonl", "world.json"):
        assert (tmp_path / "a" / name).read_text() == (out / name).read_text()
    assert (tmp_path / "a/images/val-000013.png").read_bytes() == (out / "images/val-000013.png").read_bytes()
    write_world(tmp_path / "b", train=70, val=14, bench_per_tag=8, size=32, seed=4, progress=False)
    assert (tmp_path / "b/train.jsonl").read_text() != (out / "train.jsonl").read_text()
    assert make_bench(8, 3) == _rows(out / "bench" / "metadata.jsonl")


def test_prompt_chains_keep_the_scenes(world, tmp_path):
    out, _ = world
    write_world(tmp_path, train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False, chains="prompt")
    varied, prompt = _rows(out / "train.jsonl"), _rows(tmp_path / "train.jsonl")
    assert [r["scene"] for r in varied] == [r["scene"] for r in prompt]  # only the chains differ
    assert (tmp_path / "grounding.jsonl").read_text() == (out / "grounding.jsonl").read_text()
    assert sum(a["chain"] != b["chain"] for a, b in zip(varied, prompt)) > 60
    for r in prompt:
        if r["tag"] == "position":  # "a A left of a B" -> "a <A> <box> left of a <B> <box>."
            words = r["prompt"].split()
            assert r["chain"].startswith(f"a <|obj_start|>{words[1]} {words[2]}<|obj_end|>"), r["chain"]
    settings = [json.loads((d / "world.json").read_text()) for d in (out, tmp_path)]
    assert (settings[0]["chains"], settings[1]["chains"]) == ("varied", "prompt")


def test_holdout_and_tags(tmp_path):
    write_world(tmp_path, train=80, val=10, bench_per_tag=4, size=32, holdout="red:circle, blue:square",
                tags=["position", "complex"], progress=False)
    rows = _rows(tmp_path / "train.jsonl") + _rows(tmp_path / "val.jsonl")
    assert {r["tag"] for r in rows} == {"position", "complex"}
    names = {(o["color"], o["shape"]) for r in rows for o in r["scene"]["objects"]}
    assert not names & {("red", "circle"), ("blue", "square")}
    assert len({r["tag"] for r in _rows(tmp_path / "bench" / "metadata.jsonl")}) == len(TAGS)
    assert json.loads((tmp_path / "world.json").read_text())["holdout"] == ["blue:square", "red:circle"]


def test_tag_mix():
    assert sum(TAG_WEIGHTS.values()) == pytest.approx(1.0)
    counts = tag_counts(20000)
    assert sum(counts.values()) == 20000 and counts["position"] == 6000 and counts["complex"] == 5000
    assert sum(tag_counts(13).values()) == 13
    assert tag_counts(10, ["position", "complex"]) == {"position": 5, "complex": 5}


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="valid: red, green, blue, yellow, purple, white"):
        parse_holdout("pink:circle")
    with pytest.raises(ValueError, match="valid: circle, square, triangle"):
        parse_holdout("red:hexagon")
    with pytest.raises(ValueError, match="COLOR:SHAPE"):
        parse_holdout("red")
    assert parse_holdout(["red:circle", ("blue", "square")]) == {("red", "circle"), ("blue", "square")}
    with pytest.raises(ValueError, match="at most 90"):
        write_world(tmp_path, train=1, val=1, bench_per_tag=100, progress=False)
    with pytest.raises(ValueError, match="unknown tag"):
        write_world(tmp_path, train=1, val=1, bench_per_tag=1, tags=["spatial"], progress=False)
    with pytest.raises(ValueError, match="unknown chain style 'canonical'; valid: varied, prompt"):
        write_world(tmp_path, train=1, val=1, bench_per_tag=1, chains="canonical", progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        write_world(tmp_path, train=-1, val=1, bench_per_tag=1, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "--out", str(out), "--train", "12", "--val", "3", "--bench-per-tag", "2",
                 "--size", "32", "--seed", "1", "--quiet"]) == 0
    assert len(_rows(out / "train.jsonl")) == 12 and len(_rows(out / "bench" / "metadata.jsonl")) == 14
    assert "wrote the world" in capsys.readouterr().out
    assert main(["world", "--out", str(tmp_path / "p"), "--train", "4", "--val", "1", "--bench-per-tag", "1",
                 "--size", "32", "--chains", "prompt", "--quiet"]) == 0
    assert json.loads((tmp_path / "p" / "world.json").read_text())["chains"] == "prompt"
    assert main(["world", "--out", str(out), "--holdout", "pink:circle", "--quiet"]) == 2
    assert "unknown colour 'pink'; valid: red" in capsys.readouterr().err
