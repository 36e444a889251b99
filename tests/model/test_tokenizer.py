"""The word-level tokenizer: exact round trips, atomic chain tokens, whole-number coordinates, AutoTokenizer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from janus_rig.chain import Box, ChainObject, format_chain
from janus_rig.model.tokenizer import UNK
from tests.conftest import TEST_TEXTS

WORDS = sorted({w.strip(",.") for text in TEST_TEXTS for w in text.split()} - {""})


@st.composite
def chains(draw):
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))) + " ")
        x1, y1 = draw(st.integers(0, 999)), draw(st.integers(0, 999))
        box = Box(x1, y1, draw(st.integers(x1 + 1, 1000)), draw(st.integers(y1 + 1, 1000)))
        parts.append(ChainObject(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=2))), box))
    parts.append(draw(st.sampled_from([".", "", " ok.", ", and more"])).replace("ok", WORDS[0]).replace("more", WORDS[1]))
    return format_chain(parts)


@settings(max_examples=200, deadline=None)
@given(chains())
def test_chain_round_trip_without_unk(word_tokenizer, chain):
    ids = word_tokenizer.encode(chain, add_special_tokens=False)
    assert word_tokenizer.convert_tokens_to_ids(UNK) not in ids
    assert word_tokenizer.decode(ids) == chain


def test_box_is_nine_tokens_and_chain_tokens_atomic(word_tokenizer):
    tokens = word_tokenizer.tokenize("<|box_start|>(31,47),(312,328)<|box_end|>")
    assert tokens == ["<|box_start|>", "(", "31", ",", "47", "),(", "312", ",", "328", ")", "<|box_end|>"]
    # Chain tokens survive skip_special_tokens (they are not "special"), BOS/pad do not.
    ids = [word_tokenizer.bos_token_id] + word_tokenizer.encode("<|obj_start|>red circle<|obj_end|>", add_special_tokens=False)
    assert word_tokenizer.decode(ids, skip_special_tokens=True) == "<|obj_start|>red circle<|obj_end|>"


def test_unknown_words_map_to_unk_and_saved_tokenizer_loads(word_tokenizer, tmp_path):
    ids = word_tokenizer.encode("a zebra", add_special_tokens=False)
    assert word_tokenizer.convert_tokens_to_ids(UNK) in ids
    word_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "User: a red circle\n\nAssistant: A <|obj_start|>red circle<|obj_end|> <|box_start|>(1,2),(3,4)<|box_end|>"
    assert loaded.encode(text, add_special_tokens=False) == word_tokenizer.encode(text, add_special_tokens=False)
    assert (loaded.image_token, loaded.boi_token, loaded.eoi_token) == (
        "<image_placeholder>", "<begin_of_image>", "<end_of_image>",
    )
