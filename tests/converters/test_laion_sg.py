"""LAION-SG converter: records SG-IoU reads (entities, triples, vocabulary), bad rows; json / jsonl / parquet agree."""

from __future__ import annotations

import json
import os

import pytest

from data_prep.converters.laion_sg import LaionSGConfig, convert_laion_sg
from janus_rig.eval.sg_run import parse_record
from tests.converters.conftest import read_jsonl, save_image, write_jsonl, write_parquet


def item(item_id, label, attributes=(), global_id=None):
    return {"item_id": item_id, "label": label, "attributes": list(attributes),
            "global_item_id": 1000 + item_id if global_id is None else global_id}


def relation(triple_id, item1, predicate, item2):
    return {"triple_id": triple_id, "item1": item1, "relation": predicate, "item2": item2}


# The dataset card's example row, shortened, plus a repeated triple (two identical trees under the mountains).
YOSEMITE = {
    "img_id": "482027", "name": "8040361340228797010.jpg", "score": "6.669650077819824",
    "caption_ori": "Yosemite Falls reflection in Merced River,  Yosemite, California",
    "url": "http://images.artgalore.ca/artgalore_images/PDD/US05TNO0060.jpg",
    "items": [item(0, "mountains", ["tall", "rocky"]), item(1, "trees", ["leafless", "slender"]),
              item(2, "trees", ["leafless", "slender"]), item(3, "River", [])],
    "relations": [relation(0, 1, "in front of", 0), relation(1, 2, "in front of", 0),
                  relation(2, 0, "reflected in", 3)],
}
ROWS = [
    YOSEMITE,
    {"img_id": "7", "name": "7.jpg", "caption_ori": "a cat", "score": "6.5", "url": "u", "items": [item(0, "cat")],
     "relations": []},
    {"img_id": "8", "name": "8.jpg", "caption_ori": "a dog on a mat", "score": "6.5", "url": "u",
     "items": [item(0, "dog"), item(1, "mat")], "relations": [relation(0, 0, "on", 5)]},
    {"img_id": "9", "name": "9.jpg", "score": "6.5", "url": "u", "items": [item(0, "dog")], "relations": []},
    {"img_id": "7", "name": "7b.jpg", "caption_ori": "again", "score": "6.5", "url": "u", "items": [item(0, "cat")],
     "relations": []},
    {"img_id": "10", "name": "10.jpg", "caption_ori": "x", "score": "6", "url": "u",
     "items": [item(0, "cat"), {"item_id": 1, "attributes": ["big"]}], "relations": []},
    {"img_id": "11", "name": "11.jpg", "caption_ori": "x", "score": "6", "url": "u", "items": []},
]
EXPECTED_BAD = {"8": "bad_scene_graph", "9": "missing_field", "7": "duplicate_id", "10": "bad_scene_graph",
                "11": "missing_field"}


def convert(tmp_path, source, **options):
    out = tmp_path / "out"
    return out, convert_laion_sg(LaionSGConfig(inputs=[str(source)], out=str(out), progress=False, **options))


def test_records_hold_what_sg_iou_compares(tmp_path):
    source = tmp_path / "val.json"
    source.write_text(json.dumps(ROWS))
    out, summary = convert(tmp_path, source)
    assert summary["kept"] == {"val.jsonl": 2} and summary["bad"] == 5
    records = read_jsonl(out / "val.jsonl")
    assert [r["id"] for r in records] == ["482027", "7"]
    first = records[0]
    assert first["prompt"] == "Yosemite Falls reflection in Merced River, Yosemite, California"
    assert (first["tag"], first["metadata"], "image" in first) == ("laion_sg", None, False)
    graph = first["scene_graph"]
    assert graph["items"] == YOSEMITE["items"] and graph["relations"] == YOSEMITE["relations"]
    # attributes folded into the entity (sorted, lower case), the repeated triple once
    assert graph["entities"] == ["leafless slender trees", "river", "rocky tall mountains"]
    assert graph["triples"] == [["leafless slender trees", "in front of", "rocky tall mountains"],
                                ["rocky tall mountains", "reflected in", "river"]]
    assert first["vocabulary"] == {"labels": ["mountains", "trees", "river"],
                                   "attributes": ["tall", "rocky", "leafless", "slender"],
                                   "predicates": ["in front of", "reflected in"]}
    assert first["source"] == {"file": "val.json", "row": 0, "name": YOSEMITE["name"], "url": YOSEMITE["url"],
                               "score": YOSEMITE["score"]}
    assert records[1]["scene_graph"]["triples"] == [] and records[1]["scene_graph"]["entities"] == ["cat"]
    for record in records:  # what `janus-rig eval sg-iou` reads back: the same graph and vocabulary
        parsed = parse_record(record)
        assert parsed.id == record["id"] and parsed.prompt == record["prompt"]
        assert parsed.reference.to_json()["triples"] == record["scene_graph"]["triples"]
        assert parsed.vocabulary.to_json() == record["vocabulary"]


def test_bad_rows_and_vocabulary_file(tmp_path):
    source = tmp_path / "val.json"
    source.write_text(json.dumps(ROWS))
    out, summary = convert(tmp_path, source)
    bad = read_jsonl(out / "bad_rows.jsonl")
    assert {b["id"]: b["reason"] for b in bad} == EXPECTED_BAD and summary["bad_by_reason"]["missing_field"] == 2
    detail = {b["id"]: b["detail"] for b in bad}
    assert "caption_ori" in detail["9"] and "item2 5" in detail["8"] and "items[1].label" in detail["10"]
    vocab = json.loads((out / "vocabulary.json").read_text())
    assert vocab["labels"] == {"mountains": 1, "trees": 1, "river": 1, "cat": 1}  # rows each word is in
    assert vocab["predicates"] == {"in front of": 1, "reflected in": 1}
    assert vocab["entities"]["cat"] == 1 and "leafless slender trees" in vocab["entities"]


def test_rows_that_crashed_the_converter_are_bad_rows(tmp_path):
    """Issue 28: relation ends that are lists or objects, deep nesting, bytes that are not UTF-8 and chain tokens in
    a caption each reject their row only."""
    def row(img_id, **change):
        return {"img_id": img_id, "name": f"{img_id}.jpg", "caption_ori": "a dog on a mat", "score": "6", "url": "u",
                "items": [item(0, "dog"), item(1, "mat")], "relations": [relation(0, 0, "on", 1)], **change}

    lines = [json.dumps(r) for r in [
        row("good"),
        row("list-end", relations=[relation(0, [0], "on", 1)]),
        row("dict-end", relations=[relation(0, 0, "on", {"id": 1})]),
        row("bool-end", relations=[relation(0, True, "on", 0)]),
        row("token", caption_ori="a dog <|box_start|>(1,2),(3,4)<|box_end|>"),
    ]]
    lines.append('{"img_id": "deep", "items": ' + "[" * 50_000 + "]" * 50_000 + "}")
    source = tmp_path / "rows.jsonl"
    source.write_bytes("\n".join(lines).encode() + b'\n{"img_id": "x", "caption_ori": "\xff"}\n'
                       + json.dumps(row("good-too")).encode() + b"\n")
    out, summary = convert(tmp_path, source)
    bad = {b["id"]: (b["reason"], b["detail"]) for b in read_jsonl(out / "bad_rows.jsonl")}
    assert {k: reason for k, (reason, _) in bad.items()} == {
        "list-end": "bad_scene_graph", "dict-end": "bad_scene_graph", "bool-end": "bad_scene_graph",
        "token": "chain_token_in_prompt", "rows-000005": "nested_too_deep", "rows-000006": "not_utf8",
    }
    assert "relations[0].item1 [0] is no item_id" in bad["list-end"][1]
    assert "relations[0].item2 {'id': 1} is no item_id" in bad["dict-end"][1]
    assert [r["id"] for r in read_jsonl(out / "rows.jsonl")] == ["good", "good-too"]
    assert summary["kept"] == {"rows.jsonl": 2} and summary["bad"] == 6


def test_jsonl_and_parquet_give_the_same_records(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test.json").write_text(json.dumps(ROWS))
    write_jsonl(tmp_path / "test.jsonl", ROWS)
    write_parquet(tmp_path / "test.parquet", ROWS)
    outputs = []
    for name in ("a/test.json", "test.jsonl", "test.parquet"):
        out = tmp_path / f"out-{name.replace('/', '-')}"
        convert_laion_sg(LaionSGConfig(inputs=[str(tmp_path / name)], out=str(out), progress=False))
        assert {b["id"]: b["reason"] for b in read_jsonl(out / "bad_rows.jsonl")} == EXPECTED_BAD
        records = read_jsonl(out / "test.jsonl")
        for record in records:
            record["source"].pop("file")
            # parquet fills absent struct fields with null; the graph and everything derived from it must agree
            record["scene_graph"]["items"] = [{k: v for k, v in i.items() if v is not None}
                                              for i in record["scene_graph"]["items"]]
        outputs.append(records)
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 2


def test_image_root_adds_image_paths_or_reports_missing_ones(tmp_path):
    save_image(tmp_path / "images" / YOSEMITE["name"], 16, 16)
    source = write_jsonl(tmp_path / "rows.jsonl", ROWS[:2])
    out, summary = convert(tmp_path, source, image_root=str(tmp_path / "images"))
    record = read_jsonl(out / "rows.jsonl")[0]
    assert os.path.samefile(out / record["image"], tmp_path / "images" / YOSEMITE["name"])
    assert [(b["id"], b["reason"]) for b in read_jsonl(out / "bad_rows.jsonl")] == [("7", "missing_image")]
    assert summary["kept"] == {"rows.jsonl": 1}


def test_limit_and_config_errors(tmp_path):
    source = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    _, summary = convert(tmp_path, source, limit=2)
    assert summary["kept"] == {"rows.jsonl": 2} and summary["bad"] == 0
    with pytest.raises(ValueError, match="share a file stem"):
        LaionSGConfig(inputs=[str(tmp_path / "a" / "val.json"), str(tmp_path / "val.jsonl")], out=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="image root"):
        convert(tmp_path, source, image_root=str(tmp_path / "nope"))
