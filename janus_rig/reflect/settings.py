"""The loop's settings as a user runs it: one flat dataclass, read from three places in this order of precedence:

    the dataclass defaults  <  the model directory's record  <  a recipe (`--config`, YAML)  <  command-line flags

The record is `loop` in the model directory's roles file (`roles.json`, beside `image_view`): the loop settings the
model was trained and measured with, carried by every save of the policy (`JanusPolicy.loop_settings`), so
`janus-rig reflect --model M` and `janus-rig eval geneval --model M --reflect K` run M's good loop with no flags.

    settings = resolve_settings(record=policy.loop_settings, recipe="train/recipes/shapeworld_reflect.yaml",
                                flags={"rounds": 2})
    config = settings.loop_config()          # the ReflectConfig the loop runs
    actor = settings.actor                   # a name in janus_rig.reflect.actors.ACTORS
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from janus_rig.reflect.actors import ACTORS
from janus_rig.reflect.loop import ReflectConfig
from janus_rig.reflect.text import TextConfig


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class LoopSettings:
    rounds: int = _help("K: edits per image at most; a row stops when its checker says keep", 2)
    actor: str = _help("who writes the edits (janus_rig/reflect/actors.py): model, the policy's actor (a revised "
                       "chain and edit boxes); fresh-plan, a new chain sampled for the prompt, the whole image "
                       "redrawn (re-planning on the checker's flags); keep-plan, the same plan redrawn", "model")
    edit_region: str = _help("boxes: the editor redraws only the patches under the edit boxes and keeps every other "
                             "token (region-locked); full: it redraws the whole image from the revised chain", "boxes")
    paste_back: bool = _help("region-locked edits keep the pixels of every patch outside the edit boxes (the VQ "
                             "decoder otherwise moves untouched objects slightly)", True)
    final: str = _help("which image a row ends with (FINALS in janus_rig/reflect/loop.py): last, the image after its "
                       "last edit; best, the image its checker rates likeliest right", "last")
    rating: str = _help("how final=best rates an image: verdicts (the checker's P(yes)), grounded (relations read on "
                        "the boxes the checker says it sees) or plan (relations read on the plan's boxes)", "verdicts")
    verdict_bias: float = _help("added to the logit of `no` in every verdict the checker writes (> 0: it flags more "
                                "images)", 0.0)
    role_temperature: float = _help("the checker's and actor's sampling temperature (1e-3: near greedy)", 1.0)
    role_top_k: int | None = _help("the checker and actor sample from their k likeliest tokens (None: off)", None)
    max_reflection_tokens: int = _help("tokens a reflection may take before it is cut off", 256)
    max_edit_tokens: int = _help("tokens an edit may take before it is cut off", 256)

    def __post_init__(self):
        self.loop_config()  # ValueError naming a bad rounds / edit_region / final / rating / role setting
        if self.actor not in ACTORS:
            raise ValueError(f"unknown actor {self.actor!r}; valid: {', '.join(ACTORS)}")

    def loop_config(self, rounds: int | None = None):
        """The ReflectConfig the loop runs (`rounds` overrides K, e.g. `eval geneval --reflect K`)."""
        def role(tokens: int) -> TextConfig:
            return TextConfig(max_new_tokens=tokens, temperature=self.role_temperature, top_k=self.role_top_k)

        return ReflectConfig(rounds=self.rounds if rounds is None else rounds, checker=role(self.max_reflection_tokens),
                             actor=role(self.max_edit_tokens), paste_back=self.paste_back,
                             edit_region=self.edit_region, verdict_bias=self.verdict_bias, final=self.final,
                             rating=self.rating)

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = {f.name: f for f in fields(LoopSettings)}


def _typed(name: str, value, source: str):
    """`value` as the field's type, or ValueError naming the source and the field."""
    kind = FIELDS[name].type
    if value is None and "None" in kind:
        return None
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "int | None": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "str": isinstance(value, str)}[kind]
    if not ok:
        raise ValueError(f"{source}: loop setting {name!r} must be {kind.replace(' | None', ' or null')}, got "
                         f"{value!r}")
    return float(value) if kind == "float" else value


def checked(values: dict, source: str) -> dict:
    """The entries of `values` as loop settings (ValueError naming `source` and the key: an unknown key is an
    error, not ignored — a misspelt setting would otherwise silently run the default)."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: loop settings must be a mapping of setting -> value, got {type(values).__name__}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"{source}: unknown loop setting(s) {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(FIELDS)}")
    return {k: _typed(k, v, source) for k, v in values.items()}


def read_recipe(path: str | Path) -> dict:
    """A YAML recipe of loop settings (ValueError naming the file when it is missing, unreadable or wrong)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file}: no such reflect recipe")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{file}: not valid YAML ({str(err).splitlines()[0]})") from None
    return checked(values, str(file))


def resolve_settings(record: dict | None = None, recipe: str | Path | None = None, flags: dict | None = None,
                     record_source: str = "the model's loop record") -> tuple[LoopSettings, dict[str, str]]:
    """The settings, and for each the source it came from ("default", "model", the recipe's path, "flag")."""
    values: dict = {}
    sources = {name: "default" for name in FIELDS}
    layers = [(record or {}, "model", record_source), (read_recipe(recipe) if recipe else {}, str(recipe), None),
              ({k: v for k, v in (flags or {}).items() if v is not None}, "flag", "flags")]
    for layer, source, label in layers:
        for key, value in checked(layer, label or source).items():
            values[key] = value
            sources[key] = source
    try:
        return LoopSettings(**values), sources
    except ValueError as err:
        given = [s for s in dict.fromkeys(sources.values()) if s != "default"]
        where = ", ".join(record_source if s == "model" else s for s in given) or "defaults"
        raise ValueError(f"loop settings (from {where}): {err}") from None
