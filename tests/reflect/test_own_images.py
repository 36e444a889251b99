"""Checker rows on the model's own images (`data_prep/shapeworld/own_images.py`, `reflect-data --own`)."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep.shapeworld.own_images import OWN, own_example
from data_prep.shapeworld.chains import seen_chain
from data_prep.shapeworld.perturb import perturb, write_reflect_data
from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import Scene
from janus_rig.chain import ChainFormatError
from janus_rig.reflect.data import check_reflect_row, has_actor_target, role_sequences
from janus_rig.chain.roles import EDIT, KEEP


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, train=30, val=4, bench_per_tag=1, size=32, progress=False)
    return out


def records(world) -> list[dict]:
    return [json.loads(x) for x in (world / "train.jsonl").read_text().splitlines()]


def drawn_wrong(record: dict) -> Scene:
    """The record's scene with one object gone: what a model that dropped an object drew."""
    scene = Scene.from_json(record["scene"])
    broken = perturb(scene, record["metadata"], "drop", random.Random(0))
    assert broken is not None
    return broken.scene


def test_own_example_describes_what_the_model_drew(world, tiny_shapeworld_policy_dir):
    from janus_rig.model.policy import JanusPolicy

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir)
    record = records(world)[0]
    right = Scene.from_json(record["scene"])
    row, image = own_example(record, record["chain"], render(right), 32)
    assert row["decision"] == KEEP and all(v["holds"] for v in row["verdicts"])
    assert row["reflection"].startswith("<|reflect_start|>" + seen_chain(right))  # the scene it drew, as found
    assert row["perturbation"]["kind"] == OWN and row["actor"] is False and row["edit"] is None
    assert check_reflect_row({"id": "r", "image": "x.png", **row}) is None

    wrong = drawn_wrong(record)
    big = render(Scene(64, tuple(o.__class__(o.shape, o.color, tuple(2 * v for v in o.box)) for o in wrong.objects)))
    row, image = own_example(record, record["chain"], big, 32)  # drawn at 64 px: read at the world's 32
    assert image.size == (32, 32)
    assert row["decision"] == EDIT and not all(v["holds"] for v in row["verdicts"])
    assert Scene.from_json(row["scene"]).objects and len(row["scene"]["objects"]) == len(wrong.objects)
    full = {"id": "r", "image": "x.png", **row}
    assert check_reflect_row(full) is None and not has_actor_target(full)
    assert [s["id"] for s in role_sequences(policy, full)] == ["r/checker"]  # the checker only: no known edit

    with pytest.raises(ChainFormatError):
        own_example(record, "a <|obj_start|>red circle", render(right), 32)


def test_checker_only_rows_are_read_strictly():
    row = {"id": "r", "image": "x.png", "prompt": "p", "chain": "a <|obj_start|>red circle<|obj_end|> "
           "<|box_start|>(0,0),(100,100)<|box_end|>.", "decision": EDIT,
           "reflection": "<|reflect_start|>Nothing is in the image.\n<|verdict|>red circle: no\n<|decision|>edit"
                         "<|reflect_end|>"}
    assert check_reflect_row(row)[0] == "missing_field"  # an edit needs the actor's target ...
    assert check_reflect_row({**row, "actor": False}) is None  # ... unless the row is the checker's only
    assert check_reflect_row({**row, "actor": "no"})[0] == "bad_field"


class DrawingPolicy:
    """Stands in for a policy in `own_examples`: draws each record's scene (every third one with an object dropped)
    and writes its chain, except for prompts in `garbled`, whose chain does not parse."""

    device = "cpu"
    guidance = 3.0  # the CFG weight a model records (JanusPolicy.guidance): the own drawings' default

    def __init__(self, by_prompt: dict[str, dict], garbled: set[str]):
        self.by_prompt, self.garbled, self.drawn, self.garbled_drawn = by_prompt, garbled, [], 0

    def sample(self, policy, prompts, config, generator=None):
        assert policy is self and config.group_size == 1
        chains = ["a <|obj_start|>broken" if p in self.garbled else self.by_prompt[p]["chain"] for p in prompts]
        self.garbled_drawn += sum(p in self.garbled for p in prompts)
        self.drawn = [drawn_wrong(self.by_prompt[p]) if i % 3 == 0 else Scene.from_json(self.by_prompt[p]["scene"])
                      for i, p in enumerate(prompts)]
        return SimpleNamespace(chains=chains, image_tokens=torch.zeros(len(prompts), 4, dtype=torch.long))

    def decode_images(self, tokens):
        return torch.from_numpy(np.stack([np.array(render(s)) for s in self.drawn]))  # (B, S, S, 3)

    def __call__(self, prompts, seed):
        """An own_images.Drawer, as `janus-rig reflect-data --own` builds one from a policy."""
        out = self.sample(self, prompts, SimpleNamespace(group_size=1))
        return out.chains, [Image.fromarray(px.numpy()) for px in self.decode_images(out.image_tokens)]


def test_writer_mixes_own_rows_with_perturbed_ones(world, tmp_path, monkeypatch):
    import shutil


    world = shutil.copytree(world, tmp_path / "w")
    position = [r for r in records(world) if r["tag"] in ("position", "complex", "color_attr", "two_object")]
    by_prompt = {r["prompt"]: r for r in position}
    policy = DrawingPolicy(by_prompt, garbled={r["prompt"] for r in position[::2]})
    (world / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in position))  # prompts it can draw
    stats = write_reflect_data(world, 40, seed=2, progress=False, own=policy, own_share=0.5, overwrite=True)
    rows = [json.loads(x) for x in (world / "reflect.jsonl").read_text().splitlines()]
    own = [r for r in rows if r["perturbation"]["kind"] == OWN]
    assert 0 < policy.garbled_drawn < 20 and stats["skipped"]["own_bad_chain"] == policy.garbled_drawn
    assert len(rows) == 40 and stats["kinds"][OWN] == len(own) == 20 - policy.garbled_drawn  # counted, not lost
    assert {r["decision"] for r in own} == {KEEP, EDIT}
    assert all(check_reflect_row(r) is None for r in rows)
    assert all(not has_actor_target(r) for r in own) and all(has_actor_target(r) for r in rows if r not in own)
    from data_prep.converters.common import RowReport
    from train.reflect.trainer import load_edit_rows

    edits = load_edit_rows(world, [], 0, RowReport())  # the editor phase's fixed edits: perturbed rows only
    assert edits and all(r["perturbation"]["kind"] != OWN for r in edits)
    assert len(edits) == sum(r["decision"] == EDIT for r in rows if r not in own)
    with pytest.raises(ValueError, match="needs a policy"):
        write_reflect_data(world, 4, progress=False, own_share=0.5, overwrite=True)
    with pytest.raises(ValueError, match="own_share 2"):
        write_reflect_data(world, 4, progress=False, own=policy, own_share=2, overwrite=True)


def test_named_rows_sit_next_to_the_default_ones(world, tmp_path, capsys):
    import shutil

    from janus_rig.cli import main

    world = shutil.copytree(world, tmp_path / "w")
    write_reflect_data(world, 3, seed=0, split="val", progress=False, overwrite=True)
    before = (world / "reflect_val.jsonl").read_text()
    images = sorted(p.name for p in (world / "reflect" / "images").iterdir())
    stats = write_reflect_data(world, 4, seed=1, split="val", progress=False, name="own_val", overwrite=True)
    rows = [json.loads(x) for x in (world / "own_val.jsonl").read_text().splitlines()]
    assert stats["path"] == str(world / "own_val.jsonl") and [r["id"] for r in rows] == [
        f"own_val-{i:06d}" for i in range(4)]
    assert all((world / r["image"]).is_file() and r["image"].endswith(f"{r['id']}.png") for r in rows)
    assert (world / "reflect_val.jsonl").read_text() == before  # untouched, and so are its images
    assert set(images) <= {p.name for p in (world / "reflect" / "images").iterdir()}
    for bad in ("val", "../x", ""):
        assert main(["reflect-data", "--world", str(world), "--n", "2", "--name", bad]) == 2
        assert "--name" in capsys.readouterr().err


def test_own_keep_caps_the_keeps_by_drawing_on(world, tmp_path, monkeypatch):
    import shutil


    world = shutil.copytree(world, tmp_path / "w")
    position = [r for r in records(world) if r["tag"] in ("position", "complex", "color_attr", "two_object")]
    policy = DrawingPolicy({r["prompt"]: r for r in position}, garbled=set())
    (world / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in position))
    # one drawing in three is wrong (an object dropped); half of the own rows may be keeps
    stats = write_reflect_data(world, 24, seed=1, progress=False, own=policy, own_share=0.5, own_keep=0.5,
        overwrite=True)
    own = [json.loads(x) for x in (world / "reflect.jsonl").read_text().splitlines()][:12]
    assert all(r["perturbation"]["kind"] == OWN for r in own) and stats["kinds"][OWN] == 12
    assert sum(r["decision"] == KEEP for r in own) == 6 and stats["skipped"]["own_keep_over_cap"] > 0
    free = write_reflect_data(world, 24, seed=1, progress=False, own=policy, own_share=0.5, overwrite=True)
    free_own = [json.loads(x) for x in (world / "reflect.jsonl").read_text().splitlines()][:12]
    assert sum(r["decision"] == KEEP for r in free_own) > 6 and "own_keep_over_cap" not in free["skipped"]
    # a policy that never fails cannot supply the failures: perturbed rows fill the rest, and the stats say so

    draw = policy.sample

    def always_right(*args, **kwargs):
        out = draw(*args, **kwargs)
        policy.drawn = [Scene.from_json(policy.by_prompt[p]["scene"]) for p in args[1]]
        return out

    monkeypatch.setattr(policy, "sample", always_right)
    capped = write_reflect_data(world, 24, seed=1, progress=False, own=policy, own_share=0.5, own_keep=0.5,
        overwrite=True)
    assert capped["kinds"][OWN] == 6 and sum(capped["kinds"].values()) == 24
    assert capped["skipped"]["own_keep_over_cap"] == 10 * 12 - 6  # every draw is a keep; 6 were allowed
    with pytest.raises(ValueError, match="own_keep 1.5"):
        write_reflect_data(world, 4, progress=False, own=policy, own_share=0.5, own_keep=1.5, overwrite=True)


def test_redraw_boxes_name_what_the_drawing_got_wrong():
    from data_prep.shapeworld.detect import Detection
    from data_prep.shapeworld.own_images import redraw_boxes
    from janus_rig.chain import Box, ChainObject

    circle = ChainObject("red circle", Box.from_pixels(0, 0, 8, 8, 32, 32))
    square = ChainObject("blue square", Box.from_pixels(16, 16, 24, 24, 32, 32))
    drawn_circle = Detection("circle", "red", (0, 0, 8, 8), 50, 1.0)
    triangle = Detection("triangle", "blue", (16, 16, 24, 24), 30, 1.0)  # the square drawn as a triangle
    stray = Detection("square", "blue", (24, 0, 32, 8), 60, 1.0)  # in the wrong place
    boxes = redraw_boxes([circle, square], [drawn_circle, triangle, stray], 32)
    assert [(o.name, o.box) for o in boxes] == [
        ("blue square", square.box), ("blue triangle", Box.from_pixels(16, 16, 24, 24, 32, 32)),
        ("blue square", Box.from_pixels(24, 0, 32, 8, 32, 32))]
    assert redraw_boxes([circle, square], [], 32) == [circle, square]  # nothing drawn: both planned objects
    # drawn as planned yet wrong (say, a relation fails on the plan's own boxes): redraw every planned object
    assert redraw_boxes([circle], [drawn_circle], 32) == [circle]


def test_right_plans_drawn_wrong_teach_the_actor_to_redraw(world, tiny_shapeworld_policy_dir):
    from janus_rig.model.policy import JanusPolicy
    from janus_rig.chain.roles import parse_edit

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir)
    rows = records(world)
    record = next(r for r in rows if r["tag"] in ("position", "two_object"))
    wrong = drawn_wrong(record)
    row, _ = own_example(record, record["chain"], render(wrong), 32, redraw=True)
    assert row["plan_right"] and row["decision"] == EDIT and row["actor"] is True
    edit = parse_edit(row["edit"], strict=True)
    assert edit.chain_text == record["chain"]  # the plan is kept ...
    kept = {(o.color, o.shape, tuple(o.box)) for o in wrong.objects}
    dropped = [o for o in Scene.from_json(record["scene"]).objects if (o.color, o.shape, tuple(o.box)) not in kept]
    assert [b.name for b in edit.boxes] == [o.name for o in dropped]  # ... and the dropped object is redrawn
    full = {"id": "r", "image": "x.png", **row}
    assert check_reflect_row(full) is None
    assert [s["id"] for s in role_sequences(policy, full)] == ["r/checker", "r/actor"]
    assert own_example(record, record["chain"], render(wrong), 32)[0]["actor"] is False  # only when asked
    right, _ = own_example(record, record["chain"], render(Scene.from_json(record["scene"])), 32, redraw=True)
    assert right["decision"] == KEEP and right["actor"] is False and right["edit"] is None
    other = next(r for r in rows if r["metadata"] != record["metadata"] and r["tag"] == record["tag"])
    wrong_plan, _ = own_example(record, other["chain"], render(wrong), 32, redraw=True)
    assert not wrong_plan["plan_right"] and wrong_plan["actor"] is False  # no known edit for a wrong plan


def test_writer_keeps_right_plans_only_when_asked(world, tmp_path, monkeypatch):
    import shutil

    from data_prep.converters.common import RowReport
    from janus_rig.chain.roles import parse_edit
    from train.reflect.trainer import load_edit_rows

    world = shutil.copytree(world, tmp_path / "w")
    position = [r for r in records(world) if r["tag"] in ("position", "complex", "color_attr", "two_object")]
    policy = WrongPlanPolicy({r["prompt"]: r for r in position}, garbled=set())
    (world / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in position))
    stats = write_reflect_data(world, 24, seed=3, progress=False, own=policy, own_share=0.5, own_right_plans=True,
        overwrite=True)
    rows = [json.loads(x) for x in (world / "reflect.jsonl").read_text().splitlines()]
    own = [r for r in rows if r["perturbation"]["kind"] == OWN]
    assert policy.wrong_plans > 0 and stats["skipped"]["own_wrong_plan"] == policy.wrong_plans  # counted
    assert len(own) == stats["kinds"][OWN] == 12 and all(r["plan_right"] for r in own)
    edits = [r for r in own if r["decision"] == EDIT]
    assert edits and all(r["actor"] and parse_edit(r["edit"]).chain_text == r["chain"] for r in edits)
    assert all(check_reflect_row(r) is None for r in rows)
    phase = load_edit_rows(world, [], 0, RowReport())  # the editor phase redraws them too
    assert {r["id"] for r in edits} <= {r["id"] for r in phase}
    from janus_rig.cli import main

    with pytest.raises(SystemExit, match="need --own MODEL"):
        main(["reflect-data", "--world", str(world), "--n", "2", "--own-right-plans"])


class WrongPlanPolicy(DrawingPolicy):
    """DrawingPolicy that writes, for every fourth prompt, another prompt's chain (a wrong plan)."""

    def __init__(self, by_prompt: dict[str, dict], garbled: set[str]):
        super().__init__(by_prompt, garbled)
        self.wrong_plans, self.others = 0, list(by_prompt.values())

    def sample(self, policy, prompts, config, generator=None):
        out = super().sample(policy, prompts, config, generator)
        for i, p in enumerate(prompts):
            if i % 4 == 1:
                other = next(r for r in self.others if r["metadata"] != self.by_prompt[p]["metadata"])
                out.chains[i] = other["chain"]
                self.wrong_plans += 1
        return out


def test_replan_teaches_the_actor_the_records_plan_and_the_whole_image(world, tmp_path, monkeypatch):
    import shutil

    from data_prep.shapeworld.own_images import WHOLE_IMAGE
    from janus_rig.chain.roles import parse_edit

    rows = records(world)
    record = next(r for r in rows if r["tag"] in ("position", "two_object"))
    other = next(r for r in rows if r["metadata"] != record["metadata"] and r["tag"] == record["tag"])
    wrong = drawn_wrong(record)
    for plan in (record["chain"], other["chain"]):  # a right plan drawn wrong, and a wrong plan
        row, _ = own_example(record, plan, render(wrong), 32, replan=True)
        assert row["decision"] == EDIT and row["actor"] is True and row["chain"] == plan
        edit = parse_edit(row["edit"], strict=True)
        assert edit.chain_text == record["chain"] and edit.boxes == [WHOLE_IMAGE]
        assert check_reflect_row({"id": "r", "image": "x.png", **row}) is None
    right, _ = own_example(record, other["chain"], render(Scene.from_json(record["scene"])), 32, replan=True)
    assert right["decision"] == KEEP and right["actor"] is False and right["edit"] is None  # nothing to fix

    world = shutil.copytree(world, tmp_path / "w")
    position = [r for r in records(world) if r["tag"] in ("position", "complex", "color_attr", "two_object")]
    policy = WrongPlanPolicy({r["prompt"]: r for r in position}, garbled=set())
    (world / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in position))
    write_reflect_data(world, 24, seed=3, progress=False, own=policy, own_share=0.5, own_replan=True,
        overwrite=True)
    by_id = {r["id"]: r for r in position}
    own = [json.loads(x) for x in (world / "reflect.jsonl").read_text().splitlines()]
    edits = [r for r in own if r["perturbation"]["kind"] == OWN and r["decision"] == EDIT]
    assert edits and all(parse_edit(r["edit"]).chain_text == by_id[r["source"]]["chain"] for r in edits)
