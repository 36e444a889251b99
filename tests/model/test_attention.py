"""The attention kernel chosen at load: it reaches transformers' from_pretrained (eager and sdpa agree), and
flash_attention_2 where it cannot run is refused in one line, at load and, for fp32 compute, at parse time."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from janus_rig.model.loading import ATTENTION_IMPLEMENTATIONS, LoadError
from janus_rig.model.mixed import left_pad, mixed_hidden_states
from janus_rig.model.policy import JanusPolicy
from train.common import PolicyArgs

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle left of a blue square", "a triangle"]  # different lengths: left padding is exercised


@dataclass
class Args(PolicyArgs):
    """PolicyArgs as a trainer's config mixes it in (TrainingArguments brings bf16 / fp16)."""

    model_name_or_path: str = ""
    bf16: bool = False
    fp16: bool = False


def attention_of(policy) -> tuple[str, str]:
    model = policy.base.model
    return model.language_model.config._attn_implementation, model.vision_model.config._attn_implementation


def logits(policy) -> tuple[torch.Tensor, torch.Tensor]:
    ids, attention = left_pad([policy.encode_prompt(p) for p in PROMPTS], policy.tokens.pad)  # (B, T) each
    with torch.no_grad():
        hidden = mixed_hidden_states(policy.model, ids, torch.zeros_like(ids, dtype=torch.bool), attention)
        return policy.base.lm_head(hidden), attention.bool()  # (B, T, V), (B, T)


def test_the_field_reaches_from_pretrained_and_eager_equals_sdpa(tiny_policy_dir):
    from train.sft.trainer import load_policy

    eager = load_policy(Args(model_name_or_path=str(tiny_policy_dir), attn_implementation="eager"))
    sdpa = JanusPolicy.load(tiny_policy_dir, attn_implementation="sdpa")
    assert attention_of(eager) == ("eager", "eager") and attention_of(sdpa) == ("sdpa", "sdpa")
    (a, kept), (b, _) = logits(eager), logits(sdpa)
    torch.testing.assert_close(a[kept], b[kept], atol=1e-5, rtol=0)  # pads' outputs are never read


def one_line_load_error(path, name: str) -> str:
    with pytest.raises(LoadError) as err:
        JanusPolicy.load(path, attn_implementation=name)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_flash_attention_without_the_package_is_one_line(tiny_policy_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # `import flash_attn` raises ImportError
    message = one_line_load_error(tiny_policy_dir, "flash_attention_2")
    assert "pip install flash-attn" in message and "sdpa" in message


def test_flash_attention_off_cuda_and_unknown_names_are_refused(tiny_policy_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = one_line_load_error(tiny_policy_dir, "flash_attention_2")
    assert "CUDA" in message and "sdpa" in message
    assert all(name in one_line_load_error(tiny_policy_dir, "flash") for name in ATTENTION_IMPLEMENTATIONS)


def test_policy_args_refuse_flash_attention_in_fp32_and_unknown_names():
    with pytest.raises(ValueError, match="--bf16 true"):
        Args(attn_implementation="flash_attention_2").validate_policy_args()
    for ok in (dict(bf16=True), dict(fp16=True), dict(model_dtype="bfloat16")):
        Args(attn_implementation="flash_attention_2", **ok).validate_policy_args()
    with pytest.raises(ValueError, match="valid: eager, sdpa, flash_attention_2"):
        Args(attn_implementation="flash").validate_policy_args()
    assert Args().attn_implementation == "sdpa"


def test_gpu_recipes_select_flash_attention_with_bf16():
    recipes = sorted((ROOT / "train" / "recipes").glob("janus_pro_*.yaml"))
    assert len(recipes) == 4
    for recipe in recipes:
        values = yaml.safe_load(recipe.read_text())
        assert (values["attn_implementation"], values["bf16"]) == ("flash_attention_2", True), recipe.name
