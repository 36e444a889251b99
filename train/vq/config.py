"""Settings of `janus-rig vq train`: one dataclass, every field with its help text (the CLI is built from it)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from train.common import help_field as _help
from train.tracking import ScalarBoard

CODEBOOK_UPDATES = ("ema", "grad")
REPORTS = ScalarBoard.REPORTS


@dataclass
class VQTrainConfig:
    world: str = _help("ShapeWorld directory (world.json, train.jsonl, val.jsonl, images/)", default="")
    out: str = _help("output directory: the VQ (save_pretrained), metrics.json, recon/<record id>.png", default="")
    overwrite: bool = _help("write into a non-empty out: its contents are deleted first (without it a used out is "
                            "refused)", default=False)
    image_size: int = _help("training resolution in px (0: the world's size); images are resized if they differ",
                            default=0)
    grid: int = _help("tokens per side: image_size / grid is the VQ's patch size (tiny preset: 8 -> 64 tokens)",
                      default=8)
    codebook_size: int = _help("codes in the codebook. Fewer codes -> a lower-entropy token stream the language model "
                               "learns faster (docs/vq.md: token entropy); too few lose shapes and colours", default=256)
    steps: int = _help("optimiser steps (the learning-rate schedule spans these)", default=2400)
    time_budget_s: float = _help("stop training after this many seconds even if steps remain (0: no limit); loading "
                                 "and evaluation add ~30-90 s on 2 cores", default=500.0)
    time_schedule: bool = _help("the learning rate decays by whichever of steps and time_budget_s runs out first, so "
                                "a loaded machine still ends at a low rate (false: by steps only, bit-reproducible)",
                                default=True)
    batch_size: int = _help("images per step", default=32)
    lr: float = _help("AdamW peak learning rate", default=2e-3)
    min_lr_ratio: float = _help("cosine schedule ends at lr * this", default=0.05)
    warmup_steps: int = _help("linear learning-rate warm-up steps", default=50)
    weight_decay: float = _help("AdamW weight decay (not applied to the codebook)", default=0.0)
    grad_clip: float = _help("clip the gradient norm to this (0: off)", default=1.0)
    l1_weight: float = _help("weight of the L1 reconstruction loss (keeps solid colours crisp)", default=1.0)
    mse_weight: float = _help("weight of the MSE reconstruction loss", default=1.0)
    fg_weight: float = _help("object pixels weigh this many times the black background in the reconstruction loss",
                             default=3.0)
    edge_weight: float = _help("extra weight of pixels on an object's outline (what tells a small circle from a "
                               "square)", default=4.0)
    commitment_weight: float = _help("beta: weight of |z - sg(code)|^2 pulling encoder outputs to their codes",
                                     default=0.25)
    codebook_update: str = _help("'ema': codes are EMA means of their assigned encoder outputs; "
                                 "'grad': codes learn from the codebook loss with AdamW", default="ema")
    ema_decay: float = _help("EMA decay of the codebook (codebook_update='ema')", default=0.95)
    ae_warmup_steps: int = _help("first steps train a plain auto-encoder (the decoder sees the normalised encoder "
                                 "outputs, no quantisation); then the codebook is k-means of the encoder's outputs",
                                 default=0)
    consistency_weight: float = _help("weight of the pull of identical patches (same pixels) towards one encoder output, "
                                      "so they get one code (quantize.consistency_loss; 0: off)", default=0.0)
    kmeans_vectors: int = _help("encoder outputs the codebook's k-means runs on", default=8192)
    kmeans_iters: int = _help("Lloyd iterations of the codebook's spherical k-means", default=10)
    dead_code_interval: int = _help("every this many steps, codes unused since the last check are re-seeded from "
                                    "the current batch's encoder outputs (0: never)", default=50)
    dedup_threshold: float = _help("at each dead-code check, a code whose cosine with an earlier code exceeds this is "
                                   "restarted too (one code per tight cluster; 0: off)", default=0.0)
    content_dedup_purity: float = _help("at each dead-code check, of codes that each hold one patch content (at least this "
                                        "share of their patches) and the same one, all but the most used are "
                                        "restarted (0: off)", default=0.0)
    restart_by_error: bool = _help("re-seed dead codes from encoder outputs drawn in proportion to their distance to "
                                   "their code (where quantisation is worst) rather than uniformly", default=False)
    hflip: bool = _help("random horizontal flips (ShapeWorld is left/right symmetric; not up/down: triangles)",
                        default=True)
    seed: int = _help("seed of initialisation, batch order and code restarts", default=0)
    threads: int = _help("torch CPU threads (0: torch's default). 1 by default: on 2 cores shared with other jobs, "
                         "2 threads ran 10-15x slower per step than 1 (threads wait on each other)", default=1)
    log_every: int = _help("refresh the progress bar's figures every this many steps", default=10)
    report_to: str = _help("'tensorboard': every log_every steps the logged figures (loss, mse, commit, grad_norm, "
                           "alive) also go to OUT/runs/<time>_<host> ($TENSORBOARD_LOGGING_DIR overrides; "
                           "docs/tracking.md); 'none': only metrics.json's history", default="none")
    eval_batch_size: int = _help("images per batch when reconstructing the validation set", default=64)
    train_eval_images: int = _help("training images reconstructed to report train MSE", default=256)

    # --help groups (janus_rig/commands/vq_train.py); every field is in one
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "data and output": ("world", "out", "overwrite", "image_size", "hflip"),
        "model": ("grid", "codebook_size"),
        "optimisation": ("steps", "time_budget_s", "time_schedule", "batch_size", "lr", "min_lr_ratio",
                         "warmup_steps", "weight_decay", "grad_clip", "seed"),
        "loss": ("l1_weight", "mse_weight", "fg_weight", "edge_weight", "commitment_weight", "consistency_weight"),
        "codebook": ("codebook_update", "ema_decay", "ae_warmup_steps", "kmeans_vectors", "kmeans_iters",
                     "dead_code_interval", "dedup_threshold", "content_dedup_purity", "restart_by_error"),
        "budget and logging": ("threads", "log_every", "report_to", "eval_batch_size", "train_eval_images"),
    }

    def __post_init__(self):
        if self.report_to not in REPORTS:
            raise ValueError(f"report_to {self.report_to!r}; valid: {', '.join(REPORTS)} (the VQ trainer has its own "
                             "loop: wandb reaches only the Trainer-based trainers)")
        if self.codebook_update not in CODEBOOK_UPDATES:
            raise ValueError(f"codebook_update {self.codebook_update!r}; valid: {', '.join(CODEBOOK_UPDATES)}")
        if self.image_size and self.image_size % self.grid:
            raise ValueError(f"image_size {self.image_size} is not a multiple of grid {self.grid}: pick e.g. "
                             f"{self.image_size // self.grid * self.grid} or change --grid")
        for name in ("steps", "batch_size", "grid", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ae_warmup_steps >= self.steps:
            raise ValueError(f"ae_warmup_steps ({self.ae_warmup_steps}) must be below steps ({self.steps}): "
                             "some steps must train the quantised model")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps}): "
                             "lower --warmup-steps")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}
