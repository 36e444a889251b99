"""What every trainer shares: the policy fields of a config (PolicyArgs), the run folder's rules (OutputArgs),
parsing a YAML recipe + flags into a config, the Trainer callbacks, and the training-curve plot. Checkpoint saving and
resuming: train/checkpoints.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from transformers import TrainerCallback
from trl import TrlParser

from janus_rig.model.loading import ATTENTION_IMPLEMENTATIONS
from janus_rig.model.policy import DTYPES, LoraSettings, TrainableParts
from janus_rig.outputs import overlap, prepare_out_dir
from train.checkpoints import resuming

C = TypeVar("C")
DEFAULT_PARTS = [f.name for f in fields(TrainableParts) if f.default]
LORA_DEFAULTS = LoraSettings()


def help_field(text: str, **kwargs):
    """A dataclass field with help text (shown by `--help`)."""
    return field(metadata={"help": text}, **kwargs)


@dataclass
class PolicyArgs:
    """What trains and how it loads: dtype, attention kernel, trainable parts, LoRA. A mixin of the trainers' configs,
    listed before TrainingArguments in the bases; the config's __post_init__ calls validate_policy_args()."""

    model_dtype: str = help_field(f"dtype the weights are loaded in ({', '.join(DTYPES)}); use bf16: true for mixed "
                             "precision", default="float32")
    attn_implementation: str = help_field(
        f"attention kernel of the language model and vision tower ({', '.join(ATTENTION_IMPLEMENTATIONS)}); "
        "flash_attention_2 needs the flash-attn package (pip install flash-attn, the gpu extra), a CUDA GPU and "
        "bf16/fp16 (bf16: true, or model_dtype bfloat16/float16); rollouts decode with their own kernel either way",
        default="sdpa")
    trainable_parts: list[str] = help_field(f"model parts that receive gradients; valid: "
                                       f"{', '.join(f.name for f in fields(TrainableParts))}",
                                       default_factory=lambda: list(DEFAULT_PARTS))
    use_lora: bool = help_field("LoRA adapters on the language model instead of full fine-tuning (GoT-R1: r 32, "
                           "alpha 32)", default=False)
    lora_r: int = help_field("LoRA rank", default=LORA_DEFAULTS.r)
    lora_alpha: int = help_field("LoRA alpha (scale = alpha / r)", default=LORA_DEFAULTS.alpha)
    lora_dropout: float = help_field("LoRA dropout (GRPO: keep 0, dropout makes the first-iteration ratio differ "
                                "from 1)", default=LORA_DEFAULTS.dropout)
    lora_target_modules: list[str] = help_field("linear layers of the language model that get adapters",
                                           default_factory=lambda: list(LORA_DEFAULTS.target_modules))
    lora_modules_to_save: list[str] = help_field("with use_lora: modules trained in full next to the adapters, e.g. "
                                            "generation_head", default_factory=list)

    # --help groups of these fields (janus_rig/commands/_recipe.py); the config's own "model" fields come first
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "model": ("model_dtype", "attn_implementation", "trainable_parts", "use_lora", "lora_r", "lora_alpha",
                  "lora_dropout", "lora_target_modules", "lora_modules_to_save"),
    }

    def validate_policy_args(self) -> None:
        if self.model_dtype not in DTYPES:
            raise ValueError(f"model_dtype {self.model_dtype!r}; valid: {', '.join(DTYPES)}")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation {self.attn_implementation!r}; "
                             f"valid: {', '.join(ATTENTION_IMPLEMENTATIONS)}")
        half = self.model_dtype != "float32" or getattr(self, "bf16", False) or getattr(self, "fp16", False)
        if self.attn_implementation == "flash_attention_2" and not half:
            raise ValueError("attn_implementation flash_attention_2 computes in bf16/fp16 only: set --bf16 true "
                             "(fp32 weights under autocast), or --attn_implementation sdpa")
        valid = {f.name for f in fields(TrainableParts)}
        unknown = sorted(set(self.trainable_parts) - valid)
        if unknown:
            raise ValueError(f"unknown trainable_parts {unknown}; valid: {', '.join(sorted(valid))}")
        unknown = sorted(set(self.lora_modules_to_save) - valid)
        if unknown:
            raise ValueError(f"unknown lora_modules_to_save {unknown}; valid: {', '.join(sorted(valid))}")
        if self.lora_modules_to_save and not self.use_lora:
            raise ValueError("lora_modules_to_save only applies with use_lora: true (without LoRA, list the parts "
                             "in trainable_parts instead)")
        if self.use_lora and set(self.trainable_parts) - {"language_model"}:
            raise ValueError(
                "use_lora trains adapters on the language model (plus lora_modules_to_save), but trainable_parts "
                f"also names {sorted(set(self.trainable_parts) - {'language_model'})}: set --trainable_parts "
                "language_model and move the heads to --lora_modules_to_save, or --use_lora false")
        if not self.use_lora and not self.trainable_parts:
            raise ValueError("nothing would train: name at least one of trainable_parts or set --use_lora true")

    # --- views for the library ---
    def trainable(self) -> TrainableParts:
        return TrainableParts(**{f.name: f.name in self.trainable_parts for f in fields(TrainableParts)})

    def lora(self) -> LoraSettings | None:
        if not self.use_lora:
            return None
        return LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=tuple(self.lora_target_modules),
                            modules_to_save=tuple(self.lora_modules_to_save))


@dataclass
class OutputArgs:
    """The run folder's rules, a mixin of the trainers' configs listed before TrainingArguments (transformers 5 has
    no overwrite_output_dir). The config's __post_init__ calls validate_output_args(); run_* calls
    prepare_output_dir() before its first write. Folder rules: janus_rig/outputs.py; checkpoints:
    train/checkpoints.py."""

    overwrite_output_dir: bool = help_field(
        "write into a non-empty output_dir: its contents (an earlier run's checkpoints, model and logs) are deleted "
        "first. Without it a non-empty output_dir is refused unless resuming (--resume_from_checkpoint)",
        default=False)

    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {"output": ("overwrite_output_dir",)}

    def validate_output_args(self, model_dirs: dict[str, str | None]) -> None:
        """Parse-time checks: contradicting flags, and output_dir against the model directories the run reads (a
        run saves its checkpoints and final model in output_dir: never into, around or inside a model it reads)."""
        if self.overwrite_output_dir and resuming(self.resume_from_checkpoint):
            raise ValueError("overwrite_output_dir would delete the checkpoints resume_from_checkpoint resumes from: "
                             "set one of them")
        for name, path in model_dirs.items():
            relation = path and overlap(self.output_dir, path)
            if relation:
                raise ValueError(f"output_dir {self.output_dir} {relation} the {name} {path}: the run's checkpoints "
                                 "and final model would mix with the model it reads; pick another output_dir")

    def prepare_output_dir(self, inputs: dict[str, str | None] | None = None, keep: tuple[str, ...] = ()) -> Path:
        """Before the run's first write: a fresh run gets an empty output_dir (a non-empty one is refused, or emptied
        with overwrite_output_dir); a resumed run goes on in its own. `inputs`: other paths the run reads (world,
        prompts), which output_dir may not be or hold; `keep`: entries an orchestrator put there (`janus-rig
        ablate`'s record). The main process does it while the others wait."""
        out = Path(self.output_dir)
        with self.main_process_first(local=False, desc="preparing output_dir"):
            if self.process_index == 0:
                if not resuming(self.resume_from_checkpoint):
                    prepare_out_dir(out, self.overwrite_output_dir, what="output_dir",
                                    flag="--overwrite_output_dir true", inputs=inputs, keep=keep,
                                    hint=", resume it with --resume_from_checkpoint true")
                out.mkdir(parents=True, exist_ok=True)
        return out


def parse_recipe(config_cls: type[C], argv: list[str] | None = None) -> C:
    """`--config recipe.yaml` then flags, trl's way (YAML values become defaults; flags override them)."""
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


def plot_curves(log_history: list[dict], series: list[tuple[str, str]], ylabel: str, path: Path) -> None:
    """One PNG of the logged values of each (key, matplotlib line style) in `series` against the step."""
    from matplotlib.figure import Figure  # startup: keeps matplotlib (0.4 s) out of `janus-rig --help`

    fig = Figure(figsize=(6, 3.5))  # no pyplot: no global backend to set, no figure to close
    ax = fig.subplots()
    for key, style in series:
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            ax.plot(*zip(*points), style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
