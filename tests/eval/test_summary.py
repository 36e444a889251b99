"""summary.json, the one file every evaluation folder carries: written, read back, and rejected when malformed."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from janus_rig.eval.summary import KINDS, MAX_THUMBNAILS, SUMMARY_FILE, read_summary, write_summary


def test_round_trip(tmp_path):
    thumbs = [f"{i:05d}/samples/0000.png" for i in range(11)]
    path = write_summary(tmp_path / "run", kind="geneval", model="runs/grpo", samples=44,
                         metrics={"overall": 0.25, "position": 1}, per_tag={"position": {"accuracy": 1.0, "correct": 4,
                                                                                          "total": 4}},
                         thumbnails=thumbs, reflect_rounds=2, command="janus-rig eval geneval --x",
                         extra={"oracle": "on"})
    assert path == tmp_path / "run" / SUMMARY_FILE
    raw = json.loads(path.read_text())
    assert raw["metrics"] == {"overall": 0.25, "position": 1.0} and isinstance(raw["metrics"]["position"], float)
    assert raw["thumbnails"] == thumbs[:MAX_THUMBNAILS] and raw["reflect_rounds"] == 2 and raw["oracle"] == "on"
    assert raw["command"] == "janus-rig eval geneval --x" and raw["samples"] == 44
    assert dt.datetime.fromisoformat(raw["created"]).tzinfo is not None
    assert read_summary(tmp_path / "run") == raw == read_summary(path)  # a folder or the file itself


def test_defaults_filled_on_read(tmp_path):
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"kind": "judge", "model": "m", "metrics": {}, "samples": 0}))
    summary = read_summary(tmp_path)
    assert (summary["per_tag"], summary["thumbnails"], summary["reflect_rounds"]) == ({}, [], 0)


def test_command_defaults_to_argv(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/somewhere/janus-rig", "eval", "sg-iou", "--out", "o"])
    write_summary(tmp_path, kind="sg-iou", model="m", metrics={}, samples=1)
    assert read_summary(tmp_path)["command"] == "janus-rig eval sg-iou --out o"


@pytest.mark.parametrize("metrics, bad", [({"a": math.nan}, "a"), ({"b": math.inf, "c": 1}, "b"), ({"d": "0.5"}, "d"),
                                          ({"e": True}, "e"), ({"f": None}, "f")])
def test_write_rejects_non_numbers(tmp_path, metrics, bad):
    with pytest.raises(ValueError, match=f"not so: {bad}"):
        write_summary(tmp_path, kind="geneval", model="m", metrics=metrics, samples=1)
    assert not (tmp_path / SUMMARY_FILE).exists()


def test_write_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="'genevel' is not one of geneval"):
        write_summary(tmp_path, kind="genevel", model="m", metrics={}, samples=1)
    assert set(KINDS) == {"geneval", "t2i-compbench", "sg-iou", "judge", "judge-versus"}


GOOD = {"kind": "geneval", "model": "m", "metrics": {"overall": 0.5}, "samples": 4}


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "must hold a JSON object"),
    (json.dumps({**GOOD, "kind": "fid"}), "field 'kind' must be one of"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "model"}), "field 'model' missing or not a str"),
    (json.dumps({**GOOD, "samples": "4"}), "field 'samples' missing or not a int"),
    (json.dumps({**GOOD, "metrics": [0.5]}), "field 'metrics' missing or not a dict"),
    (json.dumps({**GOOD, "metrics": {"overall": "high", "x": 1}}), "non-numbers: overall"),
])
def test_read_names_file_and_field(tmp_path, content, message):
    path = tmp_path / SUMMARY_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        read_summary(path)
    assert str(path) in str(err.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read") as err:
        read_summary(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
