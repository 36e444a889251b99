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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tiny-model generation tests (modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`): on 2 shared cores two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture(scope="session")
def tiny_shapeworld_policy_dir(tmp_path_factory):
    """The tiny preset at 32 px (16 image tokens instead of 64: rollouts 4x shorter) with a random VQ and the
    ShapeWorld tokenizer (it knows every prompt, chain and role word). Read-only: trainers write elsewhere."""
    from transformers import JanusVQVAE

    from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
    from janus_rig.model.init import init_policy
    from janus_rig.model.presets import tiny_vq_config

    vq = tmp_path_factory.mktemp("sw_vq")
    torch.manual_seed(0)
    JanusVQVAE(tiny_vq_config(image_size=32, patch_size=8)).save_pretrained(vq)
    out = tmp_path_factory.mktemp("sw_policy")
    init_policy("tiny", out, tokenizer=shapeworld_tokenizer(), vq_dir=vq, seed=0)
    return out
