"""Resuming a GRPO run: 4 steps straight through, and 2 steps + a resumed run from checkpoint-2, end with the same
weights and log the same rewards and losses (rollout seeds, prompt order, optimizer and scheduler all restored);
with LoRA the unmerged adapters are what the checkpoint restores. A save killed halfway leaves no checkpoint, and a
resume skips incomplete ones by name; a real `janus-rig grpo` process killed at a random step after a checkpoint
resumes to the uninterrupted run's weights and logs (tests/kill.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from janus_rig.model.policy import ADAPTER_DIR, ADAPTERS
from tests.grpo.test_learns import SHIPPED_SFT, _records
from tests.grpo.test_trainer import grpo_config
from tests.kill import kill_resume_and_compare
from train.grpo.trainer import run_grpo

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
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_killed_save_leaves_no_checkpoint_and_resume_takes_the_last_whole_one(tmp_path, world, policy_dir,
                                                                                monkeypatch, caplog):
    """A save that dies halfway (here: writing the RNG state of checkpoint-2) leaves tmp-checkpoint-2/, never a
    checkpoint-2/ without its trainer_state.json; `--resume_from_checkpoint true` then goes on from checkpoint-1,
    says what it skipped, and the run ends as a straight one does."""
    import train.grpo.trainer as trainer_module

    common = dict(max_steps=3, save_strategy="steps", save_steps=1, gallery_every=0, max_train_records=2,
                  per_device_train_batch_size=1, lr_scheduler_type="linear")
    straight = tmp_path / "straight"
    run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(straight), **common))

    real = trainer_module.GRPOTrainer._save_rng_state

    def dies_at_step_2(self, output_dir):
        if self.state.global_step == 2:
            raise KeyboardInterrupt("killed while saving")
        return real(self, output_dir)

    killed = tmp_path / "killed"
    monkeypatch.setattr(trainer_module.GRPOTrainer, "_save_rng_state", dies_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(killed), **common))
    monkeypatch.undo()
    assert sorted(p.name for p in killed.glob("*checkpoint-*")) == ["checkpoint-1", "tmp-checkpoint-2"]

    with caplog.at_level("INFO", logger="train.checkpoints"):
        summary = run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(killed),
                                       resume_from_checkpoint="true", **common))
    assert summary["steps"] == 3
    assert f"skipped {killed / 'tmp-checkpoint-2'}" in caplog.text
    assert f"resuming from {killed / 'checkpoint-1'}" in caplog.text
    assert sorted(p.name for p in killed.glob("*checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert sorted(_steps(killed)) == [1, 2, 3]
    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_resume_skips_an_incomplete_checkpoint(tmp_path, caplog):
    """The newest complete checkpoint-N is the one resumed; half-written ones above it are skipped by name."""
    from train.checkpoints import resume_checkpoint

    out = tmp_path / "run"
    for step, files in ((1, {"trainer_state.json": "{}", "model.safetensors": ""}),
                        (2, {"trainer_state.json": "{}", f"{ADAPTER_DIR}/{ADAPTERS}": ""}),
                        (3, {"model.safetensors": ""}),  # killed before its trainer state
                        (4, {"trainer_state.json": "{\"log_hist", "model.safetensors": ""}),  # killed mid-file
                        (10, {"trainer_state.json": "{}"})):  # no weights
        for name, text in files.items():
            path = out / f"checkpoint-{step}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    with caplog.at_level("INFO", logger="train.checkpoints"):
        assert resume_checkpoint("true", out) == str(out / "checkpoint-2")
    for step, why in ((10, "no weights file"), (4, "trainer_state.json does not parse"),
                      (3, "no trainer_state.json")):
        assert f"skipped {out / f'checkpoint-{step}'}, an incomplete checkpoint: {why}" in caplog.text
    assert resume_checkpoint(str(out / "checkpoint-1"), out) == str(out / "checkpoint-1")
    with pytest.raises(ValueError, match="checkpoint-3 is not a checkpoint to resume from: no trainer_state.json"):
        resume_checkpoint(str(out / "checkpoint-3"), out)
    assert resume_checkpoint("false", out) is None and resume_checkpoint(None, out) is None


def test_killed_grpo_resumes_to_the_uninterrupted_result(tmp_path):
    """The shipped ShapeWorld SFT model on four complex prompts (tests/grpo/test_learns.py): its R_spa rewards
    differ within a group, so every step changes the weights and a resume that lost anything would show."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in _records()))

    def argv(out):
        return ["grpo", "--prompts", str(prompts), "--model_name_or_path", str(SHIPPED_SFT), "--output_dir", str(out),
                "--max_steps", "8", "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "2",
                "--num_generations", "4", "--per_device_train_batch_size", "2", "--max_completion_length", "96",
                "--cfg_weight", "3", "--optimize", "chain", "--reward_terms", "R_spa", "--reward_combine", "sum",
                "--learning_rate", "1e-4", "--gallery_every", "0", "--report_to", "none", "--disable_tqdm", "true",
                "--seed", "0"]

    kill_resume_and_compare(tmp_path, argv, 8, seed=0, summary_file="grpo_summary.json",
                            keys=("loss", "reward", "reward_std", "learning_rate"), step_s=1.0)


def test_lora_run_refuses_a_full_checkpoint(tmp_path, world, policy_dir):
    full = tmp_path / "full"
    run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(full), max_steps=1, save_strategy="steps",
                         save_steps=1, gallery_every=0))
    with pytest.raises(ValueError, match=f"no {ADAPTER_DIR}/{ADAPTERS}"):
        run_grpo(grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / "lora"), max_steps=2,
                             resume_from_checkpoint=str(full / "checkpoint-1"), gallery_every=0, **LORA))
