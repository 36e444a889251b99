"""SFT trainer: a few-step run (loss logged, weights change, plain-transformers load, grounding via
pixel_values), resume from a checkpoint, the time budget, and the config's YAML/flag precedence and checks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import JanusForConditionalGeneration

from janus_rig.cli import build_parser
from tests.sft.test_data import make_world, read_jsonl, sft_config
from train.sft.config import SFTConfig, parse_config
from train.sft.trainer import run_sft

FAST = dict(per_device_train_batch_size=4, learning_rate=1e-2, warmup_steps=0, logging_steps=1, save_steps=2,
            dataloader_pin_memory=False, disable_tqdm=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), train=8, val=2)


def _train_logs(out) -> dict[int, dict]:
    return {line["step"]: line for line in read_jsonl(out / "train_log.jsonl") if "text_nll" in line}


def test_few_steps_then_resume_ends_where_the_straight_run_does(tmp_path, world):
    # grounding_ratio 1: as many grounding rows as train rows; the aligner trains, so it changes only if the
    # grounding images reached the model through pixel_values.
    parts = ["language_model", "lm_head", "generation_embeddings", "generation_aligner", "generation_head", "aligner"]
    common = dict(max_steps=3, grounding_ratio=1.0, trainable_parts=parts, **FAST)
    out = tmp_path / "out"
    summary = run_sft(sft_config(tmp_path, world, **common))

    assert summary["steps"] == 3 and summary["rows"]["kept"] == {"train.jsonl": 8, "grounding.jsonl": 8}
    train_logs = _train_logs(out)
    assert sorted(train_logs) == [1, 2, 3]
    assert all(line["loss"] > 0 and line["image_nll"] > 0 for line in train_logs.values())
    assert (out / "loss_curve.png").stat().st_size > 0 and (out / "bad_rows.jsonl").read_text() == ""

    before, after = load_file(out / "init" / "model.safetensors"), load_file(out / "model.safetensors")
    for name in ("model.language_model.layers.0.self_attn.q_proj.weight", "model.generation_head.vision_head.weight",
                 "model.aligner.fc1.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} did not change"
    assert torch.equal(before["model.vqmodel.quant_conv.weight"], after["model.vqmodel.quant_conv.weight"])

    model = JanusForConditionalGeneration.from_pretrained(out)  # plain transformers
    assert isinstance(model, JanusForConditionalGeneration)
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert not list(out.glob("tmp-*"))  # the staging folder of each checkpoint is gone once it is renamed

    # a second run from the first one's checkpoint-2 ends with the same weights and logs the same step 3: the
    # checkpoint restored the weights, optimizer, scheduler, RNG (condition dropout) and data order
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    again = run_sft(sft_config(tmp_path, world, output_dir=str(resumed), resume_from_checkpoint="true", **common))
    assert again["steps"] == 3
    assert sorted(_train_logs(resumed)) == [3]  # the resumed run went on from step 2
    for key in ("loss", "text_nll", "image_nll", "learning_rate", "grad_norm"):
        assert _train_logs(resumed)[3][key] == train_logs[3][key], key
    a, b = load_file(out / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming"


def test_reflection_mix_trains(tmp_path, world):
    """reflect_ratio 1: the checker/actor rows of WORLD/reflect.jsonl join the batches; only they read images (no
    grounding rows), so the understanding aligner changes only if their pixel_values reached the model."""
    import shutil

    from data_prep.shapeworld.perturb import write_reflect_data

    mixed = tmp_path / "world"
    shutil.copytree(world, mixed)
    write_reflect_data(mixed, 8, seed=0, progress=False)
    parts = ["language_model", "lm_head", "aligner"]
    summary = run_sft(sft_config(tmp_path, mixed, max_steps=2, reflect_ratio=0.5, trainable_parts=parts,
                                 save_strategy="no", **FAST))
    assert summary["steps"] == 2 and summary["rows"]["kept"] == {"train.jsonl": 8, "reflect.jsonl": 4}
    assert 8 + 4 <= summary["train_rows"] <= 8 + 2 * 4  # a checker row each, an actor row per edit
    out = tmp_path / "out"
    assert all(line["text_nll"] > 0 for line in read_jsonl(out / "train_log.jsonl") if "text_nll" in line)
    before, after = load_file(out / "init" / "model.safetensors"), load_file(out / "model.safetensors")
    assert not torch.equal(before["model.aligner.fc1.weight"], after["model.aligner.fc1.weight"])


def test_codes_view_trains_the_roles_on_codes_and_is_saved(tmp_path, world):
    """image_view codes: the role rows show their image as VQ codes (no pixels reach the vision encoder, so the
    understanding aligner stays as it was) and the saved model records the view its roles read."""
    import shutil

    from data_prep.shapeworld.perturb import write_reflect_data
    from janus_rig.model.policy import JanusPolicy

    mixed = tmp_path / "world"
    shutil.copytree(world, mixed)
    write_reflect_data(mixed, 8, seed=0, progress=False)
    parts = ["language_model", "lm_head", "aligner"]
    summary = run_sft(sft_config(tmp_path, mixed, max_steps=2, reflect_ratio=0.5, grounding_ratio=0.25,
                                 image_view="codes", trainable_parts=parts, save_strategy="no",
                                 loop_recipe="train/recipes/shapeworld_reflect.yaml", cfg_weight=2.5, **FAST))
    assert summary["steps"] == 2 and summary["rows"]["kept"]["reflect.jsonl"] == 4
    out = tmp_path / "out"
    before, after = load_file(out / "init" / "model.safetensors"), load_file(out / "model.safetensors")
    assert torch.equal(before["model.aligner.fc1.weight"], after["model.aligner.fc1.weight"])
    assert not torch.equal(before["model.language_model.norm.weight"], after["model.language_model.norm.weight"])
    assert JanusPolicy.load(out).image_view == "codes"
    assert JanusPolicy.load(out / "init").image_view == "vision"
    loop = JanusPolicy.load(out).loop_settings  # the recipe recorded: `janus-rig reflect` runs it with no flags
    assert (loop["actor"], loop["final"], loop["rating"]) == ("fresh-plan", "best", "plan")
    assert JanusPolicy.load(out).guidance == 2.5  # recorded: generate / eval sample with it by default


def test_time_budget_stops_cleanly(tmp_path, world):
    summary = run_sft(sft_config(tmp_path, world, max_steps=50, max_train_seconds=0.01, chain=False, **FAST))
    assert summary["stopped_by_time_budget"] and summary["steps"] == 1
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_yaml_then_flags(tmp_path, world):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"world: {world}\ninit_preset: tiny\noutput_dir: {tmp_path}/o\nlearning_rate: 1.0e-3\n"
                      "max_steps: 7\nchain: false\ngrounding_ratio: 0.2\nreport_to: none\n")
    config = parse_config(["--config", str(recipe), "--max_steps", "9"])
    assert (config.learning_rate, config.max_steps, config.chain, config.grounding_ratio) == (1e-3, 9, False, 0.2)
    assert config.remove_unused_columns is False

    from janus_rig.commands.sft import config_from_args  # the same through `janus-rig sft`

    args = build_parser().parse_args(["sft", "--config", str(recipe), "--learning_rate", "0.5", "--chain", "true",
                                      "--trainable_parts", "language_model", "lm_head"])
    config = config_from_args(args)
    assert (config.learning_rate, config.max_steps, config.chain) == (0.5, 7, True)
    assert config.trainable_parts == ["language_model", "lm_head"]


@pytest.mark.parametrize("overrides, message", [
    (dict(model_name_or_path="some/dir"), "both of model_name_or_path and init_preset"),
    (dict(init_preset=None), "neither of model_name_or_path and init_preset"),
    (dict(grounding_ratio=1.5), "outside [0, 1]"),
    (dict(reflect_ratio=-0.1), "outside [0, 1]"),
    (dict(reflect_ratio=0.2), "janus-rig reflect-data --world"),
    (dict(world=""), "world is required"),
    (dict(trainable_parts=["language_model", "brain"]), "unknown trainable_parts ['brain']"),
    (dict(use_lora=True), "--trainable_parts language_model"),
    (dict(text_weight=0.0, image_weight=0.0), "at least one > 0"),
    (dict(cond_dropout=1.0), "cond_dropout=1.0 must lie in [0, 1)"),
    (dict(remove_unused_columns=True), "remove_unused_columns must be false"),
    (dict(image_view="pixels"), "image_view must be one of vision, codes or ''"),
    (dict(loop_recipe="nowhere.yaml"), "loop_recipe: nowhere.yaml: no such reflect recipe"),
])
def test_invalid_combinations_say_how_to_fix(tmp_path, world, overrides, message):
    with pytest.raises(ValueError) as err:
        sft_config(tmp_path, overrides.pop("world", world), **overrides)
    assert message in str(err.value)


def test_lora_config_maps_to_settings(tmp_path, world):
    config = sft_config(tmp_path, world, use_lora=True, trainable_parts=["language_model"], lora_r=8)
    assert config.lora().r == 8 and config.trainable().language_model and not config.trainable().lm_head
    assert isinstance(config, SFTConfig)
    json.dumps(config.to_dict())  # serialisable for checkpoints
