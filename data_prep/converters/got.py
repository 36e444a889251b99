"""GoT datasets (LAHR-GoT, JourneyDB-GoT, FLUX-GoT, or any rows of prompt + reasoning text + boxes + image) -> a
records directory that `janus-rig sft --world OUT` reads the way it reads a ShapeWorld world.

    convert_got(GotConfig(inputs=["lahr-00000.parquet"], out="runs/lahr", fields="prompt=caption,chain=got"))

    OUT/train.jsonl, OUT/val.jsonl  {"id", "tag", "prompt", "chain", "image", "metadata": null, "source"}
    OUT/grounding.jsonl             {"id", "image", "chain"}: the same chains as grounding targets
    OUT/images/<id>.jpg             every image resized to image_size x image_size (see `fit`)
    OUT/world.json                  {"size", "source": "got", ...}: `size` is what SFT checks every image against
    OUT/bad_rows.jsonl              {id, source, reason, detail} per rejected row (BAD_ROW_REASONS)

Rows come in two kinds; the field mapping (`fields`) says which:

- span chains (no `boxes` field): the chain already holds GoT spans on the 0..1000 grid,
  `<|obj_start|>name<|obj_end|> <|box_start|>(x1,y1),(x2,y2)<|box_end|>`, or Qwen2-VL's grounding spans
  `<|object_ref_start|>name<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>` (same grid). Any problem the
  chain parser finds rejects the row.
- plain chains + a `boxes` field: each object's name is looked up in the text (its first whole-word mention not
  taken by an earlier object, case-insensitive) and that mention becomes the object's span. With
  `--fields prompt=caption,chain=cot,image=path,boxes=objects --box-space pixel` the row

      {"caption": "a cat on a sofa", "cot": "A grey cat sleeps on a red sofa.", "path": "img/1.jpg",
       "objects": [{"name": "grey cat", "bbox": [40, 30, 200, 180]}, {"name": "red sofa", "bbox": [0, 100, 320, 240]}]}

  of a 320x240 image gives the chain
  "A <|obj_start|>grey cat<|obj_end|> <|box_start|>(125,125),(625,750)<|box_end|> sleeps on a
  <|obj_start|>red sofa<|obj_end|> <|box_start|>(0,417),(1000,1000)<|box_end|>."
  A boxes field may also be {name: box}, [[name, box], ...], or bare boxes with a parallel `names` field.

Boxes are checked in their own space (grid 0..1000, pixels of the annotated size, or unit 0..1): a coordinate outside
it, or x1 >= x2 / y1 >= y2, rejects the row. They are then mapped onto the written image (stretched: the 0..1000
grid is per axis, so boxes keep their numbers; padded: boxes move into the letterboxed area) with `Box.from_pixels`,
and the chain is written by `format_chain`, so every kept chain passes `parse_chain(strict=True)`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from PIL import Image
from tqdm import tqdm

from data_prep.converters.common import (
    BAD_ROWS_FILE,
    MISSING,
    QWEN_ALIASES,
    SPAN_TOKENS,
    RowError,
    RowReport,
    RowSource,
    check_fields_present,
    check_prompt,
    default_id,
    get_field,
)
from janus_rig.chain import COORD_MAX, Box, ChainObject, format_chain, parse_chain

# --- the field mapping -------------------------------------------------------------------------------------------
FIELDS = {  # canonical name -> what the mapped source field holds
    "id": "a unique row id (default: the row's `id` field if any, else the JSON object key, else FILESTEM-INDEX)",
    "prompt": "the caption the model is prompted with",
    "chain": "the reasoning text: with GoT (or Qwen2-VL) spans, or plain text when `boxes` is mapped",
    "image": "an image path (relative to --image-root), image bytes, or an HF image {'bytes', 'path'}",
    "boxes": "objects with boxes for a plain-text chain: [{name, bbox}], {name: bbox}, [[name, bbox]] or bare boxes",
    "names": "object names parallel to a `boxes` field of bare boxes",
    "width": "width the boxes were measured on (pixel boxes; default: the image file's width)",
    "height": "height the boxes were measured on (pixel boxes; default: the image file's height)",
    "box_name": "the key of the name inside a box entry (default: name)",
    "box_coords": "the key of the coordinates inside a box entry (default: bbox)",
}
REQUIRED_FIELDS = ("prompt", "chain", "image")
DEFAULT_FIELDS = {"prompt": "prompt", "chain": "chain", "image": "image", "box_name": "name", "box_coords": "bbox"}
ENTRY_KEYS = ("box_name", "box_coords")  # keys inside box entries, not fields of the row

BOX_SPACES = ("grid", "pixel", "unit")  # 0..COORD_MAX, pixels of the annotated size, 0..1
BOX_FORMATS = ("xyxy", "xywh")
FITS = ("stretch", "pad")
IMAGE_FORMATS = {"jpg": "JPEG", "png": "PNG"}
JPEG_QUALITY = 95
PAD_COLOR = (127, 127, 127)  # mid grey, the background Janus' own image processor pads with
IMAGE_DIR = "images"
BATCH_ROWS = 256  # rows handed to the worker pool at a time (bounds memory on multi-million-row inputs)
SPAN_PROBLEM_REASONS = {"out_of_range": "box_out_of_range", "inverted_box": "box_inverted",
                        "malformed_box": "box_malformed", "non_numeric": "box_malformed"}
BAD_ROW_REASONS = (
    "not_json",  # a jsonl line (or a JSON list entry) that is not an object
    "not_utf8",  # a jsonl line that is not UTF-8 text
    "nested_too_deep",  # a row nested deeper than Python's JSON reader goes (about a thousand levels)
    "missing_field",  # a mapped field absent, null or empty (the detail names the field and its source name)
    "bad_field",  # a field of the wrong type (prompt not a string, boxes not a list, width not a finite number, ...)
    "chain_token_in_prompt",  # a prompt holding a chain token (<|obj_start|>, ...): prompts must not carry them
    "duplicate_id",  # an id an earlier row already has
    "bad_chain",  # span problems other than boxes (unclosed span, missing box, ...), or spans plus a boxes field
    "no_objects",  # a chain without any object span and no boxes
    "box_malformed",  # not four finite numbers, an entry without its name / coordinates
    "box_out_of_range",  # a coordinate outside its space (0..1000, the image in pixels, 0..1)
    "box_inverted",  # x1 >= x2 or y1 >= y2 (or a non-positive xywh width / height)
    "object_not_in_chain",  # a boxes-field object whose name the plain chain never mentions
    "missing_image",  # the image file does not exist
    "unreadable_image",  # the image cannot be decoded
)


def parse_fields(spec: str | dict[str, str] | None) -> dict[str, str]:
    """'prompt=caption,chain=cot,boxes=objects.list' (or a dict) over DEFAULT_FIELDS; ValueError naming the problem.

    A source field may be a dotted path into nested objects ("meta.caption").
    """
    given: dict[str, str] = {}
    if isinstance(spec, dict):
        given = dict(spec)
    elif spec:
        for item in spec.split(","):
            if not item.strip():
                continue
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep:
                raise ValueError(f"--fields entry {item!r} is not NAME=FIELD (e.g. prompt=caption)")
            if key in given:
                raise ValueError(f"--fields maps {key!r} twice")
            given[key] = value
    for key, value in given.items():
        if key not in FIELDS:
            raise ValueError(f"--fields: unknown name {key!r}; valid names: {', '.join(FIELDS)}")
        if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
            raise ValueError(f"--fields {key}={value!r}: give the source field's name (a.b for nested fields)")
    fields = {**DEFAULT_FIELDS, **given}
    if ("width" in fields) != ("height" in fields):
        raise ValueError("--fields maps only one of width / height: map both or neither")
    if "names" in fields and "boxes" not in fields:
        raise ValueError("--fields maps names without boxes: names are parallel to a boxes field")
    return fields


def row_fields(fields: dict[str, str]) -> dict[str, str]:
    """The mapping's fields that are columns of the row (not keys inside box entries)."""
    return {k: v for k, v in fields.items() if k not in ENTRY_KEYS}


# --- the configuration -------------------------------------------------------------------------------------------
@dataclass
class GotConfig:
    inputs: list[str]  # .json / .jsonl / .parquet files
    out: str  # output directory
    fields: dict[str, str] | str | None = None  # parse_fields spec; None: the defaults
    image_root: str | None = None  # image paths are relative to this (default: each input file's folder)
    image_size: int = 384  # written images are image_size x image_size: the model's resolution (Janus-Pro: 384)
    fit: str = "stretch"  # stretch: per-axis resize (boxes keep their grid numbers); pad: letterbox, boxes move
    box_space: str = "grid"  # a boxes field's coordinates: grid (0..1000), pixel (the annotated size), unit (0..1)
    box_format: str = "xyxy"  # a boxes field's layout: xyxy (corners) or xywh (top-left + size)
    image_format: str = "jpg"  # written image files: jpg (quality 95) or png (lossless)
    val_fraction: float = 0.0  # share of rows (chosen by a hash of the id, stable across runs) in val.jsonl
    tag: str = "got"  # every record's tag (GRPO's --tags filter reads it)
    limit: int = 0  # convert only the first N rows over all inputs (0: all)
    workers: int = 1  # processes that read, resize and write the images
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.inputs, (str, Path)):
            self.inputs = [str(self.inputs)]
        if not self.inputs:
            raise ValueError("no input files given")
        self.fields = parse_fields(self.fields)  # idempotent: a parsed mapping parses to itself
        for name, value, valid in (("fit", self.fit, FITS), ("box_space", self.box_space, BOX_SPACES),
                                   ("box_format", self.box_format, BOX_FORMATS),
                                   ("image_format", self.image_format, IMAGE_FORMATS)):
            if value not in valid:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(valid)}")
        if "boxes" not in self.fields and (self.box_space, self.box_format) != ("grid", "xyxy"):
            raise ValueError("box_space / box_format describe a boxes field, and none is mapped (span chains are "
                             "always on the 0..1000 grid): map one with --fields boxes=<field> or drop them")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {self.image_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.limit < 0 or self.workers < 1:
            raise ValueError(f"limit must be >= 0 and workers >= 1, got {self.limit} and {self.workers}")


# --- one row: text side (no I/O) ---------------------------------------------------------------------------------
Coords = tuple[float, float, float, float]  # x1, y1, x2, y2 in the row's box space


@dataclass
class Plan:
    """A row's text side before its image is opened: texts[i] precedes names[i]; len(texts) == len(names) + 1."""

    prompt: str
    texts: list[str]
    names: list[str]
    coords: list[Coords]
    space: str  # "grid" for span chains, GotConfig.box_space for a boxes field
    image: Any  # the image field's value
    size: tuple[float, float] | None  # (width, height) fields, when mapped


def _value(data: dict, fields: dict[str, str], name: str, required: bool = True) -> Any:
    value = get_field(data, fields[name]) if name in fields else MISSING
    if required and (value is MISSING or value is None or value == ""):
        raise RowError("missing_field", f"{name} (source field {fields[name]!r}) is missing or empty")
    return None if value is MISSING else value


def _text(data: dict, fields: dict[str, str], name: str) -> str:
    value = _value(data, fields, name)
    if not isinstance(value, str):
        raise RowError("bad_field", f"{name} (source field {fields[name]!r}) is a {type(value).__name__}, not text")
    if not value.strip():
        raise RowError("missing_field", f"{name} (source field {fields[name]!r}) is blank")
    return value


def plan_row(data: dict, fields: dict[str, str], box_space: str = "grid", box_format: str = "xyxy") -> Plan:
    """Read one row's prompt, chain and objects (RowError on the first problem). Pure: no file is opened."""
    prompt = _text(data, fields, "prompt").strip()
    check_prompt(prompt, f"prompt (source field {fields['prompt']!r})")
    chain = _text(data, fields, "chain")
    image = _value(data, fields, "image")
    size = None
    if "width" in fields:
        size = tuple(_positive(_value(data, fields, name), name, fields) for name in ("width", "height"))
    if "boxes" in fields:
        names, coords = _boxes_field(data, fields, box_format)
        texts, names, coords = _place_in_text(chain, names, coords)
        return Plan(prompt, texts, names, coords, box_space, image, size)
    texts, names, coords = _spans(chain)
    return Plan(prompt, texts, names, coords, "grid", image, size)


def _positive(value: Any, name: str, fields: dict[str, str]) -> float:
    number = finite_number(value)
    if number is None or number <= 0:
        raise RowError("bad_field", f"{name} (source field {fields[name]!r}) must be a positive number, got "
                                    f"{_short(value)}")
    return number


def finite_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else: bools, text, NaN, infinities, and ints too large for
    a float (10**400 is a valid JSON number; float() of it raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _spans(chain: str) -> tuple[list[str], list[str], list[Coords]]:
    for alias, token in QWEN_ALIASES.items():
        chain = chain.replace(alias, token)
    parsed = parse_chain(chain)
    if parsed.problems:
        first = parsed.problems[0]
        more = f" (+{len(parsed.problems) - 1} more)" if len(parsed.problems) > 1 else ""
        raise RowError(SPAN_PROBLEM_REASONS.get(first.kind, "bad_chain"),
                       f"{first.kind} at chain position {first.position}: {first.message}{more}")
    if not parsed.objects:
        raise RowError("no_objects", "the chain has no object span and no boxes field is mapped")
    return parsed.texts, [o.name for o in parsed.objects], [o.box.as_tuple() for o in parsed.objects]


def _boxes_field(data: dict, fields: dict[str, str], box_format: str) -> tuple[list[str], list[Coords]]:
    boxes = _value(data, fields, "boxes")
    name_key, coords_key = fields["box_name"], fields["box_coords"]
    if isinstance(boxes, dict):  # {name: box}
        entries = list(boxes.items())
    elif not isinstance(boxes, list):
        raise RowError("bad_field", f"boxes (source field {fields['boxes']!r}) is a {type(boxes).__name__}, "
                                    "not a list or an object")
    elif "names" in fields:
        names = _value(data, fields, "names")
        if not isinstance(names, list) or len(names) != len(boxes):
            got = f"{len(names)} names" if isinstance(names, list) else f"a {type(names).__name__}"
            raise RowError("box_malformed", f"names (source field {fields['names']!r}) must be a list as long as "
                                            f"the {len(boxes)} boxes, got {got}")
        entries = list(zip(names, boxes))
    else:
        entries = []
        for i, entry in enumerate(boxes):
            if isinstance(entry, dict):
                missing = [k for k in (name_key, coords_key) if k not in entry]
                if missing:
                    raise RowError("box_malformed", f"box {i} has no {' / '.join(repr(k) for k in missing)} key "
                                                    f"(keys: {', '.join(map(str, entry))}); map them with "
                                                    f"--fields box_name=...,box_coords=...")
                entries.append((entry[name_key], entry[coords_key]))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
                entries.append((entry[0], entry[1]))
            else:
                raise RowError("box_malformed", f"box {i} is {_short(entry)}: expected {{{name_key!r}: ..., "
                                                f"{coords_key!r}: [x1, y1, x2, y2]}} or [name, [x1, y1, x2, y2]] "
                                                "(bare boxes need a names field)")
    if not entries:
        raise RowError("no_objects", f"boxes (source field {fields['boxes']!r}) is empty")
    names, coords = [], []
    for i, (name, box) in enumerate(entries):
        if not isinstance(name, str) or not name.strip() or any(t in name for t in SPAN_TOKENS):
            raise RowError("box_malformed", f"box {i} has no usable name: {_short(name)}")
        names.append(" ".join(name.split()))
        coords.append(_coords(box, i, names[-1], box_format))
    return names, coords


def _coords(box: Any, i: int, name: str, box_format: str) -> Coords:
    numbers = [finite_number(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else [None]
    if None in numbers:
        raise RowError("box_malformed", f"box {i} ({name!r}) is {_short(box)}, not four finite numbers")
    a, b, c, d = numbers
    if box_format == "xywh":  # a + c may still overflow to inf: check_box reports that as out of range
        if c <= 0 or d <= 0:
            raise RowError("box_inverted", f"box {i} ({name!r}) {list(box)} has a non-positive width or height")
        return (a, b, a + c, b + d)
    return (a, b, c, d)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _place_in_text(chain: str, names: list[str], coords: list[Coords]) -> tuple[list[str], list[str], list[Coords]]:
    """Turn each object's first free whole-word mention into its span; objects come out in text order."""
    if any(t in chain for t in SPAN_TOKENS):
        raise RowError("bad_chain", "the chain already holds spans but a boxes field is mapped too: map one of them")
    claimed: list[tuple[int, int, int]] = []  # (start, end, object index)
    for i, name in enumerate(names):
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in name.split()) + r"(?!\w)"
        for match in re.finditer(pattern, chain, re.IGNORECASE):
            if not any(match.start() < end and start < match.end() for start, end, _ in claimed):
                claimed.append((match.start(), match.end(), i))
                break
        else:
            raise RowError("object_not_in_chain", f"object {i} {name!r} is not mentioned in the chain text "
                                                  "(or only where an earlier object's name already is)")
    claimed.sort()
    texts, out_names, out_coords, cursor = [], [], [], 0
    for start, end, i in claimed:
        texts.append(chain[cursor:start])
        out_names.append(" ".join(chain[start:end].split()))  # the text's own spelling of the name
        out_coords.append(coords[i])
        cursor = end
    texts.append(chain[cursor:])
    return texts, out_names, out_coords


# --- one row: boxes onto the written image (pure) ----------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where the source image lies on the size x size canvas, in canvas pixels."""

    left: int
    top: int
    width: int
    height: int


def placement(width: int, height: int, size: int, fit: str) -> Placement:
    if fit == "stretch":
        return Placement(0, 0, size, size)
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return Placement((size - w) // 2, (size - h) // 2, w, h)


def space_extent(space: str, annotated: tuple[float, float]) -> tuple[float, float]:
    """The (width, height) a box space's coordinates run over: 1000 (grid), the annotated size (pixel), 1 (unit)."""
    if space == "grid":
        return (float(COORD_MAX), float(COORD_MAX))
    if space == "unit":
        return (1.0, 1.0)
    return annotated


def check_box(coords: Coords, extent: tuple[float, float], i: int, name: str) -> None:
    """RowError when a box leaves its space or is inverted (x1 >= x2 or y1 >= y2)."""
    x1, y1, x2, y2 = coords
    w, h = extent
    if not (0 <= x1 <= w and 0 <= x2 <= w and 0 <= y1 <= h and 0 <= y2 <= h):
        raise RowError("box_out_of_range", f"box {i} ({name!r}) {_fmt(coords)} leaves 0..{_fmt([w])} x "
                                           f"0..{_fmt([h])}")
    if x1 >= x2 or y1 >= y2:
        raise RowError("box_inverted", f"box {i} ({name!r}) {_fmt(coords)} needs x1 < x2 and y1 < y2")


def _fmt(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def canvas_box(coords: Coords, extent: tuple[float, float], place: Placement, size: int) -> Box:
    """A checked box in its space -> the grid box of the same region of the written size x size image."""
    (x1, y1, x2, y2), (w, h) = coords, extent
    px = [place.left + x / w * place.width for x in (x1, x2)]
    py = [place.top + y / h * place.height for y in (y1, y2)]
    return Box.from_pixels(px[0], py[0], px[1], py[1], size, size)


# --- one row: the image ------------------------------------------------------------------------------------------
def open_image(value: Any, root: Path):
    """A lazily opened PIL image from a path (relative to root), bytes, or an HF image {'bytes', 'path'}."""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        source, where = io.BytesIO(value), f"{len(value)} image bytes"
    elif isinstance(value, str):
        source = root / value
        where = str(source)
        if not source.is_file():
            raise RowError("missing_image", f"{source} not found")
    else:
        raise RowError("bad_field", f"image is {_short(value)}: expected a path, bytes or {{'bytes', 'path'}}")
    try:
        return Image.open(source)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RowError("unreadable_image", f"{where}: {err}") from None


def fit_image(image, size: int, fit: str, place: Placement):
    """The RGB size x size image: stretched, or letterboxed on PAD_COLOR at `place`."""
    image.draft("RGB", (place.width, place.height))  # JPEG: decode at a reduced scale when much larger (fast)
    image = image.convert("RGB").resize((place.width, place.height), Image.BICUBIC, reducing_gap=3.0)
    if fit == "stretch":
        return image
    canvas = Image.new("RGB", (size, size), PAD_COLOR)
    canvas.paste(image, (place.left, place.top))
    return canvas


# --- one row: everything -----------------------------------------------------------------------------------------
@dataclass
class RowTask:
    id: str
    file: str  # the input file's name
    index: int
    data: dict
    image_root: str
    image_name: str  # file name under OUT/images


def convert_row(task: RowTask, config: GotConfig, out: Path) -> dict:
    """One row -> its record (and its image written under out/images); RowError names what is wrong."""
    plan = plan_row(task.data, config.fields, config.box_space, config.box_format)
    image = open_image(plan.image, Path(task.image_root))
    try:
        width, height = image.size
        extent = space_extent(plan.space, plan.size or (float(width), float(height)))
        for i, (name, coords) in enumerate(zip(plan.names, plan.coords)):
            check_box(coords, extent, i, name)
        place = placement(width, height, config.image_size, config.fit)
        boxes = [canvas_box(c, extent, place, config.image_size) for c in plan.coords]
        parts: list[str | ChainObject] = [plan.texts[0]]
        for name, box, text in zip(plan.names, boxes, plan.texts[1:]):
            parts += [ChainObject(name, box), text]
        chain = format_chain(parts)
        parse_chain(chain, strict=True)  # holds by construction; a failure here is a bug, not a bad row
        try:
            written = fit_image(image, config.image_size, config.fit, place)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise RowError("unreadable_image", f"image of row {task.index}: {err}") from None
    finally:
        image.close()
    rel = f"{IMAGE_DIR}/{task.image_name}"
    save_options = {"quality": JPEG_QUALITY} if config.image_format == "jpg" else {}
    written.save(out / rel, IMAGE_FORMATS[config.image_format], **save_options)
    return {
        "id": task.id, "tag": config.tag, "prompt": plan.prompt, "chain": chain, "image": rel, "metadata": None,
        "source": {"file": task.file, "row": task.index, "image": _image_ref(plan.image), "width": width,
                   "height": height},
    }


def _image_ref(value: Any) -> str | None:
    """The source image's path for the record (None for bytes without a path)."""
    if isinstance(value, dict):
        value = value.get("path")
    return value if isinstance(value, str) else None


def _convert_task(task: RowTask, config: GotConfig, out: Path) -> tuple[dict | None, RowError | None]:
    try:
        return convert_row(task, config, out), None
    except RowError as err:
        return None, err


# --- the dataset -------------------------------------------------------------------------------------------------
def image_file_name(row_id: str, suffix: str, used: set[str]) -> str:
    """A safe, unique file name for a row's image: the id itself when it is safe, else a cleaned id + a hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", row_id)[:100].lstrip(".") or "row"
    if safe != row_id or f"{safe}.{suffix}" in used:
        safe = f"{safe}-{hashlib.sha1(row_id.encode()).hexdigest()[:10]}"
    name = f"{safe}.{suffix}"
    used.add(name)
    return name


def is_val(row_id: str, fraction: float) -> bool:
    """Stable split: the same id lands in the same split on every run and machine."""
    return int(hashlib.sha1(row_id.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def _tasks(sources: list[RowSource], config: GotConfig, report: RowReport) -> Iterator[RowTask]:
    """Rows with their ids, duplicates and missing ids reported here (ids must be known before the pool sees them)."""
    seen: set[str] = set()
    used_names: set[str] = set()
    for source in sources:
        root = str(Path(config.image_root) if config.image_root else source.path.parent)
        for row in source:
            row_id = row.key or default_id(row.file, row.index)
            value = get_field(row.data, config.fields.get("id", "id"))
            usable = isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip() != ""
            if usable:
                row_id = str(value)
            elif "id" in config.fields:  # an explicitly mapped id must be there; the implicit "id" may be absent
                report.reject(row_id, row.file, "missing_field",
                              f"id (source field {config.fields['id']!r}) is missing, empty or not a string / int")
                continue
            if row_id in seen:
                report.reject(row_id, row.file, "duplicate_id", f"row {row.index} repeats an earlier row's id")
                continue
            seen.add(row_id)
            yield RowTask(row_id, row.file, row.index, row.data, root,
                          image_file_name(row_id, config.image_format, used_names))


def convert_got(config: GotConfig) -> dict:
    """Convert every input row (see the module docstring); returns counts, bad-row reasons, paths and seconds."""
    start = time.perf_counter()
    out = Path(config.out)
    report = RowReport()
    sources = [RowSource(path, report) for path in config.inputs]
    for source in sources:  # a wrong mapping fails here, before any row is converted
        check_fields_present(source, row_fields(config.fields))
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    tasks = _tasks(sources, config, report)
    if config.limit:
        tasks = islice(tasks, config.limit)
    work = partial(_convert_task, config=config, out=out)
    pool_context = nullcontext(None)
    if config.workers > 1:
        pool_context = multiprocessing.Pool(config.workers)
    with pool_context as pool, open(out / "train.jsonl", "w", encoding="utf-8") as train_f, \
            open(out / "val.jsonl", "w", encoding="utf-8") as val_f, \
            open(out / "grounding.jsonl", "w", encoding="utf-8") as grounding_f, \
            tqdm(desc="convert got", unit="row", disable=not config.progress) as bar:
        while batch := list(islice(tasks, BATCH_ROWS)):
            results = pool.map(work, batch) if pool is not None else map(work, batch)
            for task, (record, error) in zip(batch, results):
                if error is not None:
                    report.reject(task.id, task.file, error.reason, error.detail)
                    continue
                split = "val" if is_val(task.id, config.val_fraction) else "train"
                (val_f if split == "val" else train_f).write(json.dumps(record, ensure_ascii=False) + "\n")
                if split == "train":
                    grounding_f.write(json.dumps({k: record[k] for k in ("id", "image", "chain")},
                                                 ensure_ascii=False) + "\n")
                report.kept[split] += 1
            bar.update(len(batch))
    report.write(out / BAD_ROWS_FILE)
    report.log(out / BAD_ROWS_FILE)
    counts = {"train": report.kept["train"], "val": report.kept["val"], "bad": len(report.bad)}
    settings = {
        "size": config.image_size, "source": "got", "inputs": [str(p) for p in config.inputs],
        "fields": config.fields, "fit": config.fit, "box_space": config.box_space, "box_format": config.box_format,
        "image_format": config.image_format, "tag": config.tag, "val_fraction": config.val_fraction,
        "counts": counts,
    }
    (out / "world.json").write_text(json.dumps(settings, indent=2) + "\n")
    return {
        "counts": counts, "bad_by_reason": report.counts(),
        "paths": {name: str(out / rel) for name, rel in (("train", "train.jsonl"), ("val", "val.jsonl"),
                  ("grounding", "grounding.jsonl"), ("bad_rows", BAD_ROWS_FILE), ("settings", "world.json"),
                  ("images", IMAGE_DIR))},
        "seconds": round(time.perf_counter() - start, 2),
    }
