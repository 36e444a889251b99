"""Special tokens of the Janus vocabulary and their ids in a given tokenizer (one home for both).

The strings are those of the published Janus-Pro tokenizer; the reasoning-chain tokens are GoT-R1's
(`janus_rig.chain.CHAIN_TOKENS`), added to a tokenizer when missing; the reflection roles' tokens
(`janus_rig.chain.roles.ROLE_TOKENS`) likewise (`janus_rig.model.tokenizer.add_role_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_rig.chain import CHAIN_TOKENS
from janus_rig.chain.roles import ROLE_TOKENS

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE = "<image_placeholder>"  # understanding: one per vision-encoder feature
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
# transformers' JanusProcessor reads these names from the tokenizer (tokenizer.image_token, .boi_token, .eoi_token).
MODEL_SPECIFIC = {"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI}


@dataclass(frozen=True)
class SpecialTokenIds:
    bos: int
    eos: int
    pad: int
    image: int
    boi: int
    eoi: int
    chain: tuple[int, ...]  # ids of CHAIN_TOKENS, in that order

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialTokenIds":
        wanted = {"bos": BOS, "eos": EOS, "pad": PAD, "image": IMAGE, "boi": BOI, "eoi": EOI}
        vocab = tokenizer.get_vocab()
        missing = [text for text in (*wanted.values(), *CHAIN_TOKENS) if text not in vocab]
        if missing:
            raise ValueError(
                f"tokenizer lacks the Janus special tokens {missing}; use a Janus-Pro tokenizer or "
                "`janus_rig.model.tokenizer.add_chain_tokens` for the chain tokens"
            )
        ids = {field: vocab[text] for field, text in wanted.items()}
        return cls(**ids, chain=tuple(vocab[t] for t in CHAIN_TOKENS))


def role_token_ids(tokenizer) -> dict[str, int]:
    """Id of every reflection-role token (`ROLE_TOKENS`), by its text; ValueError naming the missing ones."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in ROLE_TOKENS if t not in vocab]
    if missing:
        raise ValueError(
            f"tokenizer lacks the reflection role tokens {missing}; add them with "
            "`janus_rig.model.tokenizer.add_role_tokens` (and resize the embeddings: "
            "`janus_rig.reflect.prompts.ensure_role_tokens`)"
        )
    return {t: vocab[t] for t in ROLE_TOKENS}
