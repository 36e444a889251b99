"""T2I-CompBench's sample folder, written the way its scorers read it, and the commands that score it.

    OUT/samples/a green bench and a blue bowl_000000.png    prompt 0, sample 0
    OUT/samples/a green bench and a blue bowl_000001.png    prompt 0, sample 1
    ...
    OUT/samples/a blue bench and a green bowl_000010.png    prompt 1, sample 0 (10 samples per prompt)
    OUT/chains.jsonl       one line per image: {"index", "file", "prompt", "file_prompt", "chain", "objects", ...}
    OUT/overlays/000000.png, OUT/index.html, OUT/summary.json

How their scripts read samples/ (BLIPvqa_eval/BLIP_vqa.py, UniDet_eval/2D_spatial_eval.py, 3D_spatial_eval.py,
numeracy_eval.py, CLIPScore_eval/CLIP_similarity.py): every entry of os.listdir(samples/) is an image; the prompt
is the file name before the first "_"; the index is the digits after the last "_" (UniDet sorts by the piece
after the first "_", numeracy takes its question id there), and scores are listed in index order. 3_in_1.py then
takes images i*10 .. i*10+9 as prompt i of complex_val.txt. So:

- samples/ holds our PNGs and nothing else (chains, overlays and pages live beside it);
- the index runs over the whole folder, prompt-major: prompt i, sample k is index i*K + k, zero-padded to 6;
- a prompt's file-name form has no "_" (it would split the prompt), no "/" or "\\" (path separators) and no
  control characters: each such character becomes a space, runs of spaces one space (`file_prompt`). The model
  is always given the prompt itself; chains.jsonl keeps both. T2I-CompBench's own prompts need no change.
- a file name must fit in 255 bytes: a longer prompt is an error naming its line (the scorers recover the prompt
  from the name, so it cannot be shortened).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from janus_rig.eval.geneval_run import GenerateFn, draw_samples, sample_once, save_draw
from janus_rig.outputs import prepare_out_dir
from janus_rig.rollout.config import RolloutConfig

SAMPLES_DIR, OVERLAYS_DIR, CHAINS_FILE = "samples", "overlays", "chains.jsonl"
SEPARATOR = "_"
INDEX_DIGITS = 6
MAX_NAME_BYTES = 255  # ext4, APFS, NTFS
_UNSAFE = re.compile(r"[_/\\\x00-\x1f\x7f]")
SPLITS = ("val", "train")


def file_prompt(prompt: str) -> str:
    """The prompt as it can stand in a sample's file name (see the module docstring)."""
    return " ".join(_UNSAFE.sub(" ", prompt).split())


def sample_name(prompt: str, index: int) -> str:
    """'{file_prompt}_{index:06d}.png'; ValueError when it cannot be a file name."""
    text = file_prompt(prompt)
    if not text:
        raise ValueError(f"prompt {prompt!r} has no characters left for a file name")
    name = f"{text}{SEPARATOR}{index:0{INDEX_DIGITS}d}.png"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"prompt is too long for a file name ({len(name.encode('utf-8'))} bytes with its index, "
                         f"at most {MAX_NAME_BYTES}); T2I-CompBench recovers the prompt from the name: "
                         f"{prompt[:60]!r}...")
    return name


def parse_sample_name(name: str) -> tuple[str, int]:
    """(prompt, index) of a sample file name, read as T2I-CompBench's scorers read it."""
    return name.split(SEPARATOR)[0], int(name.split(SEPARATOR)[-1].split(".")[0])


def read_prompt_file(path: str | Path, limit: int | None = None) -> list[str]:
    """Prompts of a T2I-CompBench prompt file, one per line (its inference script keeps the text before a tab);
    blank lines skipped; the first `limit`. ValueError naming FILE:LINE for a prompt no file name can hold."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        prompt = line.split("\t")[0].strip()
        if not prompt:
            continue
        try:
            sample_name(prompt, 0)
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        prompts.append(prompt)
        if limit is not None and len(prompts) == limit:
            break
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


# --- categories and their official scorers ----------------------------------------------------------------------
@dataclass(frozen=True)
class Category:
    scorer: str
    commands: tuple[str, ...]  # shell lines run from a T2I-CompBench checkout; {out} is the absolute output folder


_BLIP = "cd T2I-CompBench/BLIPvqa_eval && python BLIP_vqa.py --out_dir={out}/"
_CLIP = "cd T2I-CompBench && python CLIPScore_eval/CLIP_similarity.py --outpath={out}"
CATEGORIES = {
    "color": Category("BLIP-VQA", (_BLIP,)),
    "shape": Category("BLIP-VQA", (_BLIP,)),
    "texture": Category("BLIP-VQA", (_BLIP,)),
    "spatial": Category("UniDet", ("cd T2I-CompBench/UniDet_eval && python 2D_spatial_eval.py --outpath={out}",)),
    "3d_spatial": Category("UniDet + depth",
                           ("cd T2I-CompBench/UniDet_eval && python 3D_spatial_eval.py --outpath={out}",)),
    "numeracy": Category("UniDet", ("cd T2I-CompBench/UniDet_eval && python numeracy_eval.py --outpath={out}",)),
    "non_spatial": Category("CLIPScore", (_CLIP,)),
    "complex": Category("3-in-1 (BLIP-VQA + UniDet + CLIPScore)", (
        _BLIP,
        "cd T2I-CompBench/UniDet_eval && python 2D_spatial_eval.py --outpath={out} --complex=True",
        _CLIP + " --complex=True",
        # 3_in_1.py reads the UniDet scores from annotation_obj_detection/, 2D_spatial_eval.py writes labels/...
        "mkdir -p {out}/annotation_obj_detection && "
        "cp {out}/labels/annotation_obj_detection_2d/vqa_result.json {out}/annotation_obj_detection/",
        "cd T2I-CompBench/3_in_1_eval && python 3_in_1.py --outpath={out} --data_path=../examples/dataset",
    )),
}


def category_of(path: str | Path) -> str | None:
    """The category a prompt file is named for ('color_val.txt' -> 'color'), or None."""
    stem = Path(path).stem
    for split in SPLITS:
        if stem.endswith(f"_{split}") and stem[: -len(split) - 1] in CATEGORIES:
            return stem[: -len(split) - 1]
    return stem if stem in CATEGORIES else None


def category_file(benchmarks: str | Path, category: str, split: str = "val") -> Path:
    """benchmarks/{category}_{split}.txt; ValueError listing the categories for an unknown name."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown T2I-CompBench category {category!r}; valid: {', '.join(CATEGORIES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return Path(benchmarks) / f"{category}_{split}.txt"


def score_commands(out_dir: str | Path, category: str | None) -> list[str]:
    """The official scorer's command lines for a category (all categories' when None)."""
    out = Path(out_dir).resolve()
    names = [category] if category else list(CATEGORIES)
    lines = []
    for name in names:
        prefix = "" if category else f"# {name}: "
        lines += [prefix + line.format(out=out) for line in CATEGORIES[name].commands]
    return lines


# --- writing a run ----------------------------------------------------------------------------------------------
def check_fresh(out_dir: str | Path) -> None:
    """A run writes into a new or empty folder: the running index starts at 0, and the scorers read every file in
    samples/ (ValueError otherwise; `eval t2i-compbench --overwrite` empties it first)."""
    prepare_out_dir(out_dir, overwrite=False)


def write_t2i_compbench(policy, prompts: list[str], out_dir: str | Path, config: RolloutConfig, *, seed: int = 0,
                        batch_size: int = 4, generate_fn: GenerateFn = sample_once, display_size: int = 256,
                        progress: bool = True) -> list[dict]:
    """Generate config.group_size samples per prompt into out_dir/samples/ (module docstring); append each
    image's record to out_dir/chains.jsonl; return the gallery traces (paths relative to out_dir)."""
    if display_size < 1:
        raise ValueError(f"display_size must be >= 1 pixel, got {display_size}")
    check_fresh(out_dir)
    out = Path(out_dir)
    last = len(prompts) * config.group_size - 1
    for prompt in prompts:  # every name checked before the first image, at the longest index
        sample_name(prompt, last)
    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    traces = []
    with open(out / CHAINS_FILE, "w", encoding="utf-8") as log:
        for draw in draw_samples(policy, prompts, config, seed=seed, batch_size=batch_size, generate_fn=generate_fn,
                                 progress=progress, desc="t2i-compbench"):
            prompt = prompts[draw.prompt_index]
            index = draw.prompt_index * config.group_size + draw.sample
            name = sample_name(prompt, index)
            overlay = f"{OVERLAYS_DIR}/{index:0{INDEX_DIGITS}d}.png"
            record = save_draw(draw, out / SAMPLES_DIR / name, out / overlay, display_size)
            record = {"index": index, "file": f"{SAMPLES_DIR}/{name}", "prompt": prompt,
                      "file_prompt": file_prompt(prompt), "prompt_index": draw.prompt_index, "sample": draw.sample,
                      **record}
            log.write(json.dumps(record) + "\n")
            log.flush()
            traces.append({**record, "image": record["file"], "overlay": overlay})
    return traces
