"""Fixture files for the converters, built in the tests from the documented formats (nothing downloaded)."""

from __future__ import annotations

import json

import pytest
from PIL import Image


def save_image(path, width, height, color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)
    return path


def write_jsonl(path, rows, extra_lines=()):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


@pytest.fixture
def image_dir(tmp_path):
    """A folder with a 320x240 photo-like image, a 64x48 and a 200x100 one (solid colours)."""
    folder = tmp_path / "imgs"
    save_image(folder / "wide.jpg", 320, 240)
    save_image(folder / "small.png", 64, 48, (30, 200, 30))
    save_image(folder / "flat.png", 200, 100, (30, 30, 200))
    return folder
