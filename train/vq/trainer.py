"""`janus-rig vq train`: train the tiny preset's `JanusVQVAE` on a ShapeWorld directory.

Order of play: load the world into uint8 tensors (no per-step PIL) -> build the VQ from `tiny_vq_config` ->
seed the codebook from encoder outputs (k-means++) -> steps of the straight-through forward (`vq_forward`) with
EMA or gradient codebook updates and dead-code restarts -> reconstruct the validation set with transformers' own
`encode`/`decode` -> fidelity by the ShapeWorld detector/oracle -> `save_pretrained`, metrics.json, recon/*.png.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import JanusVQVAE

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import score_metadata
from janus_rig.model.pixels import to_uint8, to_unit_range
from janus_rig.model.policy import MANIFEST, manifest
from janus_rig.model.presets import tiny_vq_config
from train.tracking import ScalarBoard
from train.vq.config import VQTrainConfig
from train.vq.quantize import (
    Quantized,
    consistency_loss,
    duplicate_codes,
    patch_groups,
    same_content_codes,
    ema_update,
    quantize,
    reconstruction_loss,
    restart_dead_codes,
    spherical_kmeans,
)


# --- data ------------------------------------------------------------------------------------------------------
@dataclass
class World:
    size: int  # the resolution images were loaded at
    train: torch.Tensor  # (N, 3, S, S) uint8
    val: torch.Tensor  # (M, 3, S, S) uint8
    val_records: list[dict]


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a world directory has world.json, train.jsonl, val.jsonl)")
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no}: not JSON ({err})") from None
                for key in ("id", "image"):
                    if key not in record:
                        raise ValueError(f"{path}:{line_no}: record has no {key!r}")
                records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def load_images(root: Path, records: list[dict], split: str, size: int) -> torch.Tensor:
    """The records' images as one (N, 3, size, size) uint8 tensor; nearest resizing keeps palette colours pure."""
    out = torch.empty(len(records), 3, size, size, dtype=torch.uint8)
    for i, record in enumerate(records):
        path = root / record["image"]
        if not path.is_file():
            raise FileNotFoundError(f"{split}.jsonl record {record['id']!r}: image {path} not found")
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.NEAREST)
            out[i] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return out


def load_world(world_dir: str | Path, image_size: int = 0) -> World:
    root = Path(world_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"world directory {root} not found (write one with the ShapeWorld world writer)")
    meta_path = root / "world.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {root} is not a ShapeWorld directory")
    size = image_size or int(json.loads(meta_path.read_text())["size"])
    train_records = _read_records(root / "train.jsonl")
    val_records = _read_records(root / "val.jsonl")
    for record in val_records:
        if "/" in record["id"] or "\\" in record["id"]:
            raise ValueError(f"val.jsonl record {record['id']!r}: ids name files in recon/, no path separators")
    return World(size, load_images(root, train_records, "train", size), load_images(root, val_records, "val", size),
                 val_records)


# --- model -----------------------------------------------------------------------------------------------------
def build_vq(image_size: int, grid: int, codebook_size: int = 256) -> JanusVQVAE:
    if image_size % grid:
        raise ValueError(f"image size {image_size} is not a multiple of the token grid {grid}")
    return JanusVQVAE(tiny_vq_config(image_size, image_size // grid, codebook_size))


def vq_forward(vq: JanusVQVAE, pixels: torch.Tensor, quantized: bool = True) -> tuple[torch.Tensor, Quantized]:
    """The training forward, matching `decode`: (B, 3, H, W) -> reconstruction (B, 3, H, W) and the quantisation.

    Tokens equal `vq.encode(pixels).image_tokens` while the stored codebook rows have unit norm (the trainer
    keeps them so); the decoder sees exactly `get_codebook_entry`'s normalised codes. With quantized=False the
    decoder sees the normalised encoder outputs themselves (the auto-encoder warm-up).
    """
    z = vq.quant_conv(vq.encoder(pixels))  # (B, D, h, w)
    q = quantize(z, vq.quantize.embedding.weight)
    if quantized:
        latent = q.z_q
    else:
        b, d, h, w = z.shape
        latent = q.z_n.view(b, h, w, d).permute(0, 3, 1, 2)  # (B, D, h, w)
    recon = vq.decoder(vq.post_quant_conv(latent))  # (B, 3, H, W)
    return recon, q


@torch.no_grad()
def reconstruct(vq: JanusVQVAE, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformers' own inference path: uint8 (N, 3, H, W) -> (tokens (N, h*w), reconstructions uint8)."""
    tokens, recons = [], []
    for start in range(0, len(images), batch_size):
        pixels = to_unit_range(images[start : start + batch_size])
        t = vq.encode(pixels).image_tokens.view(len(pixels), -1)  # (b, h*w)
        tokens.append(t)
        recons.append(to_uint8(vq.decode(t)))
    return torch.cat(tokens), torch.cat(recons)


# --- fidelity ----------------------------------------------------------------------------------------------------
def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def fidelity(records: list[dict], originals: torch.Tensor, recons: torch.Tensor) -> dict:
    """How much of each val image's content survives the VQ, judged by the ShapeWorld detector and oracle.

    same_verdict: share whose reconstruction gets the oracle's verdict on the record's GenEval metadata that the
    original gets (None when no record has metadata); same_objects: share whose detected (shape, colour)
    multiset equals the original's.
    """
    same_objects, same_verdict, n_verdict = 0, 0, 0
    for record, original, recon in zip(records, originals, recons):
        found = [detect(_pil(image)) for image in (original, recon)]
        same_objects += Counter((d.shape, d.color) for d in found[0]) == Counter((d.shape, d.color) for d in found[1])
        if "metadata" in record:
            n_verdict += 1
            same_verdict += score_metadata(record["metadata"], found[0])[0] == score_metadata(record["metadata"], found[1])[0]
    return {
        "same_objects": same_objects / len(records),
        "same_verdict": same_verdict / n_verdict if n_verdict else None,
    }


# --- training ----------------------------------------------------------------------------------------------------
def lr_factor(step: int, progress: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to min_ratio as progress goes 0 -> 1."""
    if step < warmup:
        return (step + 1) / warmup
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class VQTrainer:
    """Owns the VQ, the optimiser and the codebook state; `train()` runs the loop, `finish()` evaluates and saves."""

    def __init__(self, config: VQTrainConfig, world: World):
        self.config = config
        self.world = world
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.vq = build_vq(world.size, config.grid, config.codebook_size).train()
        self.codebook = self.vq.quantize.embedding.weight  # (K, D), kept at unit-norm rows
        self.ema = config.codebook_update == "ema"
        self.codebook.requires_grad_(not self.ema)
        decay, no_decay = [], []
        for name, p in self.vq.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or p is self.codebook else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, 0.99),
        )
        self.started: float | None = None  # set by train(); the time-aware schedule reads it
        self.usage = torch.zeros(self.codebook.shape[0])  # (K,) uses since the last dead-code check
        self.alive = self.codebook.shape[0]
        self.history: list[dict] = []
        self.step = 0
        self.codebook_ready = False
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0

    def next_batch(self) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1]: epochs of a seeded permutation, optional horizontal flips."""
        n, b = len(self.world.train), min(self.config.batch_size, len(self.world.train))
        if self._cursor + b > len(self._order):
            self._order, self._cursor = torch.randperm(n, generator=self.generator), 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        pixels = to_unit_range(self.world.train[idx])  # (B, 3, S, S)
        if self.config.hflip:
            flip = torch.rand(b, generator=self.generator) < 0.5
            pixels[flip] = pixels[flip].flip(-1)
        return pixels

    @torch.no_grad()
    def init_codebook(self) -> None:
        """Spherical k-means over the encoder's normalised outputs: every code starts where data is."""
        cfg = self.config
        n_images = max(1, -(-cfg.kmeans_vectors // cfg.grid**2))
        images = self.world.train[torch.randperm(len(self.world.train), generator=self.generator)[:n_images]]
        z_n = torch.cat([quantize(self.vq.quant_conv(self.vq.encoder(to_unit_range(chunk))), self.codebook).z_n
                         for chunk in images.split(cfg.eval_batch_size)])  # (N, D)
        self.codebook.copy_(spherical_kmeans(z_n, self.codebook.shape[0], cfg.kmeans_iters, self.generator))
        self.ema_sum = self.codebook.detach().clone()  # (K, D)
        self.codebook_ready = True

    def progress(self) -> float:
        """How far through the schedule: by steps, or by the time budget when that runs out first (time_schedule)."""
        cfg = self.config
        by_steps = max(0, self.step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if not (cfg.time_schedule and cfg.time_budget_s and self.started is not None):
            return by_steps
        return max(by_steps, (time.perf_counter() - self.started) / cfg.time_budget_s)

    def train_step(self) -> dict:
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(self.step, self.progress(), cfg.warmup_steps, cfg.min_lr_ratio)
        warmup = self.step < cfg.ae_warmup_steps
        if not warmup and not self.codebook_ready:
            self.init_codebook()  # on the warmed-up encoder
        pixels = self.next_batch()
        recon, q = vq_forward(self.vq, pixels, quantized=not warmup)
        rec_loss, metrics = reconstruction_loss(recon, pixels, cfg.l1_weight, cfg.mse_weight, cfg.fg_weight, cfg.edge_weight)
        if warmup:
            loss = rec_loss
        else:
            loss = rec_loss + cfg.commitment_weight * q.commitment + (0.0 if self.ema else q.codebook)
        if cfg.consistency_weight:
            patch = pixels.shape[-1] // cfg.grid
            consistency = consistency_loss(q.z_n, pixels, patch)
            loss = loss + cfg.consistency_weight * consistency
            metrics["consistency"] = consistency.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.vq.parameters(), cfg.grad_clip or float("inf"))
        self.optimizer.step()
        with torch.no_grad():
            if warmup:
                self.step += 1
                return {"loss": loss.item(), "mse": metrics["mse"], "grad_norm": grad_norm.item()}
            if self.ema:
                self.codebook.copy_(ema_update(self.ema_sum, q.z_n, q.indices, cfg.ema_decay))
            else:
                self.codebook.copy_(torch.nn.functional.normalize(self.codebook, dim=1))
            self.usage += torch.bincount(q.indices, minlength=len(self.usage))
            self.step += 1
            if cfg.dead_code_interval and self.step % cfg.dead_code_interval == 0:
                self.alive = int((self.usage > 0).sum())
                error = (q.z_n - self.codebook[q.indices]).pow(2).sum(1) if cfg.restart_by_error else None  # (N,)
                if cfg.dedup_threshold:
                    self.usage[duplicate_codes(self.codebook, cfg.dedup_threshold)] = 0
                if cfg.content_dedup_purity:
                    groups = patch_groups(pixels, pixels.shape[-1] // cfg.grid)  # (N,)
                    duplicates, owned = same_content_codes(q.indices, groups, len(self.usage), cfg.content_dedup_purity)
                    self.usage[duplicates] = 0
                    if error is not None:  # new codes go to contents no code holds yet
                        error = error * ~torch.isin(groups, owned)
                dead = restart_dead_codes(self.codebook.data, self.usage, q.z_n, self.generator, weights=error)
                if self.ema:
                    self.ema_sum[dead] = self.codebook[dead]
                self.usage.zero_()
        return {"loss": loss.item(), "mse": metrics["mse"], "commit": q.commitment.item(), "grad_norm": grad_norm.item(),
                **({"consistency": metrics["consistency"]} if "consistency" in metrics else {})}

    def train(self) -> dict:
        cfg = self.config
        start = self.started = time.perf_counter()
        stopped_by = "steps"
        bar = tqdm(total=cfg.steps, desc="vq train", dynamic_ncols=True)
        board = ScalarBoard(cfg.report_to, cfg.out)  # report_to none: writes nothing
        recent: list[dict] = []
        while self.step < cfg.steps:
            recent.append(self.train_step())
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                mean = {k: sum(r.get(k, 0.0) for r in recent) / len(recent) for k in recent[-1]}
                elapsed = time.perf_counter() - start
                self.history.append({"step": self.step, "time_s": round(elapsed, 2), "alive": self.alive,
                                     **{k: round(v, 5) for k, v in mean.items()}})
                board.log(self.history[-1], self.step)
                bar.set_postfix(loss=f"{mean['loss']:.4f}", mse=f"{mean['mse']:.4f}", alive=self.alive)
                recent = []
            if cfg.time_budget_s and time.perf_counter() - start > cfg.time_budget_s:
                stopped_by = "time_budget"
                break
        bar.close()
        board.close()
        elapsed = time.perf_counter() - start
        return {"steps": self.step, "train_time_s": round(elapsed, 1), "stopped_by": stopped_by,
                "images_per_s": round(self.step * cfg.batch_size / max(elapsed, 1e-9), 1),
                "codes_alive": self.alive}

    def finish(self, train_summary: dict, started: float) -> dict:
        """Reconstruct val (and some train) images with encode/decode, score them, save everything."""
        cfg = self.config
        out = Path(cfg.out)
        if not self.codebook_ready:  # the time budget ran out inside the auto-encoder warm-up
            self.init_codebook()
        self.vq.eval()
        self.codebook.requires_grad_(True)  # as from_pretrained would give it
        val_tokens, val_recon = reconstruct(self.vq, self.world.val, cfg.eval_batch_size)
        train_part = self.world.train[: cfg.train_eval_images]
        _, train_recon = reconstruct(self.vq, train_part, cfg.eval_batch_size)

        def mse(a: torch.Tensor, b: torch.Tensor) -> float:
            return float((to_unit_range(a) - to_unit_range(b)).pow(2).mean())

        recon_dir = out / "recon"
        recon_dir.mkdir(parents=True, exist_ok=True)
        for record, image in zip(self.world.val_records, val_recon):
            _pil(image).save(recon_dir / f"{record['id']}.png")
        self.vq.save_pretrained(out)
        # janus-rig's mark on the models it writes: `--overwrite` may empty this folder (janus_rig/outputs.py)
        (out / MANIFEST).write_text(json.dumps(manifest(stage="vq"), indent=2) + "\n")
        metrics = {
            **train_summary,
            "image_size": self.world.size,
            "tokens": int(val_tokens.shape[1]),
            "train_mse": round(mse(train_part, train_recon), 5),
            "val_mse": round(mse(self.world.val, val_recon), 5),
            "codes_used_val": int(val_tokens.unique().numel()),
            **token_entropy(val_tokens, self.vq.config.num_embeddings),
            "val_images": len(self.world.val),
            **fidelity(self.world.val_records, self.world.val, val_recon),
            "wall_time_s": round(time.perf_counter() - started, 1),
            "config": asdict(cfg),
            "vq_config": {k: getattr(self.vq.config, k) for k in (
                "base_channels", "channel_multiplier", "num_res_blocks", "latent_channels", "embed_dim",
                "num_embeddings", "num_patches")},
            "history": self.history,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return metrics


def token_entropy(tokens: torch.Tensor, num_codes: int) -> dict:
    """How hard the token stream is to predict: entropy (nats) of the code histogram over all positions, and the mean
    over grid positions of each position's own histogram. A black background spread over many codes shows up here
    long before it shows up as a slow language model. tokens: (B, N) codes."""

    def entropy(counts: torch.Tensor) -> float:
        p = counts[counts > 0].double() / counts.sum()
        return float(-(p * p.log()).sum())

    per_position = [entropy(torch.bincount(tokens[:, j], minlength=num_codes)) for j in range(tokens.shape[1])]
    top = torch.bincount(tokens.reshape(-1), minlength=num_codes).max().item() / tokens.numel()
    return {"token_entropy_nats": round(entropy(torch.bincount(tokens.reshape(-1), minlength=num_codes)), 3),
            "token_entropy_per_position_nats": round(sum(per_position) / len(per_position), 3),
            "top_code_share": round(top, 4)}


def train_vq(config: VQTrainConfig) -> dict:
    """Load the world, train, evaluate, save; returns the metrics also written to `out/metrics.json`."""
    started = time.perf_counter()
    if not config.out:
        raise ValueError("no output directory: pass --out DIR")
    world = load_world(config.world, config.image_size)
    trainer = VQTrainer(config, world)
    summary = trainer.train()
    return trainer.finish(summary, started)
