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
