"""Perturbations make exactly the intended facts fail (by the oracle, on the rendered image), keep the world's
rules, and their targets (reflection, edit) match the oracle; the reflect.jsonl writer."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from data_prep.shapeworld.chains import prompt_chain, training_chain
from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import detections_to_objects
from data_prep.shapeworld.perturb import (
    NONE,
    PERTURBATIONS,
    example,
    make_example,
    perturb,
    unperturbed,
    write_reflect_data,
)
from data_prep.shapeworld.prompts import metadata, prompt_text
from data_prep.shapeworld.render import render
from data_prep.shapeworld.sampler import TAGS, apart, min_gap, sample, side_range
from janus_rig.reflect.data import check_reflect_row
from data_prep.shapeworld.facts import oracle_verdicts, stated_facts
from janus_rig.chain.roles import parse_edit, parse_reflection
from janus_rig.rollout.regions import patch_mask

COLOURED = ("colors", "color_attr", "position", "complex")


def samples(n_per_tag: int, size: int, seed: int = 0):
    rng = random.Random(seed)
    for tag in TAGS:
        for _ in range(n_per_tag):
            s = sample(tag, rng, size=size)
            yield s, metadata(s.description), rng


def record_of(s, meta, rng) -> dict:
    return {"id": "train-000001", "tag": s.description.tag, "prompt": prompt_text(s.description),
            "chain": training_chain(s, rng), "metadata": meta, "scene": s.scene.to_json()}


def assert_valid_scene(scene):
    lo, hi = side_range(scene.size)
    for i, o in enumerate(scene.objects):
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 < x2 <= scene.size and 0 <= y1 < y2 <= scene.size and lo <= o.side <= hi
        assert x2 - x1 == y2 - y1
        for other in scene.objects[i + 1:]:
            assert apart(o.box, other.box, min_gap(scene.size))


@pytest.mark.parametrize("size", [64, 32])
def test_each_perturbation_fails_exactly_what_it_means_to(size):
    applied = {k: set() for k in PERTURBATIONS}
    for s, meta, rng in samples(12, size, seed=size):
        statements = {f.statement for f in stated_facts(meta)}
        for kind in PERTURBATIONS:
            p = perturb(s.scene, meta, kind, rng)
            if p is None:
                continue
            applied[kind].add(s.description.tag)
            assert p.kind == kind and p.expected_failures <= statements
            failed = {v.statement for v in oracle_verdicts(meta, render(p.scene)) if not v.holds}
            assert failed == p.expected_failures, (kind, meta["prompt"], p.note)
            assert_valid_scene(p.scene)
            tag = s.description.tag
            if kind == "add" and tag != "counting":
                assert not failed  # a distractor: the caption still holds
            else:
                assert failed, (kind, meta["prompt"])
            if kind == "move":
                assert len(failed) == 1 and next(iter(failed)) in {f.statement for f in stated_facts(meta)
                                                                   if f.kind == "relation"}
    assert applied["move"] == {"position", "complex"}
    assert applied["recolor"] == set(COLOURED)
    assert applied["swap_shape"] == applied["drop"] == applied["add"] == set(TAGS)


def test_edit_boxes_cover_every_changed_pixel_and_nothing_else_changes():
    for s, meta, rng in samples(6, 64, seed=5):
        correct = np.asarray(render(s.scene))
        for kind in PERTURBATIONS:
            p = perturb(s.scene, meta, kind, rng)
            if p is None:
                continue
            changed = (np.asarray(render(p.scene)) != correct).any(-1)  # (S, S) pixels
            inside = patch_mask([o.box for o in p.edit_boxes], 64).numpy()  # (64, 64): one patch per pixel
            assert changed.any() and not (changed & ~inside).any(), (kind, p.note)
            # Objects other than the changed one are untouched.
            kept = [o for i, o in enumerate(s.scene.objects) if i != p.index]
            assert all(o in p.scene.objects for o in kept)


def test_targets_match_the_oracle():
    for s, meta, rng in samples(4, 64, seed=9):
        record = record_of(s, meta, rng)
        for p in [unperturbed(s.scene)] + [perturb(s.scene, meta, k, rng) for k in PERTURBATIONS]:
            if p is None:
                continue
            row, image = example(record, p)
            truth = oracle_verdicts(meta, image)
            reflection = parse_reflection(row["reflection"], strict=True)
            assert reflection.verdicts == truth
            assert reflection.decision == ("keep" if all(v.holds for v in truth) else "edit") == row["decision"]
            seen = [(o.name, o.box.as_tuple()) for o in reflection.seen.objects]
            found = [(o.name, o.box.as_tuple()) for o in detections_to_objects(detect(image), 64)]
            assert sorted(seen) == sorted(found)  # the oracle's true description of the image
            if row["decision"] == "edit":
                edit = parse_edit(row["edit"], strict=True)
                assert edit.chain_text == record["chain"]
                assert [list(o.box.as_tuple()) for o in edit.boxes] == row["edit_boxes"] != []
            else:
                assert row["edit"] is None and row["edit_boxes"] == []
            assert check_reflect_row({"id": "x", "image": "x.png", **row}) is None


@pytest.mark.parametrize("style", ["varied", "prompt"])
def test_plan_errors_show_the_plan_the_moved_image_follows(style):
    from janus_rig.chain import parse_chain

    moves = 0
    for s, meta, rng in samples(6, 64, seed=3):
        record = record_of(s, meta, rng)
        if style == "prompt":
            record["chain"] = prompt_chain(s)
        p = perturb(s.scene, meta, "move", rng)
        if p is None:
            continue
        moves += 1
        right, _ = example(record, p)
        row, image = example(record, p, plan_error=True)
        assert row["plan_error"] and not right["plan_error"] and right["chain"] == record["chain"]
        # the shown plan is the moved scene's layout: a wrong plan the image follows
        shown = sorted((o.name, o.box.as_tuple()) for o in parse_chain(row["chain"], strict=True).objects)
        drawn = sorted((o.name, o.box.as_tuple()) for o in detections_to_objects(detect(image), 64))
        assert shown == drawn and row["chain"] != record["chain"]
        # the checker's targets are about the image (unchanged); the actor must restore the record's chain
        assert row["reflection"] == right["reflection"] and row["decision"] == "edit"
        assert parse_edit(row["edit"], strict=True).chain_text == record["chain"]
        assert check_reflect_row({"id": "x", "image": "x.png", **row}) is None
    assert moves >= 6  # position and complex samples
    with pytest.raises(ValueError, match="plan errors are moves"):
        example(record, perturb(s.scene, meta, "drop", rng), plan_error=True)


def test_make_example_rejects_unusable_records():
    s, meta, rng = next(samples(1, 64))
    record = record_of(s, meta, rng)
    with pytest.raises(ValueError, match="scene"):
        make_example({**record, "scene": None}, rng, 0.5)
    wrong = {**record, "metadata": {**meta, "include": [{"class": "circle", "count": 4}]}}
    with pytest.raises(ValueError, match="does not satisfy"):
        make_example(wrong, rng, 0.5)
    row, _ = make_example(record, random.Random(0), keep_fraction=1.0)
    assert row["perturbation"]["kind"] == NONE and row["decision"] == "keep"


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, train=30, val=4, bench_per_tag=1, size=32, progress=False)
    return out


def test_write_reflect_data(tiny_world, tmp_path):
    stats = write_reflect_data(tiny_world, 60, seed=1, keep_fraction=0.2, progress=False)
    rows = [json.loads(x) for x in (tiny_world / "reflect.jsonl").read_text().splitlines()]
    assert len(rows) == 60 == stats["rows"] and not stats["skipped"]
    assert set(stats["kinds"]) == {NONE, *PERTURBATIONS} and sum(stats["kinds"].values()) == 60
    assert stats["decisions"]["keep"] >= stats["kinds"][NONE]
    from PIL import Image

    for row in rows:
        assert check_reflect_row(row) is None
        with Image.open(tiny_world / row["image"]) as im:
            assert im.size == (32, 32)
            truth = oracle_verdicts(row["metadata"], im.convert("RGB"))
        assert [v["holds"] for v in row["verdicts"]] == [v.holds for v in truth]
    with pytest.raises(ValueError, match="add --overwrite"):  # a rerun never mixes with the earlier set
        write_reflect_data(tiny_world, 60, seed=1, keep_fraction=0.2, progress=False)
    again = write_reflect_data(tiny_world, 60, seed=1, keep_fraction=0.2, progress=False, overwrite=True)
    assert [json.loads(x) for x in (tiny_world / "reflect.jsonl").read_text().splitlines()] == rows
    assert again["kinds"] == stats["kinds"]
    assert stats["plan_errors"] == 0 and not any(r["plan_error"] for r in rows)
    stats = write_reflect_data(tiny_world, 60, seed=1, keep_fraction=0.2, progress=False, plan_errors=1.0,
                               overwrite=True)
    rows = [json.loads(x) for x in (tiny_world / "reflect.jsonl").read_text().splitlines()]
    assert stats["plan_errors"] == stats["kinds"]["move"] > 0
    assert [r["plan_error"] for r in rows] == [r["perturbation"]["kind"] == "move" for r in rows]
    with pytest.raises(ValueError, match="plan_errors 1.5 is outside"):
        write_reflect_data(tiny_world, 5, plan_errors=1.5)
    write_reflect_data(tiny_world, 5, split="val", progress=False)
    assert len((tiny_world / "reflect_val.jsonl").read_text().splitlines()) == 5
    # A smaller rerun leaves no image that no row names.
    write_reflect_data(tiny_world, 7, seed=2, progress=False, overwrite=True)
    named = {json.loads(x)["image"] for x in (tiny_world / "reflect.jsonl").read_text().splitlines()}
    on_disk = {f"reflect/images/{p.name}" for p in (tiny_world / "reflect" / "images").glob("reflect-train-*.png")}
    assert len(named) == 7 and on_disk == named


def test_writer_skips_and_counts_bad_records(tiny_world, tmp_path):
    world = tmp_path / "w"
    world.mkdir()
    lines = (tiny_world / "train.jsonl").read_text().splitlines()[:3]
    broken = json.loads(lines[0])
    del broken["scene"]
    (world / "train.jsonl").write_text("\n".join([json.dumps(broken), "not json", *lines[1:]]) + "\n")
    stats = write_reflect_data(world, 10, progress=False)
    assert stats["rows"] == 10 and stats["skipped"]["not_json"] == 1
    assert any("scene" in k for k in stats["skipped"])  # the broken record, each time it was drawn
    with pytest.raises(FileNotFoundError, match="janus-rig world"):
        write_reflect_data(tmp_path / "nowhere", 3, progress=False)
    with pytest.raises(ValueError, match="keep_fraction"):
        write_reflect_data(world, 3, keep_fraction=2, progress=False)
