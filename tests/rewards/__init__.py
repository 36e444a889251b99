"""Shared helpers for the reward (and evaluation) tests: a small ShapeWorld world, the corruptions of its records,
and a tiny random-init Qwen2.5-VL judge model."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from data_prep.shapeworld.scene import COLORS
from janus_rig.chain import Box, ChainObject, format_chain, parse_chain


class World:
    """val records of a small world, loaded: prompts, chains, images, metadata (parallel lists)."""

    def __init__(self, out: Path, n: int = 80, seed: int = 3):
        from data_prep.shapeworld.world import write_world

        write_world(out, 0, n, 1, seed=seed, progress=False)
        self.dir = out
        self.records_path = out / "val.jsonl"
        self.records = [json.loads(line) for line in self.records_path.read_text().splitlines()]
        self.prompts = [r["prompt"] for r in self.records]
        self.chains = [r["chain"] for r in self.records]
        self.metadata = [r["metadata"] for r in self.records]
        self.images = [Image.open(out / r["image"]).convert("RGB") for r in self.records]

    def other(self, i: int) -> int:
        """The next record with a different prompt."""
        n, k = len(self.records), 1
        while self.prompts[(i + k) % n] == self.prompts[i]:
            k += 1
        return (i + k) % n


def rebuild(chain: str, change) -> str:
    """The chain with every object replaced by change(object); the prose stays."""
    parsed = parse_chain(chain)
    parts: list = []
    for text, obj in zip(parsed.texts, parsed.objects):
        parts += [text, change(obj)]
    return format_chain([*parts, parsed.texts[-1]])


def reflect(obj: ChainObject) -> ChainObject:
    """The box point-reflected through the canvas centre: every relation flips, the box moves."""
    b = obj.box
    return ChainObject(obj.name, Box(1000 - b.x2, 1000 - b.y2, 1000 - b.x1, 1000 - b.y1))


def recolour(obj: ChainObject) -> ChainObject:
    """The next palette colour for the object's colour."""
    colors = list(COLORS)
    color, shape = obj.name.split()
    return ChainObject(f"{colors[(colors.index(color) + 1) % len(colors)]} {shape}", obj.box)


def variants(world: World) -> dict[str, tuple[list[str], list[Image.Image]]]:
    """True triples and four corruptions: (chains, images) per variant; prompts and metadata stay."""
    n = len(world.records)
    return {
        "true": (world.chains, world.images),
        "other chain": ([world.chains[world.other(i)] for i in range(n)], world.images),
        "other image": (world.chains, [world.images[world.other(i)] for i in range(n)]),
        "boxes moved": ([rebuild(c, reflect) for c in world.chains], world.images),
        "colours swapped": ([rebuild(c, recolour) for c in world.chains], world.images),
    }


QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen(out: Path) -> str:
    """A random-init Qwen2.5-VL (text hidden 32, 2 layers; vision depth 2), a word-level tokenizer, the PIL image
    processor: saved as a model directory under `out`, no downloads. -> the directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from reward_models.judges.hf import _image_only_processor_class
    from reward_models.judges.prompts import GROUNDING, RUBRICS

    words = " ".join([*RUBRICS.values(), GROUNDING, "user assistant score bbox_2d 0 1 2 3 4 5 6 7 8 9 10"])
    vocab = {"<unk>": 0, "<pad>": 1}
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    for piece, _ in pre.pre_tokenize_str(words):
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre, decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    ids = tokenizer.convert_tokens_to_ids(QWEN_SPECIAL)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         bos_token_id=None, eos_token_id=ids[1], pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1], window_size=56, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids[4], video_token_id=ids[5], vision_start_token_id=ids[2], vision_end_token_id=ids[3],
    )
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)
