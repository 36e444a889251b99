"""`janus-rig sft`: GoT-R1 stage 1 on transformers' Trainer.

Order of play (`run_sft`): load or initialise the policy -> freeze/LoRA per the config -> records to validated
token sequences with cached VQ codes (`train.sft.data`; the main process builds the cache, the others then read
it) -> `SFTTrainer.train` (compute_loss = `sft_loss`, logs text and image NLL) -> save the final policy in
OUTPUT_DIR (gathered whole, written by the main process; loads in plain transformers) -> loss curve + log.

The loss of an optimizer step is the text and the image token mean over the whole step: every micro-batch of
every process counts its targets first (`_get_num_items_in_batch`), and each micro-batch divides its sums by that
count. One process with batch 8 and two processes with batch 4 then take the same step (`make rehearse`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer

from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
from data_prep.vq_cache import encode_images
from janus_rig.model.init import init_policy
from janus_rig.model.loading import require_attention
from janus_rig.model.mixed import drop_conditions, sft_loss, target_counts
from janus_rig.model.policy import JanusPolicy, apply_lora, manifest, set_trainable, unwrap
from janus_rig.reflect.settings import read_recipe
from train.checkpoints import AtomicCheckpoints, resume_checkpoint
from train.common import JsonlLog, TimeBudget, plot_curves
from train.distributed import PolicyModule, PolicyTrainer, zero3_gathered
from train.sft.config import SFTConfig
from train.sft.data import BAD_ROWS_FILE, RowReport, SFTCollator, WorldInfo, build_datasets, fill_codes

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"
SUMMARY_FILE = "sft_summary.json"


def _batch_loss(policy_model, inputs: dict, text_weight: float, image_weight: float, num_items=None):
    """`sft_loss` of one batch, run inside the wrapped model's forward (`PolicyModule`), on-the-fly VQ codes
    included: under FSDP or ZeRO-3 the VQ's weights are whole only there."""
    input_ids = inputs["input_ids"]  # (B, T)
    gen_images = inputs.get("gen_images")  # (B_i, 3, S, S) uint8 in on-the-fly mode
    if gen_images is not None:
        codes = encode_images(unwrap(policy_model).model.vqmodel, gen_images)  # (B_i, N)
        input_ids = fill_codes(input_ids, inputs["image_mask"], codes)
    return sft_loss(policy_model, input_ids, inputs["image_mask"], inputs["attention_mask"], inputs["loss_mask"],
                    text_weight=text_weight, image_weight=image_weight, pixel_values=inputs.get("pixel_values"),
                    num_items=num_items)


class SFTTrainer(PolicyTrainer, AtomicCheckpoints, Trainer):
    """A Trainer whose loss is `janus_rig.model.mixed.sft_loss` (text and image NLL logged separately), computed in
    the forward of the model the Trainer wraps (`PolicyModule`: DDP reduces its gradients, FSDP and ZeRO-3 gather its
    weights). Saves are the policy's, whole (train/distributed.py); checkpoints appear whole or not at all
    (train/checkpoints.py)."""

    def __init__(self, policy: JanusPolicy, *args, text_weight: float = 1.0, image_weight: float = 1.0,
                 cond_dropout: float = 0.0, **kwargs):
        self.policy = policy
        super().__init__(PolicyModule(policy.model), *args, **kwargs)
        self.text_weight = text_weight
        self.image_weight = image_weight
        self.cond_dropout = cond_dropout
        self.tokens = policy.tokens  # SpecialTokenIds: bos / boi / pad for the unconditional rows
        self.loss_is_scaled_for_ga = True  # compute_loss divides by the whole step's counts (no further / GA)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _get_num_items_in_batch(self, batch_samples: list[dict], device) -> tuple[float, float]:
        """Before a step's micro-batches run: draw their condition dropout (it changes what they score), then count
        the (text, image) targets of the whole step over every process. -> this process's share, count / processes:
        each micro-batch divides its sums by it, the Trainer adds the micro-batches, DDP / FSDP average processes."""
        counts = torch.zeros(2, dtype=torch.float64)
        # The draws are keyed by (seed, step, process), not taken from torch's RNG: a resumed run restores that only
        # after fetching its first step's batches, and must still drop the rows the uninterrupted run dropped.
        seed = self.args.seed * 1_000_003 + self.state.global_step * 1_009 + self.accelerator.process_index
        generator = torch.Generator().manual_seed(seed)
        for batch in batch_samples:
            if self.cond_dropout:
                self._drop_conditions(batch, generator)
            counts += torch.tensor(target_counts(batch["loss_mask"], batch["image_mask"]), dtype=torch.float64)
        W = self.accelerator.num_processes
        if W > 1:
            counts = self.accelerator.gather(counts.to(device)[None]).sum(0).cpu()  # (2,)
        return float(counts[0]) / W, float(counts[1]) / W

    def _drop_conditions(self, batch: dict, generator: torch.Generator) -> None:
        """Janus' condition dropout on a collated batch, in place (rows trained unconditionally: `drop_conditions`)."""
        drop = torch.rand(batch["input_ids"].shape[0], generator=generator) < self.cond_dropout  # (B,)
        t = self.tokens
        batch["input_ids"], batch["loss_mask"] = drop_conditions(
            batch["input_ids"], batch["image_mask"], batch["attention_mask"], batch["loss_mask"], drop, t.bos, t.boi,
            t.pad)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # training: num_items_in_batch from _get_num_items_in_batch; evaluation: None, each batch its own means
        loss, metrics = model(_batch_loss, inputs, self.text_weight, self.image_weight,
                              num_items_in_batch if model.training else None)
        mode = "train" if model.training else "eval"
        for key in ("text_nll", "image_nll", "text_tokens", "image_tokens"):
            self._metrics[mode][key].append(metrics[key])
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict, *args, **kwargs) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, *args, **kwargs)


# --- orchestration -----------------------------------------------------------------------------------------------
def load_policy(config: SFTConfig) -> JanusPolicy:
    """The policy to train: loaded from model_name_or_path, or random-init from init_preset (saved in OUT/init)."""
    if config.model_name_or_path:
        return JanusPolicy.load(config.model_name_or_path, dtype=config.model_dtype,
                                trainable=config.trainable(), lora=config.lora(),
                                attn_implementation=config.attn_implementation)
    init_dir = Path(config.output_dir) / "init"
    with config.main_process_first(local=False, desc="initialising the policy"):  # the others load its folder
        if config.process_index == 0:
            policy = init_policy(config.init_preset, init_dir, tokenizer=config.tokenizer or shapeworld_tokenizer(),
                                 vq_dir=config.vq,
                                 dtype=config.model_dtype, seed=config.seed)
        else:
            policy = JanusPolicy.load(init_dir, dtype=config.model_dtype)
    policy.base.set_attn_implementation(require_attention(config.attn_implementation))  # init builds with sdpa
    set_trainable(policy.model, config.trainable())
    if config.lora() is not None:
        policy.model = apply_lora(policy.model, config.lora())
    return policy


def run_sft(config: SFTConfig) -> dict:
    """Train, save the final policy in config.output_dir, and return a summary (also in sft_summary.json)."""
    started = time.perf_counter()
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)  # before anything is written
    out = config.prepare_output_dir(inputs={"world": config.world})
    policy = load_policy(config)
    policy.image_view = config.image_view or policy.image_view
    if config.loop_recipe:
        policy.loop_settings = read_recipe(config.loop_recipe)  # checked in SFTConfig
    if config.cfg_weight is not None:
        policy.guidance = config.cfg_weight  # recorded in the saved generation_config.json

    report = RowReport()
    # The main process tokenises and VQ-encodes first, the others then read its cache (ZeRO-3 loads the VQ
    # partitioned: every process takes part in gathering it whole first)
    with zero3_gathered(policy.base.model.vqmodel), config.main_process_first(local=False, desc="VQ-encoding"):
        train_ds, eval_ds = build_datasets(policy, config, report)
    main = config.process_index == 0
    if main:
        report.write(out / BAD_ROWS_FILE)
        report.log(out / BAD_ROWS_FILE)
    data_seconds = time.perf_counter() - started

    collator = SFTCollator(policy.tokens.pad, WorldInfo.read(config.world), policy.pixel_values, policy.image_size)
    budget = TimeBudget(config.max_train_seconds)
    trainer = SFTTrainer(
        policy,
        args=config,
        data_collator=collator,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=policy.tokenizer,
        callbacks=[budget, JsonlLog(out / LOG_FILE)],
        text_weight=config.text_weight,
        image_weight=config.image_weight,
        cond_dropout=config.cond_dropout,
    )
    train_started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - train_started

    trainer.save_model(str(out), manifest=manifest(stage="sft", chain=config.chain, world=str(config.world),
                                                   steps=trainer.state.global_step))  # every process gathers
    if not main:
        return {"steps": trainer.state.global_step}
    plot_curves(trainer.state.log_history, [("text_nll", "-"), ("image_nll", "-"), ("eval_text_nll", "--"),
                                             ("eval_image_nll", "--")], "NLL (nats / token)", out / CURVE_FILE)
    train_logs = [h for h in trainer.state.log_history if "text_nll" in h]
    summary = {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss if not math.isnan(result.training_loss) else None,
        "last_text_nll": train_logs[-1]["text_nll"] if train_logs else None,
        "last_image_nll": train_logs[-1]["image_nll"] if train_logs else None,
        "train_rows": len(train_ds),
        "rows": report.summary(),
        "stopped_by_time_budget": budget.stopped_at_step is not None,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / max(trainer.state.global_step, 1), 3),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
