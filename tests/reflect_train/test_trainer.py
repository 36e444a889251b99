"""Reflection-GRPO on the tiny 32 px model with scripted roles (tests/reflect_train/roles.py): rewards are after
minus before, the loss reads only the intended tokens (reflections + edits; the redrawn image tokens), every edit
keeps the tokens outside its boxes, one step of each phase runs, learns and saves, and the config says how to fix
bad settings."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from data_prep.vq_cache import encode_images, load_image
from janus_rig.cli import build_parser
from janus_rig.reflect.loop import reflect
from janus_rig.reflect.reward import judge_rewards, verdict_score
from janus_rig.chain import Box
from janus_rig.rollout import RolloutConfig, sample, token_masks
from tests.reflect_train.roles import EDIT_BOXES, Forced, before_yes, edit_once, edit_text, reflection
from train.grpo.algos import group_advantages
from train.reflect.config import ReflectGRPOConfig, parse_config
from train.reflect.episodes import (deciding_checks, episode_rewards, fact_score, oracle_rewards, outcome_rewards,
                                    repeat_rows)
from train.reflect.trainer import build_trainer, run_reflect_grpo

G, P = 4, 2  # generations per group, groups per step


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_prep.shapeworld.perturb import write_reflect_data
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("reflect_world")
    write_world(out, train=12, val=2, bench_per_tag=1, size=32, progress=False)
    write_reflect_data(out, 16, seed=0, keep_fraction=0.2, progress=False)
    return out


@pytest.fixture(scope="module")
def policy_dir(tiny_shapeworld_policy_dir):
    return tiny_shapeworld_policy_dir


@pytest.fixture
def policy(policy_dir):
    from janus_rig.model.policy import JanusPolicy

    return JanusPolicy.load(policy_dir)


def config(tmp_path, world, policy_dir, **overrides) -> ReflectGRPOConfig:
    values = dict(output_dir=str(tmp_path / "out"), world=str(world), model_name_or_path=str(policy_dir),
                  max_steps=1, num_generations=G, per_device_train_batch_size=P, max_completion_length=6,
                  cfg_weight=3.0, max_reflection_tokens=8, max_edit_tokens=8, learning_rate=1e-2, report_to="none",
                  disable_tqdm=True, gallery_every=1, seed=0,
                  trainable_parts=["language_model", "lm_head", "generation_head", "aligner"])
    return ReflectGRPOConfig(**{**values, **overrides})


def first_inputs(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def grads(trainer) -> dict[str, bool]:
    """Per trainable parameter: did it get a non-zero gradient."""
    return {n: p.grad is not None and bool(p.grad.any()) for n, p in trainer.policy.base.named_parameters()
            if p.requires_grad}


# --- the episodes ---------------------------------------------------------------------------------------------------
def test_rewards_are_after_minus_before_and_edits_keep_the_context(policy, world):
    from reward_models.judges import make_judge

    checker, actor = edit_once()
    prompts = ["a red circle left of a blue square", "a triangle"]
    rollout = RolloutConfig(group_size=1, max_chain_tokens=6, cfg_weight=3.0)
    first = sample(policy, prompts, rollout, seed=0)
    result = reflect(policy, prompts, config_for_loop(), rollout, seed=1, initial=repeat_rows(first, G),
                     checker=checker, actor=actor)
    assert torch.equal(result.initial.image_tokens[:G], first.image_tokens[0].expand(G, -1))  # G copies
    assert result.initial.chains == [c for c in first.chains for _ in range(G)]
    # every row was edited once and checked again: reward = its after-score minus its before-score
    assert [[t.status for t in row] for row in result.traces] == [["edited", "keep"]] * (2 * G)
    expected = [1.0 - before_yes(r) / 2 for r in range(2 * G)]
    assert episode_rewards(result) == pytest.approx(expected)
    scores = [(verdict_score(row[0].reflection), verdict_score(row[-1].reflection)) for row in result.traces]
    assert [a - b for b, a in scores] == pytest.approx(expected)
    # a judge's reward is its score of the edited image minus that of the first
    judge = make_judge("shapeworld")
    meta = [{"tag": "position", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": p}
            for p in result.prompts]
    by_judge = episode_rewards(result, "shapeworld", judge, meta)
    assert by_judge == judge_rewards(judge, result.prompts, [row[0].image for row in result.traces],
                                     [row[-1].image for row in result.traces], meta)
    assert len(oracle_rewards(result, meta)) == 2 * G and oracle_rewards(result, [None] * 2 * G) == [None] * 2 * G
    # 100% of the tokens outside the edit boxes are the first image's
    inside = token_masks([[o.box for o in EDIT_BOXES]], policy.grid[0])[0]  # (N,)
    for row in result.traces:
        assert torch.equal(row[1].image_tokens[~inside], row[0].image_tokens[~inside])
    assert result.counts["context_changed"] == 0
    # the check after the last edit only scores it: not a deciding check
    assert deciding_checks(result) == {(r, 0) for r in range(2 * G)}


def test_final_best_rewards_the_pick_and_trains_every_check(policy, world, monkeypatch):
    """With final "best" an episode ends with the image its checker rates higher: the reward is that image's score
    minus the first one's (0 where the pick keeps the first), and the check after the edit is a deciding one."""
    import janus_rig.reflect.loop as loop
    from reward_models.judges import make_judge

    # the checker rates the edited image higher in even rows, the first image higher in odd ones
    calls = []

    def confidence(policy, out, rating="verdicts", plans=None):
        calls.append(rating)
        k = len(calls) - 1  # 0: the first images, 1: the edited ones
        return [0.5 + (0.1 if (r % 2 == 0) == (k == 1) else 0.0) for r in range(len(out.texts))]

    monkeypatch.setattr(loop, "verdict_confidence", confidence)
    checker, actor = edit_once()
    prompts = ["a red circle left of a blue square", "a triangle"]
    rollout = RolloutConfig(group_size=1, max_chain_tokens=6, cfg_weight=3.0)
    first = sample(policy, prompts, rollout, seed=0)
    best = replace(config_for_loop(), final="best", rating="plan")
    result = reflect(policy, prompts, best, rollout, seed=1, initial=repeat_rows(first, G), checker=checker,
                     actor=actor)
    assert calls == ["plan", "plan"]
    assert [result.chosen(r).round for r in range(2 * G)] == [1, 0] * G
    expected = [1.0 - before_yes(r) / 2 if r % 2 == 0 else 0.0 for r in range(2 * G)]
    assert episode_rewards(result) == pytest.approx(expected)
    meta = [{"tag": "position", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": p}
            for p in result.prompts]
    judge = make_judge("shapeworld")
    by_judge = episode_rewards(result, "shapeworld", judge, meta)
    oracle = oracle_rewards(result, meta)
    assert all(by_judge[r] == 0.0 and oracle[r] == 0.0 for r in range(1, 2 * G, 2))  # the pick kept the first
    # reward: outcome is the picked image's own score: the oracle's after-minus-before plus the first image's
    outcome = outcome_rewards(result, meta)
    for r in range(2 * G):
        assert outcome[r] == pytest.approx(oracle[r] + fact_score(meta[r], result.traces[r][0].image))
    even = list(range(0, 2 * G, 2))  # the judge scores the picked edits against their first image, and only those
    assert [by_judge[r] for r in even] == judge_rewards(judge, [result.prompts[r] for r in even],
                                                        [result.traces[r][0].image for r in even],
                                                        [result.traces[r][1].image for r in even],
                                                        [meta[r] for r in even])
    # every check rates an image the pick chooses among: all are optimised
    assert deciding_checks(result) == {(r, k) for r in range(2 * G) for k in (0, 1)}


def config_for_loop():
    from janus_rig.reflect.loop import ReflectConfig
    from janus_rig.reflect.text import TextConfig

    return ReflectConfig(rounds=1, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8))


# --- phase actor ----------------------------------------------------------------------------------------------------
def test_actor_loss_reads_only_the_reflections_and_edits(tmp_path, world, policy_dir):
    checker, actor = edit_once()
    trainer = build_trainer(config(tmp_path, world, policy_dir), checker=checker, actor=actor)
    inputs = first_inputs(trainer)
    tok = trainer.policy.tokenizer
    ids, mask = inputs["input_ids"], inputs["loss_mask"]
    # P*G deciding reflections (round 0), then P*G edits; the round-1 checks (keep) score and are not optimised
    written = [tok.decode(ids[s][mask[s]]) for s in range(ids.shape[0])]
    assert written == [reflection(before_yes(i), "edit") for i in range(P * G)] + [edit_text()] * (P * G)
    assert inputs["pixel_values"].shape[0] == ids.shape[0] and not inputs["image_mask"].any()
    # each text carries its episode's advantage: rewards 1 - before/2 per row, normalised per group of G
    rewards = torch.tensor([1.0 - before_yes(i) / 2 for i in range(P * G)])
    adv, _ = group_advantages(rewards, G, "group")
    assert torch.allclose(inputs["advantages"], torch.cat([adv, adv]), atol=1e-6)
    assert trainer._metrics["reward"] == [pytest.approx(float(rewards.mean()))]
    assert trainer._metrics["loop/edits"] == [P * G] and trainer._metrics["loop/context_changed"] == [0.0]
    # the new log-probs (mixed forward with the images) are the old ones: ratio 1
    with torch.no_grad():
        logps = trainer.model(ids, inputs["image_mask"], inputs["attention_mask"], mask,
                              pixel_values=inputs["pixel_values"])
    assert float(((logps - inputs["old_logps"]).abs() * mask).max()) < 1e-4
    trainer.compute_loss(trainer.model, inputs).backward()
    got = grads(trainer)
    assert any(v for n, v in got.items() if n.startswith("lm_head"))
    assert any(v for n, v in got.items() if n.startswith("model.aligner"))  # the images reached the loss
    assert not any(v for n, v in got.items() if n.startswith("model.generation_head"))  # no image token optimised


def test_checker_tokens_verdicts_leaves_the_seen_chain_out_of_the_loss(tmp_path, world, policy_dir):
    """checker_tokens: verdicts optimises a deciding reflection from its first <|verdict|> on (verdicts and
    decision), not what it says it sees; the edits are optimised whole."""
    checker, actor = edit_once()
    trainer = build_trainer(config(tmp_path, world, policy_dir, checker_tokens="verdicts"), checker=checker,
                            actor=actor)
    inputs = first_inputs(trainer)
    tok = trainer.policy.tokenizer
    written = [tok.decode(row[m]) for row, m in zip(inputs["input_ids"], inputs["loss_mask"])]
    full = [reflection(before_yes(i), "edit") for i in range(P * G)]
    assert written == [text[text.index("<|verdict|>"):] for text in full] + [edit_text()] * (P * G)


def test_codes_view_texts_carry_the_codes_they_read(tmp_path, world, policy_dir):
    """A policy whose roles read codes: each optimised text's batch row holds its image's N codes (image_mask), no
    pixels; re-scoring gives the sampled log-probs (ratio 1) and no gradient reaches the vision aligner."""
    import shutil

    codes_dir = tmp_path / "codes_policy"
    shutil.copytree(policy_dir, codes_dir)
    (codes_dir / "roles.json").write_text('{"image_view": "codes"}')
    checker, actor = edit_once()
    trainer = build_trainer(config(tmp_path, world, codes_dir), checker=checker, actor=actor)
    assert trainer.policy.image_view == "codes"
    inputs = first_inputs(trainer)
    ids, mask = inputs["input_ids"], inputs["loss_mask"]
    assert "pixel_values" not in inputs
    assert inputs["image_mask"].sum(-1).tolist() == [trainer.policy.num_image_tokens] * ids.shape[0]
    assert not (inputs["image_mask"] & mask).any()
    with torch.no_grad():
        logps = trainer.model(ids, inputs["image_mask"], inputs["attention_mask"], mask)
    assert float(((logps - inputs["old_logps"]).abs() * mask).max()) < 1e-4
    trainer.compute_loss(trainer.model, inputs).backward()
    got = grads(trainer)
    assert any(v for n, v in got.items() if n.startswith("lm_head"))
    assert not any(v for n, v in got.items() if n.startswith("model.aligner"))


def test_own_first_images_outcome_reward_and_train_plan(tmp_path, world, policy_dir):
    """first_images: own draws each episode's first image (a group's first chains differ), reward: outcome is the
    oracle's score of the image each episode ends with, and train_plan adds each episode's first chain to the batch
    with its advantage: the chain tokens carry the loss, never the image codes; re-scoring gives the sampled
    log-probs (ratio 1)."""
    import shutil

    codes_dir = tmp_path / "codes_policy"
    shutil.copytree(policy_dir, codes_dir)
    (codes_dir / "roles.json").write_text('{"image_view": "codes"}')
    checker, actor = edit_once()
    trainer = build_trainer(config(tmp_path, world, codes_dir, first_images="own", reward="outcome", train_plan=True,
                                   train_checker=False, temperature=2.0), checker=checker, actor=actor)
    captured = {}
    real = trainer.__class__._advantages

    def spy(self, rewards):
        captured["rewards"] = rewards
        return real(self, rewards)

    trainer._advantages = spy.__get__(trainer)
    inputs = first_inputs(trainer)
    ids, mask, codes = inputs["input_ids"], inputs["loss_mask"], inputs["image_mask"]
    assert ids.shape[0] == 2 * P * G  # the P * G edits, then the P * G plans
    plans = ids[P * G:]
    assert len({tuple(row.tolist()) for row in plans[:G]}) > 1  # a group's episodes drew their own first images
    assert not (codes & mask).any() and codes[P * G:].sum(-1).tolist() == [trainer.policy.num_image_tokens] * (P * G)
    chain_tokens = mask[P * G:].sum(-1)  # each plan's chain (6 tokens at most here, + an emitted <boi>)
    assert bool((chain_tokens >= 1).all()) and bool((chain_tokens <= 7).all())
    assert torch.equal(inputs["advantages"][:P * G], inputs["advantages"][P * G:])  # each plan: its episode's
    rewards = captured["rewards"]
    assert len(rewards) == P * G and all(0.0 <= r <= 1.0 for r in rewards)
    assert trainer._metrics["reward/outcome"] == [pytest.approx(sum(rewards) / len(rewards))]
    with torch.no_grad():
        logps = trainer.model(ids, codes, inputs["attention_mask"], mask)
    assert float(((logps - inputs["old_logps"]).abs() * mask).max()) < 1e-4


def test_actor_edits_only_without_the_checker(tmp_path, world, policy_dir):
    checker, actor = edit_once()
    trainer = build_trainer(config(tmp_path, world, policy_dir, train_checker=False), checker=checker, actor=actor)
    inputs = first_inputs(trainer)
    tok = trainer.policy.tokenizer
    assert [tok.decode(row[m]) for row, m in zip(inputs["input_ids"], inputs["loss_mask"])] == [edit_text()] * (P * G)


def test_a_fixed_actor_writes_the_edits_and_only_the_checker_learns(tmp_path, world, policy_dir):
    """actor: keep-plan (janus_rig/reflect/actors.py) edits every flagged image; its edits have no log-probs and
    are not optimised, so the loss reads the deciding reflections alone."""
    from janus_rig.reflect.actors import keep_plan

    checker, _ = edit_once()
    trainer = build_trainer(config(tmp_path, world, policy_dir, actor="keep-plan", edit_region="full"),
                            checker=checker)
    assert trainer.actor is keep_plan
    inputs = first_inputs(trainer)
    tok = trainer.policy.tokenizer
    written = [tok.decode(row[m]) for row, m in zip(inputs["input_ids"], inputs["loss_mask"])]
    assert written == [reflection(before_yes(i), "edit") for i in range(P * G)]
    assert trainer._metrics["loop/edits"] == [P * G] and trainer._metrics["loop/malformed_edit"] == [0.0]


def test_actor_phase_one_step_learns_logs_and_saves(tmp_path, world, policy_dir):
    checker, actor = edit_once()
    summary = run_reflect_grpo(config(tmp_path, world, policy_dir, eval_every=1, eval_prompts=2,
                                      malformed_penalty=0.5), checker, actor)
    out = tmp_path / "out"
    assert summary["steps"] == 1 and summary["phase"] == "actor" and set(summary["final_bench"]) == {
        "accuracy@r0", "accuracy@r1"}
    (line,) = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if '"reward"' in x]
    assert {"loss", "reward", "reward/intrinsic", "reward/oracle", "checker/verdict_accuracy",
            "oracle/correct_after", "loop/edits", "loop/malformed_rows", "eval/accuracy@r1", "adv/reward_std_in_group",
            "time/update_s"} <= set(line)
    assert line["loop/edits"] == P * G and line["loop/malformed_rows"] == 0 and line["grad_norm"] > 0
    assert line["reward"] == line["reward/intrinsic"] and "reward/judge" not in line
    assert -1 <= line["reward/oracle"] <= 1 and 0 <= line["checker/verdict_accuracy"] <= 1
    assert (out / "reward_curve.png").stat().st_size > 0 and (out / "gallery" / "step_000000.png").is_file()
    before, after = load_file(policy_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    assert json.loads((out / "reflect_grpo_summary.json").read_text())["steps"] == 1
    loop = json.loads((out / "roles.json").read_text())["loop"]  # the loop it trained for, recorded for `reflect`
    assert (loop["actor"], loop["final"]) == ("model", "last") and "rounds" not in loop  # rounds: a training cost


def test_random_roles_run_and_count_malformed_output(tmp_path, world, policy_dir):
    """The real roles of a random model: unreadable reflections, counted and penalised. Without train_checker no
    text is left to optimise: a one-row batch with an empty mask, and the second micro-step's chunk repeats it."""
    trainer = build_trainer(config(tmp_path, world, policy_dir, malformed_penalty=1.0, gallery_every=0,
                                   train_checker=False, gradient_accumulation_steps=2))
    inputs = first_inputs(trainer)
    assert trainer._metrics["loop/malformed_rows"] == [P * G] and trainer._metrics["loop/edits"] == [0.0]
    assert trainer._metrics["reward"] == [-1.0] and trainer._metrics["optimised_tokens"] == [0.0]
    assert len(trainer._chunks) == 2 and all(c["input_ids"].shape[0] == 1 for c in trainer._chunks)
    assert not any(c["loss_mask"].any() for c in trainer._chunks)
    loss = trainer.compute_loss(trainer.model, inputs)
    assert loss.item() == 0.0 and loss.requires_grad


# --- phase editor ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reward", ["judge", "intrinsic"])
def test_editor_redraws_only_inside_the_boxes(tmp_path, world, policy_dir, reward):
    # the checker's k-th call: 0 the P first images, 1 the P * G redraws; row i of a call gets i % 3 true verdicts
    checker = Forced("checker", lambda k, i: reflection(i % 3, "keep"))
    trainer = build_trainer(config(tmp_path, world, policy_dir, phase="editor", reward=reward,
                                   gradient_accumulation_steps=2), checker=checker)
    records = next(iter(trainer.get_train_dataloader()))
    chunks = trainer._generate_and_score(records)
    assert len(chunks) == 2
    vq, N = trainer.policy.base.model.vqmodel, trainer.policy.num_image_tokens
    for c, chunk in enumerate(chunks):
        for j in range(chunk["input_ids"].shape[0]):
            record = records[(c * P * G // 2 + j) // G]
            codes = chunk["input_ids"][j][chunk["image_mask"][j]]  # (N,) the redrawn image
            first = encode_images(vq, load_image(world / record["image"], 32, 32)[None])[0]  # (N,)
            inside = token_masks([[Box(*b) for b in record["edit_boxes"]]], trainer.policy.grid[0])[0]
            assert codes.shape == (N,) and inside.any() and not inside.all()
            assert torch.equal(codes[~inside], first[~inside])  # 100% of the outside tokens kept
            # the loss reads exactly the sampled tokens: the image tokens inside the edit boxes
            assert torch.equal(chunk["loss_mask"][j][chunk["image_mask"][j]], inside)
            assert not chunk["loss_mask"][j][~chunk["image_mask"][j]].any()
    m = trainer._metrics
    assert m["loop/edits"] == [P * G] and ("reward/intrinsic" in m) == (reward == "intrinsic")
    assert ("checker/verdict_accuracy" in m) == (reward == "intrinsic") and len(m["reward/oracle"]) == 1
    if reward == "intrinsic":  # after minus before: the redraw's own check minus its edit's first check
        expected = torch.tensor([(r % 3) / 2 - (r // G % 3) / 2 for r in range(P * G)])
        assert m["reward"] == [pytest.approx(float(expected.mean()))]
        adv, _ = group_advantages(expected, G, "group")
        assert torch.allclose(torch.cat([c["advantages"] for c in chunks]), adv, atol=1e-6)
    trainer.compute_loss(trainer.model, {**chunks[0], "iteration": 0}).backward()
    got = grads(trainer)
    assert not any(v for n, v in got.items() if n.startswith("lm_head"))  # no text token optimised
    if reward == "intrinsic":
        assert any(v for n, v in got.items() if n.startswith("model.generation_head"))


def test_editor_phase_one_step_runs_and_saves(tmp_path, world, policy_dir):
    summary = run_reflect_grpo(config(tmp_path, world, policy_dir, phase="editor", reward="judge"))
    out = tmp_path / "out"
    assert summary["steps"] == 1 and summary["phase"] == "editor" and (out / "model.safetensors").is_file()
    (line,) = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if '"reward"' in x]
    assert {"reward", "reward/judge", "reward/oracle", "accuracy", "oracle/correct_before", "loop/redrawn_tokens",
            "optimised_tokens"} <= set(line)
    assert (out / "bad_rows.jsonl").read_text() == ""


def test_editor_phase_resumes_like_grpo(tmp_path, world, policy_dir):
    """The phases honour --resume_from_checkpoint (GRPOTrainer's machinery, whose exactness tests/grpo/test_resume.py
    checks): 2 steps straight == 1 step + a resumed run that trains and logs only step 2."""
    import shutil

    common = dict(phase="editor", reward="judge", max_steps=2, save_strategy="steps", save_steps=1, gallery_every=0)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_reflect_grpo(config(tmp_path, world, policy_dir, output_dir=str(straight), **common))
    shutil.copytree(straight / "checkpoint-1", resumed / "checkpoint-1")
    summary = run_reflect_grpo(config(tmp_path, world, policy_dir, output_dir=str(resumed),
                                      resume_from_checkpoint="true", **common))
    assert summary["steps"] == 2
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[n], b[n]) for n in a)
    rewards = [[json.loads(x)["reward"] for x in (out / "train_log.jsonl").read_text().splitlines() if '"reward"' in x]
               for out in (straight, resumed)]
    assert len(rewards[0]) == 2 and rewards[1] == pytest.approx(rewards[0][1:], abs=1e-6)


def test_editor_rows_are_checked_and_bad_ones_reported(tmp_path, world, policy_dir):
    import shutil

    bad = tmp_path / "world"
    shutil.copytree(world, bad)
    rows = [json.loads(x) for x in (bad / "reflect.jsonl").read_text().splitlines()]
    edits = [r for r in rows if r["decision"] == "edit"]
    edits[0]["edit_boxes"] = [[500, 500, 100, 100]]  # corners swapped
    del edits[1]["edit_boxes"]
    (bad / edits[2]["image"]).unlink()
    (bad / "reflect.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = build_trainer(config(tmp_path, bad, policy_dir, phase="editor", reward="judge"))
    reported = [json.loads(x) for x in (tmp_path / "out" / "bad_rows.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in reported} == {(edits[0]["id"], "bad_edit"),
                                                         (edits[1]["id"], "missing_field"),
                                                         (edits[2]["id"], "missing_image")}
    assert len(trainer.train_dataset) == len(edits) - 3


# --- settings -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (dict(phase="critic"), "valid: actor, editor"),
    (dict(reward="oracle"), "valid: intrinsic, judge"),
    (dict(rounds=0), "rounds must be >= 1"),
    (dict(optimize="chain"), "the phase picks the tokens"),
    (dict(max_edit_tokens=0), "max_edit_tokens must be >= 1"),
    (dict(malformed_penalty=-1.0), "malformed_penalty must be >= 0"),
    (dict(reward="judge", judge="nope"), "nope"),
    (dict(num_generations=1), "at least 2"),
    (dict(actor="nope"), "valid: fresh-plan, keep-plan, model"),
    (dict(actor="fresh-plan", train_checker=False), "nothing would learn"),
    (dict(checker_tokens="seen"), "valid: all, verdicts"),
    (dict(final="first"), "unknown final"),
    (dict(reward="verdicts"), "needs phase: actor and rounds: 0"),
    (dict(rounds=0), "rounds: 0 goes with reward: verdicts"),
    (dict(final="best", rating="oracle"), "unknown rating"),
    (dict(first_images="many"), "valid: shared, own"),
    (dict(train_plan=True), "needs phase: actor and first_images: own"),
])
def test_invalid_settings_say_how_to_fix(tmp_path, world, policy_dir, overrides, message):
    with pytest.raises(ValueError) as err:
        config(tmp_path, world, policy_dir, **overrides)
    assert message in str(err.value)


def test_editor_needs_reflect_data(tmp_path, policy_dir):
    from data_prep.shapeworld.world import write_world

    bare = tmp_path / "w"
    write_world(bare, train=2, val=0, bench_per_tag=1, size=32, progress=False)
    with pytest.raises(ValueError, match="janus-rig reflect-data --world"):
        config(tmp_path, bare, policy_dir, phase="editor")


def test_recipes_and_command_flags(tmp_path, world, policy_dir):
    actor = parse_config(["--config", "train/recipes/shapeworld_reflect_actor.yaml"])
    editor = parse_config(["--config", "train/recipes/shapeworld_reflect_editor.yaml", "--world", str(world)])
    assert (actor.phase, editor.phase) == ("actor", "editor") and actor.max_train_seconds <= 240
    assert editor.model_name_or_path == actor.output_dir == "runs/quickstart/reflect_actor"
    assert actor.model_name_or_path == "runs/quickstart/grpo" and editor.output_dir == "runs/quickstart/reflect"
    checker = parse_config(["--config", "train/recipes/shapeworld_reflect_checker.yaml"])
    assert (checker.reward, checker.rounds, checker.checker_tokens) == ("verdicts", 0, "verdicts")
    loop = parse_config(["--config", "train/recipes/shapeworld_reflect_loop.yaml"])
    assert (loop.reward, loop.first_images, loop.train_plan, loop.actor) == ("outcome", "own", True, "fresh-plan")

    from janus_rig.commands.reflect_grpo import config_from_args

    args = build_parser().parse_args(["reflect-grpo", "--config", "train/recipes/shapeworld_reflect_actor.yaml",
                                      "--world", str(world), "--model_name_or_path", str(policy_dir),
                                      "--output_dir", str(tmp_path), "--phase", "editor", "--reward", "judge",
                                      "--rounds", "2", "--beta", "0.05"])
    parsed = config_from_args(args)
    assert (parsed.phase, parsed.reward, parsed.rounds, parsed.beta) == ("editor", "judge", 2, 0.05)
    assert parsed.reflect_config().rounds == 2 and parsed.reflect_config().checker.max_new_tokens == 160


def test_verdicts_reward_is_the_checkers_own_accuracy_and_trains_the_checker_alone(tmp_path, world, policy_dir):
    """reward: verdicts (rounds 0): each episode is one check of the first image, rewarded by how right it is by the
    oracle (half its verdicts' accuracy, half its decision's); no actor runs, and one step learns and logs it."""
    from data_prep.shapeworld.facts import oracle_verdicts
    from janus_rig.model.policy import JanusPolicy
    from janus_rig.reflect.reward import true_decision
    from train.reflect.episodes import verdict_rewards

    checker = Forced("checker", lambda k, i: reflection(before_yes(i), "edit" if before_yes(i) < 2 else "keep"))
    actor = Forced("actor", lambda k, i: edit_text())
    summary = run_reflect_grpo(config(tmp_path, world, policy_dir, reward="verdicts", rounds=0, eval_every=0),
                               checker, actor)
    assert summary["steps"] == 1 and actor.calls == []  # the checker alone
    saved = tmp_path / "out" / "roles.json"  # no actor, edit or pick ran: the model's loop record is left as it was
    assert "loop" not in (json.loads(saved.read_text()) if saved.is_file() else {})
    (line,) = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()
               if '"reward"' in x]
    assert 0.0 <= line["reward/verdicts"] <= 1.0 and line["reward"] == line["reward/verdicts"]
    # the reward by hand on a loop of the same kind: a checker that says "red circle: yes, blue square: yes, keep"
    policy = JanusPolicy.load(policy_dir)
    prompts = ["a red circle left of a blue square"]
    meta = [{"tag": "position", "include": [{"class": "circle", "count": 1, "color": "red"},
                                           {"class": "square", "count": 1, "color": "blue",
                                            "position": ["left of", 0]}], "prompt": prompts[0]}]
    always_yes = Forced("checker", lambda k, i: reflection(2, "keep"))
    result = reflect(policy, prompts, replace(config_for_loop(), rounds=0),
                     RolloutConfig(group_size=2, max_chain_tokens=6, cfg_weight=3.0), seed=3, checker=always_yes)
    got = verdict_rewards(result, meta * 2)
    for row, reward in zip(result.traces, got):
        truths = oracle_verdicts(meta[0], row[0].image)
        said = {"red circle": True, "blue square": True}
        right = sum(said.get(t.statement) == t.holds for t in truths)
        decision_right = true_decision(truths) == "keep"
        assert reward == pytest.approx(0.5 * right / len(truths) + 0.5 * decision_right)
    assert verdict_rewards(result, [None, None]) == [None, None]
