"""Figures for the ShapeWorld oracle: accuracy on ground-truth renders, on swapped images, and under degradation.

    .venv/bin/python scripts/oracle_figures.py --per-tag 200 --sizes 32 64

For each canvas size it writes a world (`write_world`, one tag at a time so every tag gets --per-tag records) and
reports, per tag:
- oracle accuracy on the ground-truth renders (score_metadata on the record's own image; should be ~1);
- the world's chains through check_chain_semantics / check_chain_layout (should be 1);
- accuracy when the images of position/complex records are shuffled among themselves (near 0: the objects
  themselves mostly differ), and two position-only controls: the same objects re-placed at random (the relation
  holds by chance), and the record's own image with a random relation in the metadata;
- detector exact-match rate (every object, shape, colour, box within size/32 px) and oracle accuracy under
  Gaussian noise, blur, colour jitter and JPEG.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from data_prep.shapeworld.detect import detect
from data_prep.shapeworld.oracle import check_chain_layout, check_chain_semantics, score_metadata
from data_prep.shapeworld.render import render
from data_prep.shapeworld.relations import RELATIONS
from data_prep.shapeworld.sampler import TAGS, layout
from data_prep.shapeworld.scene import Scene, SceneObject
from data_prep.shapeworld.world import write_world
from janus_rig.chain import parse_chain

DEGRADATIONS = {
    "gaussian": (10, 20, 30),  # pixel noise std on 0..255
    "blur": (0.5, 0.8, 1.0),  # Gaussian blur radius in pixels
    "jitter": (20, 35, 50),  # per-channel colour offset, uniform +-level
    "jpeg": (75, 50, 30),  # JPEG quality
}


def degrade(image: Image.Image, kind: str, level: float, rng: np.random.Generator) -> Image.Image:
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(level))
    if kind == "jpeg":
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(level))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    a = np.asarray(image).astype(np.float32)
    a = a + (rng.normal(0, level, a.shape) if kind == "gaussian" else rng.uniform(-level, level, (1, 1, 3)))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def exact(scene: Scene, dets, tol: int) -> bool:
    left = list(dets)
    for obj in scene.objects:
        hit = next((d for d in left if (d.shape, d.color) == (obj.shape, obj.color)
                    and max(abs(p - q) for p, q in zip(d.box, obj.box)) <= tol), None)
        if hit is None:
            return False
        left.remove(hit)
    return not left


def load_records(out: Path, per_tag: int, size: int, seed: int) -> list[dict]:
    records = []
    for tag in TAGS:
        folder = out / tag
        write_world(folder, train=0, val=per_tag, bench_per_tag=0, size=size, seed=seed, tags=[tag], progress=False)
        for line in (folder / "val.jsonl").read_text().splitlines():
            record = json.loads(line)
            record["image"] = Image.open(folder / record["image"]).convert("RGB")
            records.append(record)
    return records


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def report(records: list[dict], size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    by_tag = {tag: [r for r in records if r["tag"] == tag] for tag in TAGS}
    print(f"\n== {size} px, {len(records)} records ==")
    print(f"{'tag':<14}{'oracle':>8}{'chain sem':>10}{'chain lay':>10}")
    gt = {}
    for tag, rows in by_tag.items():
        gt[tag] = mean(score_metadata(r["metadata"], r["image"])[0] for r in rows)
        objects = [parse_chain(r["chain"]).objects for r in rows]
        sem = mean(check_chain_semantics(o, r["metadata"])[0] for o, r in zip(objects, rows))
        lay = mean(check_chain_layout(o, r["metadata"])[0] for o, r in zip(objects, rows))
        print(f"{tag:<14}{gt[tag]:>8.3f}{sem:>10.3f}{lay:>10.3f}")
    print(f"{'overall':<14}{mean(gt.values()):>8.3f}   (mean of tags)")

    spatial = by_tag["position"] + by_tag["complex"]
    shift = list(range(len(spatial)))
    random.Random(seed).shuffle(shift)  # a random permutation; records that keep their own image are rare
    swapped = {tag: [] for tag in ("position", "complex")}
    for r, j in zip(spatial, shift):
        swapped[r["tag"]].append(score_metadata(r["metadata"], spatial[j]["image"])[0])
    kept = sum(i == j for i, j in enumerate(shift))
    print("swapped images among position/complex records "
          f"({kept} kept their own): position {mean(swapped['position']):.3f}, complex {mean(swapped['complex']):.3f}")
    layout_rng = random.Random(seed)
    for tag in ("position", "complex"):
        replaced, relabelled = [], []
        for r in by_tag[tag]:
            scene = Scene.from_json(r["scene"])
            boxes = layout(layout_rng, size, len(scene.objects))  # no relations asked for
            moved = Scene(size, tuple(SceneObject(o.shape, o.color, b) for o, b in zip(scene.objects, boxes)))
            replaced.append(score_metadata(r["metadata"], render(moved))[0])
            include = [dict(c, position=[layout_rng.choice(RELATIONS), c["position"][1]]) if "position" in c else c
                       for c in r["metadata"]["include"]]
            relabelled.append(score_metadata({**r["metadata"], "include": include}, r["image"])[0])
        print(f"{tag}: objects re-placed at random {mean(replaced):.3f}; random relation in the metadata "
              f"{mean(relabelled):.3f}")

    tol = max(1, size // 32)
    print(f"{'degradation':<16}{'detector exact':>15}{'oracle acc':>12}")
    for kind, levels in DEGRADATIONS.items():
        for level in levels:
            det_ok, judge_ok = [], []
            for r in records:
                image = degrade(r["image"], kind, level, rng)
                dets = detect(image)
                det_ok.append(exact(Scene.from_json(r["scene"]), dets, tol))
                judge_ok.append(score_metadata(r["metadata"], dets)[0])
            print(f"{kind + ' ' + str(level):<16}{mean(det_ok):>15.3f}{mean(judge_ok):>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-tag", type=int, default=100, help="records per tag")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="canvas sizes")
    parser.add_argument("--seed", type=int, default=0, help="world and noise seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            report(load_records(Path(tmp) / str(size), args.per_tag, size, args.seed), size, args.seed)


if __name__ == "__main__":
    main()
