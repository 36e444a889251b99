"""What every trainer shares: parsing a YAML recipe + flags into a config, and the Trainer callbacks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TypeVar

from transformers import TrainerCallback

C = TypeVar("C")


def parse_recipe(config_cls: type[C], argv: list[str] | None = None) -> C:
    """`--config recipe.yaml` then flags, trl's way (YAML values become defaults; flags override them)."""
    from trl import TrlParser

    (config,) = TrlParser(config_cls).parse_args_and_config(argv)
    return config


class TimeBudget(TrainerCallback):
    """Stops training once `seconds` of training have passed (step times vary too much for a fixed max_steps)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = None
        self.stopped_at_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and time.perf_counter() - self.started >= self.seconds:
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
        return control


class JsonlLog(TrainerCallback):
    """Every Trainer log line, with its step, appended to OUTPUT_DIR/train_log.jsonl."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
