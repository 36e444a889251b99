"""`janus-rig convert janus-pro`: a deepseek-layout Janus / Janus-Pro / GoT-R1 directory -> a transformers-format one.

    report = convert_deepseek("Janus-Pro-1B", "models/janus-pro-1b", dtype="bfloat16")
    JanusPolicy.load("models/janus-pro-1b")        # or stock JanusForConditionalGeneration.from_pretrained

Offline, on local directories. Everything is checked before anything is written: every source tensor is mapped
or dropped for a stated reason (`janus_rig.model.deepseek`), and the mapped tensors must be exactly the
parameters of the model the built config describes, shape for shape (checked on the meta device, no memory).
Then the weights are converted shard by shard (memory stays near one source shard), and the tokenizer (its ids
kept as they are: GoT-R1's chain tokens stay where GoT-R1 put them), image processor, processor and generation
config are written, with `conversion_report.json`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import AutoTokenizer, JanusForConditionalGeneration, JanusProcessor
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from janus_rig.chain import CHAIN_TOKENS
from janus_rig.model.deepseek import convert_tensor, dropped_reason, janus_config, target_key
from janus_rig.model.loading import LoadError, first_line, layout, name_keys, quiet_transformers, read_json_file
from janus_rig.model.policy import DTYPES, make_generation_config, resolve_dtype
from janus_rig.model.tokens import MODEL_SPECIFIC, SpecialTokenIds

log = logging.getLogger(__name__)

REPORT = "conversion_report.json"
EMBED_KEY = "language_model.model.embed_tokens.weight"
# Weight files of a deepseek directory, in the order they are looked for: (index, single file).
WEIGHT_LAYOUTS = (("model.safetensors.index.json", "model.safetensors"),
                  ("pytorch_model.bin.index.json", "pytorch_model.bin"))
PROCESSOR_FIELDS = ("image_mean", "image_std", "rescale_factor", "do_normalize", "min_size")


@dataclass
class ConversionReport:
    source: str
    out: str
    mapped: int = 0  # source tensors written (a split qkv counts once)
    split: int = 0  # merged qkv tensors split into q, k, v
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> source keys
    source_dtypes: dict[str, int] = field(default_factory=dict)
    dtype: str = ""
    parameters: int = 0
    vocab_size: int = 0
    notes: list[str] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        dropped = sum(len(keys) for keys in self.dropped.values())
        return (f"converted {self.source} -> {self.out}: {self.mapped} tensors mapped ({self.split} qkv split), "
                f"{dropped} dropped, {self.parameters / 1e6:.1f} M parameters in {self.dtype}, vocabulary "
                f"{self.vocab_size} rows, {len(self.files)} weight file(s); details in {Path(self.out) / REPORT}")


# --- reading the source ----------------------------------------------------------------------------------------
def weight_files(src: Path) -> list[Path]:
    """The source's weight files (safetensors preferred over .bin; an index lists shards)."""
    for index_name, single in WEIGHT_LAYOUTS:
        index = src / index_name
        if index.is_file():
            weight_map = read_json_file(index, "weights index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise LoadError(f"{index}: no 'weight_map' object")
            files = [src / name for name in sorted(set(weight_map.values()))]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise LoadError(f"{index} lists shards that are not there: {name_keys(absent)}")
            return files
        if (src / single).is_file():
            return [src / single]
    raise LoadError(f"{src} holds no weights (model.safetensors, pytorch_model.bin, or a sharded index of either)")


def read_shard(file: Path) -> dict[str, torch.Tensor]:
    """A weight file's tensors; .bin files are read with weights_only (no pickled code) and memory-mapped when
    they are in torch's zip format. LoadError naming the file when it is corrupt or truncated."""
    try:
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys()}
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "zip" not in str(err).lower():
                raise
            state = torch.load(file, map_location="cpu", weights_only=True)  # the legacy (non-zip) format
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise LoadError(f"{file}: corrupt or truncated weight file ({first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - torch.load's weights_only refusal is a pickle.UnpicklingError
        raise LoadError(f"{file}: not a plain tensor file ({first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LoadError(f"{file}: not a state dict of tensors")
    return state


def read_shapes(files: list[Path]) -> dict[str, tuple[tuple[int, ...], torch.dtype, Path]]:
    """key -> (shape, dtype, file) without reading the tensors' data (safetensors headers; .bin memory-mapped)."""
    shapes = {}
    for file in files:
        if file.suffix == ".safetensors":
            try:
                with safe_open(file, framework="pt") as handle:
                    for key in handle.keys():
                        piece = handle.get_slice(key)
                        shapes[key] = (tuple(piece.get_shape()), _safetensors_dtype(piece.get_dtype()), file)
            except (SafetensorError, OSError) as err:
                raise LoadError(f"{file}: corrupt or truncated safetensors ({first_line(err)})") from None
        else:
            state = read_shard(file)
            shapes.update({key: (tuple(t.shape), t.dtype, file) for key, t in state.items()})
            del state
    return shapes


def _safetensors_dtype(name: str) -> torch.dtype:
    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
    return table.get(name, torch.float32)


def load_source_tokenizer(src: Path):
    """The source tokenizer with its ids untouched, told which of its tokens are Janus's image tokens."""
    try:
        with quiet_transformers():  # it warns that config.json is not a transformers config: we know
            tokenizer = AutoTokenizer.from_pretrained(src, extra_special_tokens=dict(MODEL_SPECIFIC))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise LoadError(f"{src}: cannot load its tokenizer ({first_line(err)})") from None
    vocab = tokenizer.get_vocab()
    missing = [t for t in MODEL_SPECIFIC.values() if t not in vocab]
    if missing:
        raise LoadError(f"{src}: its tokenizer lacks Janus's image tokens {missing}")
    if None in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        raise LoadError(f"{src}: its tokenizer names no bos, eos or pad token (special_tokens_map.json)")
    return tokenizer


def image_processor_of(src: Path, image_size: int) -> JanusImageProcessorPil:
    """deepseek's VLMImageProcessor settings (preprocessor_config.json) as transformers' Janus image processor."""
    file = src / "preprocessor_config.json"
    values = read_json_file(file, "model") if file.is_file() else {}
    kwargs = {k: values[k] for k in PROCESSOR_FIELDS if k in values}
    kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])  # Janus-Pro normalises to [-1, 1]
    kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
    size = int(values.get("image_size", image_size))
    if size != image_size:
        raise LoadError(f"{file}: image_size {size} but the vision tower reads {image_size} px")
    return JanusImageProcessorPil(size={"height": size, "width": size}, **kwargs)


# --- checking before writing -----------------------------------------------------------------------------------
def plan(shapes: dict, config) -> tuple[dict[str, str], dict[str, list[str]]]:
    """source key -> target key (kept), reason -> source keys (dropped). LoadError (one line) for unknown source
    keys, and for target tensors that are missing, unexpected or mis-shaped against the model `config` builds."""
    kept, dropped, unknown = {}, {}, []
    for key in shapes:
        reason = dropped_reason(key)
        if reason is not None:
            dropped.setdefault(reason, []).append(key)
        elif (target := target_key(key)) is not None:
            kept[key] = target
        else:
            unknown.append(key)
    if unknown:
        raise LoadError(f"source tensors no rule maps: {name_keys(sorted(unknown))}; not a Janus checkpoint, or a "
                        "variant janus-rig does not know")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in JanusForConditionalGeneration(config).state_dict().items()}
    produced = {}
    for key, target in kept.items():
        meta = torch.empty(shapes[key][0], device="meta")
        produced.update({k: (tuple(v.shape), key) for k, v in convert_tensor(key, meta).items()})
    missing = sorted(set(expected) - set(produced))
    unexpected = sorted(f"{t} (from {src})" for t, (_, src) in produced.items() if t not in expected)
    shaped = sorted(f"{src} {shape} vs {expected[t]}" for t, (shape, src) in produced.items()
                    if t in expected and shape != expected[t])
    problems = [f"{what} {name_keys(keys)}" for what, keys in
                (("the model has no place for", unexpected), ("mis-shaped (source vs model)", shaped),
                 ("no source tensor fills", missing)) if keys]
    if problems:
        raise LoadError(f"the weights do not fit the architecture config.json describes: {'; '.join(problems)}")
    return kept, dropped


# --- the conversion --------------------------------------------------------------------------------------------
def check_source(src: str | Path) -> Path:
    """`src` as a deepseek-layout directory, or a one-line error saying what it is instead."""
    src = Path(src)
    kind = layout(src)
    if kind != "deepseek":
        raise LoadError(f"{src} is not in deepseek's layout (it is {kind!r}): "
                        + ("it loads in janus-rig as it is" if kind == "janus" else "nothing to convert"))
    return src


def convert_deepseek(src: str | Path, out: str | Path, dtype: str | None = None) -> ConversionReport:
    """Convert `src` (deepseek layout) into `out` (must not exist or be empty: the caller checks). Returns the report,
    also written to out/conversion_report.json."""
    src, out = check_source(src), Path(out)
    if dtype is not None and dtype not in DTYPES:
        raise LoadError(f"unknown --dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    source_config = read_json_file(src / "config.json", "model")
    files = weight_files(src)
    shapes = read_shapes(files)
    if EMBED_KEY not in shapes:
        raise LoadError(f"{src}: no {EMBED_KEY} among its weights")
    tokenizer = load_source_tokenizer(src)
    vocab = tokenizer.get_vocab()
    rows = shapes[EMBED_KEY][0][0]
    try:
        config = janus_config(source_config, rows, vocab["<image_placeholder>"], tokenizer.bos_token_id,
                              tokenizer.eos_token_id, tokenizer.pad_token_id)
    except (ValueError, TypeError, KeyError) as err:
        raise LoadError(f"{src}: {first_line(err)}") from None
    if len(tokenizer) > rows:
        raise LoadError(f"{src}: its tokenizer has {len(tokenizer)} tokens but the embedding only {rows} rows")
    kept, dropped = plan(shapes, config)

    source_dtypes = Counter(str(shape[1]).replace("torch.", "") for shape in shapes.values())
    target_dtype = resolve_dtype(dtype) or _dominant_float(shapes)
    config.dtype = str(target_dtype).replace("torch.", "")
    report = ConversionReport(source=str(src), out=str(out), dropped=dropped, source_dtypes=dict(source_dtypes),
                              dtype=config.dtype, vocab_size=rows)
    declared = source_config["language_config"].get("vocab_size")
    if declared not in (None, rows):
        report.notes.append(f"language_config.vocab_size {declared} but the embedding has {rows} rows: kept {rows}")

    out.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    names = (["model.safetensors"] if len(files) == 1 else
             [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))])
    for file, name in tqdm(list(zip(files, names)), desc="converting shards", unit="shard", disable=len(files) < 2):
        state = read_shard(file)
        converted = {}
        for key in [k for k in state if k in kept]:
            tensor = state.pop(key)
            parts = convert_tensor(key, tensor)
            report.split += len(parts) > 1
            for target, value in parts.items():
                converted[target] = (value.to(target_dtype) if value.is_floating_point() else value).contiguous()
            report.mapped += 1
        save_file(converted, out / name, metadata={"format": "pt"})
        report.parameters += sum(v.numel() for v in converted.values())
        total += sum(v.numel() * v.element_size() for v in converted.values())
        weight_map.update({k: name for k in converted})
        report.files.append(name)
        del state, converted
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor = image_processor_of(src, config.vision_config.image_size)
    JanusProcessor(image_processor, tokenizer, num_image_tokens=config.vision_config.num_image_tokens).save_pretrained(out)
    make_generation_config(_token_ids(tokenizer), config.vision_config.num_image_tokens).save_pretrained(out)
    report.tokens = {t: vocab[t] for t in (*MODEL_SPECIFIC.values(), *CHAIN_TOKENS) if t in vocab}
    if not _has_chain(tokenizer):
        report.notes.append("the tokenizer has no chain tokens: janus-rig adds them when it loads the model")
    (out / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _has_chain(tokenizer) -> bool:
    vocab = tokenizer.get_vocab()
    return all(t in vocab for t in CHAIN_TOKENS)


def _token_ids(tokenizer):
    """SpecialTokenIds for the generation config; chain ids may be absent in a stock tokenizer (added on load)."""
    vocab = tokenizer.get_vocab()
    chain = tuple(vocab.get(t, -1) for t in CHAIN_TOKENS)
    return SpecialTokenIds(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                           image=vocab["<image_placeholder>"], boi=vocab["<begin_of_image>"],
                           eoi=vocab["<end_of_image>"], chain=chain)


def _dominant_float(shapes: dict) -> torch.dtype:
    counts = Counter(dtype for _, dtype, _ in shapes.values() if dtype.is_floating_point)
    return counts.most_common(1)[0][0] if counts else torch.float32
