"""The collapse guard: watch each GRPO step's reward, gradient norm and chain length; on a collapse, go back to the
last healthy weights and stop (or continue at a lower learning rate).

At a learning rate that gains quickly, a GRPO run on a small model can fall off a cliff late in its budget: the
gradient norm grows several-fold, the chains lengthen, the reward drops to 0 within ~20 steps, and the final model
is worse than the start (docs/lab/notebook.md). Which seed does so is luck. The guard makes the outcome of such a seed
the model from before the cliff rather than a broken one.

    detector = CollapseDetector(GuardSettings())
    reason = detector.update({"reward": 0.61, "grad_norm": 0.3, "chain_length": 47.0})   # None while healthy

`CollapseDetector` is pure (numbers in, a reason out, tested on known series); `CollapseGuard` is the Trainer
callback that keeps CPU snapshots of the trainable parameters and restores one. A snapshot is only taken while no
signal is raised, and the one restored is the older of the last two, so it predates the onset of the collapse.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)
ACTIONS = ("stop", "rollback")


@dataclass(frozen=True)
class GuardSettings:
    window: int = 5  # steps per rolling statistic
    reward_drop: float = 0.5  # collapse: the rolling reward falls below this share of its best rolling value
    grad_factor: float = 4.0  # collapse: the rolling median grad norm exceeds this multiple of the first window's
    length_growth: float = 0.3  # collapse: the rolling chain length exceeds the first window's by this share


class CollapseDetector:
    """Feed it each step's logs; it answers a one-line reason once the run has collapsed, else None."""

    def __init__(self, settings: GuardSettings):
        self.s = settings
        self.recent = {key: deque(maxlen=settings.window) for key in ("reward", "grad_norm", "chain_length")}
        self.start: dict[str, float] = {}  # first full window's medians (grad norm) / means (length)
        self.best_reward = float("-inf")

    def update(self, logs: dict) -> str | None:
        for key, values in self.recent.items():
            value = logs.get(key)
            if isinstance(value, (int, float)) and value == value:  # not NaN
                values.append(float(value))
        if any(len(v) < self.s.window for v in self.recent.values()):
            return None
        reward = statistics.fmean(self.recent["reward"])
        grad = statistics.median(self.recent["grad_norm"])
        length = statistics.fmean(self.recent["chain_length"])
        if not self.start:
            self.start = {"grad_norm": grad, "chain_length": length}
        self.best_reward = max(self.best_reward, reward)
        if self.best_reward > 0 and reward < self.s.reward_drop * self.best_reward:
            return (f"reward fell to {reward:.3f} (rolling mean of {self.s.window} steps), below "
                    f"{self.s.reward_drop:g} x its best {self.best_reward:.3f}")
        if self.start["grad_norm"] > 0 and grad > self.s.grad_factor * self.start["grad_norm"]:
            return (f"gradient norm {grad:.3g} (rolling median) is over {self.s.grad_factor:g} x the first steps' "
                    f"{self.start['grad_norm']:.3g}")
        if length > (1 + self.s.length_growth) * self.start["chain_length"]:
            return (f"chains grew to {length:.1f} tokens (rolling mean) from {self.start['chain_length']:.1f}, over "
                    f"+{self.s.length_growth:.0%}")
        return None

    def warning(self) -> bool:
        """Whether the latest step already looks off (then no snapshot is taken): its reward below the rolling
        mean's floor, or its grad norm over half the collapse threshold."""
        if not self.start or not self.recent["reward"]:
            return False
        last_reward, last_grad = self.recent["reward"][-1], self.recent["grad_norm"][-1]
        return (last_reward < self.s.reward_drop * self.best_reward
                or last_grad > 0.5 * self.s.grad_factor * self.start["grad_norm"])


def _agreed(reason: str | None) -> str | None:
    """The main process's verdict on every process (chain lengths are per process), so all restore or none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        box = [reason]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
    return reason


class CollapseGuard(TrainerCallback):
    """Snapshots every `every` healthy steps; on a collapse restores the older of the last two snapshots and then
    `stop`s the run (the final save holds the restored weights) or `rollback`s: continues from them with the
    optimizer's moments cleared and the learning rate times `lr_factor` (at most `max_rollbacks` times, then stop).
    Each event is logged as a warning and kept in `events` (grpo_summary.json's `collapses`)."""

    def __init__(self, settings: GuardSettings, every: int = 10, action: str = "stop", lr_factor: float = 0.5,
                 max_rollbacks: int = 2):
        if action not in ACTIONS:
            raise ValueError(f"unknown guard action {action!r}; valid: {', '.join(ACTIONS)}")
        self.settings, self.every, self.action = settings, every, action
        self.lr_factor, self.max_rollbacks = lr_factor, max_rollbacks
        self.detector = CollapseDetector(settings)
        self.snapshots: deque[tuple[int, dict[str, torch.Tensor]]] = deque(maxlen=2)
        self.events: list[dict] = []

    @staticmethod
    def _trainable(model) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    def _snapshot(self, model, step: int) -> None:
        self.snapshots.append((step, {n: p.detach().to("cpu", copy=True) for n, p in self._trainable(model).items()}))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and not self.snapshots:
            self._snapshot(model, state.global_step)  # the start is always a healthy fallback

    def on_log(self, args, state, control, logs=None, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if not logs or "reward" not in logs or model is None:
            return
        reason = _agreed(self.detector.update(logs))
        if reason is None:
            if state.global_step % self.every == 0 and not self.detector.warning():
                self._snapshot(model, state.global_step)
            return
        step, weights = self.snapshots[0]
        with torch.no_grad():
            for name, param in self._trainable(model).items():
                param.copy_(weights[name].to(param.device, param.dtype))
        rollbacks = sum(e["action"] == "rollback" for e in self.events)
        action = "rollback" if self.action == "rollback" and rollbacks < self.max_rollbacks else "stop"
        self.events.append({"step": state.global_step, "restored_step": step, "reason": reason, "action": action})
        log.warning("collapse guard: step %d: %s; restored the weights of step %d and %s", state.global_step, reason,
                    step, "stopped" if action == "stop" else f"continue at lr x {self.lr_factor:g}")
        if action == "stop":
            control.should_training_stop = True
            return
        if optimizer is not None:
            optimizer.state.clear()  # the moments belong to the collapsing trajectory
            for group in optimizer.param_groups:
                group["lr"] *= self.lr_factor
        if lr_scheduler is not None and hasattr(lr_scheduler, "base_lrs"):
            lr_scheduler.base_lrs = [lr * self.lr_factor for lr in lr_scheduler.base_lrs]
        self.detector = CollapseDetector(self.settings)
        self.snapshots = deque([(step, weights)], maxlen=2)
