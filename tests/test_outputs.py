"""No silent clobbering: every command that writes a folder refuses a used one in one line unless --overwrite (which
empties it first), a trainer refuses a non-empty output_dir unless resuming and always refuses its model directory,
and `sft` with a missing world writes nothing (janus_rig/outputs.py, train/common.py OutputArgs)."""

from __future__ import annotations

import json
import os

import pytest

from janus_rig.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def used(folder, name="earlier.txt"):
    """A folder holding an earlier run's file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("from an earlier run\n")
    return folder


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- the helper ---------------------------------------------------------------------------------------------------
def test_a_used_folder_is_refused_and_overwrite_empties_it(tmp_path):
    from janus_rig.outputs import prepare_out_dir

    assert prepare_out_dir(tmp_path / "new", False) == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # created by the command's first write, not before
    out = used(tmp_path / "out")
    (out / "sub").mkdir()
    (out / "sub" / "deep.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"--out .*out is not empty \(it holds earlier.txt, sub/\): pick a new "
                                         r"folder, or add --overwrite to delete its contents first"):
        prepare_out_dir(out, False)
    assert (out / "sub" / "deep.png").exists()
    prepare_out_dir(out, True)
    assert out.is_dir() and not any(out.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        prepare_out_dir(tmp_path / "file", True)


def test_inputs_keep_and_only(tmp_path):
    from janus_rig.outputs import prepare_out_dir

    model = used(tmp_path / "runs" / "sft", "model.safetensors")
    for out, relation in ((model, "is"), (tmp_path / "runs", "holds")):
        with pytest.raises(ValueError, match=f"{relation} the --model"):
            prepare_out_dir(out, True, inputs={"--model": str(model)})
    assert model.joinpath("model.safetensors").exists()
    prepare_out_dir(tmp_path / "runs" / "sft" / "samples", False, inputs={"--model": model})  # inside: fine
    with pytest.raises(ValueError, match="holds the INPUT"):
        prepare_out_dir(tmp_path, True, inputs={"INPUT": [str(tmp_path / "elsewhere.json"), str(model)]})

    shared = used(tmp_path / "run", "report.html")
    (shared / "world").mkdir()
    with pytest.raises(ValueError, match=r"holds an earlier output \(report.html\).*--overwrite to delete those"):
        prepare_out_dir(shared, False, only=("report.html", "thumbnails"))
    prepare_out_dir(shared, True, only=("report.html", "thumbnails"))
    assert sorted(p.name for p in shared.iterdir()) == ["world"]  # only the report's own entries went

    record = used(tmp_path / "ablation" / "all", "ablation_run.json")
    prepare_out_dir(record, False, keep=("ablation_run.json",))  # an orchestrator's record is not an earlier run
    (record / "checkpoint-1").mkdir()
    prepare_out_dir(record, True, keep=("ablation_run.json",))
    assert [p.name for p in record.iterdir()] == ["ablation_run.json"]


def test_overwrite_never_empties_what_a_typo_would_lose(tmp_path, monkeypatch):
    from janus_rig.outputs import prepare_out_dir

    downloaded = used(tmp_path / "Janus-Pro-1B", "config.json")
    (downloaded / "model.safetensors").write_bytes(b"weights")
    ours = used(tmp_path / "runs" / "sft", "config.json")
    (ours / "model.safetensors").write_bytes(b"weights")
    (ours / "janus_rig.json").write_text("{}")
    checkout = used(tmp_path / "repo")
    (checkout / ".git").mkdir()
    monkeypatch.chdir(used(tmp_path / "here" / "work"))
    for folder, why in ((downloaded, "a model directory janus-rig did not write"), (checkout, "a git checkout"),
                        (tmp_path / "here", "the current directory or one of its parents"),
                        (tmp_path / "here" / "work", "the current directory")):
        with pytest.raises(ValueError, match=why):
            prepare_out_dir(folder, True)
        assert any(folder.iterdir())
    prepare_out_dir(ours, True)  # a model janus-rig wrote (an earlier run's output) may be replaced
    assert not any(ours.iterdir())


def test_one_file_outputs(tmp_path):
    from janus_rig.outputs import prepare_out_file

    assert prepare_out_file(tmp_path / "new.jsonl", False) == tmp_path / "new.jsonl"
    old = tmp_path / "old.jsonl"
    old.write_text("x\n")
    with pytest.raises(ValueError, match=r"--out .*old.jsonl exists: pick a new file name, or add --overwrite"):
        prepare_out_file(old, False)
    assert prepare_out_file(old, True) == old
    with pytest.raises(ValueError, match="is a folder"):
        prepare_out_file(tmp_path, True)


# --- every command that writes: a used output is refused in one line, before any model loads ----------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Cheap, valid inputs for every command (the refusal comes after the input checks, before any model)."""
    from data_prep.shapeworld.world import write_world

    root = tmp_path_factory.mktemp("inputs")
    world = root / "world"
    write_world(world, train=4, val=2, bench_per_tag=1, size=32, progress=False)
    (root / "prompts.txt").write_text("a red circle\n")
    (root / "got.jsonl").write_text(json.dumps({"prompt": "a red circle", "chain": "a red circle", "image": "x.png"})
                                    + "\n")
    (root / "laion.json").write_text("[]")
    (root / "rewards_in.jsonl").write_text("")
    run = root / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"kind": "geneval", "model": "m", "metrics": {}, "samples": 0,
                                                  "thumbnails": []}))
    return root


NO_MODEL = "no-such-model"  # the refusal must come before the model is looked for
COMMANDS = {
    "generate": ["generate", "--model", NO_MODEL, "--prompt", "a red circle", "--out", "{out}"],
    "reflect": ["reflect", "--model", NO_MODEL, "--prompt", "a red circle", "--out", "{out}"],
    "eval geneval": ["eval", "geneval", "--model", NO_MODEL, "--metadata", "{root}/world/bench/metadata.jsonl",
                     "--out", "{out}"],
    "eval t2i-compbench": ["eval", "t2i-compbench", "--model", NO_MODEL, "--prompts", "{root}/prompts.txt",
                           "--out", "{out}"],
    "eval sg-iou": ["eval", "sg-iou", "--model", NO_MODEL, "--records", "{root}/world/val.jsonl",
                    "--judge", "shapeworld", "--out", "{out}"],
    "eval judge": ["eval", "judge", "--model", NO_MODEL, "--prompts", "{root}/prompts.txt", "--out", "{out}"],
    "convert got": ["convert", "got", "{root}/got.jsonl", "--out", "{out}"],
    "convert laion-sg": ["convert", "laion-sg", "{root}/laion.json", "--out", "{out}"],
    "world": ["world", "--out", "{out}", "--train", "1", "--val", "1", "--bench-per-tag", "1"],
    "init": ["init", "--preset", "tiny", "--out", "{out}"],
    "vq train": ["vq", "train", "--world", "{root}/world", "--out", "{out}"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_folder_writer_refuses_a_used_folder(name, inputs, tmp_path, capsys):
    out = used(tmp_path / "out")
    argv = [a.format(out=out, root=inputs) for a in COMMANDS[name]]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"{out} is not empty (it holds earlier.txt)" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]


@pytest.mark.parametrize("name, argv", [
    ("convert prompts", ["convert", "prompts", "geneval", "--out", "{out}"]),
    ("reward", ["reward", "--records", "{root}/rewards_in.jsonl", "--out", "{out}"]),
    ("eval score", ["eval", "score", "{root}/world/bench", "--out", "{out}"]),
])
def test_every_file_writer_refuses_an_existing_file(name, argv, inputs, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("from an earlier run\n")
    assert main([a.format(out=out, root=inputs) for a in argv]) == 2
    err = one_line_error(capsys)
    assert f"{out} exists" in err and "--overwrite" in err
    assert out.read_text() == "from an earlier run\n"


def test_convert_prompts_overwrite_replaces_the_file(tmp_path):
    out = tmp_path / "geneval.jsonl"
    out.write_text("stale\n")
    assert main(["convert", "prompts", "geneval", "--categories", "position", "--out", str(out), "--overwrite"]) == 0
    assert "stale" not in out.read_text() and len(out.read_text().splitlines()) > 1


def test_eval_report_counts_only_its_own_entries(inputs, tmp_path, capsys):
    """`eval report --out RUN` writes next to a run's other folders (the quickstart's RUN/report.html): only an
    earlier report is refused, and --overwrite replaces only the report's entries."""
    run = used(tmp_path / "RUN", "world.txt")
    argv = ["eval", "report", str(inputs / "run"), "--out", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "holds an earlier output (report.md, report.html, report.json" in one_line_error(capsys)
    (run / "report.html").write_text("stale")
    assert main([*argv, "--overwrite"]) == 0
    assert (run / "world.txt").exists() and "stale" not in (run / "report.html").read_text()


def test_world_overwrite_leaves_no_stale_file(tmp_path):
    out = used(tmp_path / "w")
    argv = ["world", "--out", str(out), "--train", "1", "--val", "1", "--bench-per-tag", "1", "--quiet"]
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "earlier.txt").exists() and (out / "world.json").is_file()


# --- trainers -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sft_world(tmp_path_factory):
    from tests.sft.test_data import make_world

    return make_world(tmp_path_factory.mktemp("sft_world"), train=4, val=2)


SFT_FAST = ["--max_steps", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "true", "--dataloader_pin_memory", "false"]


def test_sft_with_a_missing_world_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["sft", "--init_preset", "tiny", "--world", str(tmp_path / "nope"), "--output_dir", str(out)]) == 2
    assert "nope/world.json not found" in one_line_error(capsys)
    assert not out.exists()


def test_sft_refuses_a_used_output_dir_and_overwrite_empties_it(sft_world, tmp_path, capsys):
    out = used(tmp_path / "sft")
    argv = ["sft", "--init_preset", "tiny", "--world", str(sft_world), "--output_dir", str(out), *SFT_FAST]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"output_dir {out} is not empty (it holds earlier.txt)" in err
    assert "--resume_from_checkpoint true" in err and "--overwrite_output_dir true" in err
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]

    assert main([*argv, "--overwrite_output_dir"]) == 0
    assert not (out / "earlier.txt").exists() and (out / "model.safetensors").is_file()
    capsys.readouterr()
    assert main([*argv, "--overwrite_output_dir", "true", "--resume_from_checkpoint", "true"]) == 2
    assert "overwrite_output_dir would delete the checkpoints" in one_line_error(capsys)


@pytest.mark.parametrize("where", ["is", "is inside", "holds"])
def test_trainers_refuse_their_model_directory(where, sft_world, tiny_policy_dir, tmp_path, capsys):
    """Even with --overwrite_output_dir: a run writes checkpoints and its final model into output_dir."""
    output_dir = {"is": tiny_policy_dir, "is inside": tiny_policy_dir / "run", "holds": tiny_policy_dir.parent}[where]
    before = sorted(os.listdir(tiny_policy_dir))
    for argv in (["sft", "--world", str(sft_world)],
                 ["grpo", "--world", str(sft_world), "--max_steps", "1"],
                 ["reflect-grpo", "--world", str(sft_world), "--max_steps", "1"]):
        code = main([*argv, "--model_name_or_path", str(tiny_policy_dir), "--output_dir", str(output_dir),
                     "--overwrite_output_dir", "true", "--report_to", "none"])
        assert code == 2, argv
        assert f"output_dir {output_dir} {where} the model_name_or_path {tiny_policy_dir}" in one_line_error(capsys)
    assert sorted(os.listdir(tiny_policy_dir)) == before
