"""The optional aesthetic term's scorer: an open_clip model read from a LOCAL directory, never downloaded.

A model directory is open_clip's own `local-dir:` layout (what an open_clip model repository on the Hugging Face
hub holds) plus one janus-rig file, and the head's weights when the score is `head`:

    MODEL_DIR/
      open_clip_config.json         {"model_cfg": {...}, "preprocess_cfg": {...}}               (open_clip's)
      open_clip_model.safetensors   the CLIP weights; or open_clip_pytorch_model.bin / .pth       (open_clip's)
      aesthetic.json                {"score": "head", "low": 1.0, "high": 10.0, "activation": "none"}
      aesthetic_head.safetensors    score "head" only: linear.0.weight (out, in), linear.0.bias (out), linear.1...

Scores (`SCORES`, aesthetic.json's "score"), both read the L2-normalised image embedding:

    head        a stack of linear layers (`activation` between them) -> one number per image: the LAION
                aesthetic predictor (sac+logos+ava1-l14-linearMSE on OpenAI ViT-L-14, about 1..10).
    similarity  cosine of the image and prompt embeddings: HPS v2.1 (ViT-H-14; about 0.2..0.35).

The raw score maps linearly from [low, high] onto [0, 1], clamped. A raw score that is NaN or infinite, or an
image that cannot be preprocessed, gives None, counted in `scorer.stats` (out_of_range / bad_request) and logged.
`convert` writes such a directory from a real checkpoint; `make_tiny_model_dir` a random-init one for tests
(scripts/make_aesthetic_model.py runs both). open_clip is the `clip` extra (`pip install -e '.[clip]'`; `make
test-clip` builds a venv with it): it is imported only when this term is used, and a clear error names the extra
when it is missing or its torchvision does not import beside the installed torch.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from janus_rig.registry import Registry
from reward_models.judges.base import JudgeStats

CONFIG_FILE = "aesthetic.json"
HEAD_FILE = "aesthetic_head.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = (  # the names open_clip's local-dir loader prefers, in its order; we write the first
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
)
CONFIG_KEYS = {"score", "low", "high", "activation"}
ACTIVATIONS = ("none", "relu", "gelu")
CLIP_EXTRA_HINT = ("the aesthetic term needs open_clip, the optional `clip` extra: pip install -e '.[clip]' beside a "
                   "torch + torchvision pair that import together (`make test-clip` builds .venv-clip with one)")
# Small enough to build in well under a second; the text vocabulary is open_clip's BPE tokenizer's (49408 ids).
TINY_MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

SCORES: Registry = Registry("aesthetic score")


def import_open_clip():
    try:
        import open_clip  # optional: the clip extra, needed by the aesthetic term only
    except Exception as err:  # ImportError, or torchvision's compiled ops failing to load beside this torch
        raise ImportError(f"{CLIP_EXTRA_HINT} ({type(err).__name__}: {err})") from err
    return open_clip


@SCORES.register("head")
def head_score(scorer: "AestheticScorer", image_emb, prompts: Sequence[str]):
    return scorer.head(image_emb).squeeze(-1)  # (B, D) -> (B,)


@SCORES.register("similarity")
def similarity_score(scorer: "AestheticScorer", image_emb, prompts: Sequence[str]):
    tokens = scorer.tokenizer(list(prompts)).to(image_emb.device)  # (B, T)
    text_emb = torch.nn.functional.normalize(scorer.model.encode_text(tokens).float(), dim=-1)  # (B, D)
    return (image_emb * text_emb).sum(-1)  # (B,)


def read_config(directory: Path) -> dict:
    """aesthetic.json, checked: score, low < high, activation; ValueError naming the file and the field."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an aesthetic model directory needs {CONFIG_FILE} "
                                "(scripts/make_aesthetic_model.py convert writes one)")
    try:
        config = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}; fields: {sorted(CONFIG_KEYS)}")
    if config.get("score") not in SCORES:
        raise ValueError(f"{path}: field 'score' is {config.get('score')!r}; valid: {', '.join(SCORES.names())}")
    for key in ("low", "high"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path}: field {key!r} must be a finite number, got {value!r}")
    if not config["high"] > config["low"]:
        raise ValueError(f"{path}: need high > low, got low={config['low']}, high={config['high']}")
    config.setdefault("activation", "none")
    if config["activation"] not in ACTIVATIONS:
        raise ValueError(f"{path}: field 'activation' is {config['activation']!r}; valid: {', '.join(ACTIVATIONS)}")
    return config


def check_model_dir(directory: Path) -> tuple[dict, dict]:
    """(aesthetic.json, open_clip's model_cfg) once every file is there (FileNotFoundError names the missing one)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"aesthetic model directory {directory} not found (the term never downloads)")
    config = read_config(directory)
    if not (directory / OPEN_CLIP_CONFIG).is_file():
        raise FileNotFoundError(f"{directory / OPEN_CLIP_CONFIG} not found: the open_clip model's config")
    if not any((directory / name).is_file() for name in OPEN_CLIP_WEIGHTS):
        raise FileNotFoundError(f"no open_clip weights in {directory}: expected one of {', '.join(OPEN_CLIP_WEIGHTS)}")
    if config["score"] == "head" and not (directory / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{directory / HEAD_FILE} not found: score 'head' needs the head's weights")
    try:
        model_cfg = json.loads((directory / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
        hf_name = model_cfg.get("text_cfg", {}).get("hf_model_name")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{directory / OPEN_CLIP_CONFIG}: not an open_clip config with a model_cfg object ({err!r})") from None
    if hf_name and not Path(hf_name).is_dir():
        raise ValueError(f"{directory / OPEN_CLIP_CONFIG}: text_cfg.hf_model_name {hf_name!r} is no local directory "
                         "and would be downloaded; point it at a local copy")
    return config, model_cfg


def build_head(state: Mapping, activation: str, in_features: int, path: Path):
    """nn.Sequential of the linear layers linear.0, linear.1, ... with `activation` between them; (B, D) -> (B, 1)."""
    count = len({key.split(".")[1] for key in state if key.startswith("linear.")})
    expected = {f"linear.{i}.{p}" for i in range(count) for p in ("weight", "bias")}
    if count == 0 or set(state) != expected:
        raise ValueError(f"{path}: expected tensors linear.0.weight, linear.0.bias, ... linear.{{n-1}}.bias, "
                         f"got {sorted(state)[:8]}")
    layers: list = []
    width = in_features
    for i in range(count):
        weight, bias = state[f"linear.{i}.weight"], state[f"linear.{i}.bias"]  # (out, in), (out,)
        if weight.ndim != 2 or bias.shape != weight.shape[:1]:
            raise ValueError(f"{path}: linear.{i} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}")
        if weight.shape[1] != width:
            raise ValueError(f"{path}: linear.{i} takes {weight.shape[1]} inputs but gets {width} "
                             f"({'the embedding' if i == 0 else f'linear.{i - 1}'})")
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
        layers += [linear] + ([] if activation == "none" or i == count - 1 else [_activation(activation)])
        width = weight.shape[0]
    if width != 1:
        raise ValueError(f"{path}: the last layer gives {width} values, not 1 score")
    return torch.nn.Sequential(*layers)


def _activation(name: str):
    return {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[name]()


class AestheticScorer:
    """scorer(images, prompts) -> [value in [0, 1] or None]; `stats` counts the Nones' reasons."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 32):
        open_clip = import_open_clip()  # first: the missing extra is the error to report
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        directory = Path(model_dir)
        config, model_cfg = check_model_dir(directory)
        self.score, self.low, self.high = SCORES.get(config["score"]), float(config["low"]), float(config["high"])
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{directory}", require_pretrained=True
            )
        except RuntimeError as err:  # a state dict that does not fit the config (strict loading)
            raise ValueError(f"{directory}: the open_clip weights do not fit {OPEN_CLIP_CONFIG}: {str(err)[:500]}") from None
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{directory}")
        self.head = None
        if config["score"] == "head":
            head = build_head(load_file(directory / HEAD_FILE), config["activation"], model_cfg["embed_dim"],
                              directory / HEAD_FILE)
            self.head = head.to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.stats = JudgeStats(f"aesthetic {directory.name}")  # requests and failures/<kind>, as a judge's

    def raw_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """The score before scaling, one per image (equal-length lists, every image preprocessable)."""
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images[chunk]])  # (B, 3, H, W)
                features = self.model.encode_image(pixels.to(self.device)).float()  # (B, D)
                image_emb = torch.nn.functional.normalize(features, dim=-1)  # (B, D)
                out += self.score(self, image_emb, prompts[chunk]).cpu().tolist()  # (B,)
        return out

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float | None]:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        self.stats.count("requests", len(images))
        values: list[float | None] = [None] * len(images)
        usable = []
        for i, image in enumerate(images):
            if isinstance(image, Image.Image) and min(image.size) >= 1:
                usable.append(i)
            else:
                self.stats.fail("bad_request", f"image {i} is not a non-empty PIL image: {image!r:.80}")
        raw = self.raw_scores([images[i] for i in usable], [prompts[i] for i in usable]) if usable else []
        for i, value in zip(usable, raw):
            if not math.isfinite(value):
                self.stats.fail("out_of_range", f"image {i}: raw score {value}")
                continue
            values[i] = min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))
        return values


@lru_cache(maxsize=2)
def load_scorer(model_dir: str, device: str = "cpu") -> AestheticScorer:
    return AestheticScorer(model_dir, device)


# ---- writing a model directory: from a real checkpoint (convert) or random init (make_tiny_model_dir) ----


def head_state_from_checkpoint(state: Mapping) -> dict:
    """A head checkpoint's linear layers, renamed linear.0, linear.1, ... in the order of their indices.

    LAION's predictor is `layers = Sequential(Linear, Dropout, Linear, Dropout, ..., Linear)`, saved as
    layers.0.weight, layers.0.bias, layers.2.weight, ...; a "module." prefix (DataParallel) changes nothing.

    >>> import torch
    >>> state = {"layers.2.weight": torch.zeros(1, 4), "layers.2.bias": torch.zeros(1),
    ...          "layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(4)}
    >>> {k: tuple(v.shape) for k, v in head_state_from_checkpoint(state).items()}
    {'linear.0.weight': (4, 8), 'linear.0.bias': (4,), 'linear.1.weight': (1, 4), 'linear.1.bias': (1,)}
    """
    state = state.get("state_dict", state)
    weights = [(key, t) for key, t in state.items() if key.endswith(".weight") and getattr(t, "ndim", 0) == 2]
    if not weights:
        raise ValueError(f"no linear layer (a 2-D .weight) in the head checkpoint: {sorted(state)[:8]}")
    out = {}
    for i, (key, weight) in enumerate(sorted(weights, key=lambda kv: [int(n) for n in re.findall(r"\d+", kv[0])])):
        bias_key = key[: -len("weight")] + "bias"
        if bias_key not in state:
            raise ValueError(f"head checkpoint: {key} has no {bias_key}")
        out[f"linear.{i}.weight"], out[f"linear.{i}.bias"] = weight.float(), state[bias_key].float()
    return out


def build_open_clip(arch_or_cfg: str | dict, weights: str | Path | None = None):
    """(model, model_cfg): a built-in open_clip architecture (or a model_cfg dict), weights from a LOCAL file."""
    open_clip = import_open_clip()

    if isinstance(arch_or_cfg, dict):
        if weights is not None:
            raise ValueError("weights need a built-in architecture name, not a model_cfg dict")
        return open_clip.CLIP(**copy.deepcopy(arch_or_cfg)).eval(), copy.deepcopy(arch_or_cfg)
    model_cfg = open_clip.get_model_config(arch_or_cfg)
    if model_cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch_or_cfg!r}; valid: {', '.join(open_clip.list_models())}")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"open_clip weights {weights} not found (nothing is downloaded)")
    model = open_clip.create_model(arch_or_cfg, pretrained=str(weights) if weights else None,
                                   require_pretrained=weights is not None)
    return model.eval(), model_cfg


def write_model_dir(out: str | Path, model, model_cfg: dict | None, *, score: str, low: float, high: float,
                    head_state: Mapping | None = None, activation: str = "none") -> Path:
    """Write a model directory; model None keeps the open_clip files already in `out` (a hub snapshot).

    The directory is checked before returning, so a bad one fails here rather than at the first reward.
    """
    open_clip = import_open_clip()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
        (out / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=1))
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out / OPEN_CLIP_WEIGHTS[0])
    if head_state is not None:
        save_file({k: v.detach().float().contiguous() for k, v in head_state.items()}, out / HEAD_FILE)
    (out / CONFIG_FILE).write_text(json.dumps({"score": score, "low": low, "high": high, "activation": activation}))
    check_model_dir(out)
    return out


def convert(out: str | Path, *, score: str, low: float, high: float, arch: str | None = None,
            clip_weights: str | Path | None = None, head_checkpoint: str | Path | None = None,
            activation: str = "none") -> Path:
    """A model directory from a real checkpoint: an open_clip architecture + its weights file (or, with neither,
    the open_clip files already in `out`), and a head checkpoint for score head."""
    if (score == "head") != (head_checkpoint is not None):
        raise ValueError("score 'head' needs a head checkpoint, and only it takes one")
    if (arch is None) != (clip_weights is None):
        raise ValueError("give both an architecture and its weights file, or neither (out holds open_clip's files)")
    head_state = None
    if head_checkpoint is not None:
        if not Path(head_checkpoint).is_file():
            raise FileNotFoundError(f"head checkpoint {head_checkpoint} not found")
        head_state = head_state_from_checkpoint(torch.load(head_checkpoint, map_location="cpu", weights_only=True))
    model, model_cfg = build_open_clip(arch, clip_weights) if arch is not None else (None, None)
    return write_model_dir(out, model, model_cfg, score=score, low=low, high=high, head_state=head_state,
                           activation=activation)


def make_tiny_model_dir(out: str | Path, *, score: str = "head", seed: int = 0, low: float = -0.5, high: float = 0.5,
                        activation: str = "relu") -> Path:
    """A random-init open_clip model (TINY_MODEL_CFG) + a random 2-layer head: a real one's layout, in ~7 MB."""
    torch.manual_seed(seed)
    model, model_cfg = build_open_clip(TINY_MODEL_CFG)
    head_state = None
    if score == "head":
        head = torch.nn.Sequential(torch.nn.Linear(TINY_MODEL_CFG["embed_dim"], 8), torch.nn.Linear(8, 1))
        head_state = {f"linear.{i}.{p}": t for i, layer in enumerate(head) for p, t in layer.state_dict().items()}
    return write_model_dir(out, model, model_cfg, score=score, low=low, high=high, head_state=head_state,
                           activation=activation)
