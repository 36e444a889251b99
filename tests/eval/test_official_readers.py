"""Our folders read the way the official scorers read them.

The readers below restate, in a few lines each, how the benchmarks' own scripts walk a sample folder:
- GenEval evaluation/evaluate_images.py main(): os.listdir(imagedir), keep directories whose name isdigit(),
  json.load their metadata.jsonl, then every os.listdir(samples/) entry that is a file and re.match(r"\\d+\\.png").
- T2I-CompBench BLIPvqa_eval/BLIP_vqa.py and CLIPScore_eval/CLIP_similarity.py: every os.listdir(samples/) entry,
  sorted by int(name.split("_")[-1].split(".")[0]); prompt = name.split("_")[0]; question ids 0.. in that order;
  BLIP sizes its score table by len(os.listdir(samples/)).
- UniDet_eval (2D_spatial_eval.py through experts/obj_detection/generate_dataset.py): sorted by
  int(name.split("_")[1].split(".")[0]); prompt = name.split("_")[0]; question_id = int(name.split("_")[-1]...).
- UniDet_eval/numeracy_eval.py: question_id = int(name.split(".png")[0].split("_")[1]).
- 3_in_1_eval/3_in_1.py: score i*10 .. i*10+9 belongs to line i of complex_val.txt.
Each test checks that these readers recover every prompt (and its metadata) from our output.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from janus_rig.eval.geneval_run import Draw, Entry, read_geneval_metadata, run_geneval
from janus_rig.eval.t2i_compbench_layout import file_prompt, read_prompt_file, write_t2i_compbench
from janus_rig.rollout.config import RolloutConfig

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"


# --- the official readers, restated ------------------------------------------------------------------------------
def geneval_walk(imagedir: str) -> list[tuple[str, dict]]:
    found = []
    for subfolder in os.listdir(imagedir):
        folderpath = os.path.join(imagedir, subfolder)
        if not os.path.isdir(folderpath) or not subfolder.isdigit():
            continue
        with open(os.path.join(folderpath, "metadata.jsonl")) as fp:
            metadata = json.load(fp)
        for imagename in os.listdir(os.path.join(folderpath, "samples")):
            imagepath = os.path.join(folderpath, "samples", imagename)
            if not os.path.isfile(imagepath) or not re.match(r"\d+\.png", imagename):
                continue
            found.append((imagepath, metadata))
    return found


def blip_read(out_dir: str) -> list[tuple[int, str, str]]:
    """(question_id, prompt, image path) as BLIP_vqa.py / CLIP_similarity.py list them."""
    folder = f"{out_dir}/samples/"
    names = os.listdir(folder)
    names.sort(key=lambda x: int(x.split("_")[-1].split(".")[0]))
    assert len(os.listdir(os.path.join(out_dir, "samples"))) == len(names)  # BLIP's score table size
    return [(i, name.split("_")[0], folder + name) for i, name in enumerate(names)]


def unidet_read(out_dir: str) -> list[tuple[int, str]]:
    """(question_id, prompt) as 2D_spatial_eval.py / 3D_spatial_eval.py list them."""
    names = os.listdir(os.path.join(out_dir, "samples"))
    names.sort(key=lambda x: int(x.split("_")[1].split(".")[0]))
    paths = [os.path.join(out_dir, "samples", n) for n in names]
    return [(int(p.split("/")[-1].split("_")[-1].split(".")[0]), p.split("/")[-1].split("_")[0]) for p in paths]


def numeracy_ids(out_dir: str) -> list[int]:
    names = os.listdir(os.path.join(out_dir, "samples"))
    names.sort(key=lambda x: int(x.split("_")[1].split(".")[0]))
    return [int(n.split(".png")[0].split("_")[1]) for n in names]


def check_t2i_folder(out: Path, prompts: list[str], k: int) -> None:
    """Every official reader recovers, for index i, the file-name form of prompt i // k, in index order."""
    expected = [file_prompt(prompts[i // k]) for i in range(len(prompts) * k)]
    blip = blip_read(str(out))
    assert [prompt for _, prompt, _ in blip] == expected
    assert all(os.path.isfile(path) for _, _, path in blip)
    assert unidet_read(str(out)) == list(enumerate(expected))
    assert numeracy_ids(str(out)) == list(range(len(expected)))
    # 3_in_1.py: scores i*k .. i*k+k-1 are prompt i (it hard-codes k = 10)
    assert [expected[i * k : (i + 1) * k] for i in range(len(prompts))] == [[file_prompt(p)] * k for p in prompts]


def blank_fn(policy, prompts, config, seed):
    """A GenerateFn without a model: tiny blank images with a chain."""
    return [Draw(p, k, Image.new("RGB", (8, 8)), "", False, seed)
            for p in range(len(prompts)) for k in range(config.group_size)]


# --- GenEval ------------------------------------------------------------------------------------------------------
def check_geneval(out: Path, entries: list[Entry], k: int) -> None:
    walked = geneval_walk(str(out))
    assert len(walked) == len(entries) * k
    by_folder: dict[int, list] = {}
    for path, metadata in walked:
        index = int(Path(path).parent.parent.name)
        by_folder.setdefault(index, []).append((Path(path).name, metadata))
    assert sorted(by_folder) == [e.index for e in entries]
    for entry in entries:
        samples = by_folder[entry.index]
        assert sorted(name for name, _ in samples) == [f"{i:04d}.png" for i in range(k)]
        assert all(metadata == entry.metadata for _, metadata in samples)  # every prompt and its clauses recovered
    for path, _ in walked:
        Image.open(path).verify()  # only images match GenEval's prefix regex: chains and overlays stay outside


def test_geneval_official_metadata(tmp_path):
    """All 553 lines of GenEval's own metadata through our writer, read back by GenEval's walk."""
    metadata = BENCHMARKS / "geneval" / "evaluation_metadata.jsonl"
    if not metadata.is_file():
        pytest.skip(f"{metadata} not present")
    entries = read_geneval_metadata(metadata)
    assert len(entries) == 553
    run_geneval(None, entries, tmp_path, RolloutConfig(group_size=1), generate_fn=blank_fn, display_size=8,
                progress=False)
    check_geneval(tmp_path, entries, 1)


def test_geneval_shapeworld_bench_with_tiny_policy(tiny_policy, tmp_path):
    """A real (tiny, random) model's run on a ShapeWorld bench subset: folders keep the bench's line indexes."""
    from data_prep.shapeworld.world import make_bench

    bench = tmp_path / "metadata.jsonl"
    bench.write_text("".join(json.dumps(m) + "\n" for m in make_bench(2, seed=0)))
    entries = read_geneval_metadata(bench, tags=["position", "complex"], limit=3)
    assert [e.index for e in entries] == [8, 9, 12]  # 2 per tag; position is the 5th tag, complex the 7th
    config = RolloutConfig(group_size=2, max_chain_tokens=3, cfg_weight=3.0)
    run_geneval(tiny_policy, entries, tmp_path / "out", config, batch_size=2, oracle=True, display_size=16,
                progress=False)
    check_geneval(tmp_path / "out", entries, 2)


# --- T2I-CompBench ------------------------------------------------------------------------------------------------
def test_t2i_official_prompt_files(tmp_path):
    """Every prompt of every shipped T2I-CompBench prompt file survives as a file name unchanged."""
    folder = BENCHMARKS / "t2i_compbench"
    files = sorted(folder.glob("*_*.txt"))
    if not files:
        pytest.skip(f"no prompt files in {folder}")
    for path in files:
        prompts = read_prompt_file(path)
        assert prompts == [line.strip() for line in path.read_text().splitlines() if line.strip()]
        assert all(file_prompt(p) == p for p in prompts), path  # no prompt needs renaming
    prompts = read_prompt_file(folder / "complex_val.txt")
    out = tmp_path / "complex"
    write_t2i_compbench(None, prompts, out, RolloutConfig(group_size=2), batch_size=64, generate_fn=blank_fn,
                        display_size=8, progress=False)
    check_t2i_folder(out, prompts, 2)  # 3_in_1.py wants 10 per prompt; the grouping check is the same for any K


def test_t2i_awkward_prompts(tmp_path):
    prompts = ["a cat_dog and/or a bird", "a.b c_000012", "  spaced\tout  ", "x" * 200, "ünïcödé ok"]
    out = tmp_path / "t2i"
    write_t2i_compbench(None, prompts, out, RolloutConfig(group_size=3), generate_fn=blank_fn, display_size=8,
                        progress=False)
    check_t2i_folder(out, prompts, 3)
    chains = [json.loads(line) for line in (out / "chains.jsonl").read_text().splitlines()]
    assert [c["prompt"] for c in chains[::3]] == prompts  # the originals are kept beside the file-name forms


def test_t2i_with_tiny_policy(tiny_policy, tmp_path):
    prompts = ["a red circle left of a blue square", "two yellow triangles and a circle right of the square"]
    config = RolloutConfig(group_size=2, max_chain_tokens=3, cfg_weight=3.0)
    write_t2i_compbench(tiny_policy, prompts, tmp_path, config, batch_size=1, display_size=16, progress=False)
    check_t2i_folder(tmp_path, prompts, 2)
