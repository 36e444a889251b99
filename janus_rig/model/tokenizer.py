"""Tokenizers: a small word-level one for synthetic worlds, and adding the chain and reflection-role tokens to any
Janus tokenizer.

The word-level tokenizer keeps spaces as a "▁" prefix (Metaspace), isolates punctuation, newlines and whole
numbers (so a box coordinate like 312 is one token; a whole box is 9), and decodes back to the exact text:

    tok = build_word_tokenizer(["a red circle left of a blue square"])
    tok.decode(tok.encode("a red circle", add_special_tokens=False))  # 'a red circle'
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from janus_rig.chain import CHAIN_TOKENS, COORD_MAX
from janus_rig.model.tokens import BOI, BOS, EOI, EOS, IMAGE, MODEL_SPECIFIC, PAD
from janus_rig.chain.roles import ROLE_TOKENS, role_texts

UNK = "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE, BOI, EOI)
BASIC_PUNCTUATION = ("(", ")", "),(", ",", ".", ":", ";", "!", "?", "-", "'", '"', "\n")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            # One piece per: the "),(" between a box's corners, a whole number, a word with its optional leading
            # space, a lone space, any other single character. A box "(31,47),(312,328)" is 9 tokens.
            pre_tokenizers.Split(Regex(r"\),\(|\p{N}+|▁?\p{L}+|▁|[^\p{L}\p{N}▁]"), "isolated"),
        ]
    )


def build_word_tokenizer(
    texts: Iterable[str], numbers: int = COORD_MAX, chain_tokens: bool = True
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every piece of `texts` plus the numbers 0..`numbers`.

    Pieces are found by the tokenizer's own pre-tokenizer, so any text built from the same words, spaces,
    punctuation and numbers encodes without `<unk>`. With `chain_tokens`, the chain and reflection-role tokens are
    added too, and so are the words of the roles' fixed texts (formats and questions): a tokenizer that writes
    chains can also reflect.
    """
    pre = _pre_tokenizer()
    pieces: set[str] = {"▁", *BASIC_PUNCTUATION}
    if chain_tokens:
        texts = [*texts, *role_texts()]
    for text in texts:
        for chunk in _split_on(text, (*SPECIAL_TOKENS, *CHAIN_TOKENS, *ROLE_TOKENS)):
            for piece, _ in pre.pre_tokenize_str(chunk):
                word = piece.lstrip("▁")
                # A word appears with and without its leading space (e.g. right after <|obj_start|>).
                pieces.update((piece, word, f"▁{word}") if word else (piece,))
    pieces.update(str(n) for n in range(numbers + 1))  # " 12" pre-tokenizes as "▁", "12"
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for piece in sorted(pieces - set(vocab)):
        vocab[piece] = len(vocab)

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=dict(MODEL_SPECIFIC),
        padding_side="left",
    )
    if chain_tokens:
        add_chain_tokens(fast)
        add_role_tokens(fast)
    return fast


def _split_on(text: str, tokens: tuple[str, ...]) -> list[str]:
    chunks = [text]
    for token in tokens:
        chunks = [piece for chunk in chunks for piece in chunk.split(token)]
    return chunks


def add_chain_tokens(tokenizer) -> int:
    """Add GoT-R1's chain tokens to a tokenizer that lacks them (a stock Janus-Pro one). Returns how many were added."""
    missing = [t for t in CHAIN_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    return len(missing)


def add_role_tokens(tokenizer) -> int:
    """Add the reflection roles' tokens (`ROLE_TOKENS`) where missing, as the chain tokens are. Returns how many."""
    missing = [t for t in ROLE_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    return len(missing)
