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
    assert code == 3  # some rows were bad: a script sees it (issue 28)
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0])["counts"] == {"train": 1, "val": 0, "bad": 1}
    assert "kept 1 train + 0 val rows, 1 bad rows" in printed and "1 bad rows left out: exit status 3" in printed
    assert read_jsonl(out / "train.jsonl")[0]["chain"] == chain.replace(
        "<|object_ref_start|>", "<|obj_start|>").replace("<|object_ref_end|>", "<|obj_end|> ")
    assert read_jsonl(out / "bad_rows.jsonl")[0]["id"] == "r1"
    rows[1]["file"] = "imgs/wide.jpg"
    write_jsonl(source, rows)
    assert main(["convert", "got", str(source), "--out", str(tmp_path / "all"), "--fields",
                 "id=uid,prompt=caption,chain=cot,image=file", "--image-size", "16", "--quiet"]) == 0
    assert "kept 2 train + 0 val rows, 0 bad rows" in capsys.readouterr().out


def test_convert_got_rows_the_audit_crashed_on_are_counted(tmp_path, image_dir, capsys):
    """Issue 28: the audit's rows (10**400, deep nesting, bytes that are not UTF-8) end in bad_rows.jsonl, and the
    exit status and summary say so."""
    good = {"caption": "a red cup", "file": "imgs/wide.jpg", "cot": "A red cup on a table.",
            "objects": [{"name": "red cup", "bbox": [0, 0, 500, 500]}]}
    lines = [json.dumps(good), json.dumps({**good, "objects": [{"name": "red cup", "bbox": [0, 0, 10**400, 5]}]}),
             '{"caption": ' + "[" * 50_000 + "]" * 50_000 + "}"]
    source = tmp_path / "rows.jsonl"
    source.write_bytes("\n".join(lines).encode() + b'\n{"caption": "\xff"}\n')
    code = main(["convert", "got", str(source), "--out", str(tmp_path / "out"), "--fields",
                 "prompt=caption,chain=cot,image=file,boxes=objects", "--image-size", "16", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 3 and json.loads(printed.splitlines()[0])["bad_by_reason"] == {
        "box_malformed": 1, "nested_too_deep": 1, "not_utf8": 1}
    assert "kept 1 train + 0 val rows, 3 bad rows" in printed
    assert sorted(b["id"] for b in read_jsonl(tmp_path / "out" / "bad_rows.jsonl")) == [
        "rows-000001", "rows-000002", "rows-000003"]


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
    assert main(["convert", "laion-sg", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 3  # 5 bad rows
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0])["kept"] == {"test.jsonl": 2}
    assert "kept 2 rows, 5 bad rows" in printed and "5 bad rows left out: exit status 3" in printed
    assert len(read_jsonl(tmp_path / "out" / "test.jsonl")) == 2
    source.write_text(json.dumps(ROWS[:2]))
    assert main(["convert", "laion-sg", str(source), "--out", str(tmp_path / "all"), "--quiet"]) == 0


def test_convert_laion_sg_json_with_a_deep_row(tmp_path, capsys):
    """Issue 28: in a .json file (LAION-SG's own format) a row nested 50,000 deep is one bad row, not a crash."""
    source = tmp_path / "test.json"
    source.write_text("[" + json.dumps(ROWS[0]) + ", " + "[" * 50_000 + "]" * 50_000 + ", " + json.dumps(ROWS[1]) + "]")
    assert main(["convert", "laion-sg", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 3
    assert json.loads(capsys.readouterr().out.splitlines()[0])["bad_by_reason"] == {"nested_too_deep": 1}
    assert [b["id"] for b in read_jsonl(tmp_path / "out" / "bad_rows.jsonl")] == ["test-000001"]
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
