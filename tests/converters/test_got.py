"""GoT converter: span and boxes-field rows, json / jsonl / parquet, field mapping, bad rows, fits, splits, SFT use."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from data_prep.converters.common import RowError
from data_prep.converters.got import (
    PAD_COLOR,
    GotConfig,
    canvas_box,
    check_box,
    convert_got,
    image_file_name,
    is_val,
    parse_fields,
    placement,
    plan_row,
)
from janus_rig.chain import Box, parse_chain
from tests.converters.conftest import read_jsonl, save_image, write_jsonl, write_parquet

SPAN_A = ("The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>( 100, 200 ),(400,500)<|box_end|> and "
          "a <|obj_start|>blue square<|obj_end|>  <|box_start|>(600,200),(900,500)<|box_end|>.")
CANONICAL_A = ("The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(100,200),(400,500)<|box_end|> "
               "and a <|obj_start|>blue square<|obj_end|> <|box_start|>(600,200),(900,500)<|box_end|>.")
QWEN_B = "A <|object_ref_start|>red circle<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|> is here."
CANONICAL_B = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(10,20),(300,400)<|box_end|> is here."
# The module docstring's example: pixel boxes of a 320x240 image.
COT = "A grey cat sleeps on a red sofa."
CAT_CHAIN = ("A <|obj_start|>grey cat<|obj_end|> <|box_start|>(125,125),(625,750)<|box_end|> sleeps on a "
             "<|obj_start|>red sofa<|obj_end|> <|box_start|>(0,417),(1000,1000)<|box_end|>.")
CAT, SOFA = [40, 30, 200, 180], [0, 100, 320, 240]


def convert(tmp_path, inputs, name="out", **options):
    options = {"image_size": 32, "image_format": "png", "progress": False, **options}
    out = tmp_path / name
    summary = convert_got(GotConfig(inputs=[str(p) for p in inputs], out=str(out), **options))
    return out, summary


def test_span_chains_become_canonical_records(tmp_path, image_dir):
    rows = [{"id": "a1", "prompt": " a red circle left of a blue square ", "chain": SPAN_A, "image": "imgs/small.png"},
            {"id": "b2", "prompt": "a red circle", "chain": QWEN_B, "image": "imgs/wide.jpg"}]
    out, summary = convert(tmp_path, [write_jsonl(tmp_path / "rows.jsonl", rows)])
    assert summary["counts"] == {"train": 2, "val": 0, "bad": 0}
    records = read_jsonl(out / "train.jsonl")
    assert [r["id"] for r in records] == ["a1", "b2"]
    assert [r["chain"] for r in records] == [CANONICAL_A, CANONICAL_B]  # stretch keeps grid numbers
    assert records[0]["prompt"] == "a red circle left of a blue square"
    assert records[1]["source"] == {"file": "rows.jsonl", "row": 1, "image": "imgs/wide.jpg", "width": 320,
                                    "height": 240}
    for record in records:
        parse_chain(record["chain"], strict=True)
        with Image.open(out / record["image"]) as image:
            assert image.size == (32, 32)
    assert json.loads((out / "world.json").read_text())["size"] == 32
    assert [g["id"] for g in read_jsonl(out / "grounding.jsonl")] == ["a1", "b2"]
    assert read_jsonl(out / "bad_rows.jsonl") == [] and read_jsonl(out / "val.jsonl") == []


@pytest.mark.parametrize("fields, boxes, extra", [
    ("boxes=objects", [{"name": "grey cat", "bbox": CAT}, {"name": "red sofa", "bbox": SOFA}], {}),
    ("boxes=objects,box_name=label,box_coords=box",
     [{"label": "grey cat", "box": CAT, "score": 0.9}, {"label": "red sofa", "box": SOFA}], {}),
    ("boxes=objects", {"grey cat": CAT, "red sofa": SOFA}, {}),
    ("boxes=objects", [["red sofa", SOFA], ["grey cat", CAT]], {}),  # any order: spans follow the text
    ("boxes=objects,names=labels", [CAT, SOFA], {"labels": ["grey cat", "Red  Sofa"]}),
])
def test_boxes_field_forms_give_the_same_chain(tmp_path, image_dir, fields, boxes, extra):
    rows = [{"caption": "a cat on a sofa", "cot": COT, "path": "wide.jpg", "objects": boxes, **extra}]
    source = tmp_path / "rows.json"
    source.write_text(json.dumps(rows))
    out, summary = convert(tmp_path, [source], fields=f"prompt=caption,chain=cot,image=path,{fields}",
                           box_space="pixel", image_root=str(image_dir))
    assert summary["counts"]["train"] == 1, read_jsonl(out / "bad_rows.jsonl")
    assert read_jsonl(out / "train.jsonl")[0]["chain"] == CAT_CHAIN


@pytest.mark.parametrize("options, boxes, extra", [
    ({"box_space": "unit"}, [[0.125, 0.125, 0.625, 0.75], [0, 100 / 240, 1, 1]], {}),
    ({"box_space": "pixel", "box_format": "xywh"}, [[40, 30, 160, 150], [0, 100, 320, 140]], {}),
    # boxes measured on the 320x240 original; the file at hand is a 64x48 copy
    ({"box_space": "pixel", "fields_extra": ",width=w,height=h", "image": "small.png"}, [CAT, SOFA],
     {"w": 320, "h": 240}),
])
def test_box_spaces_and_formats(tmp_path, image_dir, options, boxes, extra):
    options = dict(options)
    fields = "prompt=caption,chain=cot,image=path,boxes=objects,names=labels" + options.pop("fields_extra", "")
    rows = [{"caption": "c", "cot": COT, "path": options.pop("image", "wide.jpg"), "objects": boxes,
             "labels": ["grey cat", "red sofa"], **extra}]
    out, _ = convert(tmp_path, [write_jsonl(tmp_path / "rows.jsonl", rows)], fields=fields,
                     image_root=str(image_dir), **options)
    assert read_jsonl(out / "train.jsonl")[0]["chain"] == CAT_CHAIN


def test_parquet_with_nested_fields_and_image_bytes(tmp_path, image_dir):
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (10, 220, 10)).save(buffer, "PNG")
    rows = [{"meta": {"caption": "a green square", "n": 1}, "got": "A <|obj_start|>green square<|obj_end|> "
             "<|box_start|>(0,0),(500,500)<|box_end|>.", "img": {"bytes": buffer.getvalue(), "path": "x.png"}},
            {"meta": {"caption": "gone", "n": 2}, "got": "A <|obj_start|>thing<|obj_end|> "
             "<|box_start|>(0,0),(500,500)<|box_end|>.", "img": {"bytes": None, "path": "gone.png"}}]
    out, summary = convert(tmp_path, [write_parquet(tmp_path / "part.parquet", rows)],
                           fields="prompt=meta.caption,chain=got,image=img")
    assert summary["counts"] == {"train": 1, "val": 0, "bad": 1}
    record = read_jsonl(out / "train.jsonl")[0]
    assert (record["id"], record["prompt"], record["source"]["image"]) == ("part-000000", "a green square", "x.png")
    with Image.open(out / record["image"]) as image:
        assert image.getpixel((16, 16)) == (10, 220, 10)
    assert read_jsonl(out / "bad_rows.jsonl")[0]["reason"] == "missing_image"


@pytest.mark.parametrize("spec, message", [
    ("prompt=caption,cot", "is not NAME=FIELD"),
    ("prompt=caption,caption=x", "unknown name 'caption'; valid names: id, prompt, chain"),
    ("width=w", "only one of width / height"),
    ("names=labels", "names without boxes"),
    ("prompt=a..b", "give the source field's name"),
])
def test_bad_field_mappings_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_fields(spec)


@pytest.mark.parametrize("options, message", [
    ({"box_space": "pixel"}, "describe a boxes field, and none is mapped"),
    ({"fit": "crop"}, "fit 'crop' is not one of stretch, pad"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
    ({"inputs": []}, "no input files given"),
])
def test_bad_settings_say_how_to_fix(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        GotConfig(**{"inputs": ["rows.jsonl"], "out": str(tmp_path), **options})


def test_mapped_field_absent_from_the_input_fails_before_any_output(tmp_path):
    source = write_jsonl(tmp_path / "rows.jsonl", [{"caption": "c", "chain": "x", "image": "i.png"}])
    with pytest.raises(ValueError, match=r"rows.jsonl: field 'cot' \(mapped to chain\) is not in its rows; "
                                         r"fields present: caption, chain, image"):
        convert(tmp_path, [source], fields="prompt=caption,chain=cot")
    assert not (tmp_path / "out").exists()


def test_bad_rows_reported_by_id_counted_and_written(tmp_path, image_dir):
    good = "A <|obj_start|>cat<|obj_end|> <|box_start|>(0,0),(500,500)<|box_end|>."
    (image_dir / "broken.png").write_text("not an image")
    png = (image_dir / "small.png").read_bytes()
    (image_dir / "truncated.png").write_bytes(png[: len(png) // 2])
    rows = [
        {"uid": "good", "p": "a cat", "cot": good, "img": "small.png"},
        {"uid": "no-chain", "p": "a cat", "img": "small.png"},
        {"uid": "far", "p": "a cat", "cot": good.replace("(500,500)", "(1200,500)"), "img": "small.png"},
        {"uid": "inverted", "p": "a cat", "cot": good.replace("(0,0)", "(600,0)"), "img": "small.png"},
        {"uid": "gone", "p": "a cat", "cot": good, "img": "gone.png"},
        {"uid": "broken", "p": "a cat", "cot": good, "img": "broken.png"},
        {"uid": "truncated", "p": "a cat", "cot": good, "img": "truncated.png"},
        {"uid": "good", "p": "again", "cot": good, "img": "small.png"},
        {"uid": "plain", "p": "a cat", "cot": "A cat, no spans.", "img": "small.png"},
        {"uid": "unclosed", "p": "a cat", "cot": "A <|obj_start|>cat <|box_start|>(0,0),(5,5)<|box_end|>",
         "img": "small.png"},
        {"uid": "number", "p": 7, "cot": good, "img": "small.png"},
        {"p": "a cat", "cot": good, "img": "small.png"},
    ]
    source = write_jsonl(tmp_path / "rows.jsonl", rows, extra_lines=["{not json"])
    out, summary = convert(tmp_path, [source], fields="id=uid,prompt=p,chain=cot,image=img",
                           image_root=str(image_dir))
    bad = read_jsonl(out / "bad_rows.jsonl")
    assert {b["id"]: b["reason"] for b in bad} == {
        "no-chain": "missing_field", "far": "box_out_of_range", "inverted": "box_inverted", "gone": "missing_image",
        "broken": "unreadable_image", "truncated": "unreadable_image", "good": "duplicate_id",
        "plain": "no_objects", "unclosed": "bad_chain", "number": "bad_field", "rows-000011": "missing_field",
        "rows-000012": "not_json",
    }
    assert all(b["source"] == "rows.jsonl" for b in bad)
    detail = {b["id"]: b["detail"] for b in bad}
    assert "chain (source field 'cot')" in detail["no-chain"] and "id (source field 'uid')" in detail["rows-000011"]
    assert "1200" in detail["far"] and "gone.png" in detail["gone"]
    assert summary["counts"] == {"train": 1, "val": 0, "bad": 12}
    assert summary["bad_by_reason"]["unreadable_image"] == 2
    assert [r["id"] for r in read_jsonl(out / "train.jsonl")] == ["good"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["good.png"]


def test_rows_that_crashed_the_converter_are_bad_rows(tmp_path, image_dir):
    """Issue 28: numbers too large for a float, deep nesting, bytes that are not UTF-8 and chain tokens in a prompt
    each reject their row only; the rows around them are converted."""
    def row(uid, **change):
        return {"uid": uid, "caption": "a cat on a sofa", "cot": COT, "path": "wide.jpg", "w": 320, "h": 240,
                "objects": [{"name": "grey cat", "bbox": CAT}, {"name": "red sofa", "bbox": SOFA}], **change}

    lines = [json.dumps(r) for r in [
        row("good"),
        row("huge-coordinate", objects=[{"name": "grey cat", "bbox": [10**400, 30, 200, 180]}]),
        row("huge-width", w=10**400),
        row("huge-float", objects=[{"name": "grey cat", "bbox": [1e308, 0, 1e308, 10]}]),
        row("token-prompt", caption="a cat <|obj_start|>cat<|obj_end|> on a sofa"),
        row("qwen-token-prompt", caption="a <|object_ref_start|>cat"),
    ]]
    lines.insert(3, '{"uid": "deep", "caption": ' + "[" * 50_000 + "]" * 50_000 + "}")
    source = tmp_path / "rows.jsonl"
    source.write_bytes("\n".join(lines).encode() + b'\n{"uid": "latin-1", "caption": "caf\xe9"}\n'
                       + json.dumps(row("good-too")).encode() + b"\n")
    out, summary = convert(tmp_path, [source], fields="id=uid,prompt=caption,chain=cot,image=path,boxes=objects,"
                           "width=w,height=h", box_space="pixel", image_root=str(image_dir))
    bad = {b["id"]: (b["reason"], b["detail"]) for b in read_jsonl(out / "bad_rows.jsonl")}
    assert {k: reason for k, (reason, _) in bad.items()} == {
        "huge-coordinate": "box_malformed", "huge-width": "bad_field", "rows-000003": "nested_too_deep",
        "huge-float": "box_out_of_range", "token-prompt": "chain_token_in_prompt",
        "qwen-token-prompt": "chain_token_in_prompt", "rows-000007": "not_utf8",
    }
    assert "not four finite numbers" in bad["huge-coordinate"][1] and "width (source field 'w')" in bad["huge-width"][1]
    assert bad["rows-000003"][1].startswith("line 4 is nested too deeply")
    assert "<|obj_start|>" in bad["token-prompt"][1] and bad["rows-000007"][1].startswith("line 8:")
    assert [r["id"] for r in read_jsonl(out / "train.jsonl")] == ["good", "good-too"]
    assert summary["counts"] == {"train": 2, "val": 0, "bad": 7}


@pytest.mark.parametrize("boxes, reason, words", [
    ([{"name": "grey cat", "bbox": [40, 30, 330, 180]}], "box_out_of_range", "0..320 x 0..240"),
    ([{"name": "grey cat", "bbox": [40, 190, 200, 180]}], "box_inverted", "x1 < x2 and y1 < y2"),
    ([{"name": "grey cat", "bbox": [40, 30, 200]}], "box_malformed", "not four finite numbers"),
    ([{"name": "grey cat", "bbox": [10**400, 30, 200, 180]}], "box_malformed", "not four finite numbers"),  # no float
    ([{"label": "grey cat", "bbox": CAT}], "box_malformed", "no 'name' key"),
    ([{"name": "black dog", "bbox": CAT}], "object_not_in_chain", "'black dog' is not mentioned"),
    ([{"name": "cat", "bbox": CAT}, {"name": "cat", "bbox": SOFA}], "object_not_in_chain", "object 1 'cat'"),
    ([], "no_objects", "is empty"),
])
def test_boxes_field_problems(boxes, reason, words):
    fields = parse_fields("prompt=caption,chain=cot,image=path,boxes=objects")
    row = {"caption": "c", "cot": COT, "path": "wide.jpg", "objects": boxes}
    with pytest.raises(RowError) as info:
        plan = plan_row(row, fields, "pixel")
        for i, (name, coords) in enumerate(zip(plan.names, plan.coords)):  # range checks need the 320x240 size
            check_box(coords, (320, 240), i, name)
    assert info.value.reason == reason and words in info.value.detail


@pytest.mark.parametrize("change, reason, words", [
    ({"caption": "a <|obj_start|>cat<|obj_end|> on a sofa"}, "chain_token_in_prompt", "chain token <|obj_start|>"),
    ({"caption": "a cat <|box_end|>"}, "chain_token_in_prompt", "prompt (source field 'caption')"),
    ({"caption": "a <|object_ref_start|>cat"}, "chain_token_in_prompt", "<|object_ref_start|>"),
    ({"w": 10**400}, "bad_field", "width (source field 'w') must be a positive number"),
    ({"h": float("inf")}, "bad_field", "height (source field 'h') must be a positive number"),
])
def test_prompt_and_size_problems(change, reason, words):
    fields = parse_fields("prompt=caption,chain=cot,image=path,width=w,height=h")
    row = {"caption": "a cat on a sofa", "cot": CANONICAL_B, "path": "x.png", "w": 320, "h": 240, **change}
    with pytest.raises(RowError) as info:
        plan_row(row, fields)
    assert info.value.reason == reason and words in info.value.detail


def test_spans_plus_boxes_field_is_a_bad_chain():
    fields = parse_fields("prompt=caption,chain=cot,image=path,boxes=objects")
    row = {"caption": "c", "cot": CANONICAL_B, "path": "x.png", "objects": [{"name": "red circle", "bbox": CAT}]}
    with pytest.raises(RowError, match="already holds spans"):
        plan_row(row, fields, "pixel")


def test_pad_letterboxes_and_moves_the_boxes(tmp_path, image_dir):
    chain = ("<|obj_start|>sky<|obj_end|> <|box_start|>(0,0),(1000,1000)<|box_end|> over "
             "<|obj_start|>sea<|obj_end|> <|box_start|>(500,500),(1000,1000)<|box_end|>")
    source = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "p", "chain": chain, "image": "imgs/flat.png"}])
    out, _ = convert(tmp_path, [source], fit="pad", image_size=100)
    record = read_jsonl(out / "train.jsonl")[0]
    assert [o.box.as_tuple() for o in parse_chain(record["chain"]).objects] == [(0, 250, 1000, 750),
                                                                                 (500, 500, 1000, 750)]
    with Image.open(out / record["image"]) as image:  # 200x100 -> 100x50 band in the middle of 100x100
        assert image.getpixel((50, 10)) == PAD_COLOR and image.getpixel((50, 90)) == PAD_COLOR
        assert image.getpixel((50, 50)) == (30, 30, 200)
    stretched, _ = convert(tmp_path, [source], name="stretched", fit="stretch", image_size=100)
    assert read_jsonl(stretched / "train.jsonl")[0]["chain"] == chain


def test_placement_and_canvas_box():
    tall = placement(100, 300, 60, "pad")
    assert (tall.left, tall.top, tall.width, tall.height) == (20, 0, 20, 60)
    assert placement(100, 300, 60, "stretch").width == 60
    # the right half of a tall image: x from 20 + 10 = 30 to 40 px of 60 -> 500..667 on the grid
    assert canvas_box((50, 0, 100, 300), (100, 300), tall, 60) == Box(500, 0, 667, 1000)
    assert canvas_box((250, 0, 750, 500), (1000, 1000), placement(8, 8, 16, "stretch"), 16) == Box(250, 0, 750, 500)


def test_val_split_is_stable_and_complete(tmp_path, image_dir):
    chain = "A <|obj_start|>cat<|obj_end|> <|box_start|>(0,0),(500,500)<|box_end|>."
    rows = [{"id": f"r{i}", "prompt": "a cat", "chain": chain, "image": "imgs/small.png"} for i in range(40)]
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    out, summary = convert(tmp_path, [source], val_fraction=0.25, image_size=8)
    train = [r["id"] for r in read_jsonl(out / "train.jsonl")]
    val = [r["id"] for r in read_jsonl(out / "val.jsonl")]
    assert 0 < len(val) < 20 and sorted(train + val, key=lambda s: int(s[1:])) == [r["id"] for r in rows]
    assert val == [r["id"] for r in rows if is_val(r["id"], 0.25)]
    assert [g["id"] for g in read_jsonl(out / "grounding.jsonl")] == train
    again, _ = convert(tmp_path, [source], name="again", val_fraction=0.25, image_size=8)
    assert [r["id"] for r in read_jsonl(again / "val.jsonl")] == val


def test_workers_and_limit(tmp_path, image_dir):
    chain = "A <|obj_start|>cat<|obj_end|> <|box_start|>(0,0),(500,500)<|box_end|>."
    rows = [{"prompt": f"cat {i}", "chain": chain, "image": "imgs/wide.jpg" if i % 2 else "gone.png"}
            for i in range(10)]
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    one, s1 = convert(tmp_path, [source], name="one")
    two, s2 = convert(tmp_path, [source], name="two", workers=2)
    assert (one / "train.jsonl").read_text() == (two / "train.jsonl").read_text()
    assert (one / "bad_rows.jsonl").read_text() == (two / "bad_rows.jsonl").read_text()
    assert s1["counts"] == s2["counts"] == {"train": 5, "val": 0, "bad": 5}
    for record in read_jsonl(one / "train.jsonl"):
        assert (one / record["image"]).read_bytes() == (two / record["image"]).read_bytes()
    limited, s3 = convert(tmp_path, [source], name="limited", limit=3)
    assert s3["counts"] == {"train": 1, "val": 0, "bad": 2}


def test_image_file_names_are_safe_and_unique():
    used: set[str] = set()
    names = [image_file_name(i, "jpg", used) for i in ("abc", "a/b c", "a_b_c", "../x", "abc.jpg")]
    assert names[0] == "abc.jpg" and names[2] == "a_b_c.jpg"
    assert len(set(names)) == 5 and all("/" not in n and not n.startswith(".") for n in names)
    assert names[1].startswith("a_b_c-") and names[4] != names[0]


def test_sft_and_reward_read_the_converted_directory(tmp_path):
    """The output directory is a world for `janus-rig sft` (every row kept) and records for `janus-rig reward`."""
    from janus_rig.commands.reward import _load
    from reward_models.judges import make_judge
    from tests.sft.test_data import make_policy, sft_config
    from train.sft.data import RowReport, build_datasets

    save_image(tmp_path / "src" / "0.png", 90, 60)
    save_image(tmp_path / "src" / "1.jpg", 40, 80, (20, 20, 220))
    rows = [{"caption": "a red circle left of a blue square", "cot": "The image shows a red circle and a blue square.",
             "file": "0.png", "objects": [{"name": "red circle", "bbox": [0, 0, 45, 30]},
                                          {"name": "blue square", "bbox": [45, 30, 90, 60]}]},
            {"caption": "a blue square", "cot": "The image shows a blue square.", "file": "1.jpg",
             "objects": {"blue square": [10, 10, 30, 70]}}]
    source = tmp_path / "src" / "rows.json"
    source.write_text(json.dumps(rows))
    out, summary = convert(tmp_path, [source], image_size=64, box_space="pixel",
                           fields="prompt=caption,chain=cot,image=file,boxes=objects")
    assert summary["counts"]["train"] == 2
    report = RowReport()
    train, _ = build_datasets(make_policy(), sft_config(tmp_path, out, eval_strategy="no"), report)
    assert len(train) == 2 and report.bad == []
    for record in read_jsonl(out / "train.jsonl"):
        prompt, chain, image, metadata = _load(record, out, make_judge("shapeworld"))
        assert image.size == (64, 64) and chain == record["chain"] and metadata is None
