"""Settings of `janus-rig sft`: transformers' TrainingArguments plus the SFT fields, every one with help text.

Parsed like trl's recipes: `janus-rig sft --config train/recipes/shapeworld_sft.yaml --max_steps 50`; a YAML key
is any field name, a flag overrides the YAML, and the YAML overrides the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from transformers import TrainingArguments

from janus_rig.model.policy import IMAGE_VIEWS
from janus_rig.reflect.settings import LoopSettings, read_recipe
from train.common import OutputArgs, PolicyArgs, parse_recipe
from train.common import help_field as _help
from train.sft.data import WorldInfo


@dataclass
class SFTConfig(PolicyArgs, OutputArgs, TrainingArguments):
    # model_dtype, trainable_parts and the lora_* fields: PolicyArgs; overwrite_output_dir: OutputArgs (train/common.py)
    # --- data ---
    world: str | None = _help("a `janus-rig world` directory (train.jsonl, val.jsonl, grounding.jsonl, world.json)",
                              default=None)
    chain: bool = _help("true: prompt -> reasoning chain -> image (GoT-R1 stage 1); false: prompt -> image, the "
                        "'does reasoning help' ablation", default=True)
    grounding_ratio: float = _help("grounding records (image in as the model's image_view shows it, canonical "
                                   "chain out) mixed in at this fraction of the train records, 0..1", default=0.0)
    reflect_ratio: float = _help("reflection rows (WORLD/reflect.jsonl, written by `janus-rig reflect-data`: the "
                                 "checker's reflection and the actor's edit of a perturbed image, the image in "
                                 "as the model's image_view shows it) mixed in: round(ratio x kept train records) rows, "
                                 "each one checker sequence plus one actor sequence when it says edit; 0..1",
                                 default=0.0)
    image_view: str = _help("how grounding and reflection rows show their image: 'vision' (the understanding path's "
                            "vision features), 'codes' (the image's VQ codes through the generation embeddings) or "
                            "'' (the starting model's; saved with the model, and what its roles then read)",
                            default="")
    cfg_weight: float | None = _help("the classifier-free guidance weight recorded in the saved model (generation_config.json "
                                     "guidance_scale): what `generate`, `eval` and `reflect` sample it with when no --cfg is "
                                     "given. None keeps the starting model's", default=None)
    loop_recipe: str = _help("a reflect recipe (YAML of loop settings, e.g. train/recipes/shapeworld_reflect.yaml) "
                             "recorded in the saved model (roles.json \"loop\"): the loop `janus-rig reflect` and "
                             "`eval geneval --reflect` then run on it with no flags. '' keeps the starting model's",
                             default="")
    max_train_records: int = _help("use only the first N train records (0: all)", default=0)
    max_eval_records: int = _help("val records to evaluate on when eval_strategy is not 'no' (0: all)", default=512)
    vq_cache: bool = _help("true: VQ-encode every image once and cache the codes; false: encode on the fly at "
                           "every step (only for the throughput comparison)", default=True)
    cache_dir: str | None = _help("where the VQ code cache lives (default: WORLD/cache); reused by later runs "
                                  "with the same VQ and records", default=None)
    vq_batch_size: int = _help("images per VQ encode call when building the cache", default=64)
    # --- model ---
    model_name_or_path: str | None = _help("a policy directory to fine-tune (`janus-rig init`, a previous run, or "
                                           "a transformers-format Janus-Pro checkpoint)", default=None)
    init_preset: str | None = _help("instead of model_name_or_path: build a random-init policy from this preset "
                                    "first (saved in OUTPUT_DIR/init)", default=None)
    vq: str | None = _help("with init_preset: a trained VQ directory (`janus-rig vq train`) to plug in",
                           default=None)
    tokenizer: str | None = _help("with init_preset: a tokenizer directory (default: the ShapeWorld word "
                                  "tokenizer)", default=None)
    # --- loss ---
    text_weight: float = _help("weight of the text NLL (chain tokens, <begin_of_image>, <end_of_image>)",
                               default=1.0)
    image_weight: float = _help("weight of the image-code NLL", default=1.0)
    cond_dropout: float = _help("share of image rows trained unconditionally each step (prompt and chain replaced by "
                                "pads, loss on the image codes only), as Janus trains for classifier-free guidance; "
                                "0 leaves CFG's unconditional branch untrained", default=0.1)
    # --- budget ---
    max_train_seconds: float = _help("stop training cleanly once this many seconds of training have passed "
                                     "(0: no limit); the final model is still saved", default=0.0)
    # --- transformers defaults changed for this trainer ---
    remove_unused_columns: bool = _help("keep our columns (image_mask, loss_mask, ...): must stay false",
                                        default=False)
    logging_steps: float = _help("log every this many steps", default=10)
    save_strategy: str = _help("checkpoint strategy ('no', 'steps', 'epoch')", default="steps")

    # --help lists these groups first, then PolicyArgs' and OutputArgs', then TrainingArguments' fields (the ones
    # above whose defaults changed stay there); janus_rig/commands/_recipe.py. Every field of ours is in one group.
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "data": ("world", "chain", "grounding_ratio", "reflect_ratio", "image_view", "max_train_records",
                 "max_eval_records", "vq_cache", "cache_dir", "vq_batch_size"),
        "model": ("model_name_or_path", "init_preset", "vq", "tokenizer"),
        "loss": ("text_weight", "image_weight", "cond_dropout"),
        "recorded in the saved model": ("cfg_weight", "loop_recipe"),
        "budget and logging": ("max_train_seconds",),
    }

    def __post_init__(self):
        for name in ("world", "model_name_or_path", "init_preset", "vq", "tokenizer", "cache_dir"):
            if getattr(self, name) == "":  # `--vq ""` on the command line clears a recipe's value
                setattr(self, name, None)
        if self.output_dir is None:
            raise ValueError("output_dir is required: --output_dir runs/NAME (the final model is saved there)")
        if not self.world:
            raise ValueError("world is required: --world DIR, a directory written by `janus-rig world` "
                             "(chain and no-chain training both read its train.jsonl)")
        WorldInfo.read(self.world)  # a missing world fails here, before output_dir is touched
        if bool(self.model_name_or_path) == bool(self.init_preset):
            which = "both" if self.model_name_or_path else "neither"
            raise ValueError(f"{which} of model_name_or_path and init_preset given: set exactly one "
                             "(--model_name_or_path DIR to fine-tune, or --init_preset tiny [--vq DIR] to start "
                             "from random weights)")
        if (self.vq or self.tokenizer) and not self.init_preset:
            raise ValueError("vq and tokenizer only apply to a freshly initialised model: drop them, or use "
                             "--init_preset instead of --model_name_or_path")
        if not 0.0 <= self.grounding_ratio <= 1.0:
            raise ValueError(f"grounding_ratio {self.grounding_ratio} is outside [0, 1]: e.g. 0.1 adds one "
                             "grounding record per ten train records")
        if self.image_view and self.image_view not in IMAGE_VIEWS:
            raise ValueError(f"image_view must be one of {', '.join(IMAGE_VIEWS)} or '' (the starting model's), got "
                             f"{self.image_view!r}")
        if self.cfg_weight is not None and not self.cfg_weight >= 0:
            raise ValueError(f"cfg_weight must be >= 0 (1.0: no guidance), got {self.cfg_weight}")
        if self.loop_recipe:
            try:
                LoopSettings(**read_recipe(self.loop_recipe))
            except ValueError as err:
                raise ValueError(f"loop_recipe: {err}") from None
        if not 0.0 <= self.reflect_ratio <= 1.0:
            raise ValueError(f"reflect_ratio {self.reflect_ratio} is outside [0, 1]: e.g. 0.1 adds one reflection "
                             "row per ten train records")
        reflect_file = Path(self.world) / "reflect.jsonl"
        if self.reflect_ratio > 0 and not reflect_file.is_file():
            raise ValueError(f"reflect_ratio {self.reflect_ratio} mixes in {reflect_file}, which does not exist: "
                             f"write it with `janus-rig reflect-data --world {self.world} --n 4000` (or set "
                             "reflect_ratio: 0)")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout={self.cond_dropout} must lie in [0, 1) (0.1 as in Janus; 0: no CFG training)")
        if self.text_weight < 0 or self.image_weight < 0 or self.text_weight + self.image_weight == 0:
            raise ValueError(f"text_weight={self.text_weight}, image_weight={self.image_weight}: both must be "
                             ">= 0 and at least one > 0")
        self.validate_policy_args()
        self.validate_output_args({"model_name_or_path": self.model_name_or_path, "vq": self.vq,
                                   "tokenizer": self.tokenizer})
        if self.max_train_seconds < 0:
            raise ValueError(f"max_train_seconds must be >= 0 (0: no limit), got {self.max_train_seconds}")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be false: the SFT batches carry image_mask/loss_mask "
                             "columns the model's forward does not name")
        for name in ("max_train_records", "max_eval_records"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: all), got {getattr(self, name)}")
        if self.vq_batch_size < 1:
            raise ValueError(f"vq_batch_size must be >= 1, got {self.vq_batch_size}")
        super().__post_init__()


def parse_config(argv: list[str] | None = None) -> SFTConfig:
    return parse_recipe(SFTConfig, argv)
