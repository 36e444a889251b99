"""Tiny random-init fixtures shared by the suite (no downloads, CPU, fp32)."""

from __future__ import annotations

import pytest
import torch

from janus_rig.model.prompts import template_texts
from janus_rig.model.tokenizer import build_word_tokenizer

TEST_TEXTS = [
    "a red circle left of a blue square",
    "A green triangle sits above the white circle, and a purple square is below it.",
    "two yellow triangles and a circle right of the square",
]


@pytest.fixture(scope="session")
def word_tokenizer():
    return build_word_tokenizer([*template_texts(), *TEST_TEXTS])


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, word_tokenizer):
    """A saved random-init tiny policy (built once per session)."""
    from janus_rig.model.init import init_policy

    out = tmp_path_factory.mktemp("tiny_policy")
    init_policy("tiny", out, tokenizer=word_tokenizer, seed=0)
    return out


@pytest.fixture
def tiny_policy(tiny_policy_dir):
    """A fresh, loaded copy per test (tests may change weights)."""
    from janus_rig.model.policy import JanusPolicy

    torch.manual_seed(0)
    return JanusPolicy.load(tiny_policy_dir)
