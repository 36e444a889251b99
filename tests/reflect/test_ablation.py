"""The fixed actors of `janus-rig reflect --actor`: keep-plan redraws the whole image from the plan it was given,
fresh-plan from a chain the policy samples anew for the prompt."""

from __future__ import annotations

import pytest
import torch

from janus_rig.chain import COORD_MAX, Box
from janus_rig.reflect.actors import ACTORS, fresh_plan, keep_plan
from janus_rig.chain.roles import parse_edit
from janus_rig.reflect.loop import ReflectConfig, act, reflect
from janus_rig.reflect.text import TextConfig
from janus_rig.rollout import RolloutConfig
from tests.reflect.scripted import PLAN, Scripted, reflection

PROMPTS = ["a red circle left of a blue square", "a triangle"]
FAST = RolloutConfig(group_size=2, max_chain_tokens=6, cfg_weight=3.0)
WHOLE = Box(0, 0, COORD_MAX, COORD_MAX)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def whole_config(rounds=1):
    return ReflectConfig(rounds=rounds, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8),
                         edit_region="full")


def test_keep_plan_writes_the_plan_and_the_whole_image():
    out = keep_plan(None, [None, None], PROMPTS, [PLAN, "a broken <|obj_start|>"], [], None, None)
    first, second = (parse_edit(t) for t in out.texts)
    assert first.chain_text == PLAN and [o.box for o in first.boxes] == [WHOLE] and not first.problems
    assert second.chain_text == "a broken <|obj_start|>" and [o.box for o in second.boxes] == [WHOLE]  # as given
    assert out.stopped.tolist() == [True, True] and ACTORS.get("model") is act


def test_the_actor_flag_offers_every_registered_actor():
    import argparse

    from janus_rig.commands.reflect import add_loop_arguments

    parser = argparse.ArgumentParser()
    add_loop_arguments(parser)
    (flag,) = [a for a in parser._actions if a.dest == "actor"]
    assert set(flag.choices) == set(ACTORS) and flag.default is None  # unset: the recipe, record or default decides


def test_loop_with_keep_plan_redraws_from_the_same_plan(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    result = reflect(tiny_policy, PROMPTS, whole_config(), FAST, seed=1, checker=checker,
                     actor=ACTORS.get("keep-plan"))
    edits = [t for row in result.traces for t in row if t.status == "edited"]
    assert len(edits) == 4 and result.counts["malformed_edit"] == 0
    for t in edits:
        assert t.revised_chain == t.plan and [o.box for o in t.edit_boxes] == [WHOLE]


def test_loop_with_fresh_plan_samples_new_chains_from_the_loop_generator(tiny_policy):
    checker = Scripted(lambda k, i: reflection("edit"))
    runs = [reflect(tiny_policy, PROMPTS, whole_config(), FAST, seed=s, checker=checker, actor=fresh_plan)
            for s in (3, 3, 4)]
    revised = [[t.revised_chain for row in r.traces for t in row if t.status == "edited"] for r in runs]
    assert len(revised[0]) == 4 and revised[0] == revised[1]  # seeded by the loop
    assert revised[0] != revised[2]
    plans = [t.plan for row in runs[0].traces for t in row if t.status == "edited"]
    assert revised[0] != plans  # new chains, not the plans the images were drawn from
    assert not torch.equal(runs[0].final_tokens, runs[0].initial.image_tokens)


def test_actor_for_gives_fresh_plan_the_loops_generation_settings(monkeypatch):
    import janus_rig.reflect.actors as ablation

    seen = []
    monkeypatch.setattr(ablation, "sample", lambda policy, prompts, config, generator: seen.append(config)
                        or type("R", (), {"chains": [PLAN] * len(prompts)})())
    loop_rollout = RolloutConfig(group_size=4, max_chain_tokens=77, text_temperature=0.5)
    out = ablation.actor_for("fresh-plan", loop_rollout)(None, [None, None], PROMPTS, [PLAN, PLAN], [], None, None)
    assert [parse_edit(t).chain_text for t in out.texts] == [PLAN, PLAN]
    assert seen[0].text_temperature == 0.5 and seen[0].max_chain_tokens == 77 and seen[0].group_size == 1
    fresh_plan(None, [None], PROMPTS[:1], [PLAN], [], TextConfig(max_new_tokens=9), None)  # no loop settings given
    assert seen[1].text_temperature == 1.0 and seen[1].max_chain_tokens == 9
    assert ablation.actor_for("keep-plan", loop_rollout) is keep_plan
    with pytest.raises(ValueError, match="unknown actor 'nope'"):
        ablation.actor_for("nope", loop_rollout)
