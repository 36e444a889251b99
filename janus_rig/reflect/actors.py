"""The actors of the loop, by name (`ACTORS`, a registry: `LoopSettings.actor`, `ReflectGRPOConfig.actor`):

    model       the policy's actor (`loop.act`): a revised chain and edit boxes
    keep-plan   the plan unchanged, the whole image as the edit box: with `edit_region="full"` a new drawing of
                the same plan (is redrawing enough to fix what the checker flags?)
    fresh-plan  a new chain sampled for the prompt by the policy's own generation path, the whole image as the edit
                box: the loop becomes rejection sampling on the checker's flags (does re-planning fix it?)

The two fixed ones do not read the image: they measure what the model's own actor adds (docs/reflection.md).
Each has `act`'s signature and returns what the loop reads of an actor (`.texts`, `.stopped`); the fixed ones write
no log-probs, so Reflection-GRPO can only train the checker's decisions next to them.

    result = reflect(policy, prompts, ReflectConfig(edit_region="full"), RolloutConfig(),
                     actor=actor_for("fresh-plan", RolloutConfig()))

A new actor is one decorated function with `act`'s signature: `@ACTORS.register("name")`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from inspect import signature
from types import SimpleNamespace

import torch

from janus_rig.chain.roles import EDIT_BOXES, EDIT_END, EDIT_START, LINE, format_span
from janus_rig.chain import WHOLE_IMAGE
from janus_rig.reflect.loop import ActFn, act
from janus_rig.registry import Registry
from janus_rig.rollout import RolloutConfig, sample

WHOLE_IMAGE_SPAN = format_span("image", WHOLE_IMAGE)
ACTORS: Registry[ActFn] = Registry("actor")
ACTORS.register("model")(act)


def whole_image_edits(chains: list[str]) -> SimpleNamespace:
    """The edits that redraw the whole image from `chains` (written as they are: a broken chain stays broken)."""
    texts = [f"{EDIT_START}{c}{LINE}{EDIT_BOXES}{WHOLE_IMAGE_SPAN}{EDIT_END}" for c in chains]
    return SimpleNamespace(texts=texts, stopped=torch.ones(len(texts), dtype=torch.bool))


@ACTORS.register("keep-plan")
def keep_plan(policy, images, prompts, plans, reflections, config, generator, codes=None) -> SimpleNamespace:
    """The current plan again, the whole image to redraw."""
    return whole_image_edits(list(plans))


@ACTORS.register("fresh-plan")
def fresh_plan(policy, images, prompts, plans, reflections, config, generator, codes=None,
               rollout_config: RolloutConfig | None = None) -> SimpleNamespace:
    """A new chain for each prompt from the policy's generation path, sampled as `rollout_config` samples chains
    (the loop's generation settings: `actor_for` passes them; without it the defaults, at most the actor's
    `max_new_tokens`); the drawn image is discarded, the whole image to redraw."""
    if rollout_config is None:
        rollout_config = RolloutConfig(max_chain_tokens=config.max_new_tokens)
    rollout = sample(policy, list(prompts), replace(rollout_config, group_size=1), generator=generator)
    return whole_image_edits(list(rollout.chains))


def actor_for(name: str, rollout_config: RolloutConfig) -> ActFn:
    """The actor registered as `name`, set to re-plan with the loop's generation settings where it samples chains
    (fresh-plan samples at the first drawing's chain temperature: a lower one alone changes accuracy)."""
    if name not in ACTORS:
        raise ValueError(f"unknown actor {name!r}; valid: {', '.join(ACTORS)}")
    actor = ACTORS.get(name)
    return partial(actor, rollout_config=rollout_config) if "rollout_config" in signature(actor).parameters else actor
