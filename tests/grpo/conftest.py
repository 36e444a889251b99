"""Fixtures shared by the GRPO trainer and ablation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("grpo_world")
    write_world(out, train=12, val=2, bench_per_tag=1, size=64, progress=False)
    return out


@pytest.fixture(scope="module")
def policy_dir(tiny_shapeworld_policy_dir):
    return tiny_shapeworld_policy_dir
