"""`janus-rig sweep`: the statistics and the rendering on known inputs, the checks that run before any training, and
one tiny end-to-end sweep (2 seeds x 1 GRPO step, 2 held-out prompts x 1 sample)."""

from __future__ import annotations

import json

import pytest

import tests.grpo.test_trainer  # noqa: F401  registers test_brightness, a reward with spread at random init
from janus_rig.cli import main
from train.sweep import (
    Plan,
    SweepConfig,
    build_document,
    gain_table,
    parse_seeds,
    plan_sweep,
    render_markdown,
    spread,
)


# --- statistics ---------------------------------------------------------------------------------------------------
def test_gain_table_on_known_inputs():
    table = gain_table({"position": 50.0, "complex": 30.0},
                       [{"position": 60.0, "complex": 30.0}, {"position": 70.0, "complex": 40.0},
                        {"position": 80.0, "complex": 20.0}], ["position", "complex"])
    position = table["position"]
    assert position["scores"] == [60.0, 70.0, 80.0] and position["gains"] == [10.0, 20.0, 30.0]
    assert position["gain"] == {"mean": 20.0, "sd": 10.0, "min": 10.0, "max": 30.0}
    assert position["score"] == {"mean": 70.0, "sd": 10.0, "min": 60.0, "max": 80.0}
    assert table["complex"]["gain"] == {"mean": 0.0, "sd": 10.0, "min": -10.0, "max": 10.0}


def test_spread_of_one_and_of_no_value():
    assert spread([42.0]) == {"mean": 42.0, "sd": None, "min": 42.0, "max": 42.0}  # no s.d. from one seed
    assert spread([]) == {"mean": None, "sd": None, "min": None, "max": None}
    assert spread([1.0, 2.0, 3.0, 4.0])["sd"] == pytest.approx(1.2909944)  # sample s.d. (n - 1), not population


# --- rendering ----------------------------------------------------------------------------------------------------
def _known_document(runs=2):
    config = SweepConfig(out="runs/sw", eval_metadata="W/heldout/metadata.jsonl", seeds=[1, 2], recipe="R.yaml",
                         trainer_argv=["--max_steps", "3"], command="janus-rig sweep --seeds 1,2 ...", cfg=3.0)
    plan = Plan(configs={}, argvs={}, start_model="M", entries=[object()] * 4, oracle=None, rollout=None,
                tags=["position", "complex"])
    start = {"scores": {"overall": 40.0, "position": 50.0, "complex": 30.0}, "plans": {"position": 80.0,
                                                                                        "complex": 60.0}}
    done = [{"seed": 1, "dir": "runs/sw/seed_1", "steps": 7, "train_seconds": 12.25, "command": "janus-rig grpo A",
             "scores": {"overall": 55.0, "position": 75.0, "complex": 35.0},
             "plans": {"position": 90.0, "complex": 50.0}},
            {"seed": 2, "dir": "runs/sw/seed_2", "steps": 9, "train_seconds": 14.0, "command": "janus-rig grpo B",
             "scores": {"overall": 35.0, "position": 45.0, "complex": 25.0},
             "plans": {"position": 70.0, "complex": 70.0}}]
    return build_document(config, plan, start, done[:runs])


def test_document_on_known_inputs():
    document = _known_document()
    assert document["complete"] and document["seeds"] == [1, 2] and document["start_model"] == "M"
    assert list(document["table"]) == ["position", "complex", "overall"]
    assert document["table"]["position"]["gains"] == [25.0, -5.0]
    assert document["table"]["position"]["gain"]["mean"] == 10.0
    assert document["table"]["overall"]["score"]["min"] == 35.0
    assert document["plans"]["complex"]["gains"] == [-10.0, 10.0]
    assert document["eval"] == {"metadata": "W/heldout/metadata.jsonl", "tags": ["position", "complex"],
                                "prompts": 4, "samples": 4, "seed": 0, "cfg": 3.0, "max_chain_tokens": 600,
                                "batch_size": 8}
    assert json.loads(json.dumps(document)) == document  # sweep.json holds it as is


def test_a_sweep_started_from_python_records_its_command_line():
    config = SweepConfig(out="o", eval_metadata="W/heldout/metadata.jsonl", seeds=[1, 2], recipe="R.yaml",
                         eval_tags=["position"], trainer_argv=["--max_steps", "3"])
    assert config.command_line() == (
        "janus-rig sweep --trainer grpo --config R.yaml --seeds 1,2 --eval W/heldout/metadata.jsonl --eval-tags "
        "position --samples 4 --eval-seed 0 --max-chain-tokens 600 --eval-batch-size 8 --out o -- "
        "--max_steps 3")


def test_markdown_on_known_inputs():
    text = render_markdown(_known_document())
    assert "    janus-rig sweep --seeds 1,2 ..." in text
    assert "| tag | start | seed 1 | seed 2 | mean | min..max | mean gain | gain min..max | s.d. |" in text
    assert "| position | 50.0 | 75.0 (+25.0) | 45.0 (-5.0) | 60.0 | 45.0..75.0 | +10.0 | -5.0..+25.0 | 21.2 |" in text
    assert "| steps |  | 7 | 9 |  |  |  |  |  |" in text
    assert "## Plans right" in text and "| complex | 60.0 | 50.0 (-10.0) | 70.0 (+10.0) |" in text
    assert "| overall | 40.0 | 55.0 (+15.0) | 35.0 (-5.0) | 45.0 | 35.0..55.0 | +5.0 | -5.0..+15.0 | 14.1 |" in text
    assert "- seed 2: 9 steps, 14.0 s of training; `janus-rig grpo B`" in text
    partial = render_markdown(_known_document(runs=1))
    assert "1 of 2 seeds" in partial and "Unfinished: seeds 2." in partial
    assert "| position | 50.0 | 75.0 (+25.0) | 75.0 | 75.0..75.0 | +25.0 | +25.0..+25.0 |  |" in partial


# --- checks before training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [("", "comma-separated"), ("1,,2", "comma-separated"),
                                           ("1,x", "not an integer"), ("1,2,1", "seed twice")])
def test_bad_seeds(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


@pytest.mark.parametrize("overrides, error, message", [
    (dict(trainer_argv=["--seed", "3"]), ValueError, "--seed after `--`: the sweep sets it per seed"),
    (dict(trainer_argv=["--output_dir=x"]), ValueError, "--output_dir after `--`"),
    (dict(trainer="ppo"), KeyError, "unknown sweep trainer 'ppo'; valid names: grpo, sft"),
    (dict(samples=0), ValueError, "--samples must be >= 1"),
])
def test_sweep_config_checks(overrides, error, message):
    with pytest.raises(error, match=message):
        SweepConfig(**{"out": "o", "eval_metadata": "e", **overrides})


@pytest.fixture(scope="module")
def heldout_world(tmp_path_factory):
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("sweep_world")
    write_world(out, train=12, val=2, bench_per_tag=1, size=32, progress=False, heldout_per_tag=1)
    return out


def _argv(world, policy_dir, out, *extra, trainer_flags=()):
    return ["sweep", "--config", "train/recipes/shapeworld_grpo.yaml", "--seeds", "1,2",
            "--eval", str(world / "heldout" / "metadata.jsonl"), "--eval-tags", "position", "complex",
            "--samples", "1", "--max-chain-tokens", "8", "--quiet", "--out", str(out), *extra,
            "--", "--world", str(world), "--max_steps", "1", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "6", "--eval_every", "0",
            "--gallery_every", "0", "--disable_tqdm", "true", "--reward_terms", "test_brightness",
            "--reward_combine", "sum", "--learning_rate", "1e-2", *trainer_flags]


def test_sweep_refuses_bad_input_before_training(tmp_path, heldout_world, policy_dir, capsys):
    out = tmp_path / "sw"
    assert main(_argv(heldout_world, policy_dir, out, "--eval-tags", "spatial",
                      trainer_flags=["--model_name_or_path", str(policy_dir)])) == 2
    assert "--tags spatial: not a tag of" in capsys.readouterr().err
    assert main(_argv(heldout_world, policy_dir, out, trainer_flags=["--model_name_or_path", str(policy_dir),
                                                                     "--seed", "4"])) == 2
    assert "--seed after `--`" in capsys.readouterr().err
    assert not out.exists()


def test_sft_is_a_second_trainer(tmp_path, heldout_world, policy_dir):
    config = SweepConfig(out=str(tmp_path / "sw"), eval_metadata=str(heldout_world / "heldout" / "metadata.jsonl"),
                         seeds=[3, 4], trainer="sft", recipe="train/recipes/shapeworld_sft.yaml",
                         trainer_argv=["--world", str(heldout_world), "--model_name_or_path", str(policy_dir),
                                       "--init_preset", "", "--vq", ""])
    plan = plan_sweep(config)
    assert [c.seed for c in plan.configs.values()] == [3, 4]
    assert [c.output_dir for c in plan.configs.values()] == [str(tmp_path / "sw" / "seed_3"),
                                                            str(tmp_path / "sw" / "seed_4")]
    assert plan.start_model == str(policy_dir) and plan.tags == ["single_object", "two_object", "counting", "colors",
                                                                 "position", "color_attr", "complex"]
    config.trainer_argv = ["--world", str(heldout_world), "--vq", str(policy_dir)]  # the recipe's init_preset
    with pytest.raises(ValueError, match="a sweep measures gains over a start model"):
        plan_sweep(config)  # each seed would start from another random model


# --- end to end ---------------------------------------------------------------------------------------------------
def test_tiny_sweep_trains_each_seed_and_writes_the_table(tmp_path, heldout_world, policy_dir, capsys):
    out = tmp_path / "sw"
    assert main(_argv(heldout_world, policy_dir, out, trainer_flags=["--model_name_or_path", str(policy_dir)])) == 0
    document = json.loads((out / "sweep.json").read_text())
    assert document["complete"] and [r["seed"] for r in document["runs"]] == [1, 2]
    assert document["command"].startswith("janus-rig sweep --config train/recipes/shapeworld_grpo.yaml --seeds 1,2")
    assert document["eval"]["prompts"] == 2 and document["eval"]["tags"] == ["position", "complex"]
    for seed in (1, 2):
        run = next(r for r in document["runs"] if r["seed"] == seed)
        assert run["steps"] == 1 and f"--seed {seed} --output_dir {out / f'seed_{seed}'}" in run["command"]
        assert (out / f"seed_{seed}" / "model.safetensors").is_file()
        assert json.loads((out / f"seed_{seed}" / "grpo_summary.json").read_text())["steps"] == 1
        summary = json.loads((out / f"seed_{seed}" / "geneval" / "summary.json").read_text())
        assert summary["samples"] == 2
        assert run["scores"] == pytest.approx({k: 100 * v for k, v in summary["metrics"].items()})
    start = json.loads((out / "start" / "summary.json").read_text())
    assert start["model"] == str(policy_dir)
    assert document["start"]["scores"] == pytest.approx({k: 100 * v for k, v in start["metrics"].items()})
    assert set(document["table"]) == {"position", "complex", "overall"}
    weights = [(folder / "model.safetensors").read_bytes() for folder in (policy_dir, out / "seed_1", out / "seed_2")]
    assert len(set(weights)) == 3  # each run trained, with its own seed
    text = (out / "sweep.md").read_text()
    assert "| steps |  | 1 | 1 |" in text
    printed = capsys.readouterr().out
    assert "[1/2] seed 1: 1 steps" in printed and "[2/2] seed 2: 1 steps" in printed  # a line per finished run
    # a used folder is refused without --overwrite, before anything trains
    assert main(_argv(heldout_world, policy_dir, out, trainer_flags=["--model_name_or_path", str(policy_dir)])) == 2
    assert "is not empty" in capsys.readouterr().err
