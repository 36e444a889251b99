"""`janus-rig eval sg-iou`: records in both shapes, the oracle's scores on ground-truth renders and on wrong images,
counted judge failures, and the command end to end on the tiny random-init policy."""

from __future__ import annotations

import json

import pytest

from janus_rig.cli import main
from janus_rig.eval.sg_run import parse_record, read_records, score_graphs, summarize
from janus_rig.eval.summary import read_summary
from reward_models.judges import make_judge
from tests.rewards import World, build_tiny_qwen

LAION_LINE = {
    "img_id": "482027", "name": "482027.jpg", "caption_ori": "A tall stone tower under a blue sky", "score": "6.5",
    "items": [{"item_id": 0, "label": "tower", "attributes": ["tall", "stone"], "global_item_id": 3201},
              {"item_id": 1, "label": "sky", "attributes": ["blue", "cloudless"], "global_item_id": 3202}],
    "relations": [{"triple_id": 0, "item1": 0, "relation": "under", "item2": 1}],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("sg_world"), n=60)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_shapeworld_records_keep_only_the_attributes_their_prompt_states(world):
    records = read_records(world.records_path)
    assert len(records) == len(world.records) and {r.attributes for r in records} == {"stated"}
    for record, raw in zip(records, world.records):
        colours = {i["attributes"][0] for i in raw["scene_graph"]["items"]}
        named = {c for c in colours if c in raw["prompt"].split()}
        assert set(record.vocabulary.attributes) == named  # "a circle and a square" names no colour
        assert len(record.reference.triples) == len(raw["scene_graph"]["relations"])
    everything = read_records(world.records_path, attributes="all")
    assert all(len(r.vocabulary.attributes) >= 1 for r in everything)


def test_laion_sg_lines_are_read_as_annotated():
    record = parse_record(LAION_LINE)
    assert record.id == "482027" and record.prompt == LAION_LINE["caption_ori"] and record.attributes == "all"
    assert record.reference.triples == {("stone tall tower", "under", "blue cloudless sky")}
    stated = parse_record(LAION_LINE, attributes="stated")
    assert stated.reference.triples == {("stone tall tower", "under", "blue sky")}  # 'cloudless' is not in the caption


def test_converted_laion_sg_records_are_read_like_raw_lines():
    # `janus-rig convert laion-sg` output (docs/converters.md): prompt + scene_graph (+ its strings) + vocabulary
    converted = {"id": "482027", "prompt": "A tall stone tower under a blue sky", "tag": "laion_sg", "metadata": None,
                 "scene_graph": {"items": LAION_LINE["items"], "relations": LAION_LINE["relations"],
                                 "entities": ["blue cloudless sky", "stone tall tower"],
                                 "triples": [["stone tall tower", "under", "blue cloudless sky"]]},
                 "vocabulary": {"labels": ["tower", "sky"], "attributes": ["tall", "stone", "blue", "cloudless"],
                                "predicates": ["under"]}}
    record, raw = parse_record(converted), parse_record(LAION_LINE)
    assert (record.reference, record.vocabulary, record.attributes) == (raw.reference, raw.vocabulary, "all")
    assert record.vocabulary.to_json() == converted["vocabulary"] and record.tag == "laion_sg"
    assert sorted(record.reference.entities) == converted["scene_graph"]["entities"]


def test_bad_records_are_named_by_file_line_and_field(tmp_path):
    path = tmp_path / "records.jsonl"
    good = json.dumps(LAION_LINE)
    lines = [good, "{nope", json.dumps({"prompt": "p"}), json.dumps({**LAION_LINE, "caption_ori": ""}),
             json.dumps({**LAION_LINE, "relations": [{"item1": 0, "relation": "on", "item2": 9}]})]
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError) as err:
        read_records(path)
    message = str(err.value)
    assert f"{path}:2: not JSON" in message
    assert f"{path}:3: no scene graph" in message
    assert f"{path}:4: field 'caption_ori' must be a non-empty string" in message
    assert f"{path}:5: scene graph relations[0].item2 9 is no item_id" in message
    one = tmp_path / "one.jsonl"
    one.write_text(good + "\n\n")
    assert len(read_records(one)) == 1
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl")


def test_oracle_scores_ground_truth_renders_perfectly_and_wrong_images_lower(world):
    records = read_records(world.records_path)
    judge = make_judge("shapeworld")
    rows = score_graphs(records, [[image] for image in world.images], judge, progress=False)
    metrics, details = summarize(rows)
    assert metrics["entity_iou"] == 1.0 and metrics["relation_iou"] == 1.0 and metrics["judge_failures"] == 0
    assert details["per_tag_scores"]["position"]["sg_iou"] == 1.0  # two objects: only the stated relation holds
    # three objects: every true relation is reported, the record states two, so the ground truth scores below 1
    assert 0.25 < details["per_tag_scores"]["complex"]["sg_iou"] < 1.0
    assert details["counted"]["sg_iou"] == details["records_with_relations"] == sum(
        bool(r["scene_graph"]["relations"]) for r in world.records)
    wrong = [[world.images[world.other(i)]] for i in range(len(records))]
    worse, _ = summarize(score_graphs(records, wrong, judge, progress=False))
    assert worse["entity_iou"] < 0.7 and worse["sg_iou"] < metrics["sg_iou"] - 0.3


def test_a_random_hf_judge_costs_counted_failures_not_a_crash(world, tmp_path):
    records = read_records(world.records_path)[:3]
    judge = make_judge("hf", model=build_tiny_qwen(tmp_path / "qwen"), batch_size=3, max_new_tokens=8)
    rows = score_graphs(records, [[image] for image in world.images[:3]], judge, progress=False)
    metrics, _ = summarize(rows)
    stats = judge.stats.snapshot()
    assert stats["requests"] == 3 and metrics["judge_failures"] == stats["failures"] >= 1
    for row in rows:
        for sample in row["samples"]:
            assert (sample["graph"] is None) == (sample["entity_iou"] is None)  # a failure is None, never a 0
    judge.close()


def test_eval_sg_iou_command_end_to_end(tiny_policy_dir, world, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in world.records[:3]))
    out = tmp_path / "sg"
    code = main(["eval", "sg-iou", "--model", str(tiny_policy_dir), "--records", str(records), "--samples", "2",
                 "--out", str(out), "--max-chain-tokens", "4", "--batch-size", "3", "--display-size", "64"])
    assert code == 0
    summary = read_summary(out)
    assert summary["kind"] == "sg-iou" and summary["samples"] == 6 and summary["model"] == str(tiny_policy_dir)
    assert {"entity_iou", "judge_failures"} <= set(summary["metrics"]) and summary["records"] == 3
    assert all((out / t).is_file() for t in summary["thumbnails"]) and len(summary["thumbnails"]) == 6
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in world.records[:3]]
    assert all(len(r["samples"]) == 2 and (out / r["samples"][1]["image"]).is_file() for r in rows)
    page = (out / "index.html").read_text()
    assert "Entity-IoU" in page and "janus-rig eval sg-iou" in page
    assert main(["eval", "sg-iou", "--model", str(tiny_policy_dir), "--records", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "x")]) == 2  # a clear one-line error, no traceback
