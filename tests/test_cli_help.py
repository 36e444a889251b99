"""A trainer's --help: the config's own fields first, in the groups its FLAG_GROUPS declare, then TrainingArguments';
every field of ours in exactly one group (janus_rig/commands/_recipe.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from janus_rig.cli import build_parser
from janus_rig.commands._recipe import TRAINING_ARGUMENTS, UNGROUPED, flag_groups, own_fields, ungrouped_fields
from train.grpo.config import GRPOConfig
from train.reflect.config import ReflectGRPOConfig
from train.sft.config import SFTConfig
from train.vq.config import VQTrainConfig

CONFIGS = {"sft": SFTConfig, "grpo": GRPOConfig, "reflect-grpo": ReflectGRPOConfig, "vq train": VQTrainConfig}


def help_of(words: str) -> str:
    parser = build_parser()
    for word in words.split():
        parser = parser._subparsers._group_actions[0].choices[word]
    return parser.format_help()


def flag_lines(text: str) -> dict[str, int]:
    """Flag -> the line of --help that lists it (the first, where a flag's help mentions another flag)."""
    lines = {}
    for number, line in enumerate(text.splitlines()):
        match = re.match(r"\s{2}(--[\w-]+)", line)
        if match:
            lines.setdefault(match.group(1), number)
    return lines


def heading_lines(text: str) -> dict[str, int]:
    return {line[:-1]: number for number, line in enumerate(text.splitlines()) if re.match(r"^\S.*:$", line)}


@pytest.mark.parametrize("config_cls", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_field_of_ours_is_in_one_group(config_cls):
    """A new field must be added to its class's FLAG_GROUPS; flag_groups itself refuses a field in two groups."""
    assert ungrouped_fields(config_cls) == [], (
        f"add these {config_cls.__name__} fields to a FLAG_GROUPS group next to where they are declared")
    grouped = [name for names in flag_groups(config_cls).values() for name in names]
    assert sorted(grouped) == sorted(own_fields(config_cls))


def test_a_field_in_two_groups_or_a_stale_name_is_refused():
    @dataclass
    class Base:
        a: int = 0
        FLAG_GROUPS: ClassVar[dict] = {"one": ("a",)}

    @dataclass
    class Twice(Base):
        b: int = 0
        FLAG_GROUPS: ClassVar[dict] = {"two": ("b", "a")}

    @dataclass
    class Stale(Base):
        b: int = field(default=0)
        FLAG_GROUPS: ClassVar[dict] = {"two": ("b", "gone")}

    @dataclass
    class Merged(Base):
        b: int = 0
        FLAG_GROUPS: ClassVar[dict] = {"one": ("b",), "two": ()}

    with pytest.raises(ValueError, match="'a' is in the flag groups 'two' and 'one'"):
        flag_groups(Twice)
    with pytest.raises(ValueError, match="'gone', which is no field"):
        flag_groups(Stale)
    assert flag_groups(Merged) == {"one": ["b", "a"], "two": []}  # the subclass's first; one title, one group
    assert ungrouped_fields(Merged) == []

    @dataclass
    class Added(Base):
        c: int = 0  # a new field nobody grouped

    assert ungrouped_fields(Added) == ["c"]


@pytest.mark.parametrize("command", ["sft", "grpo", "reflect-grpo"])
def test_trainer_help_lists_our_groups_then_training_arguments(command):
    text = help_of(command)
    config_cls = CONFIGS[command]
    flags, headings = flag_lines(text), heading_lines(text)
    groups = list(flag_groups(config_cls))
    assert UNGROUPED not in headings
    # the groups in their declared order (the subclass's first), TrainingArguments' last
    assert [h for h in headings if h in groups or h == TRAINING_ARGUMENTS] == [*groups, TRAINING_ARGUMENTS]
    ours = [flags[f"--{name}"] for name in own_fields(config_cls)]
    transformers = [flags[f] for f in ("--output_dir", "--learning_rate", "--max_steps", "--seed")]
    assert max(ours) < headings[TRAINING_ARGUMENTS] < min(transformers)
    # a field we re-default keeps its transformers neighbours
    assert flags["--per_device_train_batch_size"] > headings[TRAINING_ARGUMENTS]
    # each field under its own group's heading
    starts = sorted((line, title) for title, line in headings.items())
    for title, names in flag_groups(config_cls).items():
        for name in names:
            under = [t for line, t in starts if line < flags[f"--{name}"]][-1]
            assert under == title, f"--{name} listed under {under!r}, declared in {title!r}"


def test_grpo_help_is_short_and_starts_with_the_method():
    text = help_of("grpo")
    lines = text.splitlines()
    assert lines[0].endswith("[--FIELD VALUE ...]")  # usage: one line, not every field
    assert flag_lines(text)["--num_generations"] < 80
    assert flag_lines(text)["--num_generations"] < flag_lines(text)["--output_dir"]
    # one spelling each: the config field's name
    assert "--num-generations" not in text and "--no-chain" not in text and "--no_chain" in text


def test_vq_train_help_is_grouped():
    text = help_of("vq train")
    flags, headings = flag_lines(text), heading_lines(text)
    groups = list(flag_groups(VQTrainConfig))
    assert [h for h in headings if h in groups] == groups
    assert headings["model"] < flags["--codebook-size"] < headings["optimisation"] < flags["--batch-size"]
    assert "--batch_size" not in text


def test_ablate_help_keeps_its_own_group_first():
    text = help_of("ablate")
    headings = heading_lines(text)
    assert headings["ablation"] < headings["sampling"] < headings[TRAINING_ARGUMENTS]
    assert "--out OUT" in text.splitlines()[0]
