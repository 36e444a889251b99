"""scripts/stage_gains.py: the quickstart report's lines, from the summaries its stages write."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stage_gains.py"


def _load():
    spec = importlib.util.spec_from_file_location("stage_gains", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(path: Path, metrics: dict) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"metrics": metrics}))


def test_gain_lines_name_steps_tags_and_the_loop(tmp_path, capsys):
    run = tmp_path / "run"
    _summary(run / "eval" / "sft" / "heldout", {"overall": 0.5, "position": 0.6, "complex": 0.3})
    _summary(run / "eval" / "grpo" / "heldout", {"overall": 0.6, "position": 0.9, "complex": 0.4})
    (run / "grpo").mkdir()
    (run / "grpo" / "grpo_summary.json").write_text(json.dumps({"steps": 120}))
    loop = {"overall@r0": 0.0, "position@r0": 0.9, "complex@r0": 0.4, "overall@r2": 0.0, "position@r2": 0.9,
            "complex@r2": 0.6}
    _summary(run / "eval" / "grpo" / "loop", loop)
    _summary(run / "eval" / "reflect" / "loop", {**loop, "complex@r2": 0.7})
    lines = _load().gain_lines(run)
    assert lines[0] == ("GRPO (120 steps), held-out, % right: overall 50.0 -> 60.0 (+10.0); complex 30.0 -> 40.0 "
                        "(+10.0); position 60.0 -> 90.0 (+30.0)")
    assert lines[1] == "GRPO + loop, mean of position and complex after 0 rounds 65.0, 2 rounds 75.0"
    assert lines[-1].endswith("65.0 -> 80.0 (+15.0)")  # the final model's 2 rounds against GRPO alone
    assert not any(line.startswith("Reflection-GRPO (") for line in lines)  # its held-out eval is missing: no line
    assert _load().main([str(run)]) == 0 and capsys.readouterr().out.splitlines() == lines
