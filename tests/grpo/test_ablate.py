"""Reward ablation (`janus-rig ablate`): the settings grammar against GoT-R1 Table 3's rows and bad names, the table
writer on fake results, one tiny end-to-end ablation (2 settings, 1 GRPO step each, a failing run, resume), and
GRPO on a prompt set (`prompts`) instead of the world's train.jsonl."""

from __future__ import annotations

import csv
import io
import json

import pytest

from janus_rig.cli import main
from reward_models.terms import REWARD_TERMS
from tests.grpo.test_trainer import grpo_config, read_jsonl
from train.grpo.ablate import (
    BASELINE,
    AblationConfig,
    build_table,
    folder_plan,
    mean_row,
    parse_settings,
    plan_ablation,
    render_csv,
    render_markdown,
    restrict_options,
)

RECIPE_TERMS = ["R_sem", "R_spa", "R_RI", "R_PI"]


def _explodes(prompts, chains, images, metadata, judge):
    raise RuntimeError("judge exploded")


if "test_ablate_fails" not in REWARD_TERMS:
    REWARD_TERMS.register("test_ablate_fails")(_explodes)


# --- settings -----------------------------------------------------------------------------------------------------
def test_table3_rows_and_the_product_vs_sum_row():
    settings = parse_settings("all,R_PR,R_RI,R_PI", RECIPE_TERMS, "product")
    got = [(s.name, s.label, s.terms, s.combine) for s in settings]
    assert got == [
        ("all", "all", ("R_sem", "R_spa", "R_RI", "R_PI"), "product"),
        ("all_sum", "all (sum)", ("R_sem", "R_spa", "R_RI", "R_PI"), "sum"),  # added right after `all`
        ("only_R_PR", "R_PR only", ("R_sem", "R_spa"), "product"),
        ("only_R_RI", "R_RI only", ("R_RI",), "product"),
        ("only_R_PI", "R_PI only", ("R_PI",), "product"),
    ]


@pytest.mark.parametrize("spec, name, terms, combine", [
    ("-R_RI", "without_R_RI", ("R_sem", "R_spa", "R_PI"), "product"),
    ("-R_PR", "without_R_PR", ("R_RI", "R_PI"), "product"),
    ("R_sem", "only_R_sem", ("R_sem",), "product"),
    ("R_spa", "only_R_spa", ("R_spa",), "product"),
    ("R_PI+R_sem@sum", "only_R_PI+R_sem_sum", ("R_sem", "R_PI"), "sum"),  # the recipe's order
    ("all@product", "all", ("R_sem", "R_spa", "R_RI", "R_PI"), "product"),
])
def test_one_setting(spec, name, terms, combine):
    (setting,) = parse_settings(spec, RECIPE_TERMS, "product", combine_row=False)
    assert (setting.name, setting.terms, setting.combine) == (name, terms, combine)


def test_combine_row_follows_the_default_and_is_not_doubled():
    assert [s.name for s in parse_settings("all,R_PI", RECIPE_TERMS, "sum")] == ["all", "all_product", "only_R_PI"]
    assert [s.name for s in parse_settings("all,all@sum", RECIPE_TERMS, "product")] == ["all", "all_sum"]
    assert [s.name for s in parse_settings("all", RECIPE_TERMS, "product", combine_row=False)] == ["all"]
    # one factor (R_PR alone): product and sum are the same reward, so no extra row
    assert [s.name for s in parse_settings("all", ["R_sem", "R_spa"], "product")] == ["all"]


@pytest.mark.parametrize("text, terms, message", [
    ("all,R_foo", RECIPE_TERMS, "unknown reward term 'R_foo'; valid: R_PR (= R_sem + R_spa), R_PI"),
    ("-R_typo", RECIPE_TERMS, "unknown reward term 'R_typo'"),
    ("all,,R_PI", RECIPE_TERMS, "empty setting"),
    ("", RECIPE_TERMS, "empty setting"),
    ("-aesthetic", RECIPE_TERMS, "aesthetic is not among the recipe's reward terms"),
    ("-R_PI", ["R_PI"], "leaves no reward term"),
    ("all@avg", RECIPE_TERMS, "unknown combine 'avg'; valid: product, sum"),
    ("R_PR,R_sem+R_spa", RECIPE_TERMS, "train the same reward"),
    ("R_PI,R_PI@sum", RECIPE_TERMS, "train the same reward"),  # one factor: the combination changes nothing
    ("R_PI+R_PI", RECIPE_TERMS, "names a term twice"),
])
def test_bad_settings_say_what_is_wrong(text, terms, message):
    with pytest.raises(ValueError) as err:
        parse_settings(text, terms, "product")
    assert message in str(err.value)


def test_weights_and_term_options_follow_the_setting():
    weights, options = {"R_PR": 2.0, "R_RI": 0.5}, {"R_spa": {"canvas": 448}}
    only_ri, without_ri = parse_settings("R_RI,-R_RI", RECIPE_TERMS, "product")
    assert restrict_options(only_ri, weights, options) == ({"R_RI": 0.5}, {})
    assert restrict_options(without_ri, weights, options) == ({"R_PR": 2.0}, {"R_spa": {"canvas": 448}})


# --- the table ------------------------------------------------------------------------------------------------------
def _row(name, metrics, status="ok", error=None, steps=None):
    return {"name": name, "label": name.replace("_", " "), "terms": [] if name == BASELINE else ["R_PI"],
            "combine": None if name == BASELINE else "product", "metrics": metrics, "steps": steps,
            "train_s": None if steps is None else 12.5, "wall_s": 20.0, "status": status, "error": error}


def test_table_writer_on_fake_results():
    rows = [_row(BASELINE, {"position": 0.25, "complex": 0.5, "overall": 0.375}),
            _row("only_R_PI", {"position": 0.5, "complex": 0.75, "overall": 0.625}, steps=30),
            _row("only_R_RI", None, status="failed", error="RuntimeError: judge\nexploded")]
    table = build_table(rows, ["position", "complex"])
    assert table["rows"][1]["delta"] == {"position": 0.25, "complex": 0.25, "overall": 0.25}
    assert table["rows"][2]["delta"] is None

    md = render_markdown(table, "Ablation", ["a note"])
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| setting"))
    separator = lines[lines.index(header) + 1]
    assert header.count("|") == separator.count("|")  # as many alignment cells as columns
    assert "| only R PI | R_PI | product | 0.5000 | 0.7500 | 0.6250 | +0.2500 | 30 | 12.5 | 20.0 | ok |" in lines
    assert "- **only R RI** (`only_R_RI/error.log`): RuntimeError: judge exploded" in lines

    parsed = list(csv.DictReader(io.StringIO(render_csv(table))))
    assert [r["setting"] for r in parsed] == ["baseline", "only R PI", "only R RI"]
    assert float(parsed[1]["delta_overall"]) == pytest.approx(0.25) and parsed[0]["delta_overall"] == ""
    assert parsed[2]["overall"] == "" and parsed[2]["status"] == "failed" and "exploded" in parsed[2]["error"]

    rows[0] = _row(BASELINE, None, status="failed", error="OSError: gone")  # no baseline: no deltas
    assert all(r["delta"] is None for r in build_table(rows, ["position", "complex"])["rows"])


def test_mean_row_over_seeds_and_its_spread_in_the_table():
    runs = [{**_row("all", {"position": 0.5, "complex": 0.25, "overall": 0.375}, steps=30), "seed": 1},
            {**_row("all", {"position": 0.75, "complex": 0.5, "overall": 0.625}, steps=32), "seed": 2},
            {**_row("all", None, status="failed", error="OSError: disk"), "seed": 3}]
    row = mean_row(runs)
    assert row["metrics"] == {"position": 0.625, "complex": 0.375, "overall": 0.5}
    assert row["spread"] == {"position": [0.5, 0.75], "complex": [0.25, 0.5], "overall": [0.375, 0.625]}
    assert row["seeds"] == [1, 2] and row["steps"] == 31 and row["status"] == "failed"
    assert row["error"] == "seed 3: OSError: disk"
    assert mean_row(runs[:2])["status"] == "ok" and mean_row(runs[:2])["error"] is None
    table = build_table([_row(BASELINE, {"position": 0.5, "complex": 0.25, "overall": 0.375}),
                         {**_row("all", None), **mean_row(runs[:2])}], ["position", "complex"])
    assert table["rows"][1]["delta"]["overall"] == pytest.approx(0.125)
    line = next(x for x in render_markdown(table, "t", []).splitlines() if x.startswith("| all "))
    assert "| 0.6250 (0.5000..0.7500) | 0.3750 (0.2500..0.5000) | 0.5000 (0.3750..0.6250) | +0.1250 |" in line


def test_a_foreign_folder_is_never_deleted(tmp_path):
    (tmp_path / "all").mkdir()
    (tmp_path / "all" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an ablation run folder"):
        folder_plan(tmp_path / "all", {"kind": "grpo"}, {}, force=True)


# --- end to end ---------------------------------------------------------------------------------------------------
def _argv(world, policy_dir, out, *extra):
    return ["ablate", "--config", "train/recipes/shapeworld_grpo.yaml", "--world", str(world),
            "--model_name_or_path", str(policy_dir), "--max_steps", "1", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "6", "--gallery_every", "0",
            "--disable_tqdm", "true", "--eval-samples", "1", "--quiet", "--out", str(out), *extra]


def test_tiny_ablation_writes_every_output_resumes_and_keeps_failures(tmp_path, world, policy_dir, monkeypatch):
    import train.grpo.trainer as trainer

    trained = []
    real_run_grpo = trainer.run_grpo

    def counting_run_grpo(config, **options):
        trained.append(config.output_dir)
        return real_run_grpo(config, **options)

    monkeypatch.setattr(trainer, "run_grpo", counting_run_grpo)
    out = tmp_path / "ablate"
    settings = ["--terms", "all,test_ablate_fails", "--no-combine-row"]
    assert main(_argv(world, policy_dir, out, *settings)) == 1  # one run failed: the ablation still finished
    assert trained == [str(out / "all"), str(out / "only_test_ablate_fails")]

    document = json.loads((out / "ablation.json").read_text())
    rows = {r["name"]: r for r in document["rows"]}
    assert list(rows) == [BASELINE, "all", "only_test_ablate_fails"]
    assert rows[BASELINE]["status"] == rows["all"]["status"] == "ok" and rows["all"]["steps"] == 1
    for name in (BASELINE, "all"):
        summary = json.loads((out / name / "geneval" / "summary.json").read_text())
        assert summary["kind"] == "geneval" and summary["samples"] == 2  # 1 position + 1 complex bench prompt
        assert rows[name]["metrics"] == summary["metrics"]
    assert rows["all"]["delta"]["overall"] == pytest.approx(rows["all"]["metrics"]["overall"]
                                                            - rows[BASELINE]["metrics"]["overall"])
    failed = rows["only_test_ablate_fails"]
    assert failed["status"] == "failed" and "judge exploded" in failed["error"] and failed["metrics"] is None
    assert "RuntimeError: judge exploded" in (out / "only_test_ablate_fails" / "error.log").read_text()
    assert [line["setting"] for line in csv.DictReader(open(out / "ablation.csv"))] == \
        ["starting model", "all", "test_ablate_fails only"]
    assert "## Failed runs" in (out / "ablation.md").read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["run"] for r in report["rows"]] == [str(out / BASELINE), str(out / "all")]
    assert (out / "report" / "report.html").is_file()

    # Resume: the finished rows are read back, the failed run is tried again.
    trained.clear()
    stamp = (out / "all" / "geneval" / "summary.json").stat().st_mtime_ns
    assert main(_argv(world, policy_dir, out, *settings)) == 1
    assert trained == [str(out / "only_test_ablate_fails")]
    assert (out / "all" / "geneval" / "summary.json").stat().st_mtime_ns == stamp
    statuses = {r["name"]: r["status"] for r in json.loads((out / "ablation.json").read_text())["rows"]}
    assert statuses == {BASELINE: "reused", "all": "reused", "only_test_ablate_fails": "failed"}

    # Other evaluation settings: evaluated again, not trained again.
    assert main(_argv(world, policy_dir, out, "--terms", "all", "--no-combine-row", "--eval-samples", "2")) == 0
    assert trained == [str(out / "only_test_ablate_fails")]
    assert json.loads((out / "all" / "geneval" / "summary.json").read_text())["samples"] == 4

    # Other training settings: refused before anything runs, unless forced.
    changed = [*_argv(world, policy_dir, out, "--terms", "all", "--no-combine-row")[1:], "--learning_rate", "0.1"]
    from janus_rig.commands.ablate import config_from_args
    from janus_rig.cli import build_parser

    config = config_from_args(build_parser().parse_args(["ablate", *changed]))
    with pytest.raises(ValueError, match=r"trained with other settings \(the flags .*--learning_rate 0.1"):
        plan_ablation(config)
    config.force = True
    assert plan_ablation(config).steps == {BASELINE: "eval", "all": "train"}


def test_seeds_train_each_setting_per_seed_and_average(tmp_path, world, policy_dir):
    out = tmp_path / "ablate"
    assert main(_argv(world, policy_dir, out, "--terms", "R_PI", "--seeds", "1,2")) == 0
    document = json.loads((out / "ablation.json").read_text())
    (row,) = [r for r in document["rows"] if r["name"] == "only_R_PI"]
    assert [run["name"] for run in row["runs"]] == ["only_R_PI/seed_1", "only_R_PI/seed_2"] and row["seeds"] == [1, 2]
    per_seed = [json.loads((out / "only_R_PI" / f"seed_{k}" / "geneval" / "summary.json").read_text())["metrics"]
                for k in (1, 2)]
    assert row["metrics"]["overall"] == pytest.approx((per_seed[0]["overall"] + per_seed[1]["overall"]) / 2)
    assert row["spread"]["overall"] == [min(m["overall"] for m in per_seed), max(m["overall"] for m in per_seed)]
    record = json.loads((out / "only_R_PI" / "seed_2" / "ablation_run.json").read_text())
    assert record["seed"] == 2 and "--seed 2" in record["command"]
    assert document["seeds"] == [1, 2] and "seeds 1, 2" in (out / "ablation.md").read_text()
    assert main(_argv(world, policy_dir, tmp_path / "o2", "--seeds", "1,1")) == 2


@pytest.mark.parametrize("flags, message", [
    (["--output_dir", "x"], "--output_dir: the ablation sets it per setting"),
    (["--seeds", "1,2", "--seed", "3"], "either --seeds or --seed"),
    (["--seeds", "one"], "--seeds 'one': give whole numbers"),
    (["--budget-s", "5", "--max_train_seconds", "9"], "either --budget-s or --max_train_seconds"),
    (["--eval-tags", "position,nope"], "--tags nope: not a tag of"),
    (["--terms", "baseline"], "unknown reward term 'baseline'"),
])
def test_bad_ablation_flags_fail_before_training(tmp_path, world, policy_dir, flags, message, capsys):
    assert main(_argv(world, policy_dir, tmp_path / "out", *flags)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ablation_config_checks():
    with pytest.raises(ValueError, match="eval-samples must be >= 1"):
        AblationConfig(out="x", eval_samples=0)
    assert AblationConfig(out="x", eval_tags="position, complex").eval_tags == ["position", "complex"]


# --- GRPO on a prompt set ----------------------------------------------------------------------------------------
def _prompt_set(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grpo_trains_on_a_prompt_set_without_a_world(tmp_path, world, policy_dir):
    from train.grpo.trainer import run_grpo

    rows = [{"id": r["id"], "prompt": r["prompt"], "tag": r["tag"], "metadata": r["metadata"]}
            for r in read_jsonl(world / "train.jsonl")][:4]  # the rows `janus-rig convert prompts` writes
    prompts = _prompt_set(tmp_path / "set.jsonl", rows)
    summary = run_grpo(grpo_config(tmp_path, "", policy_dir, prompts=str(prompts), max_steps=1,
                                   reward_terms=["R_PI", "test_brightness"], gallery_every=0))
    assert summary["steps"] == 1
    assert json.loads((tmp_path / "out" / "janus_rig.json").read_text())["prompts"] == str(prompts)
    with pytest.raises(ValueError, match="eval_every samples the world's bench"):
        grpo_config(tmp_path, "", policy_dir, prompts=str(prompts), eval_every=5)


def test_prompt_rows_are_checked_for_the_shapeworld_judge(tmp_path):
    from data_prep.converters.prompt_sets import convert_prompt_set
    from train.grpo.trainer import judge_needs_metadata, load_prompts

    t2i = tmp_path / "t2i.jsonl"
    convert_prompt_set("t2i_compbench", t2i, categories=["spatial"])  # metadata null
    rows = load_prompts(None, ["spatial"], 5, prompts=t2i)  # fine for a VLM judge
    assert len(rows) == 5 and rows[0]["metadata"] is None
    assert judge_needs_metadata("shapeworld") and not judge_needs_metadata("http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError) as err:
        load_prompts(None, [], 0, prompts=t2i, needs_metadata=True)
    assert f"{t2i}:1 (id t2i_compbench-spatial-val-0000): the shapeworld judge" in str(err.value)

    geneval = tmp_path / "geneval.jsonl"
    convert_prompt_set("geneval", geneval, categories=["position"])  # GenEval's classes are not ShapeWorld shapes
    with pytest.raises(ValueError, match=r"geneval.jsonl:1 \(id geneval-\d+\).*not a ShapeWorld shape"):
        load_prompts(None, ["position"], 0, prompts=geneval, needs_metadata=True)

    bad = _prompt_set(tmp_path / "bad.jsonl", [{"id": "a", "prompt": "a red circle"}])
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        load_prompts(None, [], prompts=bad)
    _prompt_set(bad, [{"id": "a", "text": "no prompt field"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: a prompt row is a JSON object with a non-empty \"prompt\""):
        load_prompts(None, [], prompts=bad)
    with pytest.raises(FileNotFoundError, match="--prompts must be a prompt-set"):
        load_prompts(None, [], prompts=tmp_path / "missing.jsonl")


def test_build_trainer_refuses_rows_without_metadata_before_loading_the_model(tmp_path, world, policy_dir):
    from train.grpo.trainer import build_trainer

    prompts = _prompt_set(tmp_path / "set.jsonl", [{"id": f"p{i}", "prompt": "a red circle", "tag": "single_object",
                                                   "metadata": None} for i in range(3)])
    config = grpo_config(tmp_path, world, policy_dir, prompts=str(prompts), model_name_or_path="/nonexistent")
    with pytest.raises(ValueError, match=r"set.jsonl:1 \(id p0\): the shapeworld judge"):
        build_trainer(config)
