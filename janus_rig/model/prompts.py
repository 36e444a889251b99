"""Prompt templates and their token ids: the one place a caption or a question becomes model input.

GoT-R1's generation prompt (DeepSeek template, empty system prompt); the model continues with its reasoning
chain and then `<begin_of_image>`:

    User: Follow the caption to generate an image through a chain of thought process: a red circle left of a blue square

    Assistant:

Understanding (the checker role) shows the image through the vision encoder: `<begin_of_image>`, one
`<image_placeholder>` per vision feature, `<end_of_image>`, then the question, in the same User/Assistant template.
A policy whose `image_view` is "codes" writes the image's VQ codes over the placeholders instead (`place_codes`).
"""

from __future__ import annotations

from janus_rig.model.tokens import SpecialTokenIds

CHAIN_INSTRUCTION = "Follow the caption to generate an image through a chain of thought process: "
GENERATION_TEMPLATE = "User: {instruction}{prompt}\n\nAssistant:"
UNDERSTANDING_PREFIX = "User: "
UNDERSTANDING_SUFFIX = "\n{question}\n\nAssistant:"
# The grounding question (the checker sees an image and lists what is there as a chain).
GROUNDING_QUESTION = "List every object in the image with its box."


def generation_text(prompt: str, chain: bool = True) -> str:
    """The prompt text; `chain=False` is plain text-to-image (the "no reasoning" ablation)."""
    return GENERATION_TEMPLATE.format(instruction=CHAIN_INSTRUCTION if chain else "", prompt=prompt)


def encode_generation_prompt(tokenizer, ids: SpecialTokenIds, prompt: str, chain: bool = True) -> list[int]:
    """BOS + the template; the sampler then writes the chain (or `<begin_of_image>` directly when chain=False)."""
    return [ids.bos] + tokenizer.encode(generation_text(prompt, chain), add_special_tokens=False)


def encode_understanding_prompt(tokenizer, ids: SpecialTokenIds, question: str, num_image_tokens: int) -> list[int]:
    """BOS, "User: ", the image placeholders wrapped in begin/end of image, the question, "Assistant:"."""
    head = tokenizer.encode(UNDERSTANDING_PREFIX, add_special_tokens=False)
    tail = tokenizer.encode(UNDERSTANDING_SUFFIX.format(question=question), add_special_tokens=False)
    return [ids.bos, *head, ids.boi, *([ids.image] * num_image_tokens), ids.eoi, *tail]


def place_codes(ids: list[int], placeholder: int, codes: list[int]) -> tuple[list[int], list[bool]]:
    """An understanding context with `codes` (VQ codebook indices) written over its run of placeholder ids, and the
    image mask that marks them: the image shown as the codes the model writes, not as vision features."""
    mask = [i == placeholder for i in ids]
    if sum(mask) != len(codes):
        raise ValueError(f"the context has {sum(mask)} <image_placeholder> tokens but the image {len(codes)} codes")
    it = iter(codes)
    return [next(it) if m else i for i, m in zip(ids, mask)], mask


def template_texts() -> list[str]:
    """Every fixed text of the templates, for building a word-level vocabulary."""
    return [
        generation_text("", True),
        generation_text("", False),
        UNDERSTANDING_PREFIX,
        UNDERSTANDING_SUFFIX.format(question=GROUNDING_QUESTION),
    ]
