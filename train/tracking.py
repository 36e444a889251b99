"""Experiment tracking for every trainer: `--report_to tensorboard` (or `wandb`); docs/tracking.md.

Scalars need nothing of ours: each Trainer-based trainer (`sft`, `grpo`, `reflect-grpo`) puts its metrics into the
Trainer's logs in its `log`, and transformers' reporting callbacks (`TensorBoardCallback`, `WandbCallback`, picked by
`report_to`) write every logged number, as `train/<key>` (`eval/<key>` for SFT's `eval_<key>`).

Sample strips are ours: the GRPO trainers write the PNG strip of each gallery step to
OUTPUT_DIR/gallery/step_NNNNNN.png (`train.grpo.trainer.gallery_strip`: the images with their chains' boxes drawn by
`janus_rig.chain.draw_boxes`), and `SampleStrips` copies each new one into the TensorBoard run as an image at its step.
`track(trainer, gallery)` adds it next to transformers' TensorBoardCallback, whose writer it uses.

`janus-rig vq train` has its own loop (no Trainer): `ScalarBoard` writes its logged rows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.integrations.integration_utils import default_logdir

STRIP_TAG = "gallery"
_STRIP = re.compile(r"step_(\d+)\.png")  # the gallery's file names: step_000050.png


def tensorboard_dir(output_dir: str | Path) -> Path:
    """Where a run's TensorBoard events go, by transformers' rule: $TENSORBOARD_LOGGING_DIR, else
    OUTPUT_DIR/runs/<Mon DD_HH-MM-SS>_<host> (a new folder per run, so a resumed run is a second curve)."""
    env = os.getenv("TENSORBOARD_LOGGING_DIR")
    return Path(env).expanduser() if env else Path(output_dir) / default_logdir()


def strip_pixels(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 of a gallery strip PNG."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class SampleStrips(TrainerCallback):
    """Each gallery strip a trainer writes (GALLERY/step_NNNNNN.png) as a TensorBoard image, tag `gallery`, at step
    NNNNNN: after every optimizer step the main process logs the strips that appeared since.

    `board` is the run's TensorBoardCallback; its writer exists from on_train_begin (on the main process only) and is
    read here, so scalars and strips share one event file. Strips already in GALLERY when training begins (a resumed
    run's) are not logged again."""

    def __init__(self, board, gallery: str | Path, tag: str = STRIP_TAG):
        self.board, self.gallery, self.tag = board, Path(gallery), tag
        self.seen: set[str] = set()

    def _strips(self) -> list[tuple[int, Path]]:
        if not self.gallery.is_dir():
            return []
        found = ((_STRIP.fullmatch(p.name), p) for p in self.gallery.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m and p.name not in self.seen)

    def on_train_begin(self, args, state, control, **kwargs):
        self.seen = {p.name for _, p in self._strips()}

    def on_step_end(self, args, state, control, **kwargs):
        writer = self.board.tb_writer
        if not state.is_world_process_zero or writer is None:
            return
        strips = self._strips()
        for step, path in strips:
            writer.add_image(self.tag, strip_pixels(path), step, dataformats="HWC")
            self.seen.add(path.name)
        if strips:
            writer.flush()


def track(trainer, gallery: str | Path | None = None):
    """Wire a built Trainer's sample strips to TensorBoard when its report_to has tensorboard (a no-op otherwise);
    `gallery`: the folder its strips are written to. -> the trainer, so `return track(Trainer(...), ...)` reads."""
    board = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    if board is not None and gallery is not None:
        trainer.add_callback(SampleStrips(board, gallery))
    return trainer


class ScalarBoard:
    """Rows of numbers into TensorBoard for a loop without a Trainer (`janus-rig vq train`); report_to "none" gives
    a board that writes nothing. `log({"loss": 0.1, "mse": 0.02}, step)` writes each int/float value as
    `train/<key>`, the tag transformers' callback gives the Trainer-based trainers' scalars."""

    REPORTS = ("none", "tensorboard")

    def __init__(self, report_to: str, output_dir: str | Path):
        if report_to not in self.REPORTS:
            raise ValueError(f"report_to {report_to!r}; valid here: {', '.join(self.REPORTS)}")
        self.writer = None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard, the dev extra

            self.writer = SummaryWriter(log_dir=str(tensorboard_dir(output_dir)))

    def log(self, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
