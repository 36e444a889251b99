"""The tiny preset's tokenizer: word-level over everything ShapeWorld and the prompt templates can say."""

from __future__ import annotations

from functools import lru_cache

from data_prep.shapeworld.vocab import text_fragments
from janus_rig.model.prompts import template_texts
from janus_rig.model.tokenizer import build_word_tokenizer


@lru_cache(maxsize=1)
def _texts() -> tuple[str, ...]:
    return (*template_texts(), *text_fragments())


def shapeworld_tokenizer():
    """A fresh tokenizer object each call (callers may add tokens); the vocabulary is deterministic."""
    return build_word_tokenizer(_texts())
