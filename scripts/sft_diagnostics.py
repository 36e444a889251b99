"""Where a ShapeWorld model's errors come from: the plan (chain) or the image drawn from it.

    python scripts/sft_diagnostics.py bench  MODEL WORLD [--tags position complex] [--text-temperature 1.0]
    python scripts/sft_diagnostics.py follow MODEL WORLD [--records 256]
    python scripts/sft_diagnostics.py figure WORLD OUT.png MODEL [MODEL ...]

bench:  the model writes its own chain for every bench prompt; per tag, the oracle's verdict on the chain (the right
        objects; the right objects *and* layout = "chain ok"), on the image, and on the image given a correct chain.
follow: the model draws an image from each val record's true chain (chain-given sampling); per tag, GenEval
        accuracy, the share of planned objects found in the image with the right colour and shape, and the IoU of
        each planned box with the detected one — whether the image follows the plan.
figure: those true-chain images side by side (row 1: the world's image; then one row per model; boxes drawn).

One seed, CFG 3, temperature 1 (as `eval geneval`); docs/lab/notebook.md quotes the outputs.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import check_chain_layout, check_chain_semantics, score_metadata
from janus_rig.chain import Box, parse_chain
from janus_rig.lines import json_object, read_lines
from janus_rig.model.policy import JanusPolicy
from janus_rig.rollout import RolloutConfig, sample

BATCH = 32


def _records(path: Path) -> list[dict]:
    return read_lines(path, lambda text, number, index: json_object(text), what="records")


def _load(model: str) -> JanusPolicy:
    policy = JanusPolicy.load(model)
    policy.model.eval()
    return policy


def bench(args) -> None:
    policy = _load(args.model)
    lines = _records(Path(args.world) / "bench" / "metadata.jsonl")
    lines = [m for m in lines if not args.tags or m["tag"] in args.tags]
    config = RolloutConfig(group_size=1, cfg_weight=3.0, max_chain_tokens=96, text_temperature=args.text_temperature)
    stats: dict[str, Counter] = defaultdict(Counter)
    for start in range(0, len(lines), BATCH):
        batch = lines[start : start + BATCH]
        rollout = sample(policy, [m["prompt"] for m in batch], config, seed=start)
        images = policy.decode_images(rollout.image_tokens).numpy()
        for meta, chain, image in zip(batch, rollout.chains, images):
            objects = parse_chain(chain).objects
            names = check_chain_semantics(objects, meta)[0]
            ok = names and check_chain_layout(objects, meta)[0]
            right = score_metadata(meta, image)[0]
            c = stats[meta["tag"]]
            c.update(n=1, names=names, chain_ok=ok, image=right, image_and_chain=right and ok)
    print(f"{'tag':14s} {'n':>4s} {'names':>6s} {'chain':>6s} {'image':>6s} {'img|chain':>9s}")
    for tag, c in stats.items():
        print(f"{tag:14s} {c['n']:4d} {c['names'] / c['n']:6.2f} {c['chain_ok'] / c['n']:6.2f} "
              f"{c['image'] / c['n']:6.2f} {c['image_and_chain'] / max(c['chain_ok'], 1):9.2f}")


def _true_chain_images(policy, records):
    out = []
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        rollout = sample(policy, [r["prompt"] for r in batch], RolloutConfig(group_size=1, cfg_weight=3.0),
                         seed=start, chains=[r["chain"] for r in batch])
        out.extend(policy.decode_images(rollout.image_tokens).numpy())
    return out


def follow(args) -> None:
    policy = _load(args.model)
    records = _records(Path(args.world) / "val.jsonl")[: args.records]
    stats: dict[str, Counter] = defaultdict(Counter)
    ious: dict[str, list[float]] = defaultdict(list)
    for record, image in zip(records, _true_chain_images(policy, records)):
        tag, size = record["tag"], image.shape[0]
        c = stats[tag]
        c.update(n=1, correct=score_metadata(record["metadata"], image)[0])
        detections = detect(image)
        for obj in parse_chain(record["chain"]).objects:
            same = [Box.from_pixels(*d.box, size, size) for d in detections if d.name == obj.name]
            c.update(objects=1, found=bool(same))
            ious[tag].append(max((obj.box.iou(box) for box in same), default=0.0))
    print(f"{'tag':14s} {'n':>4s} {'acc':>5s} {'found':>6s} {'IoU':>5s} {'IoU>.5':>6s}")
    for tag, c in sorted(stats.items()):
        values = np.array(ious[tag])
        print(f"{tag:14s} {c['n']:4d} {c['correct'] / c['n']:5.2f} {c['found'] / c['objects']:6.2f} "
              f"{values.mean():5.2f} {np.mean(values > 0.5):6.2f}")


def figure(args) -> None:
    records = _records(Path(args.world) / "val.jsonl")[: args.records]
    size, pad = 96, 4
    canvas = Image.new("RGB", (len(records) * (size + pad), (1 + len(args.models)) * (size + pad)), "white")

    def tile(image: Image.Image, record: dict) -> Image.Image:
        image = image.convert("RGB").resize((size, size), Image.NEAREST)
        draw = ImageDraw.Draw(image)
        for obj in parse_chain(record["chain"]).objects:
            draw.rectangle([v * size / 1000 for v in obj.box.as_tuple()], outline=(160, 160, 160))
        return image

    for i, record in enumerate(records):
        canvas.paste(tile(Image.open(Path(args.world) / record["image"]), record), (i * (size + pad), 0))
    for row, model in enumerate(args.models, start=1):
        for i, (record, image) in enumerate(zip(records, _true_chain_images(_load(model), records))):
            canvas.paste(tile(Image.fromarray(image), record), (i * (size + pad), row * (size + pad)))
    canvas.save(args.out)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bench")
    b.add_argument("model"), b.add_argument("world")
    b.add_argument("--tags", nargs="*", default=[])
    b.add_argument("--text-temperature", type=float, default=1.0)
    f = sub.add_parser("follow")
    f.add_argument("model"), f.add_argument("world")
    f.add_argument("--records", type=int, default=256)
    g = sub.add_parser("figure")
    g.add_argument("world"), g.add_argument("out"), g.add_argument("models", nargs="+")
    g.add_argument("--records", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    {"bench": bench, "follow": follow, "figure": figure}[args.mode](args)


if __name__ == "__main__":
    main()
