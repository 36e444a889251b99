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
