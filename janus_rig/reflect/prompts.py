"""The roles' contexts: the questions of janus_rig/chain/roles.py in the understanding path's template.

Both see the image as `<image_placeholder>` tokens (vision features) in the understanding template of
`janus_rig.model.prompts`, followed by a question:

    checker   User: <begin_of_image><image_placeholder>x N<end_of_image>
              Check the image against the caption and the plan.
              Caption: a red circle left of a blue square
              Plan: A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> ...

              Assistant:                                          -> a reflection (janus_rig/chain/roles.py)
    actor     ... the same image ...
              Revise the plan and mark the regions to redraw.
              Caption: ...
              Plan: ...
              Reflection: <|reflect_start|>...<|reflect_end|>

              Assistant:                                          -> an edit (janus_rig/chain/roles.py)

The editor needs no question: it is the generation prompt with the revised chain (`janus_rig.rollout.edit`).
"""

from __future__ import annotations

from janus_rig.chain.roles import actor_question, checker_question
from janus_rig.model.prompts import encode_understanding_prompt
from janus_rig.model.tokenizer import add_role_tokens


def encode_checker(policy, prompt: str, chain: str) -> list[int]:
    """BOS ... image placeholders ... checker question ... "Assistant:" (the context of a reflection)."""
    return encode_understanding_prompt(policy.tokenizer, policy.tokens, checker_question(prompt, chain),
                                       policy.num_image_tokens)


def encode_actor(policy, prompt: str, chain: str, reflection: str) -> list[int]:
    """The actor's context: the same image, the caption, the plan and the checker's reflection."""
    return encode_understanding_prompt(policy.tokenizer, policy.tokens, actor_question(prompt, chain, reflection),
                                       policy.num_image_tokens)


def ensure_role_tokens(policy) -> int:
    """Add the role tokens to a policy's tokenizer where missing (a stock Janus-Pro one) and grow the embeddings
    if the tokenizer then outgrows them, as `JanusPolicy.load` does for the chain tokens. Returns how many."""
    added = add_role_tokens(policy.tokenizer)
    if added and len(policy.tokenizer) > policy.base.config.text_config.vocab_size:
        policy.base.resize_token_embeddings(len(policy.tokenizer))
    return added
