"""The tiny preset's tokenizer covers everything the world writes: no <unk>, exact round trips."""

from __future__ import annotations

import random

from data_prep.shapeworld.chains import grounding_chain, prompt_chain, training_chain
from data_prep.shapeworld.prompts import prompt_text
from data_prep.shapeworld.sampler import TAGS, sample
from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
from janus_rig.model.prompts import GROUNDING_QUESTION, generation_text
from janus_rig.model.tokenizer import UNK


def test_world_text_round_trips_without_unk():
    tok = shapeworld_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK)
    rng = random.Random(0)
    for i in range(600):
        s = sample(TAGS[i % len(TAGS)], rng)
        for text in (generation_text(prompt_text(s.description)), training_chain(s, rng), grounding_chain(s.scene),
                     prompt_chain(s)):
            ids = tok.encode(text, add_special_tokens=False)
            assert unk not in ids, text
            assert tok.decode(ids) == text
    assert unk not in tok.encode(GROUNDING_QUESTION, add_special_tokens=False)


def test_vocabulary_is_deterministic_and_small():
    a, b = shapeworld_tokenizer(), shapeworld_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert len(a) < 1300  # words + 0..1000 + specials: the tiny model's embedding stays small
