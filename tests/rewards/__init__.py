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


def build_tiny_qwen(out: Path) -> str:
    """A random-init Qwen2.5-VL judge directory (text hidden 32, 2 layers; vision depth 2) under `out`."""
    from reward_models.judges.hf import make_tiny_model_dir

    return make_tiny_model_dir(out)
