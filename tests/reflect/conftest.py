"""Fixtures of the reflection tests."""

from __future__ import annotations

import pytest

VAL_ROWS = 8  # reflect_val rows in `val_world`


@pytest.fixture(scope="module")
def val_world(tmp_path_factory):
    """A 32-px world with WORLD/reflect_val.jsonl: VAL_ROWS perturbed val renders (what the probes read)."""
    from data_prep.shapeworld.perturb import write_reflect_data
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, train=20, val=12, bench_per_tag=1, size=32, progress=False)
    write_reflect_data(out, VAL_ROWS, seed=0, split="val", progress=False)
    return out
