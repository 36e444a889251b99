"""The roles' questions: what the checker and the actor are asked, through the understanding path.

Both see the image as `<image_placeholder>` tokens (vision features) in the understanding template of
`janus_rig.model.prompts`, followed by a question:

    checker   User: <begin_of_image><image_placeholder>x N<end_of_image>
              Check the image against the caption and the plan.
              Caption: a red circle left of a blue square
              Plan: A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> ...

              Assistant:                                          -> a reflection (format.py)
    actor     ... the same image ...
              Revise the plan and mark the regions to redraw.
              Caption: ...
              Plan: ...
              Reflection: <|reflect_start|>...<|reflect_end|>

              Assistant:                                          -> an edit (format.py)

The editor needs no question: it is the generation prompt with the revised chain (`janus_rig.rollout.edit`).
"""

from __future__ import annotations

import string

from janus_rig.model.prompts import encode_understanding_prompt
from janus_rig.reflect.format import vocabulary_texts

CHECKER_QUESTION = "Check the image against the caption and the plan.\nCaption: {prompt}\nPlan: {chain}"
ACTOR_QUESTION = (
    "Revise the plan and mark the regions to redraw.\nCaption: {prompt}\nPlan: {chain}\nReflection: {reflection}"
)


def checker_question(prompt: str, chain: str) -> str:
    return CHECKER_QUESTION.format(prompt=prompt, chain=chain)


def actor_question(prompt: str, chain: str, reflection: str) -> str:
    return ACTOR_QUESTION.format(prompt=prompt, chain=chain, reflection=reflection)


def encode_checker(policy, prompt: str, chain: str) -> list[int]:
    """BOS ... image placeholders ... checker question ... "Assistant:" (the context of a reflection)."""
    return encode_understanding_prompt(policy.tokenizer, policy.tokens, checker_question(prompt, chain),
                                       policy.num_image_tokens)


def encode_actor(policy, prompt: str, chain: str, reflection: str) -> list[int]:
    """The actor's context: the same image, the caption, the plan and the checker's reflection."""
    return encode_understanding_prompt(policy.tokenizer, policy.tokens, actor_question(prompt, chain, reflection),
                                       policy.num_image_tokens)


def role_texts() -> list[str]:
    """Every fixed text of the roles (questions and formats), for building a word-level vocabulary."""
    literals = [lit for q in (CHECKER_QUESTION, ACTOR_QUESTION) for lit, *_ in string.Formatter().parse(q) if lit]
    return [*literals, *vocabulary_texts()]


def ensure_role_tokens(policy) -> int:
    """Add the role tokens to a policy's tokenizer where missing (a stock Janus-Pro one) and grow the embeddings
    if the tokenizer then outgrows them, as `JanusPolicy.load` does for the chain tokens. Returns how many."""
    from janus_rig.model.tokenizer import add_role_tokens

    added = add_role_tokens(policy.tokenizer)
    if added and len(policy.tokenizer) > policy.base.config.text_config.vocab_size:
        policy.base.resize_token_embeddings(len(policy.tokenizer))
    return added
