"""`janus-rig eval report`: one row per run over its summaries, the union of metrics, copied thumbnails that survive
moving the report, and clear errors."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from janus_rig.cli import main
from janus_rig.eval.report import build_table, format_value, write_report
from janus_rig.eval.summary import write_summary


def _eval(folder, kind, metrics, n_thumbs=2, colour=(200, 40, 40), **kw):
    (folder / "images").mkdir(parents=True)
    thumbs = []
    for k in range(n_thumbs):
        Image.new("RGB", (8, 8), colour).save(folder / "images" / f"{k}.png")
        thumbs.append(f"images/{k}.png")
    write_summary(folder, kind=kind, model=kw.pop("model", "runs/m"), metrics=metrics, samples=kw.pop("samples", 4),
                  thumbnails=thumbs, command="janus-rig eval test", **kw)


@pytest.fixture
def runs(tmp_path):
    sft, grpo = tmp_path / "runs" / "sft", tmp_path / "runs" / "grpo"
    _eval(sft / "geneval", "geneval", {"overall": 0.25, "position": 0.125}, model="runs/sft")
    _eval(sft / "sg-iou", "sg-iou", {"sg_iou": 0.5, "entity_iou": 0.75}, model="runs/sft", colour=(40, 40, 200))
    _eval(grpo, "sg-iou", {"sg_iou": 0.625, "relation_iou": 1.0}, model="runs/grpo", reflect_rounds=2, n_thumbs=9)
    _eval(grpo / "judge", "judge", {"mean": 0.7}, model="runs/grpo")
    _eval(grpo / "judge-2", "judge", {"mean": 0.6}, model="runs/grpo")
    (grpo / "not-an-eval").mkdir()
    return sft, grpo


def test_one_row_per_run_and_the_union_of_metrics(runs):
    sft, grpo = runs
    table = build_table([sft, grpo])
    assert table["columns"] == [
        "reflect_rounds", "geneval/samples", "geneval/overall", "geneval/position", "sg-iou/samples", "sg-iou/sg_iou",
        "sg-iou/entity_iou", "sg-iou/relation_iou", "judge/samples", "judge/mean", "judge@judge-2/samples",
        "judge@judge-2/mean",
    ]
    first, second = table["rows"]
    assert first["values"] == {"geneval/samples": 4, "geneval/overall": 0.25, "geneval/position": 0.125,
                               "sg-iou/samples": 4, "sg-iou/sg_iou": 0.5, "sg-iou/entity_iou": 0.75,
                               "reflect_rounds": 0}
    assert second["values"]["reflect_rounds"] == 2 and second["values"]["judge@judge-2/mean"] == 0.6
    assert second["values"]["sg-iou/sg_iou"] == 0.625 and "geneval/overall" not in second["values"]
    assert first["models"] == ["runs/sft"] and [e["kind"] for e in first["evals"]] == ["geneval", "sg-iou"]
    # thumbnails alternate between a run's evaluations, 8 at most
    assert [t.parent.parent.name for t in first["thumbnails"]] == ["geneval", "sg-iou", "geneval", "sg-iou"]
    assert len(second["thumbnails"]) == 8


def test_report_files_and_thumbnails_that_survive_a_move(runs, tmp_path):
    sft, grpo = runs
    (sft / "sg-iou" / "images" / "1.png").unlink()  # a thumbnail gone from disk: listed, not fatal
    paths = write_report([sft, grpo], tmp_path / "report")
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "report", moved)
    html, md = (moved / "report.html").read_text(), (moved / "report.md").read_text()
    data = json.loads((moved / "report.json").read_text())
    assert set(paths) == {"md", "html", "json"} and data["columns"][0] == "reflect_rounds"
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 3 + 8 and all((moved / s).is_file() for s in sources)  # relative, inside the report
    assert all((moved / s).is_file() for s in re.findall(r"\]\(([^)]+)\)", md))
    assert data["missing_thumbnails"] == [str(sft / "sg-iou" / "images" / "1.png")] and "Missing thumbnails" in md
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert header.count("|") == len(data["columns"]) + 3
    row = next(line for line in md.splitlines() if line.startswith(f"| {sft} |"))
    assert "| 0.2500 | 0.1250 |" in row and row.endswith("| 0.7500 |  |  |  |  |  |")  # 5 columns it lacks
    with Image.open(moved / data["rows"][0]["thumbnails"][0]) as thumb:
        assert thumb.getpixel((0, 0)) == (200, 40, 40)  # the geneval image, copied


def test_errors_name_the_run(tmp_path, runs, capsys):
    empty = tmp_path / "empty"
    (empty / "sub" / "deeper").mkdir(parents=True)
    (empty / "sub" / "deeper" / "summary.json").write_text("{}")  # too deep: not read
    with pytest.raises(ValueError, match=f"run directory {empty} has no summary.json"):
        build_table([empty])
    assert main(["eval", "report", str(runs[0]), str(empty), "--out", str(tmp_path / "r")]) == 2
    assert f"run directory {empty} has no summary.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written before every run was read
    broken = tmp_path / "broken"
    broken.mkdir()
    malformed = {"kind": "sg-iou", "model": "m", "samples": 1, "metrics": {"x": "y"}}
    (broken / "summary.json").write_text(json.dumps(malformed))
    with pytest.raises(ValueError, match=r"broken/summary.json: field 'metrics' holds non-numbers: x"):
        build_table([broken])
    with pytest.raises(ValueError, match="does not exist"):
        build_table([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="given twice"):
        build_table([runs[0], runs[0]])


def test_format_value():
    assert [format_value(v) for v in (0.41234, 1.0, 64, None, 0.0)] == ["0.4123", "1", "64", "", "0"]


def test_figures_are_copied_captioned_and_named_when_missing(runs, tmp_path, capsys):
    curve = tmp_path / "reward_curve.png"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(curve)
    assert main(["eval", "report", *map(str, runs), "--out", str(tmp_path / "r"), "--title", "quickstart",
                 "--figure", f"{curve}=GRPO reward", "--figure", str(curve), "--note", "GRPO: 120 steps <ok>"]) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["title"] == "quickstart" and [f["caption"] for f in data["figures"]] == ["GRPO reward", "reward_curve.png"]
    assert data["notes"] == ["GRPO: 120 steps <ok>"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<h1>quickstart</h1>" in html and "<figcaption>GRPO reward</figcaption>" in html
    assert "<p>GRPO: 120 steps &lt;ok&gt;</p>" in html
    assert "GRPO: 120 steps <ok>" in (tmp_path / "r" / "report.md").read_text()
    for figure in data["figures"]:
        with Image.open(tmp_path / "r" / figure["path"]) as image:
            assert image.getpixel((0, 0)) == (1, 2, 3)
    assert main(["eval", "report", str(runs[0]), "--out", str(tmp_path / "r2"), "--figure", str(tmp_path / "no.png")]) == 2
    assert "figure(s) not found" in capsys.readouterr().err and not (tmp_path / "r2").exists()
