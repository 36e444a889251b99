"""The collapse guard: the detector on known series, and a real GRPO run whose reward falls off a cliff ends with
the weights of a healthy step (equal to a run stopped there), or continues from them at a lower learning rate."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from reward_models.terms import REWARD_TERMS
from tests.grpo.test_trainer import _brightness, grpo_config, read_jsonl
from train.grpo.guard import CollapseDetector, GuardSettings
from train.grpo.trainer import run_grpo

pytestmark = pytest.mark.usefixtures("one_thread")
S = GuardSettings(window=3, reward_drop=0.5, grad_factor=4.0, length_growth=0.3)
HEALTHY = {"reward": 0.6, "grad_norm": 0.3, "chain_length": 50.0}


def feed(detector, series):
    return [detector.update(logs) for logs in series]


def test_a_healthy_run_raises_nothing():
    wobble = [{**HEALTHY, "reward": 0.6 + 0.05 * (i % 3), "grad_norm": 0.3 + 0.1 * (i % 2)} for i in range(40)]
    assert feed(CollapseDetector(S), wobble) == [None] * 40


@pytest.mark.parametrize("key,values,words", [
    ("reward", [0.6, 0.6, 0.6, 0.2, 0.1, 0.0], "reward fell to"),
    ("grad_norm", [0.3, 0.3, 0.3, 2.0, 3.0, 4.0], "gradient norm"),
    ("chain_length", [50, 50, 50, 70, 75, 80], "chains grew"),
])
def test_each_signal_is_a_collapse(key, values, words):
    verdicts = feed(CollapseDetector(S), [{**HEALTHY, key: v} for v in values])
    assert verdicts[:4] == [None] * 4  # a window's worth of evidence first
    assert any(v and words in v for v in verdicts[4:])


def test_missing_and_nan_values_are_skipped():
    detector = CollapseDetector(S)
    assert feed(detector, [{"reward": float("nan")}, {}, {"loss": 1.0}]) == [None] * 3
    assert not detector.start


# --- a real run --------------------------------------------------------------------------------------------------
CLIFF = {"calls": 0, "at": 6}


def _cliff(prompts, chains, images, metadata, judge):
    """Brightness (spread for the advantages) for the first CLIFF["at"] rollouts, then almost nothing."""
    CLIFF["calls"] += 1
    scale = 1.0 if CLIFF["calls"] <= CLIFF["at"] else 0.01
    return [scale * v for v in _brightness(prompts, chains, images, metadata, judge)]


if "test_cliff" not in REWARD_TERMS:
    REWARD_TERMS.register("test_cliff")(_cliff)


def _run(tmp_path, world, policy_dir, name, **overrides):
    CLIFF["calls"] = 0
    config = grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / name), reward_terms=["test_cliff"],
                         lr_scheduler_type="constant", gallery_every=0, guard_window=2, guard_every=2,
                         guard_grad_factor=1e6, guard_length_growth=1e6,  # the reward is the signal here
                         **overrides)
    return run_grpo(config)


def test_stop_restores_a_healthy_step(tmp_path, world, policy_dir):
    summary = _run(tmp_path, world, policy_dir, "guarded", max_steps=12, collapse_guard="stop")
    assert len(summary["collapses"]) == 1
    event = summary["collapses"][0]
    assert event["action"] == "stop" and "reward fell" in event["reason"]
    assert event["restored_step"] < CLIFF["at"] < event["step"] < 12  # stopped early, from before the cliff
    assert summary["steps"] == event["step"]
    # The saved model is the restored step's: equal to a run that stopped there, without a guard.
    _run(tmp_path, world, policy_dir, "reference", max_steps=event["restored_step"], collapse_guard="off")
    guarded, reference = load_file(tmp_path / "guarded/model.safetensors"), load_file(
        tmp_path / "reference/model.safetensors")
    assert all(torch.equal(guarded[k], reference[k]) for k in guarded)
    saved = json.loads((tmp_path / "guarded" / "grpo_summary.json").read_text())
    assert saved["collapses"] == summary["collapses"]


def test_rollback_continues_at_a_lower_rate(tmp_path, world, policy_dir):
    summary = _run(tmp_path, world, policy_dir, "rollback", max_steps=10, collapse_guard="rollback",
                   guard_lr_factor=0.5)
    assert summary["steps"] == 10 and summary["collapses"][0]["action"] == "rollback"
    rates = [line["learning_rate"] for line in read_jsonl(tmp_path / "rollback" / "train_log.jsonl")
             if "learning_rate" in line]
    assert rates[0] == pytest.approx(1e-2) and rates[-1] == pytest.approx(5e-3)


def test_guard_settings_are_checked(tmp_path, world, policy_dir):
    with pytest.raises(ValueError, match="unknown collapse_guard 'maybe'"):
        grpo_config(tmp_path, world, policy_dir, collapse_guard="maybe")
    with pytest.raises(ValueError, match="logging_steps: 1"):
        grpo_config(tmp_path, world, policy_dir, collapse_guard="stop", logging_steps=5)
