"""A local vision-language judge through transformers: Qwen2.5-VL by default, from a local directory.

    judge = make_judge("hf", model="/models/Qwen2.5-VL-7B-Instruct", device="cuda", batch_size=16)

Rubric questions use GoT-R1's rubrics (prompts.py), grounding asks "Locate the <object>, report the bbox
coordinates in JSON format.", scene-graph and pairwise questions use prompts.py's evaluation prompts. Replies
are decoded greedily in batches and read by parse.py; a reply that cannot be read is a counted failure (None),
never an exception.

Batches are padded on the left, so every row continues at the end of its own prompt; greedy replies are those
of one question at a time (tests/rewards/test_judge_batching.py checks it). A batch whose generate raises is
asked again one question at a time, so one bad question costs its own reply only. `judge serve` gathers
concurrent requests into one call (`batched`), up to its max_batch: give the judge batch_size >= max_batch.

Grounding coordinates: Qwen2.5-VL answers in absolute pixels of its *resized* input (the processor's
smart_resize to multiples of 28), so boxes are read in that space, taken from the processor's `image_grid_thw`
(resized side = grid x patch size). `coords="norm1000"` reads boxes on a 0..1000 grid (Qwen2-VL and others),
`coords="pixels"` in the original image's pixels.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from janus_rig.chain import Box
from reward_models.scene_graph import SceneGraph
from janus_rig.model.loading import require_config, strict_from_pretrained
from reward_models.judges.base import JUDGES, GraphRequest, GroundRequest, Judge, PairRequest, RubricRequest
from reward_models.judges.parse import parse_boxes, parse_preference, parse_scene_graph, parse_score
from reward_models.judges.prompts import GROUNDING, RUBRICS, question

COORD_SPACES = ("qwen2.5-vl", "norm1000", "pixels")


def _image_only_processor_class():
    """Qwen2.5-VL's processor without its video half, which needs torchvision (absent on CPU-only installs)."""
    class Qwen2_5_VLImageProcessorOnly(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>" if not hasattr(tokenizer, "image_token") else tokenizer.image_token
            self.video_token = "<|video_pad|>" if not hasattr(tokenizer, "video_token") else tokenizer.video_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2_5_VLImageProcessorOnly


def load_processor(model_dir: str):
    """AutoProcessor, or Qwen2.5-VL's image-only processor where the full one cannot be built (no torchvision)."""
    try:
        processor = AutoProcessor.from_pretrained(model_dir)
    except (ImportError, AttributeError, ValueError, TypeError, OSError, KeyError):
        processor = None
    if processor is None or not hasattr(processor, "image_processor"):  # a bare tokenizer is no VLM processor
        processor = _image_only_processor_class().from_pretrained(model_dir)
    return processor


@JUDGES.register("hf")
class HFJudge(Judge):
    name = "hf"
    batched = True

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 512,
        coords: str = "qwen2.5-vl",
    ):
        super().__init__()
        if coords not in COORD_SPACES:
            raise ValueError(f"unknown coords {coords!r}; valid: {', '.join(COORD_SPACES)}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        self.batch_size, self.max_new_tokens, self.coords, self.device = batch_size, max_new_tokens, coords, device
        require_config(model, "judge model")  # named before the processor is read
        self.processor = load_processor(model)
        self.processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        # Strict: a directory whose weights do not fit its config is refused, never half random-init.
        self.model = strict_from_pretrained(AutoModelForImageTextToText, model, "judge model",
                                            dtype=torch_dtype).to(device).eval()
        self._lock = threading.Lock()  # one generate at a time when served to many threads

    # --- the interface ---------------------------------------------------------------------------------------

    def score(self, requests: list[RubricRequest]) -> list[float | None]:
        replies = self._generate([question(r) for r in requests])
        return [self._read(parse_score, reply) for reply, _ in replies]

    def ground(self, requests: list[GroundRequest]) -> list[list[Box] | None]:
        replies = self._generate([question(r) for r in requests])
        out = []
        for request, (reply, sizes) in zip(requests, replies):
            width, height = self._space(request.image, sizes[0] if sizes else None)
            out.append(self._read(parse_boxes, reply, width, height))
        return out

    def extract_graphs(self, requests: list[GraphRequest]) -> list[SceneGraph | None]:
        replies = self._generate([question(r) for r in requests])
        return [self._read(parse_scene_graph, reply, r.vocabulary) for r, (reply, _) in zip(requests, replies)]

    def compare(self, requests: list[PairRequest]) -> list[float | None]:
        replies = self._generate([question(r) for r in requests])
        return [self._read(parse_preference, reply) for reply, _ in replies]

    def chat(self, text: str, images: list[Image.Image]) -> str:
        return self.chat_many([(text, images)])[0] or ""

    def chat_many(self, messages: list[tuple[str, list[Image.Image]]]) -> list[str | None]:
        return [reply for reply, _ in self._generate(messages)]

    # --- helpers ---------------------------------------------------------------------------------------------

    def _read(self, parser, reply, *args):
        self.stats.count("requests")
        if reply is None:
            return None  # generation failed: already counted
        parsed = parser(reply, *args)
        if not parsed.ok:
            self.stats.fail(parsed.failure, parsed.detail)
        return parsed.value

    def _space(self, image: Image.Image, resized: tuple[int, int] | None) -> tuple[float, float]:
        """(width, height) of the space the judge's coordinates live in."""
        if self.coords == "norm1000":
            return 1000.0, 1000.0
        if self.coords == "qwen2.5-vl" and resized is not None:
            return resized
        return image.size

    def _generate(self, items: list[tuple[str, list[Image.Image]]]) -> list[tuple[str | None, list]]:
        """Greedy replies for (text, images) items in batches; per item (reply or None, resized (w, h) per image)."""
        out = []
        for start in range(0, len(items), self.batch_size):
            out.extend(self._generate_or_split(items[start : start + self.batch_size]))
        return out

    def _generate_or_split(self, batch: list[tuple[str, list[Image.Image]]]) -> list[tuple[str | None, list]]:
        """One padded generate for the batch; when it raises, one generate per item, so that an item the processor
        refuses (or a batch too big for the device) costs that item's reply, not its neighbours'."""
        try:
            with self._lock:
                return self._generate_batch(batch)
        except Exception as err:  # noqa: BLE001 — a judge failure must cost scores, not the run
            if len(batch) > 1:
                return [reply for item in batch for reply in self._generate_or_split([item])]
            self.stats.fail("error", f"{type(err).__name__}: {err}")
            return [(None, [])]

    def _generate_batch(self, batch: list[tuple[str, list[Image.Image]]]) -> list[tuple[str, list]]:
        texts, images = [], []
        for text, item_images in batch:
            content = [{"type": "image"} for _ in item_images] + [{"type": "text", "text": text}]
            messages = [{"role": "user", "content": content}]
            texts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
            images.extend(im.convert("RGB") for im in item_images)
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]  # (B, T_new)
        replies = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        patch = getattr(self.processor.image_processor, "patch_size", 14)
        grids = inputs.get("image_grid_thw")
        sizes = [] if grids is None else [(int(w) * patch, int(h) * patch) for _, h, w in grids.tolist()]
        out, k = [], 0
        for (_, item_images), reply in zip(batch, replies):
            out.append((reply, sizes[k : k + len(item_images)]))
            k += len(item_images)
        return out


# --- a tiny random-init model directory (tests, `janus-rig bench judge`) -------------------------------------------

QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_model_dir(out: str | Path, *, hidden_size: int = 32, layers: int = 2, vision_depth: int = 2,
                        seed: int = 0) -> str:
    """A random-init Qwen2.5-VL (text hidden 32, 2 layers; vision depth 2 by default), a word-level tokenizer over
    the rubric words and the PIL image processor (images resized to 4..64 patches of 28 px), saved as a model
    directory: no downloads. Its replies are garbage; its shapes and code paths are Qwen2.5-VL's. -> the directory.
    """
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
    processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                              chat_template=TINY_CHAT_TEMPLATE)
    heads = max(4, hidden_size // 64)  # head dim 8 at the default size, 64 from hidden 256 up
    half = hidden_size // heads // 2  # rotary pairs per head, split over (time, height, width)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                         max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [half - 2 * (half // 4), half // 4, half // 4]},
                         bos_token_id=None, eos_token_id=ids[1], pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=hidden_size, fullatt_block_indexes=[vision_depth - 1], window_size=56,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids[4], video_token_id=ids[5], vision_start_token_id=ids[2], vision_end_token_id=ids[3],
    )
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)
