"""`janus-rig grpo`: GoT-R1 stage 2 on transformers' Trainer. The math lives in `train.grpo.algos`; this file only
orchestrates, in the order a step runs:

    prompts    the dataloader yields the same prompt records on every process (`RepeatBatchSampler`)
    rollout    each process samples num_generations / world_size (chain, image) pairs per prompt, keyed by sample index
    rewards    decode the image tokens, score (prompt, chain, image, metadata) with the judge's terms
    episodes   gather every process's rewards, regroup them per prompt (`to_groups`), normalise each group
               (`group_advantages`), keep this process's slice (`to_rank`); build loss masks and old log-probs
    pg loss    teacher-forced log-probs of the optimised spans (`mixed_logprobs`) -> `policy_loss` -> backward

One rollout serves `gradient_accumulation_steps` micro-steps (its rows split into that many chunks) and
`num_iterations` optimizer steps. Old log-probs are the rollout's own (the distribution sampled from; cond-only or
CFG-guided for images per `image_logprob`), so no extra forward is spent on them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from transformers import Trainer

from data_prep.shapeworld.oracle import score_metadata, validate_metadata
from janus_rig.chain import draw_boxes, parse_chain
from janus_rig.model.mixed import mixed_logprobs
from janus_rig.model.policy import JanusPolicy, manifest
from janus_rig.rollout.sampler import sample
from reward_models import compute_rewards
from reward_models.judges import JUDGES, is_url
from train.grpo.algos import group_advantages, policy_loss
from train.grpo.config import GRPOConfig
from train.grpo.guard import CollapseGuard
from train.checkpoints import AtomicCheckpoints, resume_checkpoint
from train.common import JsonlLog, TimeBudget, plot_curves
from train.distributed import PolicyModule, PolicyTrainer, sharding
from train.tracking import track

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CURVE_FILE = "reward_curve.png"
GALLERY_DIR = "gallery"
SUMMARY_FILE = "grpo_summary.json"


# --- multi-process grouping: pure functions -------------------------------------------------------------------------
# Every process samples Gl = G / W completions of each of the same P prompts, rows prompt-major: (P, Gl).
# accelerator.gather concatenates the processes: (W, P, Gl). A group is one prompt's G = W * Gl samples.
def to_groups(gathered: torch.Tensor, world_size: int, num_prompts: int) -> torch.Tensor:
    """(W * P * Gl, ...) rank-major -> (P * G, ...) prompt-major: each prompt's samples from every rank together."""
    rest = gathered.shape[1:]
    x = gathered.reshape(world_size, num_prompts, -1, *rest)  # (W, P, Gl, ...)
    return x.transpose(0, 1).reshape(-1, *rest)  # (P * W * Gl, ...)


def to_rank(grouped: torch.Tensor, world_size: int, num_prompts: int, rank: int) -> torch.Tensor:
    """(P * G, ...) prompt-major -> (P * Gl, ...) the rows `rank` sampled, in its own order. Inverse of to_groups."""
    rest = grouped.shape[1:]
    x = grouped.reshape(num_prompts, world_size, -1, *rest)  # (P, W, Gl, ...)
    return x[:, rank].reshape(-1, *rest)  # (P * Gl, ...)


def rollout_seed(seed: int, rollout_index: int, rank: int) -> int:
    """Distinct per (rollout, rank) so no two processes draw the same samples; reproducible from `seed`."""
    return seed * 1_000_003 + rollout_index * 1_009 + rank


# --- prompts --------------------------------------------------------------------------------------------------------
def load_prompts(world: str | Path | None, tags: list[str], max_records: int = 0, *, prompts: str | Path | None = None,
                 needs_metadata: bool = False) -> list[dict]:
    """Prompt records {prompt, tag, metadata, ...} of the given tags (all when empty), the first `max_records`.

    From `prompts` (a prompt-set .jsonl: `{"id": "geneval-00042", "prompt": "...", "tag": "position", "metadata":
    {...}}` per line) when given, else the world's train.jsonl. `needs_metadata` (an oracle judge such as
    shapeworld) demands ShapeWorld metadata on every record used. ValueError naming FILE:LINE and the row's id for
    a line that is not a JSON object with a "prompt" string, or a used row without the metadata the judge needs.
    """
    path = Path(prompts) if prompts else Path(world) / "train.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: " + ("--prompts must be a prompt-set .jsonl (janus-rig "
                                "convert prompts)" if prompts else "--world must be a `janus-rig world` directory"))
    records, lines = [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not JSON ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise ValueError(f"{path}:{number}: a prompt row is a JSON object with a non-empty \"prompt\" string")
        records.append(record)
        lines.append(number)
    if not records:
        raise ValueError(f"{path} holds no prompt rows")
    present = sorted({r.get("tag") for r in records if r.get("tag")})
    unknown = sorted(set(tags) - set(present))
    if unknown:
        raise ValueError(f"no records of tags {unknown} in {path}; tags present: {', '.join(present) or 'none'}")
    used = [i for i, r in enumerate(records) if not tags or r.get("tag") in tags]
    if max_records:
        used = used[:max_records]
    if needs_metadata:
        for i in used:
            try:
                validate_metadata(records[i].get("metadata"))
            except ValueError as err:
                raise ValueError(
                    f"{path}:{lines[i]} (id {records[i].get('id', '?')}): the shapeworld judge scores every prompt "
                    f"by its ShapeWorld metadata, and this row's is unusable ({err}); train on a world's train.jsonl "
                    "or a ShapeWorld prompt set, or use a VLM judge (--judge hf or a URL)") from None
    return [records[i] for i in used]


class RepeatBatchSampler:
    """Batches of `batch_size` record indices, shuffled by a seed every process shares (so every process gets the
    same prompts), each batch yielded `repeat` times in a row: one per micro-step that reuses the rollout."""

    def __init__(self, n: int, batch_size: int, repeat: int, seed: int):
        if n < batch_size:
            raise ValueError(f"{n} prompt records but per_device_train_batch_size={batch_size} prompts per step: "
                             "lower it or use a larger world / more tags")
        self.n, self.batch_size, self.repeat, self.seed = n, batch_size, repeat, seed
        self.epoch = 0

    def __len__(self) -> int:
        return (self.n // self.batch_size) * self.repeat

    def set_epoch(self, epoch: int) -> None:
        """The Trainer sets the epoch before each pass (a resumed run then sees the epoch's own order)."""
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=g).tolist()
        for b in range(self.n // self.batch_size):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            for _ in range(self.repeat):
                yield batch


class PromptLoader(DataLoader):
    """A DataLoader whose `set_epoch` reaches its batch sampler (the Trainer calls it on loaders that have it)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


# --- the optimised spans ----------------------------------------------------------------------------------------------
def span_mask(completion_mask: torch.Tensor, image_mask: torch.Tensor, optimize: str) -> torch.Tensor:
    """(R, T) sampled tokens that carry the loss: the chain (+ emitted <begin_of_image>), the image codes, or both."""
    if optimize == "chain":
        return completion_mask & ~image_mask
    if optimize == "image":
        return completion_mask & image_mask
    return completion_mask.clone()


def old_logprobs(logprobs: torch.Tensor, cond_logprobs: torch.Tensor, image_mask: torch.Tensor, image_logprob: str):
    """(R, T) behaviour log-probs: text from the sampled distribution; images cond-only or guided (as the loss)."""
    if image_logprob == "cond":
        return torch.where(image_mask, cond_logprobs, logprobs)
    return logprobs


class LogprobModel(PolicyModule):
    """The policy as the Trainer (and DDP, FSDP, DeepSpeed) sees it: forward = teacher-forced log-probs of a mixed
    batch. Going through this module's forward lets DDP prepare its gradient reduction and FSDP / ZeRO-3 gather the
    weights; `mixed_logprobs` alone would call the language model's submodules directly (train/distributed.py)."""

    def __init__(self, model, text_temperature: float, image_temperature: float, cfg_weight: float | None):
        super().__init__(model)
        self.text_temperature, self.image_temperature, self.cfg_weight = text_temperature, image_temperature, cfg_weight

    def forward(self, input_ids, image_mask, attention_mask, score_mask, uncond_input_ids=None, pixel_values=None):
        cfg = self.cfg_weight if uncond_input_ids is not None else None
        return mixed_logprobs(self.policy_model, input_ids, image_mask, attention_mask, score_mask,
                              text_temperature=self.text_temperature, image_temperature=self.image_temperature,
                              cfg_weight=cfg, uncond_input_ids=uncond_input_ids,
                              pixel_values=pixel_values).logprobs  # (B, T); pixel_values: understanding rows


# --- the trainer ------------------------------------------------------------------------------------------------------
class GRPOTrainer(PolicyTrainer, AtomicCheckpoints, Trainer):
    """Saves are the policy's, whole (train/distributed.py); checkpoints appear whole or not at all
    (train/checkpoints.py). Rollouts and benches sample from `gathered_policy()`: under FSDP / ZeRO-3 a copy on the
    gathered weights."""

    def __init__(self, policy: JanusPolicy, args: GRPOConfig, train_dataset: list[dict], judge, callbacks=None):
        cfg = args.cfg_weight if args.image_logprob == "cfg" else None
        model = LogprobModel(policy.model, args.temperature, args.image_temperature, cfg)
        super().__init__(model=model, args=args, train_dataset=train_dataset, data_collator=lambda rows: rows,
                         callbacks=callbacks)
        self.policy, self.judge = policy, judge
        self.reward_config = args.reward_config()
        self.ref_model = None
        if args.beta > 0 and not args.use_lora:  # LoRA: the reference is the same model with adapters disabled
            frozen = copy.deepcopy(policy.base).eval().requires_grad_(False)
            self.ref_model = LogprobModel(frozen, args.temperature, args.image_temperature, cfg).to(args.device)
        self._metrics = defaultdict(list)
        self._micro = 0  # micro-steps taken; a rollout every gradient_accumulation_steps * num_iterations
        self._rollouts = 0
        self._chunks: list[dict] = []
        self._gallery: dict | None = None
        self._bench: list[dict] | None = None

    @property
    def has_reference(self) -> bool:
        return self.args.beta > 0

    # -- prompts: the same batches on every process (not sharded by accelerate)
    def get_train_dataloader(self) -> DataLoader:
        repeat = self.args.gradient_accumulation_steps * self.args.num_iterations
        sampler = RepeatBatchSampler(len(self.train_dataset), self.args.per_device_train_batch_size, repeat,
                                     self.args.seed)
        return PromptLoader(self.train_dataset, batch_sampler=sampler, collate_fn=lambda rows: rows, num_workers=0)

    # -- rollout, rewards, episodes
    def _prepare_inputs(self, records: list[dict]) -> dict:
        per_rollout = self.args.gradient_accumulation_steps * self.args.num_iterations
        if self._micro == 0 and self.state.global_step:  # resumed: continue the counts (rollout seeds follow them)
            self._micro = self.state.global_step * self.args.gradient_accumulation_steps
            self._rollouts = self._micro // per_rollout
        if self._micro % per_rollout == 0:
            self._maybe_evaluate()
            self._chunks = self._generate_and_score(records)
        chunk = self._chunks[self._micro % self.args.gradient_accumulation_steps]
        chunk["iteration"] = (self._micro % per_rollout) // self.args.gradient_accumulation_steps
        self._micro += 1
        return chunk

    @torch.no_grad()
    def _generate_and_score(self, records: list[dict]) -> list[dict]:
        args, acc = self.args, self.accelerator
        policy = self.gathered_policy()  # whole weights: gathered from every process under FSDP / ZeRO-3
        W, rank, P, G = acc.num_processes, acc.process_index, len(records), args.num_generations
        t0 = time.perf_counter()
        # One seed for every process; rows are keyed by their sample index in the group, so the rollout is the same
        # however many processes share it.
        rollout = sample(policy, [r["prompt"] for r in records], args.rollout_config(G // W, args.rollout_images()),
                         seed=rollout_seed(args.seed, self._rollouts, 0), sample_offset=rank * (G // W))
        self._rollouts += 1
        t1 = time.perf_counter()
        if rollout.image_tokens.shape[1]:
            images = list(policy.decode_images(rollout.image_tokens).numpy())  # R x (S, S, 3) uint8
        else:  # chain-only rollout: no image was sampled
            images = [None] * rollout.num_rows
        t2 = time.perf_counter()
        rows = rollout.prompt_index.tolist()
        metadata = [records[i].get("metadata") for i in rows]
        result = compute_rewards([records[i]["prompt"] for i in rows], rollout.chains, images,
                                 metadata, self.judge, self.reward_config)
        t3 = time.perf_counter()

        # Episodes: every group normalised together, whichever process sampled its members.
        device = acc.device
        local = torch.tensor([[math.nan if t is None else t, float(t is not None), _correct(terms, meta, image)]
                              for t, terms, meta, image in zip(result.totals, result.terms, metadata, images)],
                             device=device)  # (R, 3): reward, valid, correct
        grouped = to_groups(acc.gather(local), W, P)  # (P * G, 3)
        valid = grouped[:, 1].bool()  # (P * G,)
        rewards = torch.nan_to_num(grouped[:, 0])  # (P * G,)
        adv, adv_metrics = group_advantages(rewards, G, args.scale_rewards, valid, args.advantage_std_floor)
        advantages = to_rank(adv, W, P, rank).cpu()  # (R,)

        mask = span_mask(rollout.completion_mask, rollout.image_mask, args.optimize)  # (R, T)
        mask &= to_rank(valid, W, P, rank).cpu()[:, None]  # a None reward: the sample is out of the loss
        if args.mask_truncated_completions:
            mask &= ~rollout.truncated[:, None]
        old = old_logprobs(rollout.logprobs, rollout.cond_logprobs, rollout.image_mask, args.image_logprob)
        tokens = acc.gather(mask.sum().to(device)[None]).sum().item()  # global optimised-token count
        num_items = max(tokens, 1.0) / (W * args.gradient_accumulation_steps)  # see compute_loss

        batch = {"input_ids": rollout.input_ids, "image_mask": rollout.image_mask,
                 "attention_mask": rollout.attention_mask, "loss_mask": mask, "old_logps": old,
                 "advantages": advantages}
        if args.image_logprob == "cfg":
            batch["uncond_input_ids"] = rollout.uncond_input_ids
        chunks = [_trim({k: v[s].to(device) for k, v in batch.items()})
                  for s in _slices(rollout.num_rows, args.gradient_accumulation_steps)]
        for chunk in chunks:
            chunk["num_items_in_batch"] = num_items
            if self.has_reference:
                chunk["ref_logps"] = self._reference_logprobs(chunk)
        t4 = time.perf_counter()

        m = self._metrics
        m["reward"].append(float(rewards[valid].mean()) if valid.any() else math.nan)
        m["reward_std"].append(float(rewards[valid].std()) if valid.sum() > 1 else 0.0)
        m["accuracy"].append(float(grouped[:, 2][valid].mean()) if valid.any() else math.nan)
        m["rewards_none"].append(float((~valid).sum()))
        for key, value in adv_metrics.items():
            m[f"adv/{key}"].append(value)
        logged = ("mean/", "none/", "errors/", "failures/")  # this process's samples: per term, and judge failures
        for key, value in result.metrics.items():
            if key.startswith(logged) and not (isinstance(value, float) and math.isnan(value)):
                m[f"reward/{key}"].append(value)
        chain_lengths = (rollout.completion_mask & ~rollout.image_mask).sum(-1).float()  # (R,)
        m["chain_length"].append(float(chain_lengths.mean()))
        m["truncated"].append(float(rollout.truncated.float().mean()))
        m["optimised_tokens"].append(float(tokens))
        for key, value in (("rollout", t1 - t0), ("decode", t2 - t1), ("reward", t3 - t2), ("episodes", t4 - t3)):
            m[f"time/{key}_s"].append(value)
        self._maybe_gallery(rollout, images, result.totals)
        return chunks

    def _reference_logprobs(self, chunk: dict) -> torch.Tensor:
        inputs = {k: chunk[k] for k in ("input_ids", "image_mask", "attention_mask")}
        inputs["score_mask"] = chunk["loss_mask"]
        inputs["uncond_input_ids"] = chunk.get("uncond_input_ids")
        inputs["pixel_values"] = chunk.get("pixel_values")
        if self.ref_model is not None:
            return self.ref_model(**inputs)
        with self.policy.model.disable_adapter():  # LoRA: the base weights are the reference
            return self.model(**inputs)

    # -- pg loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask = inputs["loss_mask"]  # (B, T)
        logps = model(inputs["input_ids"], inputs["image_mask"], inputs["attention_mask"], mask,
                      inputs.get("uncond_input_ids"), pixel_values=inputs.get("pixel_values"))  # (B, T)
        old = inputs["old_logps"]  # (B, T)
        if not mask.any():  # every sample masked out: a zero loss
            # through the forward, so that every process runs the same backward (FSDP and DDP reduce on all of them),
            # and, when the weights are whole, through every trainable parameter (shards: FSDP fills in zeros)
            loss = logps.sum() * 0.0
            if sharding(self.accelerator) is None:
                loss = loss + sum(p.reshape(-1)[0] for p in model.parameters() if p.requires_grad) * 0.0
            return (loss, None) if return_outputs else loss
        # Trainer divides the loss by gradient_accumulation_steps and DDP averages processes: with this
        # normaliser DAPO's loss is the sum over the whole step's tokens / their global count.
        loss, metrics = policy_loss(
            logps, old, inputs["advantages"], mask, loss_type=self.args.loss_type, epsilon_low=self.args.epsilon,
            epsilon_high=self.args.epsilon_high, importance_sampling_level=self.args.importance_sampling_level,
            beta=self.args.beta, ref_logps=inputs.get("ref_logps"),
            max_completion_length=self._max_tokens(), num_items_in_batch=inputs["num_items_in_batch"])
        for key, value in metrics.items():
            self._metrics[key].append(value)
        if inputs["iteration"] == 0:  # on-policy: current == old up to numerics (the ratio is 1)
            gap = ((logps.detach() - old).abs() * mask).max()
            self._metrics["old_logp_gap_max"].append(float(gap))
        return (loss, None) if return_outputs else loss

    def _max_tokens(self) -> int:
        """dr_grpo's constant: the most tokens one sample can optimise."""
        chain = self.args.max_completion_length + 1 if self.args.optimize != "image" else 0
        image = self.policy.num_image_tokens if self.args.optimize != "chain" else 0
        return chain + image

    def training_step(self, model, inputs, num_items_in_batch=None):
        started = time.perf_counter()
        rolls_out = self._micro % self._per_rollout() == 0  # _prepare_inputs (inside) runs the rollout first
        loss = super().training_step(model, inputs, num_items_in_batch)
        spent = time.perf_counter() - started
        if rolls_out:  # count only the update
            spent -= sum(self._metrics[f"time/{k}_s"][-1] for k in ("rollout", "decode", "reward", "episodes"))
        self._metrics["time/update_s"].append(spent)
        return loss

    def _per_rollout(self) -> int:
        return self.args.gradient_accumulation_steps * self.args.num_iterations

    def log(self, logs: dict, *args, **kwargs) -> None:
        for key, values in self._metrics.items():
            values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
            if values:
                # means over the logging window (times: per rollout / per micro-step); the None count is a total
                reduce = {"rewards_none": sum, "old_logp_gap_max": max}.get(key, _mean)
                logs[key] = reduce(values)
        self._metrics.clear()
        super().log(logs, *args, **kwargs)

    # -- gallery and bench evaluation (main process)
    def _maybe_gallery(self, rollout, images, totals) -> None:
        every = self.args.gallery_every
        if not every or self.state.global_step % every or not self.accelerator.is_main_process:
            return
        G = rollout.num_rows // len(rollout.prompts)
        rows = list(range(0, rollout.num_rows, G))[: self.args.gallery_size]
        path = Path(self.args.output_dir) / GALLERY_DIR / f"step_{self.state.global_step:06d}.png"
        gallery_strip([images[r] for r in rows], [rollout.chains[r] for r in rows],
                      [rollout.prompts[rollout.prompt_index[r]] for r in rows], [totals[r] for r in rows], path)

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
        scores = bench_accuracy(policy, self._bench, self.args.rollout_config(1), seed=self.args.seed)
        self._metrics["eval/accuracy"].append(scores["accuracy"])
        for tag, value in scores["per_tag"].items():
            self._metrics[f"eval/accuracy/{tag}"].append(value)
        self._metrics["time/eval_s"].append(time.perf_counter() - started)


def _mean(values):
    return sum(values) / len(values)


def _slices(n: int, parts: int) -> list[slice]:
    size = n // parts
    return [slice(i * size, (i + 1) * size) for i in range(parts)]


def _trim(chunk: dict) -> dict:
    """Drop the left-pad columns no row of the chunk attends (rows are left-padded to the longest of the rollout)."""
    first = int(chunk["attention_mask"].any(0).float().argmax())
    return {k: v[:, first:] if v.dim() == 2 else v for k, v in chunk.items()}


def _correct(terms: dict, metadata: dict | None, image) -> float:
    """Accuracy of one sample: R_PI == 1 when that term ran, else the ShapeWorld oracle's verdict (NaN: unknown)."""
    if terms.get("R_PI") is not None:
        return float(terms["R_PI"] == 1.0)
    if metadata is None or image is None:
        return math.nan
    return float(score_metadata(metadata, np.asarray(image))[0])


# --- bench accuracy during training ------------------------------------------------------------------------------------
def load_bench(world: str | Path, limit: int, tags: list[str] | None = None) -> list[dict]:
    """The world's GenEval-style bench lines, of the trained tags when given (all when empty), the first `limit`."""
    path = Path(world) / "bench" / "metadata.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"eval_every needs {path} (written by `janus-rig world`)")
    lines = [json.loads(line) for line in open(path) if line.strip()]
    lines = [m for m in lines if not tags or m["tag"] in tags]
    return lines[:limit] if limit else lines


@torch.no_grad()
def bench_accuracy(policy: JanusPolicy, bench: list[dict], rollout_config, seed: int, batch: int = 16) -> dict:
    """One sample per bench prompt, judged by the ShapeWorld oracle: overall and per-tag accuracy."""
    per_tag = defaultdict(list)
    for start in range(0, len(bench), batch):
        lines = bench[start : start + batch]
        rollout = sample(policy, [m["prompt"] for m in lines], rollout_config, seed=seed, prompt_offset=start)
        images = policy.decode_images(rollout.image_tokens).numpy()  # (B, S, S, 3)
        for meta, image in zip(lines, images):
            per_tag[meta["tag"]].append(float(score_metadata(meta, image)[0]))
    tags = {tag: _mean(v) for tag, v in per_tag.items()}
    return {"accuracy": _mean(list(tags.values())) if tags else math.nan, "per_tag": tags}


# --- pictures --------------------------------------------------------------------------------------------------------
def gallery_strip(images, chains: list[str], prompts: list[str], rewards: list, path: Path, tile: int = 128) -> Path:
    """A PNG strip: each sampled image (upscaled) with its chain's boxes drawn on it, its reward and prompt below."""
    caption = 36
    strip = Image.new("RGB", (tile * len(images), tile + caption), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, (image, chain, prompt, reward) in enumerate(zip(images, chains, prompts, rewards)):
        picture = None if image is None else Image.fromarray(np.asarray(image))  # None: the boxes on a blank
        strip.paste(draw_boxes(picture, parse_chain(chain).objects, size=(tile, tile)), (i * tile, 0))
        score = "r=None" if reward is None else f"r={reward:.2f}"
        draw.text((i * tile + 2, tile + 2), score, fill=(0, 0, 0))
        draw.text((i * tile + 2, tile + 14), prompt[: tile // 6], fill=(80, 80, 80))
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)
    return path


# --- orchestration -----------------------------------------------------------------------------------------------
def build_trainer(config: GRPOConfig, keep: tuple[str, ...] = ()) -> GRPOTrainer:
    """`keep`: entries already in output_dir that are not an earlier run (`OutputArgs.prepare_output_dir`)."""
    records = load_prompts(config.world, config.tags, config.max_train_records, prompts=config.prompts,
                           needs_metadata=judge_needs_metadata(config.judge))  # cheap checks before the model loads
    out = config.prepare_output_dir(inputs={"world": config.world, "prompts": config.prompts}, keep=keep)
    policy = JanusPolicy.load(config.model_name_or_path, dtype=config.model_dtype, trainable=config.trainable(),
                              lora=config.lora(), attn_implementation=config.attn_implementation)
    policy.guidance = config.cfg_weight  # the saved model records the guidance it was trained with
    callbacks = [TimeBudget(config.max_train_seconds), JsonlLog(out / LOG_FILE)]
    if config.collapse_guard != "off":
        callbacks.append(CollapseGuard(config.guard_settings(), every=config.guard_every,
                                       action=config.collapse_guard, lr_factor=config.guard_lr_factor))
    return track(GRPOTrainer(policy, config, records, config.reward_config().make_judge(), callbacks=callbacks),
                 out / GALLERY_DIR)  # --report_to tensorboard: the gallery strips as images too


def judge_needs_metadata(judge: str) -> bool:
    """A registered structured judge (the shapeworld oracle) reads each record's metadata; a URL's server decides."""
    return not is_url(judge) and getattr(JUDGES.get(judge), "structured", False)


def run_grpo(config: GRPOConfig, keep: tuple[str, ...] = ()) -> dict:
    """Train, save the final policy in config.output_dir, and return a summary (also in grpo_summary.json).
    `keep`: see build_trainer."""
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)
    trainer = build_trainer(config, keep)
    budget = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TimeBudget))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started
    out = Path(config.output_dir)
    steps = trainer.state.global_step
    guard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, CollapseGuard)), None)
    summary = {"steps": steps, "stopped_by_time_budget": budget.stopped_at_step is not None,
               "collapses": guard.events if guard else [],
               "train_seconds": round(train_seconds, 2), "seconds_per_step": round(train_seconds / max(steps, 1), 3)}
    main = trainer.accelerator.is_main_process
    if config.eval_every:
        policy = trainer.gathered_policy()  # every process: a collective when sharded
        if main:
            trainer._bench = trainer._bench or load_bench(config.world, config.eval_prompts, config.tags)
            summary["final_bench"] = bench_accuracy(policy, trainer._bench, config.rollout_config(1), config.seed)
    trainer.save_model(str(out), manifest=manifest(stage="grpo", world=config.world and str(config.world),
                                                   prompts=config.prompts, steps=steps,
                                                   base=str(config.model_name_or_path)))  # every process gathers
    if main:
        history = trainer.state.log_history
        plot_curves(history, [("reward", "-"), ("accuracy", "-"), ("eval/accuracy", "o--")],
                    "mean over the step's samples", out / CURVE_FILE)
        rewards = [h["reward"] for h in history if "reward" in h]
        summary.update(first_reward=rewards[0] if rewards else None, last_reward=rewards[-1] if rewards else None)
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    trainer.judge.close()
    return summary
