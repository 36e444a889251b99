"""GRPO learns: from the shipped ShapeWorld SFT model, a few GRPO steps on a fixed set of prompts raise their reward.

The other trainer tests check the plumbing on a random-init policy; this one checks that the whole loop (rollout,
judge, group advantages, clipped surrogate, optimiser step) moves the policy in the direction of the reward. On a
fixed prompt set the chain's semantic reward R_sem (exact ShapeWorld judge) climbs from ~0.6 to ~0.8 in 12 steps
(docs/results.md, section 3.2); on fresh prompts every step the same recipe is far slower — that is the
finding, not a bug, and this test is what tells the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.grpo.config import GRPOConfig
from train.grpo.trainer import run_grpo

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED_SFT = Path(__file__).resolve().parents[2] / "checkpoints" / "shapeworld" / "sft"

# Four position prompts of the bench's kind, with their GenEval-style metadata (what the shapeworld judge reads).
PROMPTS = [
    ("a white triangle right of a red circle", ("circle", "red"), ("triangle", "white"), "right of"),
    ("a red circle above a purple circle", ("circle", "purple"), ("circle", "red"), "above"),
    ("a blue square left of a green triangle", ("triangle", "green"), ("square", "blue"), "left of"),
    ("a yellow circle below a white square", ("square", "white"), ("circle", "yellow"), "below"),
]


def _records():
    for i, (prompt, (c0, k0), (c1, k1), relation) in enumerate(PROMPTS):
        metadata = {"tag": "position", "prompt": prompt, "include": [
            {"class": c0, "count": 1, "color": k0},
            {"class": c1, "count": 1, "color": k1, "position": [relation, 0]}]}
        yield {"id": f"fixed-{i}", "prompt": prompt, "tag": "position", "metadata": metadata}


def test_fixed_prompts_reward_rises(tmp_path, world):
    assert (SHIPPED_SFT / "model.safetensors").is_file(), f"{SHIPPED_SFT} is part of the repository"
    prompts = tmp_path / "fixed.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    config = GRPOConfig(
        output_dir=str(tmp_path / "out"), world=str(world), prompts=str(prompts), tags=["position"],
        model_name_or_path=str(SHIPPED_SFT), num_generations=8, per_device_train_batch_size=4,
        max_completion_length=96, cfg_weight=3.0, optimize="chain", reward_terms=["R_sem"], reward_combine="sum",
        learning_rate=1e-4, lr_scheduler_type="constant", max_steps=12, eval_every=0, gallery_every=0,
        report_to="none", disable_tqdm=True, save_strategy="no", seed=0)
    run_grpo(config)
    rewards = [line["reward"] for line in map(json.loads, open(tmp_path / "out" / "train_log.jsonl"))
               if "reward" in line]
    assert len(rewards) == 12
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.1, f"R_sem did not rise on fixed prompts: {[round(r, 3) for r in rewards]}"
