"""Settings of `janus-rig reflect-grpo`: every GRPO setting (`GRPOConfig`: the rollout, loss and optimiser names
of trl) plus the reflection ones, parsed the same way:

    janus-rig reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml --max_steps 20

What the GRPO names mean here: `num_generations` is G, the reflections/edits (actor phase) or redraws (editor
phase) per group; `per_device_train_batch_size` the groups per step; `temperature`/`top_p`/`top_k` sample every
text the policy writes (the first image's chain, reflections, edits) and score it; `cfg_weight`,
`image_temperature`, `image_logprob` the image tokens (first images, edits). The phase picks the optimised
tokens, so `optimize` does not apply; the reward is `reward` (+ `judge`), so the `reward_*` / `term_options` fields
do not apply either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from janus_rig.reflect.actors import ACTORS
from janus_rig.reflect.loop import ReflectConfig
from janus_rig.reflect.text import TextConfig
from train.common import help_field as _help
from train.common import parse_recipe
from train.grpo.config import GRPOConfig

PHASES = ("actor", "editor")
VERDICTS = "verdicts"  # the checker's own accuracy by the oracle (episodes.verdict_rewards)
OUTCOME = "outcome"  # the oracle's score of the image an episode ends with (episodes.outcome_rewards)
REWARDS = ("intrinsic", "judge", VERDICTS, OUTCOME)
FIRST_IMAGES = ("shared", "own")
CHECKER_TOKENS = ("all", "verdicts")
REFLECT_FILE = "reflect.jsonl"  # WORLD/reflect.jsonl, written by `janus-rig reflect-data`


@dataclass
class ReflectGRPOConfig(GRPOConfig):
    phase: str = _help("actor: per prompt a first image from the policy, then G reflections + edits of it, each "
                       "applied by the region-locked editor and rewarded by the score after minus before; the "
                       "reflection and edit tokens are optimised. editor: per WORLD/reflect.jsonl edit row (a "
                       "perturbed image, the correct plan and the regions to redraw), G redraws of those regions, "
                       "rewarded on the edited image; the redrawn image tokens are optimised", default="actor")
    reward: str = _help("intrinsic: the policy's own checker, share of its verdicts that say yes after minus "
                        "before (RL-RIG, no external verifier); judge: the `judge` field's prompt-image score after "
                        "minus before (shapeworld, hf, or an http URL); verdicts: how right the first reflection "
                        "is about the first image by the ShapeWorld oracle (half its verdicts' accuracy, half its "
                        "decision's), which trains the checker alone (rounds: 0, no edits); outcome: the ShapeWorld "
                        "oracle's score of the image the episode ends with, not relative to its first image (with "
                        "first_images: own, groups compare whole episodes). The oracle's truth is logged either way",
                        default="intrinsic")
    first_images: str = _help("actor phase: shared, a group's G episodes start from copies of one first image "
                              "(RL-RIG's per-edit credit); own, each episode draws its own first image, so a group "
                              "compares whole loops: plan, drawing, checks and edits", default="shared")
    train_plan: bool = _help("actor phase, with first_images: own: optimise each episode's first chain (the plan) "
                             "with the episode's advantage too, so the plan learns from how the whole loop ends",
                             default=False)
    rounds: int = _help("actor phase: K, the loop's edits per image at most in each episode (every edit is "
                        "followed by a check; the reward is the score after the last one minus the first); "
                        "also the rounds of the bench evaluation (eval_every)", default=1)
    max_reflection_tokens: int = _help("tokens a reflection may take before it is cut off (ShapeWorld's are "
                                       "<= ~125)", default=256)
    max_edit_tokens: int = _help("tokens an edit may take before it is cut off (ShapeWorld's are <= ~120)",
                                 default=256)
    paste_back: bool = _help("the loop's edited images keep the pixels outside the edit boxes from the image before "
                             "the edit (ReflectConfig.paste_back); false: the edited tokens' own decoding",
                             default=True)
    edit_region: str = _help("actor phase and bench: boxes, the editor redraws only the patches under the edit boxes; "
                             "full, it redraws the whole image from the revised chain (ReflectConfig.edit_region)",
                             default="boxes")
    train_checker: bool = _help("actor phase: optimise the reflections that decided (every check except the one "
                                "that scores the last edit) along with the edits; false: the edits only",
                                default=True)
    checker_tokens: str = _help("actor phase, with train_checker: which tokens of a deciding reflection are optimised. "
                                "all: the whole reflection (what it sees, its verdicts, its decision); verdicts: from "
                                "its first <|verdict|> on, so what the checker says it sees is left as SFT taught it "
                                "(the boxes --rating grounded reads relations from)", default="all")
    actor: str = _help("actor phase and bench: who writes the edits. model: the policy's actor (its edits are "
                       "optimised); a fixed actor of janus_rig/reflect/actors.py (keep-plan, fresh-plan: re-plans "
                       "with this config's chain settings) writes them instead and is not optimised, so only the "
                       "checker's decisions learn (needs train_checker: true)", default="model")
    final: str = _help("actor phase and bench: which image an episode ends with (ReflectConfig.final). last: the "
                       "image after its last edit; best: of the images its checks saw, the one the checker rates "
                       "likeliest right, so the reward is the score of that pick minus the first image's and every "
                       "check, the one after the last edit included, is a deciding one (it rates)", default="last")
    rating: str = _help("with final: best, how the checker rates an image (ReflectConfig.rating: verdicts, "
                        "grounded, plan)", default="verdicts")
    malformed_penalty: float = _help("subtracted from the reward of an episode whose reflection or edit could not "
                                     "be read (0: none; e.g. 0.5 keeps teaching the formats)", default=0.0)
    # --- GRPO defaults changed for this trainer ---
    gallery_every: int = _help("every N steps, save a PNG strip of images before / after their edit (0: off)",
                               default=10)

    collapse_guard: str = _help("GRPO's collapse guard watches the chain's reward and length; reflect-grpo's "
                                "episodes have neither: off (the only value)", default="off")

    # --help lists this group first, then GRPOConfig's (janus_rig/commands/_recipe.py); the two GRPO fields redefined
    # above keep their GRPO groups
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "reflection": ("phase", "reward", "first_images", "train_plan", "rounds", "max_reflection_tokens", "max_edit_tokens", "paste_back",
                       "edit_region", "train_checker", "checker_tokens", "actor", "final", "rating",
                       "malformed_penalty"),
    }

    def __post_init__(self):
        if self.collapse_guard != "off":
            raise ValueError("collapse_guard is a `janus-rig grpo` setting; reflect-grpo runs without it (off)")
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; valid: {', '.join(PHASES)}")
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; valid: {', '.join(REWARDS)} (the judge itself is "
                             "the `judge` field: --reward judge --judge shapeworld)")
        if self.reward == VERDICTS:
            if self.phase != "actor" or self.rounds != 0:
                raise ValueError("reward: verdicts scores the first check alone: it needs phase: actor and rounds: 0 "
                                 "(no edits in the episode)")
            if not self.train_checker:
                raise ValueError("reward: verdicts trains the checker: set train_checker: true")
        elif self.rounds < 1:
            raise ValueError(f"rounds must be >= 1 (the edits per image in an episode), got {self.rounds}; rounds: 0 "
                             "goes with reward: verdicts")
        for name in ("max_reflection_tokens", "max_edit_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.first_images not in FIRST_IMAGES:
            raise ValueError(f"unknown first_images {self.first_images!r}; valid: {', '.join(FIRST_IMAGES)}")
        if self.train_plan and (self.phase != "actor" or self.first_images != "own"):
            raise ValueError("train_plan optimises each episode's own first chain: it needs phase: actor and "
                             "first_images: own (copies of one first image share one plan, which nothing can rank)")
        if self.actor not in ACTORS:
            raise ValueError(f"unknown actor {self.actor!r}; valid: {', '.join(ACTORS)}")
        if self.actor != "model" and not self.train_checker and not self.train_plan:
            raise ValueError(f"actor={self.actor!r} is fixed (not optimised) and train_checker is false: nothing "
                             "would learn; set train_checker: true, actor: model or train_plan: true")
        if self.checker_tokens not in CHECKER_TOKENS:
            raise ValueError(f"unknown checker_tokens {self.checker_tokens!r}; valid: {', '.join(CHECKER_TOKENS)}")
        self.reflect_config()  # ValueError naming a bad final / rating / edit_region
        if self.malformed_penalty < 0:
            raise ValueError(f"malformed_penalty must be >= 0 (it is subtracted), got {self.malformed_penalty}")
        if self.optimize != "both":
            raise ValueError(f"optimize={self.optimize!r} does not apply to reflect-grpo: the phase picks the tokens "
                             "(actor: reflections and edits; editor: the redrawn image tokens); drop it")
        if not self.chain:
            raise ValueError("chain=false: the checker and the editor read the plan; reflect-grpo needs chain: true")
        if self.phase == "editor":
            if getattr(self, "prompts", None):
                raise ValueError("the editor phase trains on WORLD/reflect.jsonl's edit rows, not a prompt set: drop "
                                 "prompts and give --world")
            if self.world and not (Path(self.world) / REFLECT_FILE).is_file():
                raise ValueError(f"the editor phase trains on {Path(self.world) / REFLECT_FILE}, which does not "
                                 f"exist: write it with `janus-rig reflect-data --world {self.world} --n 4000`")
        super().__post_init__()

    # --- views for the library ---
    def loop_record(self) -> dict:
        """How its episodes' loop worked, recorded in the saved model over what the model recorded before
        (janus_rig/reflect/settings.py): actor, edit region, paste-back, final pick and rating. Not the rounds (a
        training cost; the record keeps how many rounds the model is run with), and nothing for `reward: verdicts`,
        whose episodes end at the first check and so run no actor, edit or pick: the model keeps its loop."""
        if self.reward == VERDICTS:
            return {}
        return {"actor": self.actor, "edit_region": self.edit_region, "paste_back": self.paste_back,
                "final": self.final, "rating": self.rating}

    def reflect_config(self, rounds: int | None = None):
        """The loop's settings: K rounds, the roles sampled at this config's text temperature / top-k / top-p."""
        def text(tokens: int) -> TextConfig:
            return TextConfig(max_new_tokens=tokens, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)

        return ReflectConfig(rounds=self.rounds if rounds is None else rounds,
                             checker=text(self.max_reflection_tokens), actor=text(self.max_edit_tokens),
                             paste_back=self.paste_back, edit_region=self.edit_region, final=self.final,
                             rating=self.rating)


def parse_config(argv: list[str] | None = None) -> ReflectGRPOConfig:
    return parse_recipe(ReflectGRPOConfig, argv)
