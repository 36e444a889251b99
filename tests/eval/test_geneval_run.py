"""`janus-rig eval geneval`: metadata selection, oracle choice, GenEval's layout with chains, scoring, summary."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image

import janus_rig.generate as gen
from janus_rig.cli import main
from janus_rig.eval.geneval_layout import prompt_dirs, read_chains, read_metadata, sample_paths
from janus_rig.eval.geneval_run import (
    Draw,
    Entry,
    choose_oracle,
    draw_samples,
    read_geneval_metadata,
    run_geneval,
    thumbnails,
    write_geneval_outputs,
)
from janus_rig.eval.summary import read_summary
from janus_rig.rollout.config import RolloutConfig

FAST = ["--max-chain-tokens", "4", "--cfg", "3", "--display-size", "32", "--batch-size", "2", "--quiet"]
REAL = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small world: its train records (metadata + the scene that satisfies it) and its 7-line bench."""
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, train=40, val=0, bench_per_tag=1, size=64, progress=False)
    records, seen = [], set()
    for line in (out / "train.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["prompt"] not in seen:  # one scene per prompt: the fake model below draws by prompt
            seen.add(record["prompt"])
            records.append(record)
    return out, records


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def truth_fn(records):
    """A GenerateFn standing in for a perfect model on even samples and a blank canvas on odd ones."""
    from data_prep.shapeworld.chains import grounding_chain
    from data_prep.shapeworld.render import render
    from data_prep.shapeworld.scene import Scene

    scenes = {r["prompt"]: Scene.from_json(r["scene"]) for r in records}

    def generate(policy, prompts, config, seed):
        draws = []
        for p, prompt in enumerate(prompts):
            for k in range(config.group_size):
                scene = scenes[prompt] if k % 2 == 0 else Scene(64)
                draws.append(Draw(p, k, render(scene), grounding_chain(scene) if scene.objects else "nothing",
                                  truncated=False, seed=seed, extra={"rounds": [f"round for {prompt}"]}))
        return draws

    return generate


# --- metadata and oracle choice ---------------------------------------------------------------------------------
def test_read_metadata_selection(tmp_path, world):
    lines = [r["metadata"] for r in world[1][:12]]
    path = write_jsonl(tmp_path / "m.jsonl", lines[:3] + [""] + lines[3:])  # a blank line is not a metadata line
    entries = read_geneval_metadata(path)
    assert [e.index for e in entries] == list(range(12)) and [e.metadata for e in entries] == lines
    assert entries[3].line == 5  # file line numbers, for messages
    tag = lines[5]["tag"]
    chosen = read_geneval_metadata(path, tags=[tag], limit=2)
    expected = [i for i, m in enumerate(lines) if m["tag"] == tag][:2]
    assert [e.index for e in chosen] == expected  # folder numbers stay the file's indexes
    assert [e.index for e in read_geneval_metadata(path, limit=4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"--tags nope: not a tag of .*its tags: "):
        read_geneval_metadata(path, tags=["nope"])
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        read_geneval_metadata(path, limit=0)


def test_read_metadata_bad_lines(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [REAL, "{nope", json.dumps({"tag": "x"}), "[1]",
                                             json.dumps({"prompt": "p", "tag": ""})])
    with pytest.raises(ValueError) as err:
        read_geneval_metadata(path)
    text = str(err.value)
    for where in (":2: not JSON", ":3: no 'prompt' string", ":4: not a JSON object", ":5: no 'tag' string"):
        assert f"{path}{where}" in text
    with pytest.raises(FileNotFoundError):
        read_geneval_metadata(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="holds no metadata"):
        read_geneval_metadata(write_jsonl(tmp_path / "empty.jsonl", ["", " "]))


def test_choose_oracle(world):
    shapeworld = [Entry(i, i + 1, r["metadata"]) for i, r in enumerate(world[1][:5])]
    assert choose_oracle(shapeworld, "auto").use
    assert "auto" in choose_oracle(shapeworld, "auto").why and "--oracle on" in choose_oracle(shapeworld, "on").why
    assert not choose_oracle(shapeworld, "off").use
    mixed = shapeworld + [Entry(5, 9, REAL)]
    auto = choose_oracle(mixed, "auto", "bench.jsonl")
    assert not auto.use and "bench.jsonl:9" in auto.why and "'bench'" in auto.why
    with pytest.raises(ValueError, match="--oracle on, but .*bench.jsonl:9"):
        choose_oracle(mixed, "on", "bench.jsonl")
    with pytest.raises(ValueError, match="oracle mode"):
        choose_oracle(mixed, "maybe")


# --- the run ----------------------------------------------------------------------------------------------------
def test_run_scores_layout_chains_and_summary(tmp_path, world):
    _, records = world
    entries = [Entry(i, i + 1, r["metadata"]) for i, r in enumerate(records)]
    out = tmp_path / "geneval"
    run = run_geneval(None, entries, out, RolloutConfig(group_size=2), seed=7, batch_size=3, oracle=True,
                      generate_fn=truth_fn(records), display_size=48, progress=False)
    # layout: one folder per metadata line, its metadata, 2 samples, chains beside them
    folders = prompt_dirs(out)
    assert [int(f.name) for f in folders] == list(range(len(records)))
    for folder, record in zip(folders, records):
        assert read_metadata(folder) == record["metadata"]
        assert [p.name for p in sample_paths(folder)] == ["0000.png", "0001.png"]
        chains = read_chains(folder)
        assert [c["sample"] for c in chains] == [0, 1] and chains[0]["prompt"] == record["prompt"]
        names = {f"{o['color']} {o['shape']}" for o in record["scene"]["objects"]}
        assert {o["name"] for o in chains[0]["objects"]} == names and chains[1]["objects"] == []
        assert chains[0]["rounds"] == [f"round for {record['prompt']}"]  # Draw.extra is kept
        assert [c["seed"] for c in chains] == [7 + int(folder.name) // 3] * 2  # batch b: seed + b
        assert Image.open(folder / chains[0]["overlay"]).size == (48, 48)
    # scoring: ground truth on sample 0, blank on sample 1 -> every tag at exactly 0.5
    score = run.score
    tags = list(dict.fromkeys(r["tag"] for r in records))
    assert list(score.per_tag) == tags and all(score.accuracy(t) == 0.5 for t in tags) and score.problems == []
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 2 * len(records) and sum(r["correct"] for r in results) == len(records)
    verdicts = {t["image"]: t["scores"]["correct"] for t in run.traces}
    assert verdicts["00000/samples/0000.png"] is True and verdicts["00000/samples/0001.png"] is False
    # the plan/drawing split: sample 0's chain is the scene's own (a right plan, drawn right), sample 1's "nothing"
    assert [t["scores"]["chain_ok"] for t in run.traces[:2]] == [True, False]
    assert set(run.chain_split) == set(tags)
    for split in run.chain_split.values():
        assert split["chain_accuracy"] == 0.5
        assert split["image_given_right_chain"] == 1.0 and split["image_given_wrong_chain"] == 0.0
    # summary + gallery
    page = write_geneval_outputs(out, run, model="tiny", header={"model": "tiny"}, oracle=choose_oracle(entries),
                                 metadata_file="m.jsonl", command="janus-rig eval geneval ...")
    summary = read_summary(out)
    assert summary["kind"] == "geneval" and summary["samples"] == 2 * len(records)
    assert summary["metrics"] == {"overall": 0.5, **{t: 0.5 for t in tags}}
    assert summary["per_tag"][tags[0]]["total"] == 2 * sum(r["tag"] == tags[0] for r in records)
    assert summary["scored"] is True and summary["reflect_rounds"] == 0
    assert summary["chain_split"] == run.chain_split
    assert len(summary["thumbnails"]) == 8 and all((out / t).is_file() for t in summary["thumbnails"])
    html = page.read_text()
    assert 'src="00000/samples/0000.png"' in html and 'src="00000/overlays/0000.png"' in html and "correct" in html


def test_thumbnails_take_tags_in_turn():
    traces = [{"sample": k, "tag": tag, "image": f"{tag}{i}-{k}"} for tag in "ab" for i in range(5) for k in range(2)]
    assert thumbnails(traces, 5) == ["a0-0", "b0-0", "a1-0", "b1-0", "a2-0"]
    assert thumbnails(traces[:2], 8) == ["a0-0"]


def test_generate_fn_must_return_group_size(world):
    def short(policy, prompts, config, seed):
        return []

    with pytest.raises(RuntimeError, match="returned 0 samples for 1 prompts x 2"):
        list(draw_samples(None, ["a circle"], RolloutConfig(group_size=2), generate_fn=short, progress=False))


def test_refuses_a_used_folder(tmp_path, world):
    _, records = world
    entries = [Entry(0, 1, records[0]["metadata"])]
    run_geneval(None, entries, tmp_path, RolloutConfig(group_size=1), generate_fn=truth_fn(records), progress=False)
    with pytest.raises(ValueError, match="is not empty"):
        run_geneval(None, entries, tmp_path, RolloutConfig(group_size=1), generate_fn=truth_fn(records), progress=False)


def test_same_draws_as_janus_rig_generate(tiny_policy, world, tmp_path):
    """The default GenerateFn and the batching/seeding reproduce `janus_rig.generate` sample for sample."""
    _, records = world
    entries = [Entry(i, i + 1, r["metadata"]) for i, r in enumerate(records[:2])]
    config = RolloutConfig(group_size=2, max_chain_tokens=3, cfg_weight=3.0)
    run = run_geneval(tiny_policy, entries, tmp_path / "g", config, seed=4, batch_size=1, progress=False)
    traces = gen.generate(tiny_policy, [e.metadata["prompt"] for e in entries], tmp_path / "gen", config, seed=4,
                          batch_size=1, progress=False)
    assert len({t["seed"] for t in traces}) == 2  # two batches
    assert [t["chain"] for t in run.traces] == [t["chain"] for t in traces]
    for ours, theirs in zip(run.traces, traces):
        assert (tmp_path / "g" / ours["image"]).read_bytes() == (tmp_path / "gen" / theirs["image"]).read_bytes()
    assert run.score is None and not (tmp_path / "g" / "results.jsonl").exists()


# --- the command ------------------------------------------------------------------------------------------------
def test_cli_shapeworld_bench(tiny_policy_dir, world, tmp_path, capsys, monkeypatch):
    bench = world[0] / "bench" / "metadata.jsonl"
    lines = bench.read_text().splitlines()
    out = tmp_path / "out"
    args = ["eval", "geneval", "--model", str(tiny_policy_dir), "--metadata", str(bench), "--samples", "2",
            "--tags", "position", "colors", "--out", str(out), *FAST]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "oracle on (auto" in printed and "position" in printed and "colors" in printed and "overall" in printed
    wanted = [i for i, line in enumerate(lines) if json.loads(line)["tag"] in ("position", "colors")]
    assert [int(f.name) for f in prompt_dirs(out)] == wanted
    summary = read_summary(out)
    assert set(summary["per_tag"]) == {"position", "colors"} and summary["samples"] == 2 * len(wanted)
    assert set(summary["metrics"]) == {"overall", "position", "colors"}
    assert set(summary["chain_split"]) == {"position", "colors"} and "chain ok" in printed
    assert summary["command"] == "janus-rig " + " ".join(args)
    assert (out / "results.jsonl").is_file() and (out / "index.html").is_file()
    # the same folder again: refused in one line, before the model loads
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_cli_real_prompts_are_not_scored(tiny_policy_dir, tmp_path, capsys):
    metadata = write_jsonl(tmp_path / "evaluation_metadata.jsonl", [REAL, {**REAL, "prompt": "a photo of a cow"}])
    out = tmp_path / "out"
    assert main(["eval", "geneval", "--model", str(tiny_policy_dir), "--metadata", str(metadata), "--samples", "1",
                 "--limit", "1", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "oracle off (not ShapeWorld prompts" in printed and "evaluate_images.py" in printed
    assert [f.name for f in prompt_dirs(out)] == ["00000"] and not (out / "results.jsonl").exists()
    summary = read_summary(out)
    assert summary["metrics"] == {} and summary["scored"] is False and summary["samples"] == 1
    assert any("evaluate_images.py" in line for line in summary["score_with"])
    # --oracle on refuses them, before the model loads
    assert main(["eval", "geneval", "--model", str(tmp_path / "no-model"), "--metadata", str(metadata),
                 "--oracle", "on", "--out", str(tmp_path / "o2")]) == 2
    assert "cannot score" in capsys.readouterr().err


def test_read_chains_names_bad_lines(tmp_path):
    assert read_chains(tmp_path) == []
    (tmp_path / "chains.jsonl").write_text('{"sample": 0}\n\n[1]\n')
    with pytest.raises(ValueError, match=r"chains.jsonl:3: must be a JSON object"):
        read_chains(tmp_path)
    (tmp_path / "chains.jsonl").write_text('{"sample": 0}\n{"sample": \n')
    with pytest.raises(ValueError, match=r"chains.jsonl:2: malformed JSON"):
        read_chains(tmp_path)


# --- --reflect K: the image after every round, scored per round --------------------------------------------------
def test_round_images_are_written_and_scored_per_round(tmp_path, world):
    """A GenerateFn whose draws carry round_images (blank after round 0, the truth after round 1): the per-round
    metrics are the oracle's accuracy on exactly those images."""
    from data_prep.shapeworld.render import render
    from data_prep.shapeworld.scene import Scene

    _, records = world
    entries = [Entry(i, i + 1, r["metadata"]) for i, r in enumerate(records[:4])]
    truth = truth_fn(records)

    def reflecting(policy, prompts, config, seed):
        draws = truth(policy, prompts, config, seed)
        return [dataclasses.replace(d, image=render(Scene(64)) if d.sample else d.image,
                                    round_images=[render(Scene(64)), d.image]) for d in draws]

    out = tmp_path / "geneval"
    run = run_geneval(None, entries, out, RolloutConfig(group_size=2), oracle=True, generate_fn=reflecting,
                      display_size=32, progress=False)
    tags = list(dict.fromkeys(e.metadata["tag"] for e in entries))
    # after round 0 nothing is right; after round 1 sample 0 is the truth and sample 1 blank again: 0.5
    assert run.round_metrics == {**{f"{t}@r0": 0.0 for t in ["overall", *tags]},
                                 **{f"{t}@r1": 0.5 for t in ["overall", *tags]}}
    write_geneval_outputs(out, run, model="m", header={}, oracle=choose_oracle(entries), metadata_file="m.jsonl",
                          reflect_rounds=1, command="c")
    summary = read_summary(out)
    assert summary["reflect_rounds"] == 1 and summary["metrics"]["overall"] == summary["metrics"]["overall@r1"] == 0.5
    chains = read_chains(prompt_dirs(out)[0])
    assert chains[0]["round_images"] == ["rounds/0000_r0.png", "rounds/0000_r1.png"]
    for j in range(2):
        assert (prompt_dirs(out)[0] / chains[1]["round_images"][j]).is_file()
    assert "after 0 rounds" in (out / "index.html").read_text()
    assert [p.name for p in sample_paths(prompt_dirs(out)[0])] == ["0000.png", "0001.png"]  # rounds/ is beside


def test_reflect_generate_starts_from_the_plain_samples(tiny_policy, world, tmp_path):
    """--reflect K draws the first images exactly as plain generation does (same seeds), then edits them: after
    round 0 are the plain samples, the last round is the written sample."""
    from janus_rig.eval.reflect_generate import reflect_generate
    from janus_rig.reflect.loop import ReflectConfig
    from tests.reflect.scripted import Scripted, edit, reflection

    _, records = world
    entries = [Entry(i, i + 1, r["metadata"]) for i, r in enumerate(records[:2])]
    config = RolloutConfig(group_size=2, max_chain_tokens=3, cfg_weight=3.0)
    plain = run_geneval(tiny_policy, entries, tmp_path / "plain", config, seed=4, batch_size=1, oracle=True,
                        progress=False)
    checker = Scripted(lambda k, i: reflection("edit" if k % 2 == 0 else "keep"))  # edit once, then keep
    generate_fn = reflect_generate(ReflectConfig(rounds=2), checker=checker, actor=Scripted(lambda k, i: edit()))
    run = run_geneval(tiny_policy, entries, tmp_path / "r", config, seed=4, batch_size=1, oracle=True,
                      generate_fn=generate_fn, progress=False)
    for ours, theirs in zip(run.traces, plain.traces):
        folder = tmp_path / "r" / ours["image"].split("/")[0]
        rounds = [folder / rel for rel in ours["round_images"]]
        assert rounds[0].read_bytes() == (tmp_path / "plain" / theirs["image"]).read_bytes()
        assert rounds[2].read_bytes() == (tmp_path / "r" / ours["image"]).read_bytes() == rounds[1].read_bytes()
        assert rounds[1].read_bytes() != rounds[0].read_bytes()  # the edit redrew its boxes
        assert [r["status"] for r in ours["reflect"]] == ["edited", "keep"] and ours["edits"] == 1
        assert ours["chain"] == ours["reflect"][1]["plan"] and ours["initial_chain"] == theirs["chain"]
    assert run.round_metrics["overall@r0"] == plain.score.overall
    per_round = {f"{t}@r{j}" for t in ["overall", *plain.score.per_tag] for j in range(3)}
    assert set(run.round_metrics) == per_round | {"flagged_right@r0", "flagged_wrong@r0", "edited"}
    assert run.round_metrics["edited"] == 1.0  # the scripted checker flags every first image, the actor edits it
    assert run.round_metrics["flagged_right@r0"] in (0.0, 1.0) and run.round_metrics["flagged_wrong@r0"] in (0.0, 1.0)


def test_reflect_generate_with_final_best_writes_the_chosen_image(tiny_policy, world, tmp_path, monkeypatch):
    """--final best: the written sample (and the image after the last round) is the round its checker rated highest,
    here the first drawing, rated above the edit; its chain is that round's plan."""
    import janus_rig.reflect.loop as loop
    from janus_rig.eval.reflect_generate import reflect_generate
    from janus_rig.reflect.loop import ReflectConfig
    from tests.reflect.scripted import Scripted, edit, reflection

    _, records = world
    entries = [Entry(0, 1, records[0]["metadata"])]
    config = RolloutConfig(group_size=2, max_chain_tokens=3, cfg_weight=3.0)
    checker = Scripted(lambda k, i: reflection("edit" if k == 0 else "keep"))
    monkeypatch.setattr(loop, "verdict_confidence", lambda policy, out, **kw: [0.9 if len(checker.calls) == 1 else 0.1]
                        * len(out.texts))
    generate_fn = reflect_generate(ReflectConfig(rounds=2, final="best"), checker=checker,
                                   actor=Scripted(lambda k, i: edit()))
    run = run_geneval(tiny_policy, entries, tmp_path / "r", config, seed=4, batch_size=1, oracle=True,
                      generate_fn=generate_fn, progress=False)
    for ours in run.traces:
        folder = tmp_path / "r" / ours["image"].split("/")[0]
        rounds = [(folder / rel).read_bytes() for rel in ours["round_images"]]
        assert [r["status"] for r in ours["reflect"]] == ["edited", "keep"]
        assert [r["checker_score"] for r in ours["reflect"]] == [0.9, 0.1]
        assert rounds[0] == rounds[1] == rounds[2] == (tmp_path / "r" / ours["image"]).read_bytes()
        assert ours["chain"] == ours["reflect"][0]["plan"] == ours["initial_chain"]


def test_cli_reflect_one_round(tiny_policy_dir, world, tmp_path, capsys):
    bench = world[0] / "bench" / "metadata.jsonl"
    out = tmp_path / "out"
    args = ["eval", "geneval", "--model", str(tiny_policy_dir), "--metadata", str(bench), "--samples", "1",
            "--tags", "position", "--reflect", "1", "--max-reflection-tokens", "8", "--max-edit-tokens", "8",
            "--out", str(out), *FAST]
    assert main(args) == 0
    assert "after each round: r0" in capsys.readouterr().out
    summary = read_summary(out)
    assert summary["reflect_rounds"] == 1 and summary["samples"] == 1
    assert set(summary["metrics"]) == {"overall", "position", "overall@r0", "position@r0", "overall@r1",
                                       "position@r1", "flagged_right@r0", "flagged_wrong@r0", "edited"}
    assert summary["edit_strip"] in (None, "edit_strip.png")  # a random model's reflections rarely edit
    (folder,) = prompt_dirs(out)
    (record,) = read_chains(folder)
    assert [(folder / rel).is_file() for rel in record["round_images"]] == [True, True]
    assert record["reflect"][0]["round"] == 0 and record["reflect"][0]["status"]  # what round 0's checker said
    assert main([*args[:-len(FAST) - 2], "--reflect", "-1", "--out", str(tmp_path / "o2"), *FAST]) == 2
    assert "--reflect must be >= 0" in capsys.readouterr().err
