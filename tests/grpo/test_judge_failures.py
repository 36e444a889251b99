"""GRPO with a judge that fails: scoring a rollout never raises; the rewards are None, the failures counted in the
logged metrics, and the samples out of the loss (advantage 0)."""

from __future__ import annotations

import torch

from tests.rewards import hostile
from tests.rewards.hostile import HostileServer
from train.grpo.config import GRPOConfig
from train.grpo.trainer import build_trainer


def test_a_failing_judge_gives_none_rewards_and_counted_failures(tmp_path, world, policy_dir):
    with HostileServer([hostile.GARBAGE]) as server:  # answers every request with "GARBAGE\r\n\r\n"
        config = GRPOConfig(output_dir=str(tmp_path / "out"), world=str(world), model_name_or_path=str(policy_dir),
                            max_steps=1, num_generations=4, per_device_train_batch_size=2, max_completion_length=6,
                            reward_terms=["R_sem"], judge=server.url, judge_model="m",
                            judge_options={"structured": False, "retries": 0}, report_to="none", disable_tqdm=True,
                            seed=0)
        trainer = build_trainer(config)
        inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))  # rollout, rewards, episodes
        trainer.judge.close()
    m = trainer._metrics  # 2 prompts x 4 samples
    assert m["rewards_none"] == [8.0] and m["adv/frac_invalid_rewards"] == [1.0]
    assert m["reward/none/total"] == [8.0] and m["reward/failures/judge"] == [8.0]
    assert not inputs["loss_mask"].any() and torch.all(inputs["advantages"] == 0)
    assert "not an HTTP reply" in trainer.judge.stats.reasons()["http_error"]
