"""Reflection rows -> SFT sequences: targets exactly the role outputs, no <unk> with the ShapeWorld tokenizer,
and a forward/loss through the understanding path."""

from __future__ import annotations

import random

import pytest
import torch

from data_prep.shapeworld.chains import training_chain
from data_prep.shapeworld.perturb import make_example
from data_prep.shapeworld.prompts import metadata, prompt_text
from data_prep.shapeworld.sampler import TAGS, sample
from janus_rig.model.mixed import sft_loss
from janus_rig.model.tokenizer import UNK
from janus_rig.reflect.data import check_reflect_row, role_sequences


@pytest.fixture(scope="module")
def shapeworld_policy():
    from janus_rig.model.init import init_policy

    torch.manual_seed(0)
    from data_prep.shapeworld.tokenizer import shapeworld_tokenizer

    return init_policy("tiny", tokenizer=shapeworld_tokenizer())  # which also knows the roles' words


def rows(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = sample(TAGS[i % len(TAGS)], rng)
        record = {"id": f"train-{i}", "tag": s.description.tag, "prompt": prompt_text(s.description),
                  "chain": training_chain(s, rng), "metadata": metadata(s.description), "scene": s.scene.to_json()}
        row, image = make_example(record, rng, keep_fraction=0.3)
        out.append(({"id": f"reflect-{i}", "image": f"reflect/images/{i}.png", **row}, image))
    return out


def test_sequences_hold_exactly_the_targets(shapeworld_policy):
    policy = shapeworld_policy
    unk = policy.tokenizer.convert_tokens_to_ids(UNK)
    kinds = set()
    for row, _ in rows(40):
        assert check_reflect_row(row) is None
        seqs = role_sequences(policy, row)
        assert [s["id"] for s in seqs] == [f"{row['id']}/checker"] + ([f"{row['id']}/actor"] if row["edit"] else [])
        for seq, target in zip(seqs, [row["reflection"], row["edit"]]):
            ids, loss = seq["input_ids"], seq["loss_mask"]
            assert unk not in ids
            assert len(ids) == len(loss) == len(seq["image_mask"]) and not any(seq["image_mask"])
            assert ids.count(policy.tokens.image) == policy.num_image_tokens
            n = sum(loss)
            assert loss == [False] * (len(ids) - n) + [True] * n  # context first, then the target
            assert policy.tokenizer.decode(ids[-n:]) == target
            assert seq["grounding"] is True and seq["image"] == row["image"]
        kinds.add(row["perturbation"]["kind"])
    assert len(kinds) >= 4


def test_understanding_forward_and_loss(shapeworld_policy):
    policy = shapeworld_policy
    batch_rows = rows(3, seed=1)
    seqs = [s for row, _ in batch_rows for s in role_sequences(policy, row)]
    images = [image for row, image in batch_rows for _ in role_sequences(policy, row)]
    T = max(len(s["input_ids"]) for s in seqs)
    ids = torch.full((len(seqs), T), policy.tokens.pad)
    attention = torch.zeros(len(seqs), T, dtype=torch.long)
    loss_mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):  # right-padded, as the SFT collator does
        ids[i, : len(s["input_ids"])] = torch.tensor(s["input_ids"])
        attention[i, : len(s["input_ids"])] = 1
        loss_mask[i, : len(s["input_ids"])] = torch.tensor(s["loss_mask"])
    loss, metrics = sft_loss(policy.model, ids, torch.zeros_like(loss_mask), attention, loss_mask,
                             pixel_values=policy.pixel_values(images))
    assert torch.isfinite(loss) and metrics["text_tokens"] == int(loss_mask.sum()) and metrics["image_tokens"] == 0
    loss.backward()
    assert policy.base.lm_head.weight.grad.abs().sum() > 0


def test_bad_rows_are_named():
    row, _ = rows(1)[0]
    assert check_reflect_row({**row, "prompt": ""})[0] == "missing_field"
    assert check_reflect_row({**row, "reflection": row["reflection"].replace("<|reflect_end|>", "")})[0] == \
        "bad_reflection"
    flipped = "keep" if row["decision"] == "edit" else "edit"
    assert check_reflect_row({**row, "decision": flipped})[0] == "bad_reflection"
    assert check_reflect_row({**row, "chain": "a <|obj_start|>cat"})[0] == "bad_chain"
    edit_row = next(r for r, _ in rows(40) if r["decision"] == "edit")
    assert check_reflect_row({**edit_row, "edit": None})[0] == "missing_field"
    assert check_reflect_row({**edit_row, "edit": edit_row["edit"] + " more"})[0] == "bad_edit"
