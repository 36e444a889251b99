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
    assert summary["loop"]["final"] == "last" and summary["loop"]["rating"] == "verdicts"
    assert summary["loop_sources"]["rounds"] == "flag" and summary["loop_sources"]["final"] == "default"
    assert all(t["final"] and t["checker_score"] is None for t in traces)


def test_reflect_command_input_errors(tiny_policy_dir, tmp_path, capsys):
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", " ", "--out", str(tmp_path)]) == 2
    assert "--prompt is empty" in capsys.readouterr().err
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--rounds", "-1",
                 "--out", str(tmp_path)]) == 2
    assert "rounds must be >= 0" in capsys.readouterr().err
    assert main(["reflect", "--model", str(tmp_path / "none"), "--prompt", PROMPT, "--out", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--role-temperature", "0",
                 "--out", str(tmp_path)]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    recipe = tmp_path / "loop.yaml"
    recipe.write_text("rounds: 2\nfinal: bestest\n")
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--config", str(recipe),
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown final 'bestest'" in capsys.readouterr().err
    recipe.write_text("rounds: 2\nratings: plan\n")
    assert main(["reflect", "--model", str(tiny_policy_dir), "--prompt", PROMPT, "--config", str(recipe),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}: unknown loop setting(s) 'ratings'" in err and len(err.strip().splitlines()) == 1


def test_loop_settings_flags_over_recipe_over_model_record(tmp_path):
    """Precedence: LoopSettings defaults < the model's record < --config recipe < flags; every one is checked."""
    import argparse

    from janus_rig.commands.eval_geneval import add_arguments as geneval_arguments
    from janus_rig.commands.eval_geneval import reflect_config
    from janus_rig.commands.reflect import loop_settings

    parser = argparse.ArgumentParser()
    geneval_arguments(parser)
    base = ["--model", "m", "--metadata", "x.jsonl", "--out", "o"]
    settings, sources = reflect_config(parser.parse_args([*base, "--reflect", "2"]))
    config = settings.loop_config()
    assert config.rounds == 2 and config.edit_region == "boxes" and config.paste_back  # region-locked by default
    assert (config.final, config.rating, settings.actor) == ("last", "verdicts", "model")
    assert sources["rounds"] == "flag" and sources["actor"] == "default"
    recipe = tmp_path / "loop.yaml"
    recipe.write_text("actor: fresh-plan\nfinal: best\nrating: plan\nrole_temperature: 0.001\nverdict_bias: 2\n")
    record = {"actor": "keep-plan", "edit_region": "full", "rating": "grounded", "rounds": 1}
    args = parser.parse_args([*base, "--reflect", "3", "--config", str(recipe), "--verdict-bias", "1"])
    settings, sources = loop_settings(args, record, "M's loop record", rounds=args.reflect)
    config = settings.loop_config()
    assert settings.actor == "fresh-plan" and sources["actor"] == str(recipe)  # the recipe over the record
    assert config.edit_region == "full" and sources["edit_region"] == "model"  # the record over the default
    assert config.rating == "plan" and config.final == "best" and config.rounds == 3  # --reflect K over the record
    assert config.verdict_bias == 1.0 and sources["verdict_bias"] == "flag"  # the flag over the recipe
    assert config.checker.temperature == config.actor.temperature == 0.001
    with pytest.raises(ValueError, match="M's loop record: unknown loop setting"):
        loop_settings(args, {"finale": "best"}, "M's loop record")
    with pytest.raises(ValueError, match="loop setting 'rounds' must be int"):
        loop_settings(parser.parse_args(base + ["--reflect", "1"]), {"rounds": "two"}, "M")
    for gone in ("--final", "--rating", "--no-paste-back", "--role-top-k"):  # lost their ablations: config only
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--reflect", "1", gone, "best"])
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--actor", "oracle"])
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--edit-region", "everything"])


def test_the_model_record_travels_with_the_policy(tiny_policy, tmp_path):
    """A loop record set on a policy is saved in roles.json and loaded back; `reflect` reads it with no flags."""
    from janus_rig.model.policy import JanusPolicy

    tiny_policy.loop_settings = {"actor": "keep-plan", "edit_region": "full", "rounds": 1}
    try:
        tiny_policy.save(tmp_path / "m")
    finally:
        tiny_policy.loop_settings = None
    roles = json.loads((tmp_path / "m" / "roles.json").read_text())
    assert roles["loop"]["actor"] == "keep-plan" and roles["image_view"] == tiny_policy.image_view
    assert JanusPolicy.load(tmp_path / "m").loop_settings == roles["loop"]
    out = tmp_path / "out"
    assert main(["reflect", "--model", str(tmp_path / "m"), "--prompt", PROMPT, "--out", str(out), *FAST]) == 0
    summary = json.loads((out / "reflect_summary.json").read_text())
    assert summary["loop"]["actor"] == "keep-plan" and summary["loop_sources"]["actor"] == "model"
    assert summary["loop"]["rounds"] == 1 and summary["loop"]["edit_region"] == "full"
    (tmp_path / "m" / "roles.json").write_text(json.dumps({"image_view": "vision", "loop": ["actor"]}))
    with pytest.raises(ValueError, match="roles.json: 'loop' must be an object"):
        JanusPolicy.load(tmp_path / "m")


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
