"""scripts/stage_gains.py: the quickstart report's lines, from the summaries its stages write."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from janus_rig.eval.summary import write_summary

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stage_gains.py"


def _load():
    spec = importlib.util.spec_from_file_location("stage_gains", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(path: Path, metrics: dict) -> None:
    write_summary(path, kind="geneval", model="m", metrics=metrics, samples=1)


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


def test_quickstart_figure_draws_the_stages_and_the_edit_strip(tmp_path, capsys):
    from PIL import Image

    spec = importlib.util.spec_from_file_location("quickstart_figure", SCRIPT.parent / "quickstart_figure.py")
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    run = tmp_path / "run"
    assert figure.main([str(run), "--out", str(tmp_path / "none.png")]) == 2  # nothing evaluated yet
    assert "no stage has" in capsys.readouterr().err
    for stage, score in (("sft", 0.5), ("grpo", 0.7), ("reflect", 0.72)):
        _summary(run / "eval" / stage / "heldout", {"overall": score, "position": score, "complex": score / 2})
        _summary(run / "eval" / stage / "loop", {f"{t}@r{j}": score + 0.05 * j for t in ("position", "complex")
                                                 for j in range(3)})
    charts = figure.draw(run, tmp_path / "charts.png")
    height = Image.open(charts).height
    Image.new("RGB", (384, 288), (0, 200, 0)).save(run / "eval" / "reflect" / "loop" / "edit_strip.png")
    with Image.open(figure.draw(run, tmp_path / "full.png")) as full:
        assert full.height > height and (0, 200, 0) in {full.getpixel((full.width // 2, full.height - 5))}
