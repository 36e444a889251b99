"""SFT data: exact sequences and masks, the VQ cache, bad rows, the collator."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from data_prep.vq_cache import encode_images, image_codes, load_image
from janus_rig.model.prompts import GROUNDING_QUESTION
from train.sft.config import SFTConfig
from train.sft.data import (
    RowReport,
    SFTCollator,
    WorldInfo,
    build_datasets,
    fill_codes,
    grounding_sequence,
)

WORLD_SIZE = 64  # the tiny preset's resolution: no resizing in these tests


def make_world(out, train=8, val=4):
    from data_prep.shapeworld.world import write_world

    write_world(out, train=train, val=val, bench_per_tag=1, size=WORLD_SIZE, progress=False)
    return out


def make_policy():
    from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
    from janus_rig.model.init import init_policy

    return init_policy("tiny", tokenizer=shapeworld_tokenizer(), seed=0)


def sft_config(tmp_path, world, **overrides) -> SFTConfig:
    values = dict(output_dir=str(tmp_path / "out"), world=str(world), init_preset="tiny", report_to="none",
                  cache_dir=str(tmp_path / "cache"))
    return SFTConfig(**{**values, **overrides})


def read_jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def policy():
    return make_policy()


def test_chain_sequence_token_by_token(tmp_path, world, policy):
    record = read_jsonl(world / "train.jsonl")[0]
    ds, _ = build_datasets(policy, sft_config(tmp_path, world, max_train_records=1), RowReport())
    row = ds[0]
    t = policy.tokens
    prompt = policy.encode_prompt(record["prompt"], chain=True)
    chain = policy.tokenizer.encode(record["chain"], add_special_tokens=False)
    codes = encode_images(policy.base.model.vqmodel, load_image(world / record["image"], 64, 64)[None])[0].tolist()
    assert prompt[0] == t.bos and policy.tokenizer.decode(chain) == record["chain"]
    assert len(codes) == policy.num_image_tokens
    assert row["input_ids"] == [*prompt, *chain, t.boi, *codes, t.eoi]
    P, C, N = len(prompt), len(chain), len(codes)
    assert row["image_mask"] == [False] * (P + C + 1) + [True] * N + [False]
    # loss on chain, <begin_of_image>, codes, <end_of_image>; not on the prompt
    assert row["loss_mask"] == [False] * P + [True] * (C + 1 + N + 1)


def test_nochain_sequence_token_by_token(tmp_path, world, policy):
    record = read_jsonl(world / "train.jsonl")[0]
    ds, _ = build_datasets(policy, sft_config(tmp_path, world, chain=False, max_train_records=1), RowReport())
    row = ds[0]
    t = policy.tokens
    prompt = policy.encode_prompt(record["prompt"], chain=False)
    assert prompt != policy.encode_prompt(record["prompt"], chain=True)  # no chain instruction
    N = policy.num_image_tokens
    assert row["input_ids"][: len(prompt) + 1] == [*prompt, t.boi] and row["input_ids"][-1] == t.eoi
    assert len(row["input_ids"]) == len(prompt) + 1 + N + 1
    assert row["image_mask"] == [False] * (len(prompt) + 1) + [True] * N + [False]
    assert row["loss_mask"] == [False] * (len(prompt) + 1) + [True] * (N + 1)  # codes + <end_of_image>


def test_grounding_sequence(policy):
    chain = "The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(1,2),(300,400)<|box_end|>."
    seq = grounding_sequence(policy, chain)
    question = policy.encode_question(GROUNDING_QUESTION)
    assert seq.input_ids[: len(question)] == question
    assert question.count(policy.tokens.image) == policy.num_image_tokens
    assert seq.input_ids[-1] == policy.tokens.eos
    assert seq.loss_mask == [False] * len(question) + [True] * (len(seq.input_ids) - len(question))
    assert not any(seq.image_mask)


def test_vq_cache_hit_does_not_reencode(tmp_path, world, policy):
    vq = policy.base.model.vqmodel
    calls = []
    original = vq.encode
    vq.encode = lambda pixels, **kw: calls.append(len(pixels)) or original(pixels, **kw)
    try:
        first = image_codes(world / "train.jsonl", world, vq, 64, 64, tmp_path / "cache", batch_size=4)
        assert sum(calls) == 8
        second = image_codes(world / "train.jsonl", world, vq, 64, 64, tmp_path / "cache", batch_size=4)
        assert sum(calls) == 8, "second call re-encoded images"
        assert first == second
        assert len(list((tmp_path / "cache").glob("vq-codes-*.arrow"))) == 1
        with torch.no_grad():  # other weights -> another key -> encoded again
            vq.quant_conv.bias.add_(1.0)
        image_codes(world / "train.jsonl", world, vq, 64, 64, tmp_path / "cache", batch_size=4)
        assert sum(calls) == 16
    finally:
        del vq.encode
        with torch.no_grad():
            vq.quant_conv.bias.sub_(1.0)


def test_bad_rows_reported_by_id_and_excluded(tmp_path, world, policy):
    bad_world = tmp_path / "world"
    shutil.copytree(world, bad_world)
    records = read_jsonl(bad_world / "train.jsonl")
    (bad_world / records[0]["image"]).unlink()  # missing image
    records[1]["chain"] = records[1]["chain"].replace("<|obj_end|>", "", 1)  # broken span
    records[2]["chain"] = records[2]["chain"].replace(")<|box_end|>", "999)<|box_end|>", 1)  # y2 out of 0..1000
    del records[3]["prompt"]  # missing field
    Image.new("RGB", (20, 20)).save(bad_world / records[4]["image"])  # wrong size: rejected, not resized
    with open(bad_world / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write("{not json\n")
    report = RowReport()
    ds, _ = build_datasets(policy, sft_config(tmp_path, bad_world), report)
    reasons = {b.id: b.reason for b in report.bad}
    assert reasons == {records[0]["id"]: "missing_image", records[1]["id"]: "bad_chain",
                       records[2]["id"]: "bad_chain", records[3]["id"]: "missing_field",
                       records[4]["id"]: "wrong_size", "train.jsonl:9": "not_json"}
    assert "out_of_range" in next(b.detail for b in report.bad if b.id == records[2]["id"])
    assert len(ds) == 3 and report.summary()["kept"] == {"train.jsonl": 3}
    report.write(tmp_path / "bad_rows.jsonl")
    assert len(read_jsonl(tmp_path / "bad_rows.jsonl")) == 6


def test_collator_pads_right_and_stacks_grounding_pixels(tmp_path, world, policy):
    config = sft_config(tmp_path, world, max_train_records=2, grounding_ratio=0.5)
    ds, _ = build_datasets(policy, config, RowReport())
    rows = [ds[0], ds[1], ds[2]]
    assert [r["grounding"] for r in rows] == [False, False, True]
    short = dict(rows[0], input_ids=rows[0]["input_ids"][:5], image_mask=[False] * 5, loss_mask=[True] * 5)
    batch = SFTCollator(policy.tokens.pad, WorldInfo.read(world), policy.pixel_values)([short, *rows[1:]])
    T = max(len(r["input_ids"]) for r in rows[1:])
    assert batch["input_ids"].shape == (3, T)
    assert batch["input_ids"][0, 5:].eq(policy.tokens.pad).all()
    assert not batch["image_mask"][0, 5:].any() and not batch["loss_mask"][0, 5:].any()
    assert batch["attention_mask"][0].tolist() == [1] * 5 + [0] * (T - 5)
    assert batch["attention_mask"][1, : len(rows[1]["input_ids"])].all()
    assert batch["pixel_values"].shape == (1, 3, policy.image_size, policy.image_size)  # the grounding row only
    assert "gen_images" not in batch


def test_on_the_fly_rows_match_cached_codes(tmp_path, world, policy):
    cached, _ = build_datasets(policy, sft_config(tmp_path, world, max_train_records=2), RowReport())
    live, _ = build_datasets(policy, sft_config(tmp_path, world, max_train_records=2, vq_cache=False), RowReport())
    batch = SFTCollator(policy.tokens.pad, WorldInfo.read(world), image_size=policy.image_size)(list(live))
    assert batch["gen_images"].shape == (2, 3, 64, 64) and batch["gen_images"].dtype == torch.uint8
    codes = encode_images(policy.base.model.vqmodel, batch["gen_images"])
    filled = fill_codes(batch["input_ids"], batch["image_mask"], codes)
    expected = SFTCollator(policy.tokens.pad)(list(cached))["input_ids"]
    assert torch.equal(filled, expected)


def test_reflection_rows_mixed_at_their_ratio_and_bad_ones_reported(tmp_path, world, policy):
    from data_prep.shapeworld.perturb import write_reflect_data

    mixed = tmp_path / "world"
    shutil.copytree(world, mixed)
    write_reflect_data(mixed, 9, seed=0, keep_fraction=0.2, progress=False)
    rows = read_jsonl(mixed / "reflect.jsonl")
    rows[0]["reflection"] = rows[0]["reflection"].replace("<|decision|>", "<|decision|>maybe ", 1)  # bad decision
    (mixed / rows[1]["image"]).unlink()
    with open(mixed / "reflect.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write("[1, 2]\n")
    good = rows[2:]

    # ratio 1 of 8 train records asks for 8 rows; 7 are usable, so every row is read and each bad one reported.
    report = RowReport()
    ds, _ = build_datasets(policy, sft_config(tmp_path, mixed, reflect_ratio=1.0), report)
    assert {b.id: b.reason for b in report.bad} == {rows[0]["id"]: "bad_reflection", rows[1]["id"]: "missing_image",
                                                    "reflect.jsonl:10": "not_json"}
    assert report.summary()["kept"] == {"train.jsonl": 8, "reflect.jsonl": 7}
    reflect = [r for r in ds if "/" in r["id"]]
    edits = sum(r["decision"] == "edit" for r in good)
    assert 0 < edits < 7 and len(ds) == 8 + 7 + edits and len(reflect) == 7 + edits
    by_id = {r["id"]: r for r in good}
    for seq in reflect:
        row_id, role = seq["id"].rsplit("/", 1)
        target = by_id[row_id]["reflection" if role == "checker" else "edit"]
        n = sum(seq["loss_mask"])
        assert policy.tokenizer.decode(seq["input_ids"][-n:]) == target
        assert seq["grounding"] and seq["image"] == by_id[row_id]["image"]  # read through the understanding path
    batch = SFTCollator(policy.tokens.pad, WorldInfo.read(mixed), policy.pixel_values)([ds[0], *reflect[:2]])
    assert batch["pixel_values"].shape == (2, 3, policy.image_size, policy.image_size)

    # round(0.25 x 8) = 2 rows, drawn by the seed: the same ones every time
    picks = []
    for _ in range(2):
        report = RowReport()
        ds, _ = build_datasets(policy, sft_config(tmp_path, mixed, reflect_ratio=0.25), report)
        picks.append(sorted({r["id"].split("/")[0] for r in ds if "/" in r["id"]}))
        assert report.summary()["kept"]["reflect.jsonl"] == 2
    assert len(picks[0]) == 2 and picks[0] == picks[1]


def test_codes_view_rows_show_their_image_as_cached_codes(tmp_path, world, policy):
    """image_view codes: grounding and role rows carry the image's VQ codes over their placeholders (image_mask
    there, no loss on them), exactly the codes the VQ gives that image; no pixels are loaded."""
    from data_prep.shapeworld.perturb import write_reflect_data

    mixed = tmp_path / "world"
    shutil.copytree(world, mixed)
    write_reflect_data(mixed, 6, seed=0, progress=False)
    policy.image_view = "codes"
    try:
        ds, _ = build_datasets(policy, sft_config(tmp_path, mixed, reflect_ratio=0.5, grounding_ratio=0.5),
                               RowReport())
    finally:
        policy.image_view = "vision"
    # rows that read an image: codes in, no loss on them (generation rows learn theirs)
    seen = [r for r in ds if any(r["image_mask"]) and not any(m and x for m, x in zip(r["image_mask"], r["loss_mask"]))]
    roles = [r for r in seen if "/" in r["id"]]
    assert len(seen) - len(roles) == 4 and len(roles) >= 4  # 0.5 x 8 grounding rows, >= 3 checker rows + actors
    assert not any(r["grounding"] or r["image"] for r in seen)
    images = {"reflect": {r["id"]: r["image"] for r in read_jsonl(mixed / "reflect.jsonl")},
              "grounding": {r["id"]: r["image"] for r in read_jsonl(mixed / "grounding.jsonl")}}
    N = policy.num_image_tokens
    for r in seen:
        kind = "reflect" if "/" in r["id"] else "grounding"
        image = images[kind][r["id"].split("/")[0]]
        expected = image_codes(mixed / f"{kind}.jsonl", mixed, policy.base.model.vqmodel, WORLD_SIZE,
                               policy.image_size, tmp_path / "cache", paths=[image])[image].codes
        shown = [i for i, m in zip(r["input_ids"], r["image_mask"]) if m]
        assert len(shown) == N and shown == expected
        assert policy.tokens.image not in [i for i, m in zip(r["input_ids"], r["image_mask"]) if not m]
    batch = SFTCollator(policy.tokens.pad, WorldInfo.read(mixed), policy.pixel_values)(seen[:3])
    assert "pixel_values" not in batch and batch["image_mask"].sum() == 3 * N
