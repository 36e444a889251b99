"""scripts/pick_ablation.py: the picks that never look at the image, from a reflect run's traces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick_ablation.py"
META = {"tag": "position", "prompt": "a red circle left of a blue square",
        "include": [{"class": "square", "count": 1, "color": "blue"},
                    {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}]}
RIGHT_PLAN = ("a <|obj_start|>red circle<|obj_end|> <|box_start|>(0,400),(200,600)<|box_end|> left of a "
              "<|obj_start|>blue square<|obj_end|> <|box_start|>(600,400),(800,600)<|box_end|>.")
WRONG_PLAN = RIGHT_PLAN.replace("(0,400),(200,600)", "(850,400),(950,600)")  # the circle right of the square


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("pick_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trace(row, rnd, plan, correct, final=False):
    return {"row": row, "round": rnd, "prompt": META["prompt"], "prompt_index": 0, "plan": plan,
            "oracle": {"correct": correct}, "final": final}


def run(script, tmp_path, traces, capsys):
    (tmp_path / "meta.jsonl").write_text(json.dumps(META) + "\n")
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    script.main(["--traces", str(tmp_path / "traces.jsonl"), "--metadata", str(tmp_path / "meta.jsonl")])
    return capsys.readouterr().out


def test_each_pick_is_scored_as_defined(script, tmp_path, capsys):
    traces = [  # row 0: wrong plan first (drawn wrong), then a right plan drawn right, then one drawn wrong
        trace(0, 0, WRONG_PLAN, False), trace(0, 1, RIGHT_PLAN, True), trace(0, 2, RIGHT_PLAN, False, final=True),
        # row 1: right first drawing, the checker keeps it; a wrong plan drawn after it
        trace(1, 0, RIGHT_PLAN, True, final=True), trace(1, 1, WRONG_PLAN, False)]
    out = run(script, tmp_path, traces, capsys)
    # first 1/2, chosen 1/2, plan-first 2/2, plan-random (0.5 + 1) / 2, any right 2/2
    assert "| position | 2 | 50.0 % | 50.0 % | 100.0 % | 75.0 % | 100.0 % |" in out
    assert "| all | 2 |" in out


def test_bad_input_names_the_problem(script, tmp_path, capsys):
    with pytest.raises(SystemExit, match="2 rounds marked final"):
        run(script, tmp_path, [trace(0, 0, RIGHT_PLAN, True, True), trace(0, 1, RIGHT_PLAN, True, True)], capsys)
    with pytest.raises(SystemExit, match="prompt_index 3"):
        run(script, tmp_path, [{**trace(0, 0, RIGHT_PLAN, True, True), "prompt_index": 3}], capsys)
    with pytest.raises(SystemExit, match="not line 1"):
        run(script, tmp_path, [{**trace(0, 0, RIGHT_PLAN, True, True), "prompt": "a green triangle"}], capsys)
