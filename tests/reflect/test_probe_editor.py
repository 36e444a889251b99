"""The editor alone (`janus_rig/reflect/probe_editor.py`, `janus-rig eval editor`): oracle boxes, scores, command."""

from __future__ import annotations

import json

import pytest

from janus_rig.chain import Box, ChainObject
from janus_rig.cli import main
from janus_rig.reflect.probe_editor import departure_boxes, edit_cases, editor_scores

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

RED, BLUE = Box(0, 0, 300, 300), Box(600, 600, 900, 900)


def test_departure_boxes_mark_where_the_image_leaves_its_plan():
    plan = [ChainObject("red circle", RED), ChainObject("blue square", BLUE)]
    assert departure_boxes(plan, [ChainObject("red circle", Box(10, 0, 300, 310)),
                                  ChainObject("blue square", BLUE)]) == []  # IoU >= 0.5: where planned
    moved = Box(600, 0, 900, 300)
    # The square drawn elsewhere: its planned box (to draw it) and where it is (to clear it).
    assert departure_boxes(plan, [ChainObject("red circle", RED), ChainObject("blue square", moved)]) == [BLUE, moved]
    # A wrong shape in the right place: the planned box, and the same box for the object to clear.
    assert departure_boxes(plan, [ChainObject("red circle", RED), ChainObject("blue circle", BLUE)]) == [BLUE, BLUE]
    assert departure_boxes(plan, [ChainObject("red circle", RED)]) == [BLUE]  # not drawn at all


def test_editor_scores_count_redraws_per_region_and_kind():
    cases = [{"wrong": True, "boxes": [RED]}, {"wrong": True, "boxes": []}, {"wrong": False, "boxes": []}]
    scores = editor_scores(cases, {"boxes": {"wrong": [[True, False], [False, False]]},
                                   "full": {"wrong": [[True, True]], "right": [[False]]}})
    assert (scores["cases"], scores["wrong"], scores["right"], scores["no_departure"]) == (3, 2, 1, 1)
    assert scores["boxes"] == {"wrong_fixed": 0.25, "wrong_redraws": 4}
    assert scores["full"] == {"wrong_fixed": 1.0, "wrong_redraws": 2, "right_kept": 0.0, "right_redraws": 1}
    with pytest.raises(ValueError, match="full/right: one oracle result per right case"):
        editor_scores(cases, {"full": {"right": [[True, True]]}})


def test_cases_are_the_rows_with_a_right_plan(val_world):
    rows = [json.loads(x) for x in (val_world / "reflect_val.jsonl").read_text().splitlines()]
    rows[0] = {**rows[0], "chain": "a <|obj_start|>red circle"}  # unreadable
    cases, counts = edit_cases(rows, val_world, 32)
    plan_errors = sum(r.get("plan_error", False) for r in rows[1:])
    assert counts == {"rows": len(rows), "plan_unreadable": 1, "plan_wrong": plan_errors}
    assert len(cases) == len(rows) - 1 - plan_errors
    # The oracle agrees with the row's decision; a wrong render departs from its plan where the perturbation acted
    # (a keep row may too: a moved object that still satisfies the prompt).
    assert [c["wrong"] for c in cases] == [c["row"]["decision"] == "edit" for c in cases]
    assert all(c["boxes"] for c in cases if c["wrong"]) and any(c["wrong"] for c in cases)
    assert any(not c["boxes"] for c in cases if not c["wrong"])


def test_eval_editor_command(val_world, tiny_shapeworld_policy_dir, tmp_path, capsys):
    out = tmp_path / "editor"
    assert main(["eval", "editor", "--model", str(tiny_shapeworld_policy_dir), "--world", str(val_world),
                 "--seeds", "2", "--batch-size", "4", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    redraws = [json.loads(x) for x in (out / "redraws.jsonl").read_text().splitlines()]
    assert summary["boxes"]["wrong_redraws"] == 2 * summary["wrong"] and summary["full"]["right_redraws"] == 2 * \
        summary["right"]
    assert len(redraws) == 2 * (2 * summary["wrong"] + summary["right"])
    fixed = [r["right_after"] for r in redraws if r["region"] == "full" and r["was"] == "wrong"]
    assert summary["full"]["wrong_fixed"] == sum(fixed) / len(fixed)
    assert "editor on" in capsys.readouterr().out
    assert main(["eval", "editor", "--model", "m", "--world", str(val_world), "--regions", "boxes,all",
                 "--out", str(out)]) == 2
    assert "--regions: unknown all" in capsys.readouterr().err
