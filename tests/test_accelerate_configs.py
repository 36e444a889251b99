"""The shipped accelerate configs (DeepSpeed ZeRO-2/3, FSDP) parse with accelerate's own loader, name a layer class the
Janus language model really has, and their usage lines point at recipes that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "train" / "accelerate").glob("*.yaml"))


def test_the_three_cluster_configs_are_shipped():
    assert [p.stem for p in CONFIGS] == ["fsdp", "zero2", "zero3"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_its_usage_line_names_real_files(path):
    config = load_config_from_file(str(path))
    assert config.mixed_precision == "bf16" and config.num_processes >= 1
    if path.stem.startswith("zero"):
        assert config.distributed_type.value == "DEEPSPEED"
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    else:
        assert config.distributed_type.value == "FSDP"
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # saved models load in transformers
    usage = re.search(r"accelerate launch --config_file (\S+) -m janus_rig.cli \w+ --config (\S+)", path.read_text())
    assert usage and (ROOT / usage.group(1)) == path and (ROOT / usage.group(2)).is_file()


def test_fsdp_wraps_the_decoder_layer_class_janus_uses(tiny_policy):
    fsdp = load_config_from_file(str(ROOT / "train" / "accelerate" / "fsdp.yaml")).fsdp_config
    layer = tiny_policy.base.model.language_model.layers[0]
    assert type(layer).__name__ == fsdp["fsdp_transformer_layer_cls_to_wrap"]
