"""The `janus-rig` command line: every subcommand has --help; input errors are one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from janus_rig.cli import _command_modules, build_parser, main


def command_words():
    return [m.NAME.split() for m in _command_modules()]


def test_every_command_has_help(capsys):
    assert command_words(), "no commands discovered"
    for words in command_words():
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([*words, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: janus-rig " + " ".join(words) in out


# `ablate --out` is a resumable folder of runs it manages itself (a foreign or differently-trained folder is refused,
# --force redoes one): it reuses its own folder by design
RESUMES_ITS_FOLDER = {"ablate"}


def test_every_command_that_writes_has_an_overwrite_flag():
    """A command with an output (--out, --output_dir) refuses a used one unless told (janus_rig/outputs.py): so it
    has the flag that tells it."""
    parser = build_parser()
    writers = []
    for module in _command_modules():
        words = module.NAME.split()
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) == 2:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        flags = {f for action in sub._actions for f in action.option_strings}
        if {"--out", "--output_dir"} & flags and module.NAME not in RESUMES_ITS_FOLDER:
            writers.append(module.NAME)
            assert {"--overwrite", "--overwrite_output_dir"} & flags, f"`janus-rig {module.NAME}` has no --overwrite"
    assert {"generate", "sft", "grpo", "reflect-grpo", "eval sg-iou", "convert got", "reward"} <= set(writers)


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "janus_rig.cli", "--help"], capture_output=True, text=True, check=True)
    assert "init" in out.stdout


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["init", "--preset", "huge", "--out", str(tmp_path)])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_missing_tokenizer_dir_is_one_line(tmp_path, capsys):
    code = main(["init", "--preset", "tiny", "--out", str(tmp_path / "m"), "--tokenizer", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("janus-rig init: error:") and "Traceback" not in err


# --- flag spelling: trainers take config field names (`--num_generations`, as trl, transformers and the YAML recipes
# spell them), other commands dashes; every command takes the other spelling too (janus_rig/cli.py) ---


def leaf_parsers():
    parser = build_parser()
    for module in _command_modules():
        words = module.NAME.split()
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) == 2:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        yield module.NAME, sub


def test_every_flag_takes_both_spellings_and_help_shows_one():
    for name, sub in leaf_parsers():
        for action in sub._actions:
            for option in (o for o in action.option_strings if o.startswith("--")):
                for other in ("--" + option[2:].replace("-", "_"), "--" + option[2:].replace("_", "-")):
                    assert sub._option_string_actions[other] is action, f"`janus-rig {name} {other}`"
        shown = [o for action in sub._actions for o in action.option_strings if o.startswith("--")]
        spellings = {o[2:].replace("-", "_") for o in shown}
        assert len(spellings) == len(shown), f"`janus-rig {name} --help` lists a flag in two spellings"


def test_generate_flags_in_either_spelling():
    base = ["generate", "--model", "M", "--prompt", "a red circle", "--out", "O"]
    dashes = build_parser().parse_args([*base, "--max-chain-tokens", "4", "--image-temperature=0.5", "--no-chain"])
    underscores = build_parser().parse_args([*base, "--max_chain_tokens", "4", "--image_temperature=0.5", "--no_chain"])
    assert vars(dashes) == vars(underscores)
    assert (dashes.max_chain_tokens, dashes.image_temperature, dashes.no_chain) == (4, 0.5, True)


def test_grpo_flags_in_either_spelling_give_one_config(tmp_path):
    from janus_rig.commands.grpo import config_from_args

    base = ["grpo", "--world", str(tmp_path / "W"), "--model_name_or_path", str(tmp_path / "M"),
            "--output_dir", str(tmp_path / "O"), "--max_steps", "1"]
    underscores = build_parser().parse_args(
        [*base, "--num_generations", "4", "--no_chain", "--optimize", "image", "--max_train_seconds=30"])
    dashes = build_parser().parse_args(
        [*base, "--num-generations", "4", "--no-chain", "--optimize", "image", "--max-train-seconds=30"])
    # trl receives the field's own spelling, whichever was typed
    assert dashes.recipe_argv == underscores.recipe_argv == [
        *base[1:], "--num_generations", "4", "--no_chain", "--optimize", "image", "--max_train_seconds", "30"]
    config = config_from_args(dashes)
    assert (config.num_generations, config.chain, config.max_train_seconds) == (4, False, 30.0)
    assert config.to_dict() == config_from_args(underscores).to_dict()


def test_vq_train_and_ablate_flags_in_either_spelling():
    from janus_rig.commands.vq_train import config_from_args

    vq = [build_parser().parse_args(["vq", "train", flag, "4", "--hflip", "false"]) for flag in ("--batch-size",
                                                                                                   "--batch_size")]
    assert config_from_args(vq[0]) == config_from_args(vq[1])
    assert config_from_args(vq[0]).batch_size == 4
    ablate = [build_parser().parse_args(["ablate", "--out", "A", budget, "60", steps, "3"])
              for budget, steps in (("--budget-s", "--max_steps"), ("--budget_s", "--max-steps"))]
    assert vars(ablate[0]) == vars(ablate[1])
    assert ablate[0].budget_s == 60.0 and ablate[0].recipe_argv == ["--max_steps", "3"]
