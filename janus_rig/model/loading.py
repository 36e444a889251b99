"""Strict loading of model directories: a wrong directory is refused in one line, never read as something else.

transformers' `from_pretrained` is lenient by design: a missing tensor is initialised at random and reported in a
table, a directory of another layout is read with the target class's defaults, a broken file raises from deep
inside. For a researcher that means a silently random model. Every weight janus-rig loads goes through
`strict_from_pretrained`, which turns each of those into a `LoadError` (a ValueError: the CLI prints it as one line):

    model = strict_from_pretrained(JanusForConditionalGeneration, "runs/sft", what="Janus model")

The layouts we recognise (`layout`): `janus` (transformers' Janus: ours, deepseek-community/Janus-Pro-*),
`deepseek` (deepseek-ai's own release format, `"model_type": "multi_modality"`: convert it first), `adapter`
(a peft adapter directory: `adapter_config.json`, no `config.json`).

The attention kernel is chosen at load (`attn_implementation`, one of ATTENTION_IMPLEMENTATIONS) and checked here
first, so that a machine that cannot run it is told so in one line instead of by transformers' ImportError.
"""

from __future__ import annotations

import json
import logging
import pickle
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
SHOWN_KEYS = 5  # tensors named in an error; the rest are counted
CONVERT_HINT = "janus-rig convert janus-pro {src} --out DST"
# What transformers' Janus runs its language model and vision tower with (the VQ's attention is a convolution block
# that ignores the setting). sdpa is transformers' default; flash_attention_2 needs the flash-attn package (the gpu
# extra), a CUDA GPU and fp16/bf16 compute. Rollouts decode with their own kernel whatever is chosen (rollout/cache.py).
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")


class LoadError(ValueError):
    """A model directory that cannot be loaded as asked; the message is one line naming the problem."""


def name_keys(keys, shown: int = SHOWN_KEYS) -> str:
    """'a, b, c and 12 more (15)' — the first few names of a long list and its count."""
    keys = [str(k) for k in keys]
    head = ", ".join(keys[:shown])
    return f"{head} and {len(keys) - shown} more ({len(keys)})" if len(keys) > shown else head


def read_json_file(path: Path, what: str) -> dict:
    """A JSON object file, or a LoadError naming the file and what is wrong with it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadError(f"{path.parent} is not a {what} directory (no {path.name})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoadError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise LoadError(f"{path}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise LoadError(f"{path}: not a JSON object")
    return value


def layout(path: str | Path) -> str:
    """The layout of a model directory: 'janus', 'deepseek', 'adapter', or the config's model_type for others.

    FileNotFoundError when the directory is missing; LoadError when it has neither config or its config is
    unreadable.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if not (path / CONFIG).is_file():
        if (path / ADAPTER_CONFIG).is_file():
            return "adapter"
        raise LoadError(f"{path} is not a model directory (no {CONFIG})")
    config = read_json_file(path / CONFIG, "model")
    model_type = config.get("model_type")
    if model_type == "multi_modality" or {"language_config", "gen_vision_config"} <= set(config):
        return "deepseek"
    if not isinstance(model_type, str) or not model_type:
        raise LoadError(f"{path / CONFIG}: no model_type; not a transformers model directory")
    return model_type


def require_janus_dir(path: str | Path) -> Path:
    """A transformers-format Janus directory, or a LoadError that says what the directory is and what to do."""
    path = Path(path)
    kind = layout(path)
    if kind == "janus":
        return path
    if kind == "deepseek":
        raise LoadError(f"{path} is in deepseek's release layout (model_type multi_modality), not transformers'; "
                        f"convert it first: {CONVERT_HINT.format(src=path)}")
    if kind == "adapter":
        raise LoadError(f"{path} is a LoRA adapter directory, not a model; load it on its base model")
    raise LoadError(f"{path} holds a {kind!r} model, not a Janus model (model_type 'janus')")


def require_attention(name: str) -> str:
    """`name` when this machine can run it; a one-line LoadError saying what to install or choose instead."""
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise LoadError(f"attn_implementation {name!r}; valid: {', '.join(ATTENTION_IMPLEMENTATIONS)}")
    if name != "flash_attention_2":
        return name
    if not torch.cuda.is_available():
        raise LoadError("attn_implementation flash_attention_2 runs on a CUDA GPU in fp16/bf16 only; "
                        "use attn_implementation sdpa on this machine")
    problem = flash_attn_import_error()
    if problem:
        raise LoadError(f"attn_implementation flash_attention_2 needs the flash-attn package ({problem}): "
                        "pip install flash-attn (the gpu extra), or use attn_implementation sdpa")
    return name


def flash_attn_import_error() -> str | None:
    """Why `flash_attn` does not import (not installed, or built for another torch / CUDA); None when it does."""
    try:
        import flash_attn  # optional: the gpu extra; this probes whether it imports  # noqa: F401
    except ImportError as err:
        return first_line(err)
    return None


@contextmanager
def quiet_transformers():
    """transformers prints its own load report table; ours is the one-line error below."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def require_config(path: str | Path, what: str) -> Path:
    """A directory with a readable config.json: FileNotFoundError / LoadError naming what is wrong otherwise (a
    corrupt config is named here, not from inside transformers)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory {path} does not exist")
    read_json_file(path / CONFIG, what)
    return path


def strict_from_pretrained(cls, path: str | Path, what: str, **kwargs):
    """`cls.from_pretrained(path, **kwargs)` that fails loudly: every tensor of the model must come from the
    directory with its shape, and the directory may hold nothing the model has no place for.

    LoadError (one line) for a missing directory or config, a corrupt config.json, a truncated or unreadable weight
    file, and missing / unexpected / mis-shaped tensors (the first few named, and the count).
    """
    path = require_config(path, what)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    except OSError as err:  # transformers' wording for missing files and unreadable configs
        raise LoadError(f"{path}: cannot load the {what}: {first_line(err)}") from None
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as err:  # a broken weight file
        raise LoadError(f"{path}: a weight file is corrupt or truncated ({first_line(err)})") from None
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing tensors {name_keys(sorted(info['missing_keys']))}")
    if info.get("mismatched_keys"):
        shapes = [f"{key} {tuple(ckpt)} vs {tuple(want)}" for key, ckpt, want in sorted(info["mismatched_keys"])]
        problems.append(f"mis-shaped tensors (checkpoint vs model) {name_keys(shapes)}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected tensors {name_keys(sorted(info['unexpected_keys']))}")
    if info.get("error_msgs"):
        problems.append(f"load errors {name_keys(info['error_msgs'])}")
    if problems:
        raise LoadError(f"{path}: its weights do not fit the {what} its config describes: {'; '.join(problems)}")
    return model


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
