"""`janus-rig reflect` writes traces, a summary and a gallery (per round: image, reflection, edit boxes, edited
image); `janus-rig reflect-data` writes rows into a world."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from janus_rig.cli import main
from janus_rig.reflect.loop import ReflectConfig, reflect
from janus_rig.reflect.report import write_reflect_gallery, write_reflect_outputs
from janus_rig.reflect.reward import edit_rewards
from janus_rig.reflect.text import TextConfig
from janus_rig.rollout import RolloutConfig
from tests.reflect.scripted import Scripted, edit, reflection

PROMPT = "a red circle left of a blue square"
FAST = ["--max-chain-tokens", "4", "--max-reflection-tokens", "12", "--max-edit-tokens", "12", "--cfg", "3",
        "--display-size", "64"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_reflect_command_on_the_random_model(tiny_policy_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--num", "2", "--rounds", "2",
                 "--out", str(out), *FAST])
    assert code == 0
    traces = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert [(t["row"], t["round"], t["status"]) for t in traces] == [(0, 0, "malformed_reflection"),
                                                                      (1, 0, "malformed_reflection")]
    for t in traces:
        assert Image.open(out / t["image"]).size == (64, 64) and Image.open(out / t["seen"]).size == (64, 64)
        assert t["reflection_problems"] and t["oracle"]["verdicts"]  # a ShapeWorld caption: the oracle knows
    summary = json.loads((out / "reflect_summary.json").read_text())
    assert summary["counts"]["malformed_reflection"] == 2 and summary["oracle"]["checks"] == 2
    assert summary["oracle"]["verdict_coverage"] == 0.0
    page = (out / "index.html").read_text()
    assert page.count('class="card"') == 2 and "round 0" in page and "http" not in page
    assert "reflected on 2 images" in capsys.readouterr().out
    assert summary["final"] == "last" and summary["rating"] == "verdicts"
    assert all(t["final"] and t["checker_score"] is None for t in traces)


def test_reflect_command_input_errors(tiny_policy_dir, tmp_path, capsys):
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", " ", "--out", str(tmp_path)]) == 2
    assert "--prompt is empty" in capsys.readouterr().err
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--rounds", "-1",
                 "--out", str(tmp_path)]) == 2
    assert "rounds must be >= 0" in capsys.readouterr().err
    assert main(["reflect", "--model", str(tmp_path / "none"), "--prompt", PROMPT, "--out", str(tmp_path)]) == 2
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--role-top-k", "0",
                 "--out", str(tmp_path)]) == 2
    assert "top_k must be >= 1" in capsys.readouterr().err


def test_role_sampling_arguments_reach_both_roles():
    import argparse

    from janus_rig.commands.eval_geneval import add_arguments as geneval_arguments
    from janus_rig.commands.eval_geneval import reflect_config
    from janus_rig.commands.reflect import add_role_sampling_arguments, role_text_config

    parser = argparse.ArgumentParser()
    add_role_sampling_arguments(parser)
    args = parser.parse_args(["--role-top-k", "1", "--role-temperature", "0.5"])
    config = role_text_config(args, 12)
    assert (config.top_k, config.temperature, config.max_new_tokens) == (1, 0.5, 12)
    assert role_text_config(parser.parse_args([]), 12).top_k is None  # sampling, as before, by default
    parser = argparse.ArgumentParser()
    geneval_arguments(parser)
    args = parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--reflect", "2",
                              "--role-top-k", "1"])
    config = reflect_config(args)
    assert config.checker.top_k == config.actor.top_k == 1 and config.rounds == 2
    assert config.edit_region == "boxes" and config.paste_back  # region-locked by default
    args = parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--reflect", "1",
                              "--edit-region", "full", "--no-paste-back"])
    assert (reflect_config(args).edit_region, reflect_config(args).paste_back) == ("full", False)
    assert reflect_config(args).final == "last"
    args = parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--reflect", "1",
                              "--final", "best"])
    assert reflect_config(args).final == "best" and reflect_config(args).rating == "verdicts"
    args = parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--reflect", "1",
                              "--final", "best", "--rating", "grounded"])
    assert reflect_config(args).rating == "grounded"
    args = parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--reflect", "1",
                              "--final", "best", "--rating", "plan"])
    assert reflect_config(args).rating == "plan"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--rating", "oracle"])
    assert args.actor == "model"  # the fixed actors of janus_rig/reflect/ablation.py only when asked
    assert parser.parse_args(["--model", "m", "--metadata", "x", "--out", "o", "--actor", "fresh-plan"]).actor == \
        "fresh-plan"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--actor", "oracle"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--metadata", "x.jsonl", "--out", "o", "--edit-region", "everything"])


def test_gallery_shows_every_round_of_an_edited_image(tiny_policy, tmp_path):
    checker = Scripted(lambda k, i: reflection("edit" if k < 2 else "keep", yes=k, no=2 - k))
    actor = Scripted(lambda k, i: edit())
    config = ReflectConfig(rounds=2, checker=TextConfig(max_new_tokens=8), actor=TextConfig(max_new_tokens=8))
    result = reflect(tiny_policy, [PROMPT], config, RolloutConfig(group_size=1, max_chain_tokens=4, cfg_weight=3.0),
                     seed=0, checker=checker, actor=actor)
    rewards = edit_rewards(result)
    assert rewards == [0.5, 0.5]  # the scripted checker thinks better of each edited image
    traces = write_reflect_outputs(tmp_path, result, [0], 1, rewards, None, display_size=64)
    assert [t["status"] for t in traces] == ["edited", "edited", "keep"]
    for t in traces[:2]:
        assert Image.open(tmp_path / t["edit_overlay"]).size == (64, 64)
        assert Image.open(tmp_path / t["edited_image"]).size == (64, 64)
        assert t["reward"] == 0.5 and len(t["edit_boxes"]) == 2 and t["revised_chain"]
    assert traces[2]["edit_overlay"] is None and "oracle" not in traces[2]
    page = write_reflect_gallery(tmp_path, traces, {"model": "tiny"}, display_size=64).read_text()
    assert page.count('class="card"') == 3 and page.count('alt="edited"') == 2 and page.count('alt="edit boxes"') == 2
    assert '<span class="role">verdict</span>' in page and '<span class="no">' in page
    assert '<span class="role">edit_boxes</span>' in page and "&lt;|" not in page  # role tokens shown as labels


def test_reflect_data_command(tmp_path, capsys):
    from data_prep.shapeworld.world import write_world

    write_world(tmp_path, train=8, val=0, bench_per_tag=1, size=32, progress=False)
    assert main(["reflect-data", "--world", str(tmp_path), "--n", "6", "--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 6 and len((tmp_path / "reflect.jsonl").read_text().splitlines()) == 6
    assert main(["reflect-data", "--world", str(tmp_path / "nope"), "--n", "6"]) == 2
