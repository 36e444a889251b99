"""GRPO trainer: a 2-step run (reward and loss logged, weights change, plain-transformers load), on-policy old
log-probs (ratio 1), which spans get gradients, the reference model, None rewards, the multi-process regrouping,
and the config's checks. A 2-process gloo run is behind JANUS_RIG_SLOW=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import JanusForConditionalGeneration

from janus_rig.cli import build_parser
from reward_models.terms import REWARD_TERMS
from train.grpo.algos import group_advantages
from train.grpo.config import GRPOConfig, parse_config
from train.grpo.trainer import build_trainer, run_grpo, to_groups, to_rank

RECIPES = ("shapeworld_grpo", "janus_pro_1b_grpo", "janus_pro_7b_grpo")


# A random-init policy draws noise: the ShapeWorld judge scores it 0 everywhere, so every advantage would be 0.
# These terms give the groups some spread (image brightness), and some None rewards.
def _brightness(prompts, chains, images, metadata, judge):
    return [float(np.asarray(image, dtype=np.float32).mean() / 255.0) for image in images]


def _sometimes_none(prompts, chains, images, metadata, judge):
    return [None if i % 3 == 0 else v for i, v in enumerate(_brightness(prompts, chains, images, metadata, judge))]


def _chain_length(prompts, chains, images, metadata, judge):  # spread without an image (random chains score 0)
    return [min(len(chain), 100) / 100 for chain in chains]


_chain_length.reads_image = False

for _name, _term in (("test_brightness", _brightness), ("test_sometimes_none", _sometimes_none),
                     ("test_chain_length", _chain_length)):
    if _name not in REWARD_TERMS:
        REWARD_TERMS.register(_name)(_term)


def grpo_config(tmp_path, world, policy_dir, **overrides) -> GRPOConfig:
    values = dict(output_dir=str(tmp_path / "out"), world=str(world), model_name_or_path=str(policy_dir),
                  max_steps=2, num_generations=4, per_device_train_batch_size=2, max_completion_length=6,
                  cfg_weight=3.0, reward_terms=["R_sem", "test_brightness"], reward_combine="sum",
                  learning_rate=1e-2, report_to="none", disable_tqdm=True, gallery_every=1, seed=0)
    return GRPOConfig(**{**values, **overrides})


def first_inputs(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def read_jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def test_two_steps_learn_log_and_save(tmp_path, world, policy_dir):
    summary = run_grpo(grpo_config(tmp_path, world, policy_dir, eval_every=2, eval_prompts=3, save_strategy="steps",
                                   save_steps=2))
    out = tmp_path / "out"
    assert summary["steps"] == 2 and 0.0 <= summary["final_bench"]["accuracy"] <= 1.0
    logs = [line for line in read_jsonl(out / "train_log.jsonl") if "reward" in line]
    assert len(logs) == 2
    for line in logs:
        assert {"loss", "reward", "reward_std", "accuracy", "reward/mean/test_brightness", "chain_length",
                "truncated", "clip_ratio/region", "time/rollout_s", "time/update_s"} <= set(line)
        assert line["grad_norm"] > 0 and line["adv/frac_zero_std_groups"] < 1
    assert "eval/accuracy" in logs[0]  # evaluated before the first update (step 0)
    assert logs[0]["old_logp_gap_max"] < 1e-4  # on-policy: the rollout's log-probs are the current ones
    assert (out / "reward_curve.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "gallery").iterdir()) == ["step_000000.png", "step_000001.png"]

    before, after = load_file(policy_dir / "model.safetensors"), load_file(out / "model.safetensors")
    for name in ("model.language_model.layers.0.self_attn.q_proj.weight", "model.generation_head.vision_head.weight",
                 "lm_head.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} did not change"
    assert torch.equal(before["model.vqmodel.quant_conv.weight"], after["model.vqmodel.quant_conv.weight"])
    assert isinstance(JanusForConditionalGeneration.from_pretrained(out), JanusForConditionalGeneration)
    assert (out / "checkpoint-2" / "model.safetensors").is_file()  # checkpoints hold the policy too


@pytest.mark.parametrize("image_logprob", ["cond", "cfg"])
def test_old_logprobs_are_the_current_ones(tmp_path, world, policy_dir, image_logprob):
    """num_iterations=1: the rollout's log-probs equal a teacher-forced forward, so the first ratio is 1."""
    trainer = build_trainer(grpo_config(tmp_path, world, policy_dir, image_logprob=image_logprob, temperature=0.7,
                                        image_temperature=0.9))
    inputs = first_inputs(trainer)
    mask = inputs["loss_mask"]
    assert mask[inputs["image_mask"]].any() and mask[~inputs["image_mask"]].any()  # optimize=both
    with torch.no_grad():
        logps = trainer.model(inputs["input_ids"], inputs["image_mask"], inputs["attention_mask"], mask,
                              inputs.get("uncond_input_ids"))
    assert (("uncond_input_ids" in inputs) == (image_logprob == "cfg"))
    assert float(((logps - inputs["old_logps"]).abs() * mask).max()) < 1e-4


@pytest.mark.parametrize("optimize, untouched, trained", [("chain", "model.generation_head", "lm_head"),
                                                          ("image", "lm_head", "model.generation_head")])
def test_optimize_picks_the_spans(tmp_path, world, policy_dir, optimize, untouched, trained):
    trainer = build_trainer(grpo_config(tmp_path, world, policy_dir, optimize=optimize))
    inputs = first_inputs(trainer)
    assert inputs["advantages"].abs().sum() > 0
    trainer.compute_loss(trainer.model, inputs).backward()
    named = dict(trainer.policy.base.named_parameters())
    grads = {n: p.grad for n, p in named.items() if p.requires_grad}
    assert all(g is None or not g.any() for n, g in grads.items() if n.startswith(untouched))
    assert any(g is not None and g.any() for n, g in grads.items() if n.startswith(trained))


@pytest.mark.parametrize("beta, use_lora", [(0.0, False), (0.1, False), (0.1, True)])
def test_reference_model_only_with_kl(tmp_path, world, policy_dir, beta, use_lora):
    lora = dict(use_lora=True, trainable_parts=["language_model"], lora_r=4, lora_alpha=4) if use_lora else {}
    trainer = build_trainer(grpo_config(tmp_path, world, policy_dir, beta=beta, **lora))
    assert (trainer.ref_model is not None) == (beta > 0 and not use_lora)  # LoRA: adapters disabled instead
    inputs = first_inputs(trainer)
    assert ("ref_logps" in inputs) == (beta > 0)
    trainer.compute_loss(trainer.model, inputs)
    if beta > 0:  # the policy still equals its reference: KL 0, and ref log-probs equal the old ones
        assert trainer._metrics["kl"] == [pytest.approx(0.0, abs=1e-6)]
        assert torch.allclose(inputs["ref_logps"] * inputs["loss_mask"], inputs["old_logps"] * inputs["loss_mask"],
                              atol=1e-4)
    else:
        assert "kl" not in trainer._metrics


def test_none_rewards_are_masked_and_counted(tmp_path, world, policy_dir):
    trainer = build_trainer(grpo_config(tmp_path, world, policy_dir, reward_terms=["test_sometimes_none"]))
    inputs = first_inputs(trainer)
    none = torch.arange(8) % 3 == 0  # rows 0, 3, 6 of the 2 prompts x 4 samples
    assert trainer._metrics["rewards_none"] == [3.0]
    assert trainer._metrics["adv/frac_invalid_rewards"] == [pytest.approx(3 / 8)]
    assert not inputs["loss_mask"][none].any() and inputs["loss_mask"][~none].any()
    assert torch.all(inputs["advantages"][none] == 0)


def test_truncated_chains_can_be_masked(tmp_path, world, policy_dir):
    # 2 chain tokens: every random chain hits the limit, so every sample leaves the loss; the loss is a zero
    # that still backpropagates.
    trainer = build_trainer(grpo_config(tmp_path, world, policy_dir, max_completion_length=2,
                                        mask_truncated_completions=True))
    inputs = first_inputs(trainer)
    assert trainer._metrics["truncated"] == [1.0] and not inputs["loss_mask"].any()
    loss = trainer.compute_loss(trainer.model, inputs)
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("split", ["contiguous", "strided"])
def test_regrouping_over_ranks_matches_one_process(split):
    """Two simulated ranks each hold half of every group; gather -> regroup -> advantages -> slice back must give
    every sample the advantage one process computes over the whole groups."""
    P, G, W = 3, 4, 2
    torch.manual_seed(0)
    rewards = torch.rand(P, G)  # (P, G) one process's view: prompt-major
    valid = torch.rand(P, G) > 0.2
    expected, _ = group_advantages(rewards.reshape(-1), G, "group", valid.reshape(-1))
    expected = expected.view(P, G)
    cols = [list(range(r * G // W, (r + 1) * G // W)) if split == "contiguous" else list(range(r, G, W))
            for r in range(W)]
    local = [torch.stack([rewards[:, c], valid[:, c].float()], -1).reshape(-1, 2) for c in cols]  # (P * Gl, 2)
    grouped = to_groups(torch.cat(local), W, P)  # what accelerator.gather + regroup gives: (P * G, 2)
    adv, _ = group_advantages(grouped[:, 0], G, "group", grouped[:, 1].bool())
    for r in range(W):
        assert torch.allclose(to_rank(adv, W, P, r), expected[:, cols[r]].reshape(-1), atol=1e-6)
        assert torch.equal(to_rank(grouped, W, P, r), local[r])  # to_rank inverts to_groups


@pytest.mark.parametrize("overrides, message", [
    (dict(image_logprob="cfg", cfg_weight=1.0), "set image_logprob: cond"),
    (dict(loss_type="ppo"), "valid names: bnpo, dapo, dr_grpo, grpo"),
    (dict(num_generations=1), "at least 2"),
    (dict(optimize="text"), "valid: chain, image, both"),
    (dict(chain=False), "set optimize: image"),
    (dict(max_steps=-1), "set max_steps"),
    (dict(use_lora=True), "--lora_modules_to_save"),
    (dict(lora_modules_to_save=["generation_head"]), "only applies with use_lora"),
    (dict(reward_terms=["R_nope"]), "unknown reward term 'R_nope'"),
    (dict(scale_rewards="rank"), "valid: group, batch, none"),
    (dict(gradient_accumulation_steps=3), "pick a divisor"),
    (dict(world=""), "world is required"),
])
def test_invalid_combinations_say_how_to_fix(tmp_path, world, policy_dir, overrides, message):
    with pytest.raises(ValueError) as err:
        grpo_config(tmp_path, overrides.pop("world", world), policy_dir, **overrides)
    assert message in str(err.value)


def test_generations_must_split_over_processes(tmp_path, world, policy_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="use a multiple of 2"):
        grpo_config(tmp_path, world, policy_dir, num_generations=3)


def test_recipes_and_flags(tmp_path, world, policy_dir):
    for name in RECIPES:
        gpu = ["--bf16", "false", "--attn_implementation", "sdpa"] if name.startswith("janus_pro") else []  # on a CPU
        config = parse_config(["--config", f"train/recipes/{name}.yaml", "--output_dir", str(tmp_path / name), *gpu])
        # GoT-R1 optimises chain and image tokens; the ShapeWorld recipe only the chain (docs/lab/notebook.md, 3.3).
        assert config.max_steps > 0 and config.optimize == ("chain" if name == "shapeworld_grpo" else "both")
    seven = parse_config(["--config", "train/recipes/janus_pro_7b_grpo.yaml", "--output_dir", str(tmp_path),
                          "--bf16", "false", "--attn_implementation", "sdpa"])
    assert (seven.num_generations, seven.use_lora, seven.lora_r, seven.cfg_weight) == (16, True, 32, 5.0)

    from janus_rig.commands.grpo import config_from_args

    args = build_parser().parse_args(["grpo", "--config", "train/recipes/shapeworld_grpo.yaml", "--world", str(world),
                                      "--model_name_or_path", str(policy_dir), "--output_dir", str(tmp_path),
                                      "--beta", "0.05", "--reward_terms", "R_sem", "R_PI",
                                      "--judge_options", '{"timeout": 3}'])
    config = config_from_args(args)
    assert (config.beta, config.reward_terms, config.judge_options) == (0.05, ["R_sem", "R_PI"], {"timeout": 3})
    assert config.reward_config().terms == ["R_sem", "R_PI"]


@pytest.mark.skipif(not os.environ.get("JANUS_RIG_SLOW"), reason="slow: set JANUS_RIG_SLOW=1 (2 processes, gloo)")
def test_two_processes_one_step(tmp_path, world, policy_dir):
    """`accelerate launch --num_processes 2 --cpu`: each process samples G/2 of every prompt, the groups are
    normalised together, DDP averages the gradients; 1 step runs and learns."""
    script = tmp_path / "launch.py"  # registers this file's test reward terms in every process
    script.write_text("import sys\nimport tests.grpo.test_trainer\nfrom train.grpo.config import parse_config\n"
                      "from train.grpo.trainer import run_grpo\nrun_grpo(parse_config(sys.argv[1:]))\n")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
           "--world", str(world), "--model_name_or_path", str(policy_dir), "--output_dir", str(tmp_path / "out"),
           "--max_steps", "1", "--num_generations", "4", "--per_device_train_batch_size", "2",
           "--max_completion_length", "6", "--cfg_weight", "3", "--reward_terms", "R_sem", "test_brightness",
           "--reward_combine", "sum", "--learning_rate", "0.01", "--report_to", "none", "--gallery_every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [line for line in read_jsonl(tmp_path / "out" / "train_log.jsonl") if "reward" in line]
    assert len(logs) == 1 and logs[0]["grad_norm"] > 0
    # Both processes' samples are counted: each of the P x G = 8 holds 16 image tokens and at most 6 chain tokens.
    assert 8 * 16 <= logs[0]["optimised_tokens"] <= 8 * (6 + 16)
    before, after = load_file(policy_dir / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    name = "model.generation_head.vision_head.weight"
    assert not torch.equal(before[name], after[name])


def test_chain_only_rollouts_give_the_same_update(tmp_path, world, policy_dir):
    """optimize chain + rewards that read no image: rollouts stop after the chain and the step is the same."""
    common = dict(max_steps=1, optimize="chain", reward_terms=["R_sem", "R_spa", "test_chain_length"],
                  gallery_every=1)
    fast, full = (grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / name), chain_only_rollouts=flag,
                              **common) for name, flag in (("fast", True), ("full", False)))
    assert not fast.rollout_images() and full.rollout_images()
    run_grpo(fast)
    run_grpo(full)
    a, b = load_file(tmp_path / "fast" / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    start = load_file(policy_dir / "model.safetensors")
    assert not torch.equal(a["lm_head.weight"], start["lm_head.weight"])
    for name in a:  # Adam's first step moves a weight by up to lr (1e-2) whatever its gradient's size, so float
        torch.testing.assert_close(a[name], b[name], atol=2e-3, rtol=0)  # noise in a tiny gradient shows as ~1e-4
    (fast_log,), (full_log,) = ([x for x in read_jsonl(tmp_path / n / "train_log.jsonl") if "reward" in x]
                                for n in ("fast", "full"))
    for key in ("reward", "grad_norm", "optimised_tokens"):  # (the on-policy loss itself is ~0: advantages sum to 0)
        assert fast_log[key] == pytest.approx(full_log[key], rel=1e-4), key
    assert "accuracy" in full_log and "accuracy" not in fast_log  # no image, no oracle verdict
    assert (tmp_path / "fast" / "gallery" / "step_000000.png").is_file()  # the planned boxes on a blank


@pytest.mark.parametrize("overrides, images", [
    (dict(optimize="chain", reward_terms=["R_sem", "R_spa"]), False),
    (dict(optimize="chain", reward_terms=["R_sem", "R_RI"]), True),  # R_RI reads the image
    (dict(optimize="both", reward_terms=["R_sem", "R_spa"]), True),  # image tokens carry loss
    (dict(optimize="chain", reward_terms=["R_sem", "test_brightness"]), True),  # a term that does not say
    (dict(optimize="chain", reward_terms=["R_sem"], chain_only_rollouts=False), True),
])
def test_when_rollouts_skip_the_image(tmp_path, world, policy_dir, overrides, images):
    assert grpo_config(tmp_path, world, policy_dir, **overrides).rollout_images() is images


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_activation_checkpointing_gives_the_same_step(tmp_path, world, policy_dir, lora):
    """activation_checkpointing reaches the policy's layers through the Trainer's wrapper and changes no gradient."""
    extra = dict(use_lora=True, trainable_parts=["language_model"], lora_r=4, lora_alpha=4) if lora else {}
    common = dict(max_steps=1, gallery_every=0, reward_terms=["R_sem", "test_brightness"], **extra)
    plain = grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / "plain"), **common)
    ckpt = grpo_config(tmp_path, world, policy_dir, output_dir=str(tmp_path / "ckpt"), activation_checkpointing=True,
                       **common)
    trainer = build_trainer(ckpt)
    layers = trainer.policy.base.model.language_model.layers
    trainer.train()
    assert all(layer.gradient_checkpointing for layer in layers)
    run_grpo(plain)
    (a,), (b,) = ([x for x in read_jsonl(tmp_path / n / "train_log.jsonl") if "reward" in x] for n in ("plain", "ckpt"))
    assert a["grad_norm"] > 0 and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
