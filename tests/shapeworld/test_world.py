import json

import pytest
from PIL import Image

from data_prep.shapeworld.prompts import DISJOINT_TAGS
from data_prep.shapeworld.sampler import TAGS
from data_prep.shapeworld.scene import Scene
from data_prep.shapeworld.world import (
    TAG_WEIGHTS,
    heldout_counts,
    make_bench,
    make_heldout,
    parse_holdout,
    tag_counts,
    write_world,
)
from janus_rig.cli import main

RECORD_KEYS = {"id", "tag", "prompt", "chain", "image", "metadata", "scene", "scene_graph"}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    stats = write_world(out, train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False, heldout_per_tag=6)
    return out, stats


def test_files_and_counts(world):
    out, stats = world
    train, val = _rows(out / "train.jsonl"), _rows(out / "val.jsonl")
    grounding, bench = _rows(out / "grounding.jsonl"), _rows(out / "bench" / "metadata.jsonl")
    assert (len(train), len(val), len(grounding), len(bench)) == (70, 14, 70, 8 * len(TAGS))
    assert stats["counts"] == {"train": 70, "val": 14, "grounding": 70, "bench": 56, "heldout": 42}
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
    assert settings["counts"] == {"train": 70, "val": 14, "bench_per_tag": 8, "heldout_per_tag": 6}
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
    write_world(tmp_path / "a", train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False, heldout_per_tag=6)
    for name in ("train.jsonl", "val.jsonl", "grounding.jsonl", "bench/metadata.jsonl", "heldout/metadata.jsonl",
                 "world.json"):
        assert (tmp_path / "a" / name).read_text() == (out / name).read_text()
    assert (tmp_path / "a/images/val-000013.png").read_bytes() == (out / "images/val-000013.png").read_bytes()
    write_world(tmp_path / "b", train=70, val=14, bench_per_tag=8, size=32, seed=4, progress=False, heldout_per_tag=6)
    assert (tmp_path / "b/train.jsonl").read_text() != (out / "train.jsonl").read_text()
    assert (tmp_path / "b/heldout/metadata.jsonl").read_text() != (out / "heldout/metadata.jsonl").read_text()
    assert make_bench(8, 3) == _rows(out / "bench" / "metadata.jsonl")
    assert make_heldout(heldout_counts(6, 8), 3, make_bench(8, 3)) == _rows(out / "heldout" / "metadata.jsonl")


def test_prompt_chains_keep_the_scenes(world, tmp_path):
    out, _ = world
    write_world(tmp_path, train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False, chains="prompt",
                heldout_per_tag=6)
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


def test_heldout_prompts_never_occur_in_train_or_val_nor_in_the_bench(tmp_path):
    # Small enough to write fast, dense enough that its records WOULD hit held-out prompts unless they were
    # rejected: ~52 color_attr records against 86 held-out of 180 prompts (~25 hits expected without the rule),
    # ~100 position records against 100 held-out of 1224 (~8).
    stats = write_world(tmp_path, train=220, val=20, bench_per_tag=4, size=32, seed=5, progress=False,
                        tags=["color_attr", "position", "complex"], heldout_per_tag=100)
    heldout, bench = _rows(tmp_path / "heldout" / "metadata.jsonl"), _rows(tmp_path / "bench" / "metadata.jsonl")
    records = _rows(tmp_path / "train.jsonl") + _rows(tmp_path / "val.jsonl")
    assert {tag: sum(m["tag"] == tag for m in heldout) for tag in TAGS} == heldout_counts(100, 4)
    assert heldout_counts(100, 4)["color_attr"] == 180 // 2 - 4  # bench + held-out leave half to training
    for tag in DISJOINT_TAGS:
        held = [m["prompt"] for m in heldout if m["tag"] == tag]
        assert len(set(held)) == len(held)  # distinct
        assert not set(held) & {m["prompt"] for m in bench if m["tag"] == tag}
        assert not set(held) & {r["prompt"] for r in records}  # the exact text, with any scene
        assert stats["heldout_overlap"]["train"][tag] == stats["heldout_overlap"]["val"][tag] == 0


def test_heldout_covers_every_tag_and_counts_its_overlap_with_training(world):
    out, stats = world
    heldout = _rows(out / "heldout" / "metadata.jsonl")
    assert [m["tag"] for m in heldout] == [t for t in TAGS for _ in range(6)]
    assert stats["paths"]["heldout"] == str(out / "heldout" / "metadata.jsonl")
    settings = json.loads((out / "world.json").read_text())
    assert settings["heldout_counts"] == stats["heldout_counts"] == {t: 6 for t in TAGS}
    assert settings["heldout_overlap"] == stats["heldout_overlap"]
    for split in ("train", "val"):
        prompts = {r["prompt"] for r in _rows(out / f"{split}.jsonl")}
        for tag in TAGS:  # the tiny tags' prompts also occur in training: counted, per split and tag
            expected = sum(m["prompt"] in prompts for m in heldout if m["tag"] == tag)
            assert stats["heldout_overlap"][split][tag] == expected
    assert stats["heldout_overlap"]["train"]["single_object"] > 0


def test_heldout_is_geneval_metadata_the_oracle_scores(world):
    from janus_rig.eval.geneval_run import choose_oracle, read_geneval_metadata

    out, _ = world
    path = out / "heldout" / "metadata.jsonl"
    bench_keys = {frozenset(m) for m in _rows(out / "bench" / "metadata.jsonl")}
    assert {frozenset(m) for m in _rows(path)} <= bench_keys  # the bench's schema, line for line by tag
    entries = read_geneval_metadata(path)  # what `janus-rig eval geneval --metadata` reads
    assert len(entries) == 42 and choose_oracle(entries, "on", path).use


def test_heldout_split_leaves_the_bench_and_zero_writes_none(world, tmp_path):
    out, _ = world
    stats = write_world(tmp_path, train=70, val=14, bench_per_tag=8, size=32, seed=3, progress=False,
                        heldout_per_tag=0)
    assert (tmp_path / "bench/metadata.jsonl").read_text() == (out / "bench/metadata.jsonl").read_text()
    assert not (tmp_path / "heldout").exists() and stats["paths"]["heldout"] is None
    assert stats["counts"]["heldout"] == 0 and set(stats["heldout_counts"].values()) == {0}
    assert heldout_counts(64, 90)["color_attr"] == 0  # a bench of half the space leaves nothing to hold out


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
    assert len(_rows(out / "heldout" / "metadata.jsonl")) == 64 * len(TAGS)  # --heldout-per-tag 64 by default
    assert "wrote the world" in capsys.readouterr().out
    assert main(["world", "--out", str(tmp_path / "p"), "--train", "4", "--val", "1", "--bench-per-tag", "1",
                 "--size", "32", "--chains", "prompt", "--quiet"]) == 0
    assert json.loads((tmp_path / "p" / "world.json").read_text())["chains"] == "prompt"
    assert main(["world", "--out", str(tmp_path / "h"), "--train", "4", "--val", "1", "--bench-per-tag", "1",
                 "--size", "32", "--heldout-per-tag", "0", "--quiet"]) == 0
    assert not (tmp_path / "h" / "heldout").exists()
    assert main(["world", "--out", str(out), "--holdout", "pink:circle", "--quiet"]) == 2
    assert "unknown colour 'pink'; valid: red" in capsys.readouterr().err
