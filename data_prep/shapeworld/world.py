"""Write a ShapeWorld dataset: train/val records with chains, grounding records, a GenEval-style bench, a held-out
prompt split, settings.

    out/train.jsonl, out/val.jsonl   {"id", "tag", "prompt", "chain", "image", "metadata", "scene", "scene_graph"}
    out/grounding.jsonl              {"id", "image", "chain"}: one per train image, the canonical chain
    out/bench/metadata.jsonl         GenEval metadata lines, bench_per_tag per tag, all seven tags
    out/heldout/metadata.jsonl       GenEval metadata lines, the held-out split (heldout_per_tag > 0 only)
    out/world.json                   the settings (size, seed, counts, holdout, tag mix, world constants, held-out
                                     counts and overlaps)
    out/images/{split}-{index:06d}.png

The bench is drawn first from its own seed, then the held-out split from its own seed; train/val then reject the
prompts of both for DISJOINT_TAGS (position, complex, color_attr), so a held-out prompt of those tags never occurs
in train.jsonl or val.jsonl, with any scene. The held-out split's prompts of those tags are distinct and none is a
bench prompt; bench + held-out take at most half of a tag's prompt space (the held-out count is cut to what is left:
color_attr has 180 prompts, so 26 held-out lines next to a bench of 64).

The other four tags have 3-18 prompts in all: no prompt of theirs can stay out of training without leaving the tag
out of training. The held-out split keeps them anyway (cycled like the bench): an evaluation on it then covers
every tag, and a regression on the easy tags shows; for those tags "held out" means fresh samples of known prompts,
and the overlap with train/val is counted (`heldout_overlap`, per split and tag; 0 for DISJOINT_TAGS). Everything is
determined by `seed`. See docs/shapeworld.md.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from data_prep.shapeworld.chains import CHAIN_STYLES, grounding_chain, prompt_chain, training_chain
from data_prep.shapeworld.prompts import DISJOINT_TAGS, metadata, prompt_space_size, prompt_text, scene_graph
from data_prep.shapeworld.render import render
from data_prep.shapeworld.sampler import (
    ALL_COMBOS,
    TAGS,
    Combo,
    Description,
    Sample,
    check_size,
    min_gap,
    place,
    sample_description,
    side_range,
)
from data_prep.shapeworld.scene import COLORS, MAX_OBJECTS, SHAPES

# Share of each tag in train/val. Position and complex carry the spatial reasoning the method is about.
TAG_WEIGHTS = {
    "single_object": 0.05,
    "two_object": 0.10,
    "counting": 0.10,
    "colors": 0.05,
    "color_attr": 0.15,
    "position": 0.30,
    "complex": 0.25,
}
MAX_PROMPT_DRAWS = 1000  # redraws of a description whose prompt is in the bench or held-out split before giving up
IMAGE_DIR = "images"
BENCH_FILE = "bench/metadata.jsonl"
HELDOUT_FILE = "heldout/metadata.jsonl"
HELDOUT_PER_TAG = 64  # held-out lines per tag, the default of `write_world` and `janus-rig world`


def parse_holdout(spec: str | Iterable[str | Combo] | None) -> frozenset[Combo]:
    """'red:circle,blue:square' (or a list of such strings or (colour, shape) pairs) -> {(colour, shape), ...}."""
    if spec is None:
        return frozenset()
    entries = [e for e in spec.split(",") if e.strip()] if isinstance(spec, str) else list(spec)
    held = set()
    for entry in entries:
        pair = tuple(p.strip() for p in entry.split(":")) if isinstance(entry, str) else tuple(entry)
        if len(pair) != 2:
            raise ValueError(f"holdout entry {entry!r} is not COLOR:SHAPE (e.g. red:circle)")
        color, shape = pair
        if color not in COLORS:
            raise ValueError(f"holdout entry {entry!r}: unknown colour {color!r}; valid: {', '.join(COLORS)}")
        if shape not in SHAPES:
            raise ValueError(f"holdout entry {entry!r}: unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
        held.add((color, shape))
    return frozenset(held)


def tag_counts(n: int, tags: Iterable[str] = TAGS) -> dict[str, int]:
    """Split n records over `tags` by TAG_WEIGHTS (renormalised), largest remainder so the counts sum to n."""
    tags = list(tags)
    total = sum(TAG_WEIGHTS[t] for t in tags)
    exact = {t: n * TAG_WEIGHTS[t] / total for t in tags}
    counts = {t: int(v) for t, v in exact.items()}
    for t in sorted(tags, key=lambda t: counts[t] - exact[t])[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def metadata_lines(counts: dict[str, int], rng: random.Random,
                   banned: dict[str, set[str]] | None = None) -> list[dict]:
    """GenEval metadata lines, counts[tag] per tag, tags in TAGS order. Within a tag the prompts are distinct and
    not in banned[tag] until the rest of the tag's prompt space is used, then that rest is cycled again
    (single_object has only 3 prompts)."""
    lines = []
    for tag in TAGS:
        skip = (banned or {}).get(tag, set())
        left = prompt_space_size(tag) - len(skip)  # skip holds prompts of this tag only
        if counts.get(tag, 0) and left < 1:
            raise ValueError(f"no {tag} prompt is left to draw: all {prompt_space_size(tag)} are banned")
        seen: set[str] = set()
        made = 0
        while made < counts.get(tag, 0):
            d = sample_description(tag, rng)
            prompt = prompt_text(d)
            if prompt in seen or prompt in skip:
                continue
            seen.add(prompt)
            if len(seen) == left:
                seen.clear()
            lines.append(metadata(d))
            made += 1
    return lines


def make_bench(per_tag: int, seed: int) -> list[dict]:
    """The bench: GenEval metadata lines, per_tag per tag, from its own seed (`metadata_lines`)."""
    return metadata_lines({tag: per_tag for tag in TAGS}, random.Random(f"shapeworld-bench-{seed}"))


def heldout_counts(per_tag: int, bench_per_tag: int) -> dict[str, int]:
    """Held-out lines per tag: per_tag, but for DISJOINT_TAGS at most what the bench leaves of half the tag's
    prompt space (the other half stays for training), e.g. color_attr: 180 // 2 - 64 = 26 next to a bench of 64."""
    return {tag: max(0, min(per_tag, prompt_space_size(tag) // 2 - bench_per_tag)) if tag in DISJOINT_TAGS
            else per_tag for tag in TAGS}


def make_heldout(counts: dict[str, int], seed: int, bench_lines: list[dict]) -> list[dict]:
    """The held-out split: counts[tag] GenEval metadata lines per tag from its own seed; for DISJOINT_TAGS none is
    a bench prompt (the other tags' spaces are too small to keep apart: see the module docstring)."""
    bench = {tag: {m["prompt"] for m in bench_lines if m["tag"] == tag} for tag in DISJOINT_TAGS}
    return metadata_lines(counts, random.Random(f"shapeworld-heldout-{seed}"), bench)


def _prompts(lines: list[dict]) -> dict[str, set[str]]:
    return {tag: {m["prompt"] for m in lines if m["tag"] == tag} for tag in TAGS}


def _overlap(lines: list[dict], records: list[dict], tags: list[str]) -> dict[str, int]:
    """Per tag of `tags`: how many of `lines` have a prompt that some record of `records` has."""
    seen = {r["prompt"] for r in records}
    return {tag: sum(m["prompt"] in seen for m in lines if m["tag"] == tag) for tag in tags}


def _draw(tag: str, rng: random.Random, allowed: frozenset[Combo], banned: set[str]) -> Description:
    for _ in range(MAX_PROMPT_DRAWS):
        d = sample_description(tag, rng, allowed)
        if tag not in DISJOINT_TAGS or prompt_text(d) not in banned:
            return d
    raise RuntimeError(
        f"{MAX_PROMPT_DRAWS} {tag} prompts in a row were bench or held-out prompts: the holdout leaves too few "
        f"training prompts for them; hold out fewer combinations or lower --bench-per-tag / --heldout-per-tag"
    )


def _write_split(
    out: Path, split: str, n: int, tags: list[str], size: int, seed: int, allowed: frozenset[Combo],
    banned: dict[str, set[str]], first_item: int, bar: tqdm, chains: str = "varied",
) -> tuple[list[dict], list[dict], int]:
    """Write one split's images (DISJOINT_TAGS prompts in `banned` redrawn); return its records, grounding rows,
    the next item id."""
    rng = random.Random(f"shapeworld-{split}-{seed}")
    order = [t for t, k in tag_counts(n, tags).items() for _ in range(k)]
    rng.shuffle(order)
    width = max(6, len(str(max(n - 1, 0))))
    records, grounding = [], []
    for i, tag in enumerate(order):
        d = _draw(tag, rng, allowed, banned[tag])
        sample = Sample(d, place(d, rng, size))
        record_id = f"{split}-{i:0{width}d}"
        image = f"{IMAGE_DIR}/{record_id}.png"
        render(sample.scene).save(out / image)
        prompt = prompt_text(d)
        chain = training_chain(sample, rng)  # drawn in either style: the scenes must not depend on the style
        if chains == "prompt":
            chain = prompt_chain(sample)
        records.append({
            "id": record_id,
            "tag": tag,
            "prompt": prompt,
            "chain": chain,
            "image": image,
            "metadata": metadata(d),
            "scene": sample.scene.to_json(),
            "scene_graph": scene_graph(d, first_item),
        })
        grounding.append({"id": record_id, "image": image, "chain": grounding_chain(sample.scene)})
        first_item += len(d.objects)
        bar.update()
    return records, grounding, first_item


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_world(
    out_dir: str | Path,
    train: int,
    val: int,
    bench_per_tag: int,
    size: int = 64,
    seed: int = 0,
    holdout: str | Iterable[str | Combo] | None = None,
    tags: Iterable[str] | None = None,
    progress: bool = True,
    chains: str = "varied",
    heldout_per_tag: int = HELDOUT_PER_TAG,
) -> dict:
    """Write the world to out_dir (see the module docstring); returns counts, paths and overlap stats.

    `holdout` removes (colour, shape) combinations from every train/val image (never from the bench or the held-out
    split); `tags` restricts train/val to some tags (the bench and the held-out split always have all seven);
    `chains` picks the training chains' style: "varied" (orders and phrasings) or "prompt" (the prompt's words and
    order with boxes; chains.py). `heldout_per_tag` > 0 writes the held-out split; 0 writes the worlds of before the
    split, record for record (what the scripts that rebuild the older shipped checkpoints pass).
    """
    start = time.perf_counter()
    check_size(size)
    tags = list(TAGS if tags is None else tags)
    for tag in tags:
        if tag not in TAGS:
            raise ValueError(f"unknown tag {tag!r}; valid: {', '.join(TAGS)}")
    if not tags:
        raise ValueError(f"no tags given; valid: {', '.join(TAGS)}")
    if chains not in CHAIN_STYLES:
        raise ValueError(f"unknown chain style {chains!r}; valid: {', '.join(CHAIN_STYLES)}")
    for name, value in (("train", train), ("val", val), ("bench_per_tag", bench_per_tag),
                        ("heldout_per_tag", heldout_per_tag)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    for tag in DISJOINT_TAGS:  # leave at least half of each disjoint tag's prompts to training
        if 2 * bench_per_tag > prompt_space_size(tag):
            raise ValueError(
                f"--bench-per-tag {bench_per_tag} would take over half of the {prompt_space_size(tag)} {tag} "
                f"prompts from training; use at most {prompt_space_size(tag) // 2}"
            )
    held = parse_holdout(holdout)
    allowed = ALL_COMBOS - held

    out = Path(out_dir)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (out / BENCH_FILE).parent.mkdir(exist_ok=True)
    bench_lines = make_bench(bench_per_tag, seed)
    _write_jsonl(out / BENCH_FILE, bench_lines)
    per_tag = heldout_counts(heldout_per_tag, bench_per_tag) if heldout_per_tag else {t: 0 for t in TAGS}
    heldout_lines = make_heldout(per_tag, seed, bench_lines)
    if heldout_lines:
        (out / HELDOUT_FILE).parent.mkdir(exist_ok=True)
        _write_jsonl(out / HELDOUT_FILE, heldout_lines)
    bench, heldout = _prompts(bench_lines), _prompts(heldout_lines)
    banned = {tag: bench[tag] | heldout[tag] for tag in TAGS}

    with tqdm(total=train + val, desc="world", unit="img", disable=not progress) as bar:
        train_rows, grounding, next_item = _write_split(
            out, "train", train, tags, size, seed, allowed, banned, 0, bar, chains
        )
        val_rows, _, _ = _write_split(out, "val", val, tags, size, seed, allowed, banned, next_item, bar, chains)
    _write_jsonl(out / "train.jsonl", train_rows)
    _write_jsonl(out / "val.jsonl", val_rows)
    _write_jsonl(out / "grounding.jsonl", grounding)

    splits = {"train": train_rows, "val": val_rows}
    bench_overlap = {split: {t: sum(r["prompt"] in bench[t] for r in rows if r["tag"] == t) for t in tags}
                     for split, rows in splits.items()}  # records whose prompt is a bench prompt
    heldout_overlap = {split: _overlap(heldout_lines, rows, list(TAGS)) for split, rows in splits.items()}
    weights = {t: TAG_WEIGHTS[t] / sum(TAG_WEIGHTS[u] for u in tags) for t in tags}
    settings = {
        "size": size,
        "seed": seed,
        "counts": {"train": train, "val": val, "bench_per_tag": bench_per_tag, "heldout_per_tag": heldout_per_tag},
        "holdout": sorted(f"{c}:{s}" for c, s in held),
        "tags": tags,
        "chains": chains,
        "tag_weights": weights,
        "tag_counts": {"train": tag_counts(train, tags), "val": tag_counts(val, tags)},
        "heldout_counts": per_tag,
        "heldout_overlap": heldout_overlap,  # held-out lines whose prompt a train / val record has, per tag
        "colors": list(COLORS),
        "shapes": list(SHAPES),
        "side_px": list(side_range(size)),
        "min_gap_px": min_gap(size),
        "max_objects": MAX_OBJECTS,
    }
    (out / "world.json").write_text(json.dumps(settings, indent=2) + "\n")
    paths = {
        name: str(out / rel)
        for name, rel in (("train", "train.jsonl"), ("val", "val.jsonl"), ("grounding", "grounding.jsonl"),
                          ("bench", BENCH_FILE), ("settings", "world.json"), ("images", IMAGE_DIR))
    }
    paths["heldout"] = str(out / HELDOUT_FILE) if heldout_lines else None
    return {
        "counts": {"train": train, "val": val, "grounding": train, "bench": len(bench_lines),
                   "heldout": len(heldout_lines)},
        "tag_counts": settings["tag_counts"],
        "bench_overlap": bench_overlap,
        "heldout_counts": per_tag,
        "heldout_overlap": heldout_overlap,
        "paths": paths,
        "seconds": round(time.perf_counter() - start, 2),
    }
