"""Settings of `janus-rig grpo`: transformers' TrainingArguments plus the GRPO fields, every one with help text.

Names follow trl's GRPOConfig where the concept is the same (`num_generations`, `beta`, `epsilon`, `loss_type`,
`scale_rewards`, `num_iterations`, `temperature`, `max_completion_length`, ...); the rest is ours (CFG, the image
log-prob, which spans are optimised, the reward terms and judge, the prompt source). Parsed like trl's recipes:

    janus-rig grpo --config train/recipes/shapeworld_grpo.yaml --max_steps 20

One difference from trl, on purpose: `per_device_train_batch_size` counts PROMPTS per step, not completions.
Every process sees the same prompts and samples num_generations / world_size completions of each, so a step
holds per_device_train_batch_size x num_generations samples in all, whatever the number of processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

from transformers import TrainingArguments

from janus_rig.rollout.config import COMPUTE_DTYPES, RolloutConfig
from reward_models.config import RewardConfig
from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS, reads_image
from train.grpo.algos import LOSS_TYPES, SCALE_REWARDS
from train.common import OutputArgs, PolicyArgs, parse_recipe
from train.common import help_field as _help
from train.grpo.guard import GuardSettings

IMAGE_LOGPROBS = ("cond", "cfg")
OPTIMIZE = ("chain", "image", "both")
IS_LEVELS = ("token", "sequence")
GUARD_CHOICES = ("stop", "rollback", "off")


def _json_dict(name: str, value) -> dict:
    """A dict field given as a dict (YAML) or as JSON text (a flag): `--judge_options '{"timeout": 30}'`."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise ValueError(f"{name} must be a JSON object, e.g. '{{\"key\": 1}}', got {value!r} ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return value


@dataclass
class GRPOConfig(PolicyArgs, OutputArgs, TrainingArguments):
    # model_dtype, trainable_parts and the lora_* fields: PolicyArgs; overwrite_output_dir: OutputArgs (train/common.py)
    # --- prompts ---
    world: str | None = _help("a `janus-rig world` directory: prompts come from its train.jsonl records (their "
                              "metadata goes to the rewards) unless `prompts` is given; eval_every reads its bench",
                              default=None)
    prompts: str | None = _help("a prompt-set .jsonl to train on instead of WORLD/train.jsonl: rows {id, prompt, "
                                "tag, metadata} as `janus-rig convert prompts` writes them; the shapeworld judge "
                                "needs ShapeWorld metadata on every row, VLM judges need none", default=None)
    tags: list[str] = _help("train only on records of these tags (e.g. position complex); empty: every tag",
                            default_factory=list)
    max_train_records: int = _help("use only the first N matching records (0: all)", default=0)
    # --- model ---
    model_name_or_path: str | None = _help("the policy to train: an SFT run's directory or a transformers-format "
                                           "Janus-Pro checkpoint", default=None)
    # --- rollout (trl names where they exist) ---
    num_generations: int = _help("G: samples per prompt; advantages are normalised within each group "
                                 "(GoT-R1: 16)", default=8)
    max_completion_length: int = _help("most reasoning-chain tokens before <begin_of_image> is forced (the image "
                                       "always has its fixed token count); GoT-R1: 600", default=600)
    chain: bool = _help("write a reasoning chain before the image; false: the no-reasoning ablation (prompt -> "
                        "image, optimize must then be image)", default=True)
    temperature: float = _help("chain sampling temperature; the chain log-probs use the same one", default=1.0)
    top_p: float = _help("nucleus sampling of the chain (1.0: off)", default=1.0)
    top_k: int | None = _help("sample the chain from the k likeliest tokens (None: off)", default=None)
    cfg_weight: float = _help("classifier-free guidance weight while sampling image tokens (1.0: off); "
                              "GoT-R1: 5", default=5.0)
    image_temperature: float = _help("image-token sampling temperature (divides the guided logits)", default=1.0)
    image_top_k: int | None = _help("sample image codes from the k likeliest (None: off)", default=None)
    rollout_dtype: str = _help("compute dtype of the rollouts: auto (the weights'), bf16, fp16 or fp32; bf16 on fp32 "
                               "weights samples under autocast with bf16 KV caches, as the loss's forward runs with "
                               "bf16: true", default="auto")
    # --- loss (trl names) ---
    optimize: str = _help("which sampled spans carry the loss: chain, image, or both (GoT-R1: both)",
                          default="both")
    image_logprob: str = _help("image log-probs in the loss: cond (conditional branch only, T2I-R1's choice; one "
                               "forward) or cfg (the guided distribution actually sampled; a second forward on "
                               "the unconditional rows)", default="cond")
    loss_type: str = _help(f"how per-token losses are aggregated; valid: {', '.join(LOSS_TYPES.names())}",
                           default="dapo")
    beta: float = _help("KL coefficient (k3 estimator against the reference model); 0 builds no reference model",
                        default=0.0)
    epsilon: float = _help("lower clip range of the importance ratio", default=0.2)
    epsilon_high: float | None = _help("upper clip range (None: epsilon; DAPO uses 0.28)", default=None)
    scale_rewards: str = _help(f"advantage scaling: {', '.join(SCALE_REWARDS)} (group: divide by the group's std)",
                               default="group")
    advantage_std_floor: float = _help("ours: divide by max(std, floor) (0 = trl's std + 1e-4). With sparse rewards a "
                                       "group that differs by 1e-3 then gets advantages ~1e-3, not +-1", default=0.0)
    num_iterations: int = _help("policy updates per rollout (trl's mu); old log-probs are always the rollout's",
                                default=1)
    importance_sampling_level: str = _help("token: a ratio per token (GRPO); sequence: one per sample (GSPO)",
                                           default="token")
    chain_only_rollouts: bool = _help("ours: with optimize chain and only reward terms that read no image "
                                      "(R_sem, R_spa), rollouts stop after the chain: the loss is the same (chain "
                                      "tokens never attend to the image) and a step costs ~half; false samples the "
                                      "images anyway (training accuracy, gallery pictures)", default=True)
    mask_truncated_completions: bool = _help("drop samples whose chain hit max_completion_length from the loss "
                                             "(they still count in their group's statistics)", default=False)
    # --- rewards (reward_models.RewardConfig) ---
    reward_terms: list[str] = _help(f"reward terms; registered: {', '.join(REWARD_TERMS.names())}",
                                    default_factory=lambda: list(DEFAULT_TERMS))
    reward_combine: str = _help("product: R_PI * R_PR * R_RI (GoT-R1); sum: weighted mean", default="product")
    reward_weights: dict | str | None = _help("per term or factor weight (JSON on the command line)", default=None)
    judge: str = _help("judge name (shapeworld, hf) or an OpenAI-compatible URL http://host:port/v1",
                       default="shapeworld")
    judge_model: str | None = _help("hf: local model directory; http: the server's model id", default=None)
    judge_options: dict | str | None = _help("extra judge keyword arguments (JSON on the command line)",
                                             default=None)
    term_options: dict | str | None = _help("keyword options per term (JSON on the command line)", default=None)
    # --- the collapse guard (train/grpo/guard.py) ---
    collapse_guard: str = _help("on a collapse (rolling reward below guard_reward_drop x its best, grad norm over "
                                "guard_grad_factor x the first steps', or chains longer by guard_length_growth), "
                                "restore the last healthy weights and: stop (the final save holds them), rollback "
                                "(continue at lr x guard_lr_factor), or off. Snapshots are CPU copies of the "
                                "trainable parameters (LoRA: the adapters); not restored by a resume, which starts "
                                "watching afresh", default="off")
    guard_window: int = _help("steps per rolling statistic of the collapse guard", default=5)
    guard_reward_drop: float = _help("collapse: the rolling reward falls below this share of its best", default=0.5)
    guard_grad_factor: float = _help("collapse: the rolling median grad norm exceeds this multiple of the first "
                                     "window's", default=4.0)
    guard_length_growth: float = _help("collapse: the rolling chain length grows by more than this share",
                                       default=0.3)
    guard_every: int = _help("steps between snapshots of healthy weights (the older of the last two is restored)",
                             default=10)
    guard_lr_factor: float = _help("rollback: the learning rate is multiplied by this after each collapse",
                                   default=0.5)
    # --- budget, eval and gallery ---
    max_train_seconds: float = _help("stop cleanly once this many seconds of training have passed (0: no limit); "
                                     "the final model is still saved", default=0.0)
    eval_every: int = _help("every N steps, sample one image per bench prompt (WORLD/bench) and log the oracle's "
                            "accuracy (0: off)", default=0)
    eval_prompts: int = _help("bench prompts per evaluation (0: all)", default=64)
    gallery_every: int = _help("every N steps, save a PNG strip of sampled images with their chains' boxes "
                               "(0: off)", default=50)
    gallery_size: int = _help("images per gallery strip (one per prompt, first sample)", default=8)
    # --- transformers defaults changed for this trainer ---
    per_device_train_batch_size: int = _help("PROMPTS per step (not completions, unlike trl): every process sees "
                                             "the same prompts and samples num_generations / world_size of each",
                                             default=8)
    remove_unused_columns: bool = _help("the batches are prompt records: must stay false", default=False)
    logging_steps: float = _help("log every this many steps", default=1)
    save_strategy: str = _help("checkpoint strategy ('no', 'steps'); the final model is always saved",
                               default="no")
    ddp_find_unused_parameters: bool | None = _help("DDP: some trainable heads get no gradient when only one span "
                                                    "is optimised", default=True)

    # --help lists these groups first, then PolicyArgs' and OutputArgs', then TrainingArguments' fields (the ones
    # above whose defaults changed stay there); janus_rig/commands/_recipe.py. Every field of ours is in one group.
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "data": ("world", "prompts", "tags", "max_train_records"),
        "model": ("model_name_or_path",),
        "sampling": ("num_generations", "max_completion_length", "chain", "temperature", "top_p", "top_k",
                     "cfg_weight", "image_temperature", "image_top_k", "rollout_dtype", "chain_only_rollouts"),
        "loss": ("optimize", "image_logprob", "loss_type", "beta", "epsilon", "epsilon_high", "scale_rewards",
                 "advantage_std_floor", "num_iterations", "importance_sampling_level", "mask_truncated_completions"),
        "reward": ("reward_terms", "reward_combine", "reward_weights", "judge", "judge_model", "judge_options",
                   "term_options"),
        "collapse guard": ("collapse_guard", "guard_window", "guard_reward_drop", "guard_grad_factor",
                           "guard_length_growth", "guard_every", "guard_lr_factor"),
        "budget and logging": ("max_train_seconds", "eval_every", "eval_prompts", "gallery_every", "gallery_size"),
    }

    def __post_init__(self):
        for name in ("world", "prompts", "model_name_or_path", "judge_model"):
            if getattr(self, name) == "":
                setattr(self, name, None)
        if self.output_dir is None:
            raise ValueError("output_dir is required: --output_dir runs/NAME (the final model is saved there)")
        if not self.world and not self.prompts:
            raise ValueError("world is required: --world DIR, a directory written by `janus-rig world` (its "
                             "train.jsonl gives the prompts and their metadata), or --prompts FILE.jsonl")
        if not self.world and self.eval_every:
            raise ValueError("eval_every samples the world's bench (WORLD/bench/metadata.jsonl): give --world DIR "
                             "or set eval_every: 0")
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required: the SFT run's output directory (or a Janus-Pro "
                             "checkpoint in transformers format)")
        if self.max_steps is None or self.max_steps <= 0:
            raise ValueError("set max_steps (> 0): GRPO has no epochs; max_train_seconds may still end it earlier")
        self._check_rollout()
        self._check_loss()
        self.validate_policy_args()
        self.validate_output_args({"model_name_or_path": self.model_name_or_path})
        self.reward_weights = _json_dict("reward_weights", self.reward_weights)
        self.judge_options = _json_dict("judge_options", self.judge_options)
        self.term_options = _json_dict("term_options", self.term_options)
        self.reward_config()  # RewardConfig validates terms, combine, weights and judge with its own messages
        self._check_guard()
        for name in ("max_train_seconds", "max_train_records", "eval_every", "eval_prompts", "gallery_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: off / no limit), got {getattr(self, name)}")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be false: the batches are prompt records")
        super().__post_init__()

    def _check_rollout(self) -> None:
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: a group of one always has advantage 0; "
                             "use at least 2 (GoT-R1: 16)")
        world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate/torchrun before we parse
        check_world_size(self.num_generations, world_size)
        if self.per_device_train_batch_size < 1:
            raise ValueError("per_device_train_batch_size (prompts per step) must be >= 1")
        rows = self.per_device_train_batch_size * self.num_generations // world_size
        if rows % self.gradient_accumulation_steps:
            raise ValueError(
                f"each process holds {rows} samples per step (prompts x num_generations / world_size), which "
                f"gradient_accumulation_steps={self.gradient_accumulation_steps} does not divide: pick a divisor")
        if self.max_completion_length < 0:
            raise ValueError(f"max_completion_length must be >= 0, got {self.max_completion_length}")
        for name in ("temperature", "image_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}; for near-greedy use 1e-3")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}; 1.0 turns it off")
        for name in ("top_k", "image_top_k"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None (off), got {getattr(self, name)}")
        if self.cfg_weight < 0:
            raise ValueError(f"cfg_weight must be >= 0, got {self.cfg_weight}; 1.0 means no guidance")
        if self.rollout_dtype != "auto" and self.rollout_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown rollout_dtype {self.rollout_dtype!r}; valid: auto, {', '.join(COMPUTE_DTYPES)}")

    def _check_loss(self) -> None:
        if self.optimize not in OPTIMIZE:
            raise ValueError(f"unknown optimize {self.optimize!r}; valid: {', '.join(OPTIMIZE)}")
        if not self.chain and self.optimize != "image":
            raise ValueError(f"chain=false samples no chain, so optimize={self.optimize!r} has no chain tokens to "
                             "train: set optimize: image (or chain: true)")
        if self.image_logprob not in IMAGE_LOGPROBS:
            raise ValueError(f"unknown image_logprob {self.image_logprob!r}; valid: {', '.join(IMAGE_LOGPROBS)}")
        if self.image_logprob == "cfg" and self.cfg_weight == 1.0:
            raise ValueError("image_logprob=cfg with cfg_weight=1: without guidance the guided distribution is the "
                             "conditional one; set image_logprob: cond (one forward instead of two)")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}; valid names: {', '.join(LOSS_TYPES.names())}")
        if self.advantage_std_floor < 0:
            raise ValueError(f"advantage_std_floor must be >= 0, got {self.advantage_std_floor}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"unknown scale_rewards {self.scale_rewards!r}; valid: {', '.join(SCALE_REWARDS)}")
        if self.importance_sampling_level not in IS_LEVELS:
            raise ValueError(f"unknown importance_sampling_level {self.importance_sampling_level!r}; valid: "
                             f"{', '.join(IS_LEVELS)}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (0: no KL and no reference model), got {self.beta}")
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon
        if self.epsilon <= 0 or self.epsilon_high <= 0:
            raise ValueError(f"epsilon={self.epsilon}, epsilon_high={self.epsilon_high}: both must be > 0")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")

    def _check_guard(self) -> None:
        if self.collapse_guard not in GUARD_CHOICES:
            raise ValueError(f"unknown collapse_guard {self.collapse_guard!r}; valid: {', '.join(GUARD_CHOICES)}")
        if self.guard_window < 2 or self.guard_every < 1:
            raise ValueError("guard_window must be >= 2 and guard_every >= 1")
        if not 0 < self.guard_reward_drop < 1 or not 0 < self.guard_lr_factor < 1:
            raise ValueError("guard_reward_drop and guard_lr_factor lie in (0, 1)")
        if self.guard_grad_factor <= 1 or self.guard_length_growth <= 0:
            raise ValueError("guard_grad_factor must be > 1 and guard_length_growth > 0")
        if self.collapse_guard != "off" and self.logging_steps != 1:
            raise ValueError("the collapse guard reads every step's logs: set logging_steps: 1 (or collapse_guard: "
                             "off)")

    def guard_settings(self):
        return GuardSettings(window=self.guard_window, reward_drop=self.guard_reward_drop,
                             grad_factor=self.guard_grad_factor, length_growth=self.guard_length_growth)

    # --- views for the library (trainable() and lora(): PolicyArgs) ---
    def reward_config(self) -> RewardConfig:
        return RewardConfig(terms=list(self.reward_terms), combine=self.reward_combine,
                            weights=_json_dict("reward_weights", self.reward_weights), judge=self.judge,
                            judge_model=self.judge_model, judge_options=_json_dict("judge_options", self.judge_options),
                            term_options=_json_dict("term_options", self.term_options))

    def rollout_config(self, group_size: int, images: bool = True):
        """The sampler's settings; group_size is this process's share of num_generations."""
        return RolloutConfig(group_size=group_size, chain=self.chain, max_chain_tokens=self.max_completion_length,
                             text_temperature=self.temperature, text_top_k=self.top_k, text_top_p=self.top_p,
                             cfg_weight=self.cfg_weight, image_temperature=self.image_temperature,
                             image_top_k=self.image_top_k, images=images, dtype=self.rollout_dtype)

    def rollout_images(self) -> bool:
        """Whether training rollouts sample images: not when only the chain is optimised and scored."""
        chain_only = self.optimize == "chain" and not any(reads_image(t) for t in self.reward_terms)
        return not (self.chain_only_rollouts and chain_only)


def check_world_size(num_generations: int, world_size: int) -> None:
    if num_generations % world_size:
        divisors = [g for g in range(world_size, 4 * world_size + 1, world_size)]
        raise ValueError(f"num_generations={num_generations} does not split over {world_size} processes (each "
                         f"samples num_generations / world_size of every prompt): use a multiple of {world_size}, "
                         f"e.g. {', '.join(map(str, divisors))}")


def parse_config(argv: list[str] | None = None) -> GRPOConfig:
    return parse_recipe(GRPOConfig, argv)
