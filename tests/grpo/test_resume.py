"""Resuming a GRPO run: 4 steps straight through, and 2 steps + a resumed run from checkpoint-2, end with the same
weights and log the same rewards and losses (rollout seeds, prompt order, optimizer and scheduler all restored);
with LoRA the unmerged adapters are what the checkpoint restores."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from janus_rig.model.policy import ADAPTER_DIR, ADAPTERS
from train.grpo.trainer import run_grpo
from tests.grpo.test_trainer import grpo_config

LORA = dict(use_lora=True, trainable_parts=["language_model"], lora_r=4, lora_alpha=4)


def _steps(out) -> dict[int, dict]:
    lines = [json.loads(line) for line in open(out / "train_log.jsonl") if line.strip()]
    return {line["step"]: line for line in lines if "reward" in line}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resumed_run_ends_where_the_straight_run_does(tmp_path, world, policy_dir, lora):
    # per_device_train_batch_size 1 over 2 train records: 2 batches per epoch, so step 3 is in the second epoch
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, gallery_every=0, max_train_records=2,
                  per_device_train_batch_size=1, lr_scheduler_type="linear", **(LORA if lora else {}))
    straight = tmp_path / "straight"
    run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(straight), **common))

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    if lora:
        # a standard peft adapter directory: what resuming restores
        assert (resumed / "checkpoint-2" / ADAPTER_DIR / ADAPTERS).is_file()
        assert (resumed / "checkpoint-2" / ADAPTER_DIR / "adapter_config.json").is_file()
    summary = run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(resumed),
                                   resume_from_checkpoint="true", **common))
    assert summary["steps"] == 4

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming"
    start = load_file(policy_dir / "model.safetensors")
    assert any(not torch.equal(start[n], a[n]) for n in a)  # the runs did train

    logged_straight, logged_resumed = _steps(straight), _steps(resumed)
    assert sorted(logged_resumed) == [3, 4]  # the resumed run logs only its own steps
    for step in (3, 4):
        for key in ("reward", "loss", "chain_length", "learning_rate"):
            assert logged_resumed[step][key] == pytest.approx(logged_straight[step][key], abs=1e-6), (step, key)


def test_resume_needs_a_checkpoint(tmp_path, world, policy_dir):
    with pytest.raises(ValueError, match="No valid checkpoint"):
        run_grpo(grpo_config(tmp_path, world, policy_dir, resume_from_checkpoint="true"))


def test_lora_run_refuses_a_full_checkpoint(tmp_path, world, policy_dir):
    full = tmp_path / "full"
    run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(full), max_steps=1, save_strategy="steps",
                         save_steps=1, gallery_every=0))
    with pytest.raises(ValueError, match=f"no {ADAPTER_DIR}/{ADAPTERS}"):
        run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / "lora"), max_steps=2,
                             resume_from_checkpoint=str(full / "checkpoint-1"), gallery_every=0, **LORA))
