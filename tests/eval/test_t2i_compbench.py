"""`janus-rig eval t2i-compbench`: file names, prompt files, categories, the written folder, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from janus_rig.cli import main
from janus_rig.eval.geneval_run import Draw
from janus_rig.eval.summary import read_summary
from janus_rig.eval.t2i_compbench_layout import (
    CATEGORIES,
    category_file,
    category_of,
    check_fresh,
    file_prompt,
    parse_sample_name,
    read_prompt_file,
    sample_name,
    score_commands,
    write_t2i_compbench,
)
from janus_rig.rollout.config import RolloutConfig

FAST = ["--max-chain-tokens", "4", "--cfg", "3", "--display-size", "32", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def blank_fn(policy, prompts, config, seed):
    """A GenerateFn without a model: one grey level per prompt, so images can be told apart."""
    return [Draw(p, k, Image.new("RGB", (16, 16), (10 * p, 0, k)), f"chain {p}.{k}", False, seed)
            for p in range(len(prompts)) for k in range(config.group_size)]


def test_file_names():
    assert sample_name("a green bench and a blue bowl", 12) == "a green bench and a blue bowl_000012.png"
    assert file_prompt("a red_hat / a\tblue\\cup\n") == "a red hat a blue cup"
    name = sample_name("snake_case and/or  more", 1234567)  # the index grows past 6 digits rather than wrap
    assert name == "snake case and or more_1234567.png"
    assert parse_sample_name(name) == ("snake case and or more", 1234567)
    assert parse_sample_name(sample_name("The red hat was on top of the coat rack.", 3)) == (
        "The red hat was on top of the coat rack.", 3)
    with pytest.raises(ValueError, match="no characters left"):
        sample_name(" _/_ ", 0)
    with pytest.raises(ValueError, match="too long for a file name"):
        sample_name("a " * 130, 0)
    assert len(sample_name("é" * 121, 0).encode()) == 253  # bytes, not characters, are what a file system limits
    with pytest.raises(ValueError, match="too long"):
        sample_name("é" * 123, 0)


def test_read_prompt_file(tmp_path):
    path = tmp_path / "color_val.txt"
    path.write_bytes(b"a green bench\r\n\r\n  a blue bowl  \r\nred_cup\tcolor\textra\r\nlast")
    assert read_prompt_file(path) == ["a green bench", "a blue bowl", "red_cup", "last"]  # as written: the model's
    assert read_prompt_file(path, limit=2) == ["a green bench", "a blue bowl"]
    path.write_text("fine\n" + "x" * 300 + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: prompt is too long"):
        read_prompt_file(path)
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompt_file(path)
    with pytest.raises(FileNotFoundError):
        read_prompt_file(tmp_path / "missing.txt")


def test_categories(tmp_path):
    assert category_of("x/color_val.txt") == "color" and category_of("3d_spatial_train.txt") == "3d_spatial"
    assert category_of("non_spatial.txt") == "non_spatial" and category_of("mine.txt") is None
    assert category_file(tmp_path, "spatial") == tmp_path / "spatial_val.txt"
    with pytest.raises(ValueError, match="valid: color, shape"):
        category_file(tmp_path, "colour")
    commands = score_commands("rel/out", "complex")
    out = Path("rel/out").resolve()
    assert any("BLIP_vqa.py" in c for c in commands) and any("3_in_1.py" in c for c in commands)
    assert sum("--complex=True" in c for c in commands) == 2 and all(str(out) in c for c in commands[:3])
    clip = CATEGORIES["non_spatial"].commands
    assert score_commands("o", "non_spatial") == [c.format(out=Path("o").resolve()) for c in clip]
    assert "--complex" not in " ".join(score_commands("o", "spatial"))  # type=bool: any value would turn it on
    assert len(score_commands("o", None)) == sum(len(c.commands) for c in CATEGORIES.values())


def test_write_running_index_and_chains(tmp_path):
    prompts = ["a green bench and a blue bowl", "a cat_dog / friend", "a blue bench"]
    out = tmp_path / "t2i"
    traces = write_t2i_compbench(None, prompts, out, RolloutConfig(group_size=3), seed=5, batch_size=2,
                                 generate_fn=blank_fn, display_size=24, progress=False)
    records = [json.loads(line) for line in (out / "chains.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(9))  # prompt-major running index
    for r in records:
        assert (r["prompt_index"], r["sample"]) == divmod(r["index"], 3)
        assert r["prompt"] == prompts[r["prompt_index"]]
        assert r["chain"] == f"chain {r['prompt_index'] % 2}.{r['sample']}"  # local index in its batch of 2
        assert r["file"] == f"samples/{file_prompt(r['prompt'])}_{r['index']:06d}.png"
        assert r["seed"] == 5 + r["prompt_index"] // 2  # batch b: seed + b
        assert Image.open(out / r["file"]).getpixel((0, 0)) == (10 * (r["prompt_index"] % 2), 0, r["sample"])
        assert Image.open(out / "overlays" / f"{r['index']:06d}.png").size == (24, 24)
    assert records[3]["file_prompt"] == "a cat dog friend" and records[3]["prompt"] == "a cat_dog / friend"
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(Path(r["file"]).name for r in records)
    assert [t["image"] for t in traces] == [r["file"] for r in records]
    with pytest.raises(ValueError, match="is not empty"):
        check_fresh(out)


def test_cli_two_prompt_files(tiny_policy_dir, tmp_path, capsys, monkeypatch):
    color = tmp_path / "color_val.txt"
    color.write_text("a red circle left of a blue square\na green triangle\n")
    mine = tmp_path / "mine.txt"
    mine.write_text("two yellow triangles\n")
    out = tmp_path / "out"
    argv = ["eval", "t2i-compbench", "--model", str(tiny_policy_dir), "--prompts", str(color), str(mine),
            "--samples", "2", "--out", str(out), *FAST]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "BLIP_vqa.py" in printed and "not scored here" in printed
    for name, n, category in (("color_val", 2, "color"), ("mine", 1, None)):
        folder = out / name
        names = [p.name for p in (folder / "samples").iterdir()]
        assert sorted(parse_sample_name(x)[1] for x in names) == list(range(2 * n))
        summary = read_summary(folder)
        assert summary["kind"] == "t2i-compbench" and summary["metrics"] == {} and summary["samples"] == 2 * n
        assert summary["category"] == category and summary["scored"] is False and summary["score_with"]
        assert summary["command"] == "janus-rig " + " ".join(argv)
        assert (folder / "index.html").is_file() and all((folder / t).is_file() for t in summary["thumbnails"])


def test_cli_category_and_errors(tiny_policy_dir, tmp_path, capsys):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "spatial_val.txt").write_text("a circle next to a square\r\na square on the top of a circle\r\n")
    out = tmp_path / "out"
    base = ["eval", "t2i-compbench", "--model", str(tiny_policy_dir), "--benchmarks", str(bench), "--samples", "1"]
    assert main([*base, "--category", "spatial", "--limit", "1", "--out", str(out), *FAST]) == 0
    assert [p.name for p in (out / "samples").iterdir()] == ["a circle next to a square_000000.png"]
    assert "2D_spatial_eval.py" in capsys.readouterr().out
    # the same folder again, a missing category file: one-line errors
    assert main([*base, "--category", "spatial", "--out", str(out), *FAST]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main([*base, "--category", "color", "--out", str(tmp_path / "o2"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "color_val.txt" in err and "--benchmarks" in err and len(err.strip().splitlines()) == 1
