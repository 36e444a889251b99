"""SFT data: world records -> validated token sequences on `datasets`, a bad-row report, and the collator.

Sequences (loss on the targets marked [...]; the prompt is context only):

    chain mode     encode_prompt(prompt, chain=True)  [encode_text(chain) <begin_of_image> c_1..c_N <end_of_image>]
    no-chain mode  encode_prompt(prompt, chain=False) <begin_of_image> [c_1..c_N <end_of_image>]
    grounding      encode_question(GROUNDING_QUESTION)  [encode_text(chain) <eos>]     (+ pixel_values)
    checker        encode_checker(prompt, chain)        [encode_text(reflection)]      (+ pixel_values)
    actor          encode_actor(prompt, chain, refl.)   [encode_text(edit)]            (+ pixel_values)

The checker and actor rows come from WORLD/reflect.jsonl (`janus-rig reflect-data`; `janus_rig.reflect.data`):
each drawn row gives its checker sequence, and its actor sequence when its decision is edit. Grounding and
reflection rows read an image in the policy's `image_view`: through the understanding path ("vision"), where they
carry `grounding: True`, which is what makes the collator load their `image` into `pixel_values`; or as the image's
VQ codes over the placeholders ("codes"; cached like the generation rows' codes, `view_codes`).

In no-chain mode `<begin_of_image>` is forced (the sampler writes it), so it is not a target. Image codes come
from the VQ cache (`data_prep.vq_cache`), computed once per image; training never re-encodes images unless
`vq_cache` is false, in which case rows carry zeros at the code positions and the trainer fills them each step.

Bad rows never stop a run: each is reported by id with its reason, counted, written to OUTPUT_DIR/bad_rows.jsonl
and left out. Reasons: not_json, missing_field, bad_chain (strict `parse_chain`: broken spans, boxes out of
0..1000, non-canonical forms), missing_image, unreadable_image, wrong_size, unknown_tokens, too_long; reflection
rows also bad_reflection, bad_edit (their targets are read strictly: `janus_rig.reflect.data.check_reflect_row`).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from data_prep.vq_cache import ImageCodes, image_codes, load_image
from data_prep.converters.common import RowReport
from janus_rig.chain import ChainFormatError, parse_chain
from janus_rig.model.prompts import GROUNDING_QUESTION, place_codes
from janus_rig.reflect.data import check_reflect_row, role_sequences

log = logging.getLogger(__name__)

BAD_ROWS_FILE = "bad_rows.jsonl"
REFLECT_FILE = "reflect.jsonl"  # written by `janus-rig reflect-data`


def read_records(path: Path, report: RowReport) -> list[dict]:
    """JSON lines of a records file; lines that are not a JSON object are reported as `not_json`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (write the world with `janus-rig world`)")
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                report.reject(f"{path.name}:{line_no}", path.name, "not_json", str(err))
                continue
            records.append(record)
    return records


def check_record(record: dict, needed: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, detail) for a record that cannot be used, else None. Chains are read strictly."""
    missing = [k for k in needed if not isinstance(record.get(k), str) or not record[k]]
    if missing:
        return "missing_field", f"no (or empty) {', '.join(missing)}"
    if "chain" in needed:
        try:
            parse_chain(record["chain"], strict=True)
        except ChainFormatError as err:
            return "bad_chain", str(err)
    return None


# --- sequences (pure) --------------------------------------------------------------------------------------------
@dataclass
class Sequence:
    input_ids: list[int]  # text ids, and codebook indices where image_mask
    image_mask: list[bool]
    loss_mask: list[bool]


def generation_sequence(policy, prompt: str, chain: str | None, codes: list[int]) -> Sequence:
    """Chain mode when `chain` is a str, no-chain mode when None (see the module docstring)."""
    t = policy.tokens
    prompt_ids = policy.encode_prompt(prompt, chain=chain is not None)
    chain_ids = policy.encode_text(chain) if chain is not None else []
    ids = [*prompt_ids, *chain_ids, t.boi, *codes, t.eoi]
    image = [False] * (len(prompt_ids) + len(chain_ids) + 1) + [True] * len(codes) + [False]
    boi_is_target = chain is not None  # without a chain, <begin_of_image> is forced by the sampler
    loss = [False] * len(prompt_ids) + [True] * len(chain_ids) + [boi_is_target] + [True] * (len(codes) + 1)
    return Sequence(ids, image, loss)


def grounding_sequence(policy, chain: str) -> Sequence:
    question = policy.encode_question(GROUNDING_QUESTION)
    answer = [*policy.encode_text(chain), policy.tokens.eos]
    n = len(question) + len(answer)
    return Sequence([*question, *answer], [False] * n, [False] * len(question) + [True] * len(answer))


def check_sequence(policy, seq: Sequence, max_length: int) -> tuple[str, str] | None:
    unk = policy.tokenizer.unk_token_id
    if unk is not None and unk in seq.input_ids:
        text_ids = [i for i, m in zip(seq.input_ids, seq.image_mask) if not m]
        if unk in text_ids:
            return "unknown_tokens", f"{text_ids.count(unk)} token(s) map to {policy.tokenizer.unk_token}"
    if len(seq.input_ids) > max_length:
        return "too_long", f"{len(seq.input_ids)} tokens > max_position_embeddings {max_length}"
    return None


# --- datasets ----------------------------------------------------------------------------------------------------
@dataclass
class WorldInfo:
    root: Path
    size: int  # the world's image size (world.json)

    @classmethod
    def read(cls, world: str | Path) -> "WorldInfo":
        root = Path(world)
        meta = root / "world.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{meta} not found: {root} is not a `janus-rig world` directory")
        return cls(root, int(json.loads(meta.read_text())["size"]))


def _row(seq: Sequence, image: str = "", grounding: bool = False, row_id: str = "") -> dict:
    return {"id": row_id, "input_ids": seq.input_ids, "image_mask": seq.image_mask, "loss_mask": seq.loss_mask,
            "image": image, "grounding": grounding}


def generation_rows(policy, config, split: str, report: RowReport, limit: int = 0) -> list[dict]:
    """Validated rows of WORLD/{split}.jsonl (codes from the cache, or zeros to be filled on the fly)."""
    world = WorldInfo.read(config.world)
    path = world.root / f"{split}.jsonl"
    records = read_records(path, report)
    if limit:
        records = records[:limit]
    cache_dir = Path(config.cache_dir) if config.cache_dir else world.root / "cache"
    codes = image_codes(path, world.root, policy.base.model.vqmodel, world.size, policy.image_size, cache_dir,
                        paths=list(dict.fromkeys(r["image"] for r in records if isinstance(r.get("image"), str))),
                        encode=config.vq_cache, batch_size=config.vq_batch_size)
    needed = ("id", "prompt", "image", "chain") if config.chain else ("id", "prompt", "image")
    max_length = policy.base.config.text_config.max_position_embeddings
    rows = []
    for record in records:
        row_id = str(record.get("id") or f"{path.name}:?")
        problem = check_record(record, needed)
        entry: ImageCodes | None = codes.get(record.get("image")) if problem is None else None
        if problem is None and entry.error:
            problem = tuple(entry.error.split(": ", 1))
        if problem is None:
            row_codes = entry.codes if config.vq_cache else [0] * policy.num_image_tokens
            seq = generation_sequence(policy, record["prompt"], record["chain"] if config.chain else None, row_codes)
            problem = check_sequence(policy, seq, max_length)
        if problem is not None:
            report.reject(row_id, path.name, *problem)
            continue
        rows.append(_row(seq, "" if config.vq_cache else record["image"], row_id=row_id))
    report.kept[path.name] += len(rows)
    return rows


def grounding_rows(policy, config, n: int, report: RowReport) -> list[dict]:
    """n validated grounding rows drawn (seeded) from WORLD/grounding.jsonl."""
    world = WorldInfo.read(config.world)
    path = world.root / "grounding.jsonl"
    records = read_records(path, report)
    random.Random(config.seed).shuffle(records)
    codes = view_codes(policy, config, path, records)
    max_length = policy.base.config.text_config.max_position_embeddings
    rows = []
    for record in records:
        if len(rows) == n:
            break
        row_id = str(record.get("id") or f"{path.name}:?")
        problem = check_record(record, ("id", "image", "chain"))
        if problem is None:
            try:
                load_image(world.root / record["image"], world.size, world.size)
            except ValueError as err:
                problem = tuple(str(err).split(": ", 1))
        if problem is None:
            seq = grounding_sequence(policy, record["chain"])
            problem = check_sequence(policy, seq, max_length)
        if problem is None and codes is not None:
            seq, problem = _show_codes(policy, seq, codes.get(record["image"]))
        if problem is not None:
            report.reject(row_id, path.name, *problem)
            continue
        rows.append(_row(seq, record["image"], grounding=True, row_id=row_id) if codes is None else
                    _row(seq, row_id=row_id))
    if len(rows) < n:
        log.warning("asked for %d grounding rows, %d usable in %s", n, len(rows), path)
    report.kept[path.name] += len(rows)
    return rows


def view_codes(policy, config, path: Path, records: list[dict]) -> dict[str, ImageCodes] | None:
    """For a policy whose `image_view` is "codes": the VQ codes of every image the records of `path` name (cached
    like the generation rows'); None for "vision", whose rows load their images' pixels in the collator."""
    if policy.image_view != "codes":
        return None
    world = WorldInfo.read(config.world)
    cache_dir = Path(config.cache_dir) if config.cache_dir else world.root / "cache"
    paths = list(dict.fromkeys(r["image"] for r in records if isinstance(r.get("image"), str)))
    return image_codes(path, world.root, policy.base.model.vqmodel, world.size, policy.image_size, cache_dir,
                       paths=paths, encode=True, batch_size=config.vq_batch_size)


def _show_codes(policy, seq: Sequence, entry: ImageCodes | None) -> tuple[Sequence | None, tuple[str, str] | None]:
    """An understanding sequence with its image's codes over the placeholders (image_view codes), or the problem."""
    if entry is None or entry.error:
        return None, tuple(entry.error.split(": ", 1)) if entry else ("bad_image", "no codes for the image")
    ids, mask = place_codes(seq.input_ids, policy.tokens.image, entry.codes)
    return Sequence(ids, mask, seq.loss_mask), None


def reflect_rows(policy, config, n: int, report: RowReport) -> list[dict]:
    """The SFT sequences of n valid rows drawn (seeded) from WORLD/reflect.jsonl: one checker sequence per row, plus
    one actor sequence per edit row. A row is left out (and reported) when any of its sequences is unusable."""
    world = WorldInfo.read(config.world)
    path = world.root / REFLECT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write it with `janus-rig reflect-data --world {world.root} "
                                "--n N` (or set reflect_ratio: 0)")
    records = read_records(path, report)
    random.Random(config.seed).shuffle(records)
    codes = view_codes(policy, config, path, records)
    max_length = policy.base.config.text_config.max_position_embeddings
    rows, used = [], 0
    for record in records:
        if used == n:
            break
        row_id = str(record.get("id") or f"{path.name}:?")
        problem = check_reflect_row(record)
        if problem is None:
            try:
                load_image(world.root / record["image"], world.size, world.size)
            except ValueError as err:
                problem = tuple(str(err).split(": ", 1))
        sequences = role_sequences(policy, record) if problem is None else []
        for i, seq in enumerate(sequences):
            problem = check_sequence(policy, Sequence(seq["input_ids"], seq["image_mask"], seq["loss_mask"]),
                                     max_length)
            if problem is None and codes is not None:
                shown, problem = _show_codes(policy, Sequence(seq["input_ids"], seq["image_mask"], seq["loss_mask"]),
                                             codes.get(record["image"]))
                if problem is None:
                    sequences[i] = _row(shown, row_id=seq["id"])
            if problem is not None:
                problem = (problem[0], f"{seq['id']}: {problem[1]}")
                break
        if problem is not None:
            report.reject(row_id, path.name, *problem)
            continue
        rows += sequences
        used += 1
    if used < n:
        log.warning("asked for %d reflection rows, %d usable in %s", n, used, path)
    report.kept[path.name] += used
    return rows


def build_datasets(policy, config, report: RowReport):
    """(train, eval or None) as `datasets.Dataset`s; bad rows land in `report`. Grounding and reflection rows are
    added at their ratio of the kept train records."""
    import datasets  # startup: keeps datasets + pandas (0.4 s) out of `janus-rig --help`

    train = generation_rows(policy, config, "train", report, config.max_train_records)
    if not train:
        raise ValueError(f"no usable train records in {config.world}: see the bad-row reasons "
                         f"{report.counts()} (written to {BAD_ROWS_FILE})")
    kept = len(train)
    if config.grounding_ratio > 0:
        train += grounding_rows(policy, config, round(config.grounding_ratio * kept), report)
    if config.reflect_ratio > 0:
        train += reflect_rows(policy, config, round(config.reflect_ratio * kept), report)
    eval_ds = None
    if str(getattr(config.eval_strategy, "value", config.eval_strategy)) != "no":
        val = generation_rows(policy, config, "val", report, config.max_eval_records)
        eval_ds = datasets.Dataset.from_list(val) if val else None
    return datasets.Dataset.from_list(train), eval_ds


# --- collator ----------------------------------------------------------------------------------------------------
class SFTCollator:
    """Right-pads a list of rows into a batch (pad id, image_mask False, attention 0, loss_mask False).

    Grounding and reflection rows (`grounding: True`: an image read through the understanding path) add their
    images as `pixel_values` (B_g, 3, S, S) in row order; in on-the-fly mode generation
    rows add theirs as uint8 `gen_images` (B_i, 3, S, S) for the trainer to encode.
    """

    def __init__(self, pad_id: int, world: WorldInfo | None = None, pixel_values=None, image_size: int = 0):
        self.pad_id = pad_id
        self.world = world
        self.pixel_values = pixel_values  # PIL images -> (B, 3, S, S): the policy's understanding processor
        self.image_size = image_size  # the VQ's resolution (on-the-fly mode)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        T = max(len(r["input_ids"]) for r in rows)
        B = len(rows)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        image_mask = torch.zeros(B, T, dtype=torch.bool)
        loss_mask = torch.zeros(B, T, dtype=torch.bool)
        attention_mask = torch.zeros(B, T, dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.tensor(r["input_ids"])
            image_mask[i, :n] = torch.tensor(r["image_mask"])
            loss_mask[i, :n] = torch.tensor(r["loss_mask"])
            attention_mask[i, :n] = 1
        batch = {"input_ids": input_ids, "image_mask": image_mask, "attention_mask": attention_mask,
                 "loss_mask": loss_mask}
        grounding = [r["image"] for r in rows if r.get("grounding")]
        if grounding:
            images = []
            for rel in grounding:
                with Image.open(self.world.root / rel) as im:
                    images.append(im.convert("RGB"))
            batch["pixel_values"] = self.pixel_values(images).cpu()
        on_the_fly = [r["image"] for r in rows if r.get("image") and not r.get("grounding")]
        if on_the_fly:
            batch["gen_images"] = torch.stack(
                [load_image(self.world.root / rel, self.world.size, self.image_size) for rel in on_the_fly])
        return batch


def fill_codes(input_ids: torch.Tensor, image_mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Write (B_i, N) codes into the image positions of a (B, T) batch, rows in order; (B, T) out."""
    if int(image_mask.sum()) != codes.numel():
        raise ValueError(f"{int(image_mask.sum())} image positions but {codes.numel()} codes")
    return input_ids.masked_scatter(image_mask, codes.to(input_ids.dtype))
