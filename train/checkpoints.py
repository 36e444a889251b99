"""Checkpoints that are whole or absent, and resuming from the newest whole one (every trainer: sft, grpo,
reflect-grpo).

transformers' Trainer (5.x) writes `checkpoint-N` in place, file by file: weights, optimizer, scheduler, RNG states,
then trainer_state.json. A run killed in between leaves a `checkpoint-N` that `--resume_from_checkpoint true` picks
(it takes the highest N) and then fails on. `AtomicCheckpoints` has the Trainer write into
`tmp-checkpoint-N/checkpoint-N/` and renames the finished folder to `checkpoint-N` in one step (os.replace, atomic on
one filesystem), so a `checkpoint-N` that exists is complete; a killed save leaves only `tmp-checkpoint-N/`, which
nothing reads and the next save of step N clears. (The rename survives a killed process, not a power cut: nothing
is fsynced.)

`resume_checkpoint` turns `--resume_from_checkpoint` into the folder to resume from: with `true`, the newest
`checkpoint-N` that is complete (a trainer_state.json that parses, and weights); each incomplete one it passes over
(half-written by an older version or another tool) is logged as skipped, as is any `tmp-checkpoint-N` leftover.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from janus_rig.model.policy import ADAPTER_DIR, ADAPTERS

log = logging.getLogger(__name__)

STAGING_PREFIX = "tmp-"  # tmp-checkpoint-N/: a checkpoint being written (its folder inside, then renamed)
TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, written last by the Trainer
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                f"{ADAPTER_DIR}/{ADAPTERS}", "pytorch_model.bin", "pytorch_model.bin.index.json")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


# --- what a complete checkpoint is ----------------------------------------------------------------------------------
def incomplete(folder: str | Path) -> str | None:
    """Why `folder` is not a checkpoint to resume from, or None when it is one."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    state = folder / TRAINER_STATE
    if not state.is_file():
        return f"no {TRAINER_STATE}"
    try:
        json.loads(state.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return f"{TRAINER_STATE} does not parse: {err}"
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return "no weights file"
    return None


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint-N with the highest N in output_dir (None when there is none); every incomplete one
    above it and every tmp-checkpoint-N leftover is logged as skipped."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in out.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()),
                   reverse=True)
    for p in sorted(out.glob(f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-*")):
        log.warning("resume: skipped %s, a checkpoint whose save never finished", p)
    for _, folder in found:
        reason = incomplete(folder)
        if reason is None:
            return folder
        log.warning("resume: skipped %s, an incomplete checkpoint: %s", folder, reason)
    return None


def resuming(value) -> bool:
    """Whether a --resume_from_checkpoint value asks to resume ("", "false", "0", "no" and None do not)."""
    return value is not None and str(value).lower() not in ("", "false", "0", "no")


def resume_checkpoint(value, output_dir: str | Path) -> str | None:
    """--resume_from_checkpoint as Trainer.train should get it: None (not resuming) or the folder to resume from.

    "true": output_dir's newest complete checkpoint-N (ValueError when there is none); a path: that folder, which
    must be complete (ValueError saying what it lacks); "", "false" or None: not resuming.
    """
    if not resuming(value):
        return None
    if str(value).lower() in ("true", "1", "yes"):
        found = newest_complete_checkpoint(output_dir)
        if found is None:
            raise ValueError(f"No valid checkpoint to resume from: {output_dir} holds no complete checkpoint-N "
                             f"({TRAINER_STATE} and weights); drop --resume_from_checkpoint to start afresh")
        log.info("resuming from %s", found)
        return str(found)
    reason = incomplete(value)
    if reason:
        raise ValueError(f"--resume_from_checkpoint {value} is not a checkpoint to resume from: {reason}")
    return str(value)


# --- writing them ---------------------------------------------------------------------------------------------------
class AtomicCheckpoints:
    """Trainer mixin, listed before Trainer: checkpoint-N appears only once it is complete (module docstring).

    The Trainer's own `_save_checkpoint` does the writing; it is pointed at the staging folder through
    `_get_output_dir`, the one place it asks where the run's folder is.
    """

    _staging: str | None = None

    def _get_output_dir(self, trial) -> str:
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_PREFIX + name)
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)  # what a killed save of this step left
        self.accelerator.wait_for_everyone()  # before any process writes its part (rng_state_<rank>.pth, shards)
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)  # -> staging/checkpoint-N; its rotation sees only that one
        finally:
            self._staging = None
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        best = self.state.best_model_checkpoint
        if best and Path(best).parent == Path(staging):  # the Trainer recorded the folder it just wrote
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE))
        self.accelerator.wait_for_everyone()  # every process has written its part
        if self.args.should_save:
            if os.path.exists(final):  # an earlier save of this step: a run resumed from an older checkpoint
                os.replace(final, os.path.join(staging, "replaced"))
            os.replace(staged, final)
            shutil.rmtree(staging)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
