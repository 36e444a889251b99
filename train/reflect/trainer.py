"""`janus-rig reflect-grpo`: RL-RIG's Reflection-GRPO in two phases, on the GRPO trainer's machinery.

    janus-rig reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml     # phase 1: checker + actor
    janus-rig reflect-grpo --config train/recipes/shapeworld_reflect_editor.yaml    # phase 2: the editor

A phase's trainer is a `GRPOTrainer`: prompt batches, micro-steps, the loss (`compute_loss` -> `policy_loss` of
train/grpo/algos.py with the config's loss_type, epsilon, beta, importance_sampling_level), the reference model,
logging and saving are GRPO's own. A phase replaces only `_generate_and_score`, in the order a step runs:

    actor   first images (rollout sample, one per prompt) -> G copies of each -> the loop (`reflect`: check, act,
            region-locked edit, check again; K = rounds) -> episode rewards (score after minus before) -> group
            advantages -> the deciding reflections and the edits, with the images they looked at (pixel_values)
    editor  WORLD/reflect.jsonl edit rows: the perturbed image (VQ-encoded), the correct plan and the regions to
            redraw -> G region-locked redraws (rollout edit mode) -> reward on the edited image, after minus
            before -> group advantages -> the redrawn image tokens

The editor phase takes its fixed edits from the perturbation data rather than from the policy's actor: each is an
edit known to be right (the plan the image failed, the boxes that must change), so the phase measures what it is
meant to (drawing well under a given edit), and it does not wait for the actor to write usable edits.

A group is num_generations episodes (or redraws) over all processes, as in GRPO: every process sees the same prompts
and the same first image of each (drawn with the rollout's shared seed), runs G / world size of its episodes, and
the rewards are gathered so that each group is normalised together (`_advantages`). The ShapeWorld oracle's truth is logged beside the reward: reward/oracle, accuracy,
oracle/correct_*, and the checker's accuracy against it (checker/*).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_prep.converters.common import RowReport
from data_prep.shapeworld.oracle import score_metadata
from data_prep.vq_cache import encode_images, load_image
from janus_rig.chain import Box
from janus_rig.model.policy import JanusPolicy, manifest
from janus_rig.model.tokens import role_token_ids
from janus_rig.reflect.actors import actor_for
from janus_rig.reflect.data import check_reflect_row, has_actor_target
from data_prep.shapeworld.facts import oracle_verdicts
from janus_rig.chain.roles import EDIT, VERDICT, parse_reflection
from janus_rig.reflect.loop import ActFn, CheckFn, act, check, reflect
from janus_rig.reflect.reward import INTRINSIC, checker_accuracy, intrinsic_reward, judge_rewards, oracle_report
from janus_rig.rollout import edit, sample
from train.checkpoints import resume_checkpoint
from train.common import JsonlLog, TimeBudget, plot_curves
from train.grpo.algos import group_advantages
from train.grpo.trainer import (
    GRPOTrainer,
    _trim,
    gallery_strip,
    judge_needs_metadata,
    load_bench,
    load_prompts,
    rollout_seed,
    to_groups,
    to_rank,
)
from train.reflect.config import OUTCOME, REFLECT_FILE, VERDICTS, ReflectGRPOConfig
from train.reflect.episodes import (
    actor_batch,
    editor_batch,
    episode_rewards,
    fact_score,
    malformed_rows,
    oracle_correct,
    oracle_rewards,
    outcome_rewards,
    repeat_rows,
    verdict_rewards,
)
from train.sft.data import BAD_ROWS_FILE, WorldInfo, read_records
from train.tracking import track

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CURVE_FILE = "reward_curve.png"
GALLERY_DIR = "gallery"
SUMMARY_FILE = "reflect_grpo_summary.json"
LOOP_COUNTS = ("edits", "keep", "malformed_reflection", "malformed_edit", "out_of_rounds", "truncated_reflections",
               "truncated_edits", "context_changed")


def _images(policy, tokens: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(p.numpy()) for p in policy.decode_images(tokens)]  # (B, S, S, 3) uint8


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else math.nan


class ReflectGRPOTrainer(GRPOTrainer):
    """What both phases share: the roles, the reward sources, advantages, chunking, logging and the bench."""

    def __init__(self, policy: JanusPolicy, args: ReflectGRPOConfig, train_dataset: list[dict], judge,
                 callbacks=None, checker: CheckFn = check, actor: ActFn = act):
        super().__init__(policy, args, train_dataset, judge, callbacks=callbacks)
        self.checker, self.actor = checker, actor  # the loop's roles (scripted in tests)

    def _seeds(self) -> tuple[int, torch.Generator]:
        """This rollout's shared seed (the same on every process: what all of a group share, e.g. its first image)
        and a generator of this process's own (its episodes' draws)."""
        shared = rollout_seed(self.args.seed, self._rollouts, 0)
        own = rollout_seed(self.args.seed, self._rollouts, self.accelerator.process_index)
        self._rollouts += 1
        return shared, torch.Generator(device=self.policy.device).manual_seed(own)

    def _local_generations(self) -> int:
        """Episodes per group on this process: num_generations is a group's size over all processes, as in GRPO
        (every process sees the same prompts; GRPOConfig checks that the world size divides it)."""
        return self.args.num_generations // self.accelerator.num_processes

    def _advantages(self, rewards: list[float | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (valid (R,), advantages (R,)) of this process's rows (prompt-major, `_local_generations` per prompt),
        each group of num_generations normalised together whichever process ran its members; logs the rewards."""
        acc = self.accelerator
        W, G = acc.num_processes, self.args.num_generations
        P = len(rewards) // (G // W)
        local = torch.tensor([[0.0 if r is None else float(r), float(r is not None)] for r in rewards],
                             device=acc.device)  # (R, 2): reward, valid
        grouped = to_groups(acc.gather(local), W, P) if W > 1 else local  # (P * G, 2)
        valid, values = grouped[:, 1].bool().cpu(), grouped[:, 0].cpu()  # (P * G,)
        adv, adv_metrics = group_advantages(values, G, self.args.scale_rewards, valid, self.args.advantage_std_floor)
        m = self._metrics
        m["reward"].append(float(values[valid].mean()) if valid.any() else math.nan)
        m["reward_std"].append(float(values[valid].std()) if valid.sum() > 1 else 0.0)
        m["rewards_none"].append(float((~valid).sum()))
        for key, value in adv_metrics.items():
            m[f"adv/{key}"].append(value)
        if W > 1:
            return to_rank(valid, W, P, acc.process_index), to_rank(adv, W, P, acc.process_index)
        return valid, adv

    def _to_chunks(self, batch: dict[str, torch.Tensor]) -> list[dict]:
        """One step's S sequences in gradient_accumulation_steps chunks, as even as they split (a chunk left
        without a row repeats row 0 with no loss), with DAPO's global token count and the reference log-probs."""
        args, acc = self.args, self.accelerator
        device = acc.device
        tokens = acc.gather(batch["loss_mask"].sum().to(device)[None]).sum().item()  # every process's
        num_items = max(tokens, 1.0) / (acc.num_processes * args.gradient_accumulation_steps)
        chunks = []
        for rows in torch.arange(batch["loss_mask"].shape[0]).tensor_split(args.gradient_accumulation_steps):
            empty = len(rows) == 0
            chunk = _trim({k: v[rows if not empty else torch.zeros(1, dtype=torch.long)].to(device)
                           for k, v in batch.items()})
            if empty:
                chunk["loss_mask"] = torch.zeros_like(chunk["loss_mask"])
            chunk["num_items_in_batch"] = num_items
            if self.has_reference:
                chunk["ref_logps"] = self._reference_logprobs(chunk)
            chunks.append(chunk)
        self._metrics["optimised_tokens"].append(float(tokens))
        return chunks

    def _times(self, **seconds) -> None:
        for key, value in seconds.items():  # GRPOTrainer.training_step subtracts these from the update's time
            self._metrics[f"time/{key}_s"].append(value)

    def _save_gallery(self, befores, afters, plans, prompts, rewards) -> None:
        """A strip of (before, after) pairs: each pair's first image with its plan, then the edited one."""
        every = self.args.gallery_every
        if not every or self.state.global_step % every or not self.accelerator.is_main_process or not befores:
            return
        n = max(self.args.gallery_size // 2, 1)
        images = [im for pair in zip(befores[:n], afters[:n]) for im in pair]
        path = Path(self.args.output_dir) / GALLERY_DIR / f"step_{self.state.global_step:06d}.png"
        gallery_strip(images, [c for pair in zip(plans[0][:n], plans[1][:n]) for c in pair],
                      [p for p in prompts[:n] for _ in range(2)], [x for r in rewards[:n] for x in (None, r)], path)

    # -- the bench: accuracy after 0..K rounds of the loop
    def _maybe_evaluate(self) -> None:
        every = self.args.eval_every
        if not every or self.state.global_step % every:
            return
        policy = self.gathered_policy()  # every process: a collective when sharded; the main process evaluates
        if not self.accelerator.is_main_process:
            return
        if self._bench is None:
            self._bench = load_bench(self.args.world, self.args.eval_prompts, self.args.tags)
        started = time.perf_counter()
        accuracy = bench_round_accuracy(policy, self._bench, self.args, self.checker, self.actor)
        for k, value in enumerate(accuracy):
            self._metrics[f"eval/accuracy@r{k}"].append(value)
        self._metrics["eval/accuracy"].append(accuracy[-1])
        self._metrics["time/eval_s"].append(time.perf_counter() - started)


class ActorPhaseTrainer(ReflectGRPOTrainer):
    """Phase 1: G reflections + edits per (prompt, first image), rewarded by the score after minus before."""

    def _max_tokens(self) -> int:  # dr_grpo's constant: the longest text one sequence can optimise
        plan = self.args.max_completion_length + 1 if self.args.train_plan else 0  # the chain + <begin_of_image>
        return max(self.args.max_reflection_tokens, self.args.max_edit_tokens, plan)

    @torch.no_grad()
    def _generate_and_score(self, records: list[dict]) -> list[dict]:
        args, policy = self.args, self.gathered_policy()  # whole weights: gathered under FSDP / ZeRO-3
        Gl = self._local_generations()
        prompts = [r["prompt"] for r in records]
        t0 = time.perf_counter()
        shared, generator = self._seeds()
        if args.first_images == "own":  # (P * Gl rows): episode j of a group draws sample j of its prompt's key
            first = sample(policy, prompts, args.rollout_config(Gl), seed=shared,
                           sample_offset=self.accelerator.process_index * Gl)
            initial = first
        else:  # (P rows): the same on every process, copied into each episode
            first = sample(policy, prompts, args.rollout_config(1), seed=shared)
            initial = repeat_rows(first, Gl)
        result = reflect(policy, prompts, args.reflect_config(), args.rollout_config(1), generator=generator,
                         initial=initial, checker=self.checker, actor=self.actor)  # (P * Gl rows)
        t1 = time.perf_counter()
        metadata = [records[i].get("metadata") for i in result.initial.prompt_index.tolist()]
        intrinsic = episode_rewards(result)  # RL-RIG's own signal, logged whatever the reward
        if args.reward == INTRINSIC:
            rewards = intrinsic
        elif args.reward == VERDICTS:
            rewards = verdict_rewards(result, metadata)
        elif args.reward == OUTCOME:
            rewards = outcome_rewards(result, metadata)
        else:
            rewards = episode_rewards(result, args.judge, self.judge, metadata)
        malformed = malformed_rows(result)
        rewards = [None if r is None else r - args.malformed_penalty * bad for r, bad in zip(rewards, malformed)]
        oracle = oracle_rewards(result, metadata)
        t2 = time.perf_counter()
        valid, adv = self._advantages(rewards)
        dtype = next(policy.base.parameters()).dtype
        verdicts_from = role_token_ids(policy.tokenizer)[VERDICT] if args.checker_tokens == "verdicts" else None
        batch = actor_batch(result, adv, valid, args.train_checker, policy.tokens.pad,
                            args.mask_truncated_completions, dtype, train_actor=args.actor == "model",
                            verdicts_from=verdicts_from, plans=first if args.train_plan else None)
        chunks = self._to_chunks(batch)
        t3 = time.perf_counter()

        m = self._metrics
        if args.reward != INTRINSIC:
            m[f"reward/{args.reward}"].append(_mean(rewards))
        m["reward/intrinsic"].append(_mean(intrinsic))
        m["reward/oracle"].append(_mean(oracle))
        known = [(row, meta) for row, meta in zip(result.traces, metadata) if meta is not None]
        m["accuracy"].append(_mean([float(oracle_correct(meta, result.chosen(row[0].row).image))
                                    for row, meta in known]))
        if known:
            report = oracle_report(result, metadata)
            for key in ("verdict_accuracy", "verdict_coverage", "decision_accuracy"):
                m[f"checker/{key}"].append(report[key])
            for key in ("correct_before", "correct_after", "edits_improved"):
                m[f"oracle/{key}"].append(report[key])
        for key in LOOP_COUNTS:
            m[f"loop/{key}"].append(float(result.counts[key]))
        m["loop/malformed_rows"].append(float(sum(malformed)))
        self._times(rollout=t1 - t0, decode=0.0, reward=t2 - t1, episodes=t3 - t2)  # the loop decodes its images
        edited = [row for row in result.traces if len(row) > 1]
        self._save_gallery([row[0].image for row in edited], [row[-1].image for row in edited],
                           ([row[0].plan for row in edited], [row[-1].plan for row in edited]),
                           [result.prompts[row[0].row] for row in edited], [rewards[row[0].row] for row in edited])
        return chunks


class EditorPhaseTrainer(ReflectGRPOTrainer):
    """Phase 2: G region-locked redraws per fixed edit (a WORLD/reflect.jsonl edit row), rewarded on the result."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.world_info = WorldInfo.read(self.args.world)

    def _max_tokens(self) -> int:
        return self.policy.num_image_tokens

    @torch.no_grad()
    def _generate_and_score(self, records: list[dict]) -> list[dict]:
        args, policy = self.args, self.gathered_policy()  # whole weights: gathered under FSDP / ZeRO-3
        Gl = self._local_generations()
        prompts, chains = [r["prompt"] for r in records], [r["chain"] for r in records]
        t0 = time.perf_counter()
        pixels = torch.stack([load_image(self.world_info.root / r["image"], self.world_info.size, policy.image_size)
                              for r in records])  # (P, 3, S, S) uint8
        before_tokens = encode_images(policy.base.model.vqmodel, pixels).to(policy.device)  # (P, N)
        boxes = [[Box(*b) for b in r["edit_boxes"]] for r in records]
        shared, generator = self._seeds()
        # keyed by sample index: a group's redraws are the same however many processes share them
        rollout = edit(policy, prompts, chains, before_tokens, boxes, args.rollout_config(Gl), seed=shared,
                       sample_offset=self.accelerator.process_index * Gl)  # (P * Gl rows), prompt-major
        t1 = time.perf_counter()
        before = _images(policy, before_tokens)  # what the editor started from: the VQ's reading of the image
        after = _images(policy, rollout.image_tokens)
        t2 = time.perf_counter()
        group = [r // Gl for r in range(rollout.num_rows)]  # row -> its edit
        metadata = [records[p].get("metadata") for p in group]
        intrinsic, parsed = self._intrinsic(policy, before, after, prompts, chains, group, generator)
        if args.reward == INTRINSIC:
            rewards = intrinsic
        else:
            rewards = judge_rewards(self.judge, [prompts[p] for p in group], [before[p] for p in group], after,
                                    metadata)
        first = [fact_score(m, im) if m is not None else None for m, im in zip(metadata[::Gl], before)]
        oracle = [None if m is None else fact_score(m, im) - first[p] for m, im, p in zip(metadata, after, group)]
        t3 = time.perf_counter()
        valid, adv = self._advantages(rewards)
        chunks = self._to_chunks(editor_batch(rollout, adv, valid, args.image_logprob))
        t4 = time.perf_counter()

        m = self._metrics
        if args.reward != INTRINSIC:
            m["reward/judge"].append(_mean(rewards))
        if intrinsic is not None:
            m["reward/intrinsic"].append(_mean(intrinsic))
        m["reward/oracle"].append(_mean(oracle))
        known = [(meta, im) for meta, im in zip(metadata, after) if meta is not None]
        m["accuracy"].append(_mean([float(oracle_correct(meta, im)) for meta, im in known]))
        m["oracle/correct_before"].append(_mean([float(oracle_correct(meta, im))
                                                 for meta, im in zip(metadata[::Gl], before) if meta is not None]))
        if parsed is not None and known:
            checked = [(p, meta, im) for p, meta, im in zip(parsed, metadata, after) if meta is not None]
            truths = [oracle_verdicts(meta, im) for _, meta, im in checked]
            _, acc = checker_accuracy([p for p, _, _ in checked], truths)
            for key in ("verdict_accuracy", "verdict_coverage", "decision_accuracy"):
                m[f"checker/{key}"].append(acc[key])
        inside = rollout.completion_mask & rollout.image_mask  # (R, T) the redrawn tokens
        m["loop/edits"].append(float(rollout.num_rows))
        m["loop/redrawn_tokens"].append(float(inside.sum(-1).float().mean()))
        self._times(rollout=t1 - t0, decode=t2 - t1, reward=t3 - t2, episodes=t4 - t3)
        self._save_gallery([before[p] for p in group], after, ([chains[p] for p in group],) * 2,
                           [prompts[p] for p in group], rewards)
        return chunks

    def _intrinsic(self, policy, before, after, prompts, chains, group, generator):
        """With reward intrinsic: the checker on each first image and each redraw (the plan it sees is the edit's
        chain) -> (after minus before per redraw, the redraws' parsed reflections); else (None, None)."""
        if self.args.reward != INTRINSIC:
            return None, None
        config = self.args.reflect_config().checker
        first = self.checker(policy, before, prompts, chains, config, generator)
        redraws = self.checker(policy, after, [prompts[p] for p in group], [chains[p] for p in group], config,
                               generator)
        first_parsed = [parse_reflection(t) for t in first.texts]
        parsed = [parse_reflection(t) for t in redraws.texts]
        return [intrinsic_reward(first_parsed[p], a) for p, a in zip(group, parsed)], parsed


PHASE_TRAINERS = {"actor": ActorPhaseTrainer, "editor": EditorPhaseTrainer}


# --- the bench ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def bench_round_accuracy(policy, bench: list[dict], args: ReflectGRPOConfig, checker: CheckFn = check,
                         actor: ActFn = act, batch: int = 16) -> list[float]:
    """One loop per bench prompt (K = args.rounds): the oracle's accuracy (mean over tags) after 0..K rounds."""
    per_round = [defaultdict(list) for _ in range(args.rounds + 1)]
    for start in range(0, len(bench), batch):
        lines = bench[start : start + batch]
        result = reflect(policy, [m["prompt"] for m in lines], args.reflect_config(), args.rollout_config(1),
                         seed=args.seed + start, checker=checker, actor=actor)
        for meta, images in zip(lines, result.images_after_rounds(args.rounds)):
            for k, image in enumerate(images):
                per_round[k][meta["tag"]].append(float(score_metadata(meta, np.asarray(image))[0]))
    return [_mean([_mean(v) for v in tags.values()]) for tags in per_round]


# --- the editor's data ----------------------------------------------------------------------------------------------
def load_edit_rows(world: str | Path, tags: list[str], max_records: int, report: RowReport) -> list[dict]:
    """WORLD/reflect.jsonl's usable edit rows (of the given tags): the fixed edits of the editor phase. Rows that
    cannot be used are reported by id; keep rows (nothing to redraw) and checker-only rows (`"actor": false`: the
    model's own images, no known edit) are left out and counted in the log."""
    info = WorldInfo.read(world)
    path = info.root / REFLECT_FILE
    records = read_records(path, report)
    rows, keeps, checker_only = [], 0, 0
    for record in records:
        row_id = str(record.get("id") or f"{path.name}:?")
        problem = check_reflect_row(record)
        if problem is None and record["decision"] != EDIT:
            keeps += 1
            continue
        if problem is None and not has_actor_target(record):
            checker_only += 1
            continue
        if problem is None and tags and record.get("tag") not in tags:
            continue
        if problem is None:
            problem = _edit_row_problem(record, info)
        if problem is not None:
            report.reject(row_id, path.name, *problem)
            continue
        rows.append(record)
        if max_records and len(rows) == max_records:
            break
    log.info("%d edit rows from %s (%d keep rows have nothing to redraw, %d checker-only rows no edit)", len(rows),
             path, keeps, checker_only)
    report.kept[path.name] += len(rows)
    if not rows:
        raise ValueError(f"no usable edit rows in {path}{f' of tags {tags}' if tags else ''}: see the bad-row "
                         f"reasons {report.counts()}; write more with `janus-rig reflect-data --world {world}`")
    return rows


def _edit_row_problem(record: dict, world: WorldInfo) -> tuple[str, str] | None:
    boxes = record.get("edit_boxes")
    if not isinstance(boxes, list) or not boxes:
        return "missing_field", "an edit row needs a non-empty 'edit_boxes' list"
    try:
        for box in boxes:
            Box(*box)
    except (TypeError, ValueError) as err:
        return "bad_edit", f"edit_boxes: {err}"
    try:
        load_image(world.root / record["image"], world.size, world.size)
    except ValueError as err:
        return tuple(str(err).split(": ", 1))
    return None


# --- orchestration -----------------------------------------------------------------------------------------------
def build_trainer(config: ReflectGRPOConfig, checker: CheckFn = check, actor: ActFn | None = None
                  ) -> ReflectGRPOTrainer:
    """The phase's trainer; `actor` None: the one `config.actor` names (scripted roles in tests pass their own)."""
    actor = actor or actor_for(config.actor, config.rollout_config(1))
    report = RowReport()
    if config.phase == "editor":
        records = load_edit_rows(config.world, config.tags, config.max_train_records, report)
    else:
        records = load_prompts(config.world, config.tags, config.max_train_records, prompts=config.prompts,
                               needs_metadata=config.reward == "judge" and judge_needs_metadata(config.judge))
    out = config.prepare_output_dir(inputs={"world": config.world, "prompts": config.prompts})
    if config.phase == "editor":
        report.write(out / BAD_ROWS_FILE)
        report.log(out / BAD_ROWS_FILE)
    policy = JanusPolicy.load(config.model_name_or_path, dtype=config.model_dtype, trainable=config.trainable(),
                              lora=config.lora(), attn_implementation=config.attn_implementation)
    policy.guidance = config.cfg_weight  # the saved model records the guidance it was trained with
    judge = config.reward_config().make_judge() if config.reward == "judge" else None
    callbacks = [TimeBudget(config.max_train_seconds), JsonlLog(out / LOG_FILE)]
    return track(PHASE_TRAINERS[config.phase](policy, config, records, judge, callbacks=callbacks, checker=checker,
                                              actor=actor), out / GALLERY_DIR)


def run_reflect_grpo(config: ReflectGRPOConfig, checker: CheckFn = check, actor: ActFn | None = None) -> dict:
    """Train one phase, save the final policy in config.output_dir, and return a summary (also in
    reflect_grpo_summary.json)."""
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)
    trainer = build_trainer(config, checker, actor)
    # the loop this phase trained for becomes the model's recorded loop (over the starting model's record)
    trainer.policy.loop_settings = {**(trainer.policy.loop_settings or {}), **config.loop_record()}
    budget = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TimeBudget))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started
    out = Path(config.output_dir)
    steps = trainer.state.global_step
    summary = {"phase": config.phase, "reward": config.reward, "steps": steps,
               "stopped_by_time_budget": budget.stopped_at_step is not None, "train_seconds": round(train_seconds, 2),
               "seconds_per_step": round(train_seconds / max(steps, 1), 3)}
    main = trainer.accelerator.is_main_process
    if config.eval_every:
        policy = trainer.gathered_policy()  # every process: a collective when sharded
        if main:
            trainer._bench = trainer._bench or load_bench(config.world, config.eval_prompts, config.tags)
            accuracy = bench_round_accuracy(policy, trainer._bench, config, checker, trainer.actor)
            summary["final_bench"] = {f"accuracy@r{k}": value for k, value in enumerate(accuracy)}
    trainer.save_model(str(out), manifest=manifest(stage=f"reflect-{config.phase}", reward=config.reward,
                                                   world=str(config.world), steps=steps,
                                                   base=str(config.model_name_or_path)))  # every process gathers
    if main:
        history = trainer.state.log_history
        plot_curves(history, [("reward", "-"), ("reward/intrinsic", "-"), ("reward/oracle", "-"),
                              ("checker/verdict_accuracy", "--"), ("eval/accuracy", "o--")],
                    "mean over the step's episodes", out / CURVE_FILE)
        rewards = [h["reward"] for h in history if "reward" in h]
        summary.update(first_reward=rewards[0] if rewards else None, last_reward=rewards[-1] if rewards else None)
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if trainer.judge is not None:
        trainer.judge.close()
    return summary
