"""The unified policy: transformers' `JanusForConditionalGeneration` plus its tokenizer and image processor.

We wrap, never fork: the model object is the maintained transformers class (optionally with peft LoRA layers
injected), so a saved policy directory loads in plain transformers:

    policy = JanusPolicy.load("runs/quickstart/sft")
    policy.model                       # JanusForConditionalGeneration (or a peft.PeftModel around it)
    policy.base                        # always the JanusForConditionalGeneration
    policy.tokens.boi                  # id of <begin_of_image>
    policy.encode_prompt("a red circle left of a blue square")
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    JanusForConditionalGeneration,
    JanusProcessor,
)
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from janus_rig import __version__
from janus_rig.model.loading import (
    ADAPTER_CONFIG,
    LoadError,
    first_line,
    layout,
    name_keys,
    read_json_file,
    require_attention,
    require_janus_dir,
    strict_from_pretrained,
)
from janus_rig.model.pixels import to_uint8
from janus_rig.model.prompts import encode_generation_prompt, encode_understanding_prompt, place_codes
from janus_rig.model.tokenizer import add_chain_tokens, add_role_tokens
from janus_rig.model.tokens import SpecialTokenIds

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MANIFEST = "janus_rig.json"  # provenance written next to the weights; never needed to load
ADAPTER_DIR = "adapter"  # LoRA saves: the unmerged adapters as a peft adapter directory, what resuming restores
ADAPTERS = "adapter_model.safetensors"  # peft's weight file inside it
DEFAULT_GUIDANCE = 5.0  # Janus-Pro's CFG weight (its paper): what a model directory without a guidance_scale gets
# The reflection roles' record: how they read an image (`image_view`; absent: "vision") and, under "loop", the loop
# settings the model is released with (janus_rig/reflect/settings.py reads and checks them)
ROLES_FILE = "roles.json"
# How an understanding context (grounding, checker, actor) shows its image to the language model:
#   vision  the understanding path: <image_placeholder> tokens take the vision encoder's features (Janus-Pro's
#           pretrained SigLIP; the default)
#   codes   the image's own VQ codes through the generation embeddings, as the model reads the image tokens it
#           has just written (the tiny ShapeWorld preset, whose vision encoder is random-init: docs/lab/notebook.md §5)
IMAGE_VIEWS = ("vision", "codes")


def require_dir(path: str | Path, what: str, must_have: str | None = None) -> Path:
    """A local directory or a FileNotFoundError that names it (paths never fall through to a hub download)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory {path} does not exist")
    if must_have is not None and not (path / must_have).is_file():
        raise FileNotFoundError(f"{path} is not a {what} directory (no {must_have})")
    return path


def resolve_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


# --- which parts train -------------------------------------------------------------------------------------------
# Attribute paths inside JanusForConditionalGeneration, one per part a recipe can switch.
PART_PATHS = {
    "language_model": "model.language_model",
    "lm_head": "lm_head",
    "generation_embeddings": "model.generation_embeddings",
    "generation_aligner": "model.generation_aligner",
    "generation_head": "model.generation_head",
    "vision_model": "model.vision_model",
    "aligner": "model.aligner",
    "vqmodel": "model.vqmodel",
}


@dataclass
class TrainableParts:
    """Which parts of the model receive gradients. The VQ and the vision encoder are frozen by default."""

    language_model: bool = field(default=True, metadata={"help": "the Llama decoder"})
    lm_head: bool = field(default=True, metadata={"help": "text output head"})
    generation_embeddings: bool = field(default=True, metadata={"help": "image-code input embeddings"})
    generation_aligner: bool = field(default=True, metadata={"help": "MLP from image-code embeddings to the LM"})
    generation_head: bool = field(default=True, metadata={"help": "image-code output head"})
    vision_model: bool = field(default=False, metadata={"help": "understanding vision encoder (SigLIP)"})
    aligner: bool = field(default=False, metadata={"help": "MLP from vision features to the LM"})
    vqmodel: bool = field(default=False, metadata={"help": "the VQ tokenizer (train it with `janus-rig vq train`)"})


def _submodule(model: torch.nn.Module, path: str) -> torch.nn.Module:
    for name in path.split("."):
        model = getattr(model, name)
    return model


def set_trainable(model: JanusForConditionalGeneration, parts: TrainableParts) -> dict[str, int]:
    """Set requires_grad per part; returns the trainable parameter count of each part."""
    counts = {}
    for part in fields(parts):
        module = _submodule(model, PART_PATHS[part.name])
        on = getattr(parts, part.name)
        for p in module.parameters():
            p.requires_grad_(on)
        counts[part.name] = sum(p.numel() for p in module.parameters()) if on else 0
    model.model.vqmodel.eval()  # its dropout/BN-free modules are fine either way; eval documents that it is frozen
    return counts


@dataclass
class LoraSettings:
    """LoRA on the language model's linear layers (GoT-R1: rank 32, alpha 32)."""

    r: int = field(default=32, metadata={"help": "LoRA rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: tuple[str, ...] = field(
        default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        metadata={"help": "linear layer names inside the language model's decoder layers"},
    )
    modules_to_save: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "modules trained in full next to the adapters and kept in checkpoints, e.g. generation_head, "
            "generation_embeddings, generation_aligner, lm_head (image generation lives in these heads)"
        },
    )


def apply_lora(model: JanusForConditionalGeneration, settings: LoraSettings):
    """Wrap the model with peft LoRA adapters on the language model only (the vision tower has q_proj too)."""
    pattern = r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(settings.target_modules) + ")"
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=pattern,
        modules_to_save=list(settings.modules_to_save) or None,
    )
    return get_peft_model(model, config)


def unwrap(model) -> JanusForConditionalGeneration:
    """The JanusForConditionalGeneration inside a peft or DDP wrapper (LoRA layers stay injected in it)."""
    while not isinstance(model, JanusForConditionalGeneration):
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module"):
            model = model.module
        else:
            raise TypeError(f"expected a JanusForConditionalGeneration (or a wrapper of one), got {type(model).__name__}")
    return model


# --- the policy --------------------------------------------------------------------------------------------------
class JanusPolicy:
    def __init__(self, model, tokenizer, image_processor=None, image_view: str = "vision",
                 loop_settings: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_view = check_image_view(image_view)  # IMAGE_VIEWS: how its roles read an image
        self.loop_settings = loop_settings  # the reflection loop's recorded settings (ROLES_FILE "loop"), or None
        self.tokens = SpecialTokenIds.from_tokenizer(tokenizer)
        config = self.base.config
        if config.image_token_id != self.tokens.image:
            raise ValueError(
                f"config.image_token_id={config.image_token_id} but the tokenizer's <image_placeholder> is "
                f"{self.tokens.image}; the model and tokenizer do not belong together"
            )
        if len(tokenizer) > config.text_config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model only {config.text_config.vocab_size}")

    @property
    def base(self) -> JanusForConditionalGeneration:
        return unwrap(self.model)

    @property
    def num_image_tokens(self) -> int:
        return self.base.config.vision_config.num_image_tokens

    @property
    def grid(self) -> tuple[int, int]:
        side = self.base.config.vq_config.num_patches
        return side, side

    @property
    def image_size(self) -> int:
        return self.base.config.vision_config.image_size

    @property
    def codebook_size(self) -> int:
        return self.base.config.vq_config.num_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def encode_prompt(self, prompt: str, chain: bool = True) -> list[int]:
        return encode_generation_prompt(self.tokenizer, self.tokens, prompt, chain)

    def encode_question(self, question: str) -> list[int]:
        return encode_understanding_prompt(self.tokenizer, self.tokens, question, self.num_image_tokens)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode_text(self, ids) -> str:
        """Text of generated ids; chain tokens are kept, BOS/EOS/pad dropped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def pixel_values(self, images) -> torch.Tensor:
        """PIL images -> (B, 3, S, S) for the understanding path."""
        if self.image_processor is None:
            raise ValueError("this policy has no image processor; load it from a directory that has one")
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)

    def show_images(self, contexts: list[list[int]], images=None, codes: torch.Tensor | None = None):
        """Understanding contexts (their `<image_placeholder>` run) -> (ids, image_masks, pixel_values): the inputs
        that show row i's image in this policy's `image_view`.

        vision: the contexts as they are, no image positions, `pixel_values(images)` (B, 3, S, S);
        codes:  row i's (N,) VQ codes `codes[i]` written over its placeholders (image_mask True there), no pixels.
        """
        if self.image_view == "vision":
            if images is None:
                raise ValueError("image_view 'vision' reads the images' pixels: pass images")
            return [list(c) for c in contexts], [[False] * len(c) for c in contexts], self.pixel_values(images)
        if codes is None:
            raise ValueError("image_view 'codes' reads the images' VQ codes: pass codes (B, N)")
        if len(codes) != len(contexts):
            raise ValueError(f"{len(contexts)} contexts but {len(codes)} code rows")
        placed = [place_codes(c, self.tokens.image, row) for c, row in zip(contexts, codes.tolist())]
        return [ids for ids, _ in placed], [mask for _, mask in placed], None

    @torch.no_grad()
    def decode_images(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) codes -> (B, S, S, 3) uint8 pixels."""
        pixels = self.base.decode_image_tokens(image_tokens.to(self.device))  # (B, S, S, 3) in [-1, 1]
        return to_uint8(pixels).cpu()

    @property
    def guidance(self) -> float:
        """The CFG weight the model records (generation_config.json `guidance_scale`; DEFAULT_GUIDANCE without one):
        what generation and evaluation use unless told otherwise. Set it and the next save records it."""
        value = getattr(self.base.generation_config, "guidance_scale", None)
        return DEFAULT_GUIDANCE if value is None else float(value)

    @guidance.setter
    def guidance(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"guidance must be >= 0 (1.0: no guidance), got {value}")
        self.base.generation_config.guidance_scale = float(value)

    # --- persistence -------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, manifest: dict | None = None, adapters: bool = True) -> Path:
        """Save in transformers' format. LoRA adapters are merged into a copy so the directory loads without peft;
        with `adapters` (the default) they are also written unmerged as a standard peft adapter directory
        (ADAPTER_DIR: adapter_config.json + adapter_model.safetensors), which `PeftModel.from_pretrained(base,
        DIR/adapter)` loads on the run's starting model and `load_weights` restores when resuming."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):
            if adapters:
                model.save_pretrained(out / ADAPTER_DIR)
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        if self.image_processor is not None:
            JanusProcessor(self.image_processor, self.tokenizer, num_image_tokens=self.num_image_tokens).save_pretrained(out)
        roles = {"image_view": self.image_view}
        if self.loop_settings:
            roles["loop"] = self.loop_settings
        (out / ROLES_FILE).write_text(json.dumps(roles, indent=1) + "\n")
        if manifest is not None:
            (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return out

    def load_weights(self, path: str | Path) -> None:
        """Restore, in place, the trained state a checkpoint directory holds (resuming a run): the LoRA adapters
        (ADAPTER_DIR) when this policy has them — its base is the run's starting model, frozen — else every weight
        of the model (model.safetensors or a sharded index). ValueError naming the directory when a file is missing
        or its tensors do not match this model."""
        path = require_dir(path, "checkpoint")
        if hasattr(self.model, "merge_and_unload"):
            file = next((f for f in (path / ADAPTER_DIR / ADAPTERS, path / ADAPTERS) if f.is_file()), None)
            if file is None:
                raise ValueError(f"{path} holds no {ADAPTER_DIR}/{ADAPTERS}: this run trains LoRA adapters, and only "
                                 "a LoRA checkpoint of it can be resumed")
            result = set_peft_model_state_dict(self.model, _load_safetensors(file))
            unexpected = list(getattr(result, "unexpected_keys", []) or [])
            if unexpected:
                raise ValueError(f"{file}: tensors this model has no place for: {name_keys(unexpected)}")
            return
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = read_json_file(index, "checkpoint").get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index}: no 'weight_map' object")
            files = sorted(set(weight_map.values()))
        elif (path / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise ValueError(f"{path} holds no model.safetensors (nor a sharded index): not a checkpoint of a policy")
        state = {}
        for name in files:
            state.update(_load_safetensors(path / name))
        expected = self.base.state_dict()
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
                  if k in expected and v.shape != expected[k].shape]
        if shapes:
            raise ValueError(f"{path}: mis-shaped tensors (checkpoint vs model) {name_keys(shapes)}")
        missing, unexpected = self.base.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: its weights do not fit this model (missing {name_keys(missing) or 'none'}, "
                             f"unexpected {name_keys(unexpected) or 'none'}); resume with the run's own "
                             "model_name_or_path")

    @classmethod
    def load(
        cls,
        path: str | Path,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        trainable: TrainableParts | None = None,
        lora: LoraSettings | None = None,
        attn_implementation: str | None = None,
    ) -> "JanusPolicy":
        """Load our directories, any transformers-format Janus directory (e.g. deepseek-community/Janus-Pro-1B), or a
        LoRA adapter directory (merged into the local base model its adapter_config.json names).

        attn_implementation: "eager", "sdpa" or "flash_attention_2" for the language model and vision tower (None:
        transformers' default, sdpa); one this machine cannot run is refused in one line before any weight is read.

        Strict (`janus_rig.model.loading`): a directory of another layout, a corrupt file, or weights that do not
        fit the config raise a one-line LoadError; nothing is ever initialised at random, except new token rows:
        chain and reflection-role tokens are added to the tokenizer when missing, and the embeddings resized (the
        new rows logged) only if the tokenizer then outgrows them (Janus-Pro has spare rows: vocab 102400 >
        tokenizer length).
        """
        path = Path(path)
        attention = {}
        if attn_implementation is not None:
            attention["attn_implementation"] = require_attention(attn_implementation)
        if layout(path) == "adapter":
            return cls._load_adapter(path, dtype, device, trainable, lora, attn_implementation)
        path = require_janus_dir(path)
        tokenizer = _load_tokenizer(path)
        added = add_chain_tokens(tokenizer) + add_role_tokens(tokenizer)
        model = strict_from_pretrained(JanusForConditionalGeneration, path, "Janus model",
                                       dtype=resolve_dtype(dtype) or "auto", **attention)
        if added:
            log.info("added %d chain / role tokens to the tokenizer of %s", added, path)
            grow_vocabulary(model, len(tokenizer), path)
        image_processor = _load_image_processor(path, model)
        if device is not None:
            model.to(device)
        set_trainable(model, trainable or TrainableParts())
        if lora is not None:
            model = apply_lora(model, lora)
        return cls(model, tokenizer, image_processor, *read_roles(path))

    @classmethod
    def _load_adapter(cls, path: Path, dtype, device, trainable, lora, attn_implementation) -> "JanusPolicy":
        """A peft adapter directory: its base (adapter_config.json's base_model_name_or_path, a local directory)
        loaded strictly, the adapters merged in. The tokenizer and roles come from the base."""
        if lora is not None:
            raise LoadError(f"{path} is a LoRA adapter directory: train new adapters on its base, or on a merged save")
        base_dir = read_json_file(path / ADAPTER_CONFIG, "adapter").get("base_model_name_or_path")
        if not isinstance(base_dir, str) or not Path(base_dir).is_dir():
            raise LoadError(f"{path / ADAPTER_CONFIG}: base_model_name_or_path {base_dir!r} is not a local directory; "
                            "set it to the model the adapters were trained on")
        base = cls.load(base_dir, dtype=dtype, device=device, attn_implementation=attn_implementation)
        try:
            merged = PeftModel.from_pretrained(base.model, path).merge_and_unload()
        except (ValueError, KeyError, RuntimeError, OSError, SafetensorError) as err:
            raise LoadError(f"{path}: the adapters do not load on {base_dir}: {first_line(err)}") from None
        set_trainable(merged, trainable or TrainableParts())
        return cls(merged, base.tokenizer, base.image_processor, base.image_view, base.loop_settings)


def grow_vocabulary(model: JanusForConditionalGeneration, size: int, path) -> None:
    """Resize the text embeddings and lm_head to `size` rows when the tokenizer outgrew them; the only weights a
    load ever initialises, and logged as such."""
    rows = model.config.text_config.vocab_size
    if size > rows:
        model.resize_token_embeddings(size)
        log.warning("%s: initialised %d new token rows (ids %d..%d) in the embeddings and lm_head for the added "
                    "tokens", path, size - rows, rows, size - 1)


def _load_tokenizer(path: Path):
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise LoadError(f"{path}: cannot load its tokenizer: {first_line(err)}") from None


def _load_safetensors(file: Path) -> dict:
    try:
        return load_file(file)
    except (SafetensorError, OSError) as err:
        raise LoadError(f"{file}: corrupt or truncated safetensors ({err})") from None


def check_image_view(view: str) -> str:
    if view not in IMAGE_VIEWS:
        raise ValueError(f"image_view must be one of {', '.join(IMAGE_VIEWS)}, got {view!r}")
    return view


def read_roles(path: Path) -> tuple[str, dict | None]:
    """What a model directory's ROLES_FILE records: the `image_view` ("vision" without one: any stock Janus) and the
    loop settings (None without them; checked where the loop resolves them)."""
    file = path / ROLES_FILE
    if not file.is_file():
        return "vision", None
    try:
        roles = json.loads(file.read_text())
        view, loop = roles.get("image_view", "vision"), roles.get("loop")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{file}: not a JSON object with an 'image_view' ({err})") from None
    if loop is not None and not isinstance(loop, dict):
        raise ValueError(f"{file}: 'loop' must be an object of loop settings, got {type(loop).__name__}")
    try:
        return check_image_view(view), loop
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None



def _load_image_processor(path: Path, model: JanusForConditionalGeneration):
    # The PIL image processor works without torchvision (the CPU torch build cannot import PyPI's torchvision).
    if (path / "preprocessor_config.json").is_file() or (path / "processor_config.json").is_file():
        try:
            return JanusImageProcessorPil.from_pretrained(path)
        except (OSError, ValueError) as err:
            log.warning("could not read the image processor of %s (%s); building one from the config", path, err)
    return make_image_processor(model.config.vision_config.image_size)


def make_image_processor(image_size: int, mean: float = 0.5, std: float = 0.5) -> JanusImageProcessorPil:
    """Janus-Pro normalises to [-1, 1] (mean = std = 0.5), the same range the VQ sees."""
    return JanusImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[mean] * 3, image_std=[std] * 3
    )


def read_guidance(path: str | Path) -> float:
    """The CFG weight a model directory records (generation_config.json `guidance_scale`; an adapter directory: its
    base's), read without loading the model; DEFAULT_GUIDANCE where none is recorded or the directory is not one
    (loading it then says what is wrong). LoadError naming the file when it is corrupt."""
    path = Path(path)
    if not path.is_dir():
        return DEFAULT_GUIDANCE
    if layout(path) == "adapter":
        base = read_json_file(path / ADAPTER_CONFIG, "adapter").get("base_model_name_or_path")
        return read_guidance(base) if isinstance(base, str) else DEFAULT_GUIDANCE
    file = path / "generation_config.json"
    value = read_json_file(file, "generation config").get("guidance_scale") if file.is_file() else None
    if value is None:
        return DEFAULT_GUIDANCE
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise LoadError(f"{file}: guidance_scale must be a number >= 0, got {value!r}")
    return float(value)


def make_generation_config(tokens: SpecialTokenIds, num_image_tokens: int,
                           guidance_scale: float = DEFAULT_GUIDANCE) -> GenerationConfig:
    """A generation config with which transformers' own `generate(generation_mode="image")` works as is."""
    return GenerationConfig(
        bos_token_id=tokens.bos,
        eos_token_id=tokens.eos,
        pad_token_id=tokens.pad,
        do_sample=True,
        temperature=1.0,
        guidance_scale=guidance_scale,
        max_new_tokens=num_image_tokens,
        generation_kwargs={"boi_token_id": tokens.boi},
    )


def manifest(**extra) -> dict:
    return {"janus_rig": __version__, "transformers": transformers.__version__, "torch": torch.__version__, **extra}


def parts_from_dict(values: dict) -> TrainableParts:
    unknown = set(values) - {f.name for f in fields(TrainableParts)}
    if unknown:
        raise ValueError(f"unknown trainable parts {sorted(unknown)}; valid: {', '.join(asdict(TrainableParts()))}")
    return TrainableParts(**values)
