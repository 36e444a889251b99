"""`janus-rig convert got | laion-sg | prompts`: --help, a run each, input errors as one line."""

from __future__ import annotations

import json

import pytest

from janus_rig.cli import build_parser, main
from tests.converters.conftest import read_jsonl, write_jsonl
from tests.converters.test_laion_sg import ROWS


@pytest.mark.parametrize("leaf", ["got", "laion-sg", "prompts"])
def test_help(leaf, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["convert", leaf, "--help"])
    assert info.value.code == 0
    assert f"usage: janus-rig convert {leaf}" in capsys.readouterr().out


def test_convert_got_run(tmp_path, image_dir, capsys):
    chain = "A <|object_ref_start|>red cup<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|> on a table."
    rows = [{"uid": "r0", "caption": "a red cup", "cot": chain, "file": "imgs/wide.jpg"},
            {"uid": "r1", "caption": "a red cup", "cot": chain, "file": "imgs/none.jpg"}]
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    code = main(["convert", "got", str(source), "--out", str(out), "--fields", "id=uid,prompt=caption,chain=cot,"
                 "image=file", "--image-size", "16", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0])["counts"] == {"train": 1, "val": 0, "bad": 1}
    assert "kept 1 train + 0 val rows, 1 bad rows" in printed
    assert read_jsonl(out / "train.jsonl")[0]["chain"] == chain.replace(
        "<|object_ref_start|>", "<|obj_start|>").replace("<|object_ref_end|>", "<|obj_end|> ")
    assert read_jsonl(out / "bad_rows.jsonl")[0]["id"] == "r1"


def test_convert_got_input_errors_are_one_line(tmp_path, capsys):
    source = write_jsonl(tmp_path / "rows.jsonl", [{"caption": "c", "chain": "x", "image": "i.png"}])
    code = main(["convert", "got", str(source), "--out", str(tmp_path / "out"), "--fields", "prompt=title"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("janus-rig convert: error: input") and "field 'title' (mapped to prompt)" in err
    assert main(["convert", "got", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.json not found" in capsys.readouterr().err


def test_convert_got_with_nothing_kept_exits_1(tmp_path, capsys):
    source = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "p", "chain": "no spans", "image": "i.png"}])
    assert main(["convert", "got", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "no row was converted" in capsys.readouterr().out


def test_convert_laion_sg_run(tmp_path, capsys):
    source = tmp_path / "test.json"
    source.write_text(json.dumps(ROWS))
    assert main(["convert", "laion-sg", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["kept"] == {"test.jsonl": 2}
    assert len(read_jsonl(tmp_path / "out" / "test.jsonl")) == 2


def test_convert_prompts_run(tmp_path, capsys):
    out = tmp_path / "geneval.jsonl"
    assert main(["convert", "prompts", "geneval", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["prompts"] == 553 and len(read_jsonl(out)) == 553
    assert main(["convert", "prompts", "t2i_compbench", "--split", "train", "--categories", "color", "--out",
                 str(tmp_path / "c.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "c.jsonl")) == 700
    assert main(["convert", "prompts", "t2i_compbench", "--categories", "colour", "--out", str(out)]) == 2
    assert "no val prompts for colour" in capsys.readouterr().err
