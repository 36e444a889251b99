"""Probes on rendered images whose truth is known (`janus_rig/reflect/probe.py`, `janus-rig eval checker`)."""

from __future__ import annotations

import json

import pytest
import torch

from data_prep.shapeworld.chains import grounding_chain
from data_prep.shapeworld.scene import Scene
from janus_rig.cli import main
from janus_rig.chain.roles import EDIT, KEEP, Verdict, format_reflection, parse_reflection
from janus_rig.reflect.probe import checker_scores, grounding_scores, read_rows
from tests.reflect.conftest import VAL_ROWS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def rows_of(world) -> list[dict]:
    return [json.loads(x) for x in (world / "reflect_val.jsonl").read_text().splitlines()]


def said(row: dict, flip: set[int] = frozenset(), drop: set[int] = frozenset(), decision: str | None = None,
         seen: str | None = None):
    """A reflection on the row's facts: the truth, with the verdicts at `flip` reversed and those at `drop` left out."""
    verdicts = [Verdict(v["statement"], v["holds"] != (i in flip)) for i, v in enumerate(row["verdicts"])
                if i not in drop]
    seen = seen if seen is not None else grounding_chain(Scene.from_json(row["scene"]))
    return parse_reflection(format_reflection(seen, verdicts, decision or row["decision"]))


def test_checker_scores_the_truth_perfectly(val_world):
    rows = rows_of(val_world)
    scores = checker_scores([said(r) for r in rows], rows)
    assert scores["verdict_accuracy"] == 1.0 and scores["decision_accuracy"] == 1.0
    assert scores["seen_objects_found"] == 1.0 and scores["said_edit"] == scores["edit_share"]
    assert sum(scores["answers"].values()) == scores["facts"] == sum(len(r["verdicts"]) for r in rows)
    assert all(k.split("->")[0].split("/")[1] == ("true" if k.endswith("yes") else "false")
               for k in scores["answers"])  # every answer agrees with the truth


def test_checker_scores_count_wrong_and_missing_answers(val_world):
    rows = rows_of(val_world)[:1]
    row = rows[0]
    wrong = EDIT if row["decision"] == KEEP else KEEP
    reflection = said(row, flip={0}, drop={1}, decision=wrong, seen="The image shows nothing.")
    scores = checker_scores([reflection], rows)
    n = len(row["verdicts"])
    assert scores["verdict_accuracy"] == pytest.approx((n - 2) / n)
    assert scores["verdict_coverage"] == pytest.approx((n - 1) / n)
    assert scores["decision_accuracy"] == 0.0 and scores["seen_objects_found"] == 0.0
    first = row["verdicts"][0]  # the first stated fact is always an object clause (`stated_facts`)
    assert scores["answers"][f"object/{str(first['holds']).lower()}->{'no' if first['holds'] else 'yes'}"] == 1
    assert sum(v for k, v in scores["answers"].items() if k.endswith("->none")) == 1
    assert scores["decisions"] == {f"{row['decision']}->{wrong}": 1}
    own = {**row, "decision": EDIT, "plan_right": True}  # an own row: edits say whether the plan was right
    assert checker_scores([said(own, decision=KEEP)], [own])["decisions"] == {"edit/right_plan->keep": 1}
    garbled = parse_reflection("nothing readable")
    assert checker_scores([garbled], [{**own, "plan_right": False}])["decisions"] == {"edit/wrong_plan->none": 1}
    assert scores["facts_holding"] == pytest.approx(sum(v["holds"] for v in row["verdicts"]) / n)


def test_grounding_scores(val_world):
    records = [json.loads(x) for x in (val_world / "val.jsonl").read_text().splitlines()][:3]
    scenes = [r["scene"] for r in records]
    right = [grounding_chain(Scene.from_json(s)) for s in scenes]
    assert grounding_scores(right, scenes) == {"images": 3, "names_exact": 1.0, "objects_found": 1.0,
                                               "names_found": 1.0, "boxes_found": 1.0, "unreadable": 0}
    garbage = ["<|obj_start|>red", "no objects here", right[2]]
    scores = grounding_scores(garbage, scenes)
    assert scores["unreadable"] == 1 and scores["names_exact"] == pytest.approx(1 / 3)
    total = sum(len(s["objects"]) for s in scenes)
    assert scores["objects_found"] == pytest.approx(len(scenes[2]["objects"]) / total)


def test_read_rows_names_the_bad_row(val_world, tmp_path):
    rows = rows_of(val_world)
    bad = dict(rows[1], verdicts=[{"statement": "red circle", "holds": "yes"}])
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (rows[0], bad)) + "\n")
    with pytest.raises(ValueError, match=rf"rows.jsonl:2: row {bad['id']}: verdicts"):
        read_rows(path)
    assert len(read_rows(path, limit=1)) == 1
    from janus_rig.reflect.probe import missing_fields

    assert len(read_rows(path, check=missing_fields("image", "scene"))) == 2  # what the grounding probe needs
    with pytest.raises(ValueError, match=rf"rows.jsonl:1: row {rows[0]['id']}: no answer"):
        read_rows(path, check=missing_fields("image", "answer"))
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="rows.jsonl:1: not JSON"):
        read_rows(path)


def test_eval_checker_command(val_world, tiny_shapeworld_policy_dir, tmp_path, capsys):
    out = tmp_path / "probe"
    code = main(["eval", "checker", "--model", str(tiny_shapeworld_policy_dir), "--world", str(val_world),
                 "--grounding-limit", "3", "--max-reflection-tokens", "8", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = rows_of(val_world)
    assert summary["checker"]["checks"] == len(rows) and summary["grounding"]["images"] == 3
    assert summary["checker"]["edit_share"] == sum(r["decision"] == EDIT for r in rows) / len(rows)
    checks = [json.loads(x) for x in (out / "checks.jsonl").read_text().splitlines()]
    assert [c["id"] for c in checks] == [r["id"] for r in rows]
    assert all(len(c["verdicts_right"]) == len(r["verdicts"]) for c, r in zip(checks, rows))
    assert f"checker on {VAL_ROWS} images of" in capsys.readouterr().out
    assert main(["eval", "checker", "--model", str(tiny_shapeworld_policy_dir), "--world", str(tmp_path),
                 "--out", str(out)]) == 2
    assert "world.json not found" in capsys.readouterr().err


def test_probes_read_codes_in_the_codes_view(val_world, tiny_shapeworld_policy_dir):
    from data_prep.vq_cache import encode_images, load_image
    from janus_rig.model.policy import JanusPolicy
    from janus_rig.reflect.probe import probe_checker, probe_grounding
    from janus_rig.reflect.text import TextConfig

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir)
    rows = rows_of(val_world)[:3]
    config = TextConfig(max_new_tokens=4)
    seen = []
    real = policy.show_images
    policy.show_images = lambda contexts, images, codes=None: seen.append(codes) or real(contexts, images, codes)
    vision = probe_grounding(policy, rows, val_world, 32, config)
    policy.image_view = "codes"
    codes = probe_grounding(policy, rows, val_world, 32, config)
    assert len(vision) == len(codes) == 3 and seen[0] is None
    pixels = [load_image(val_world / r["image"], 32, policy.image_size) for r in rows]
    assert torch.equal(seen[1], encode_images(policy.base.model.vqmodel, torch.stack(pixels)))
    assert len(probe_checker(policy, rows, val_world, 32, config, batch_size=2)) == 3
