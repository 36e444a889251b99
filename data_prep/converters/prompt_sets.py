"""Benchmark prompt files (bundled in data_prep/prompt_sets/) -> prompt-set rows for GRPO and evaluation.

    rows = load_prompt_set("geneval")                                   # 553 rows, in file order
    rows = load_prompt_set("t2i_compbench", split="train", categories=["color", "spatial"])
    convert_prompt_set("t2i_compbench", "prompts/t2i_val.jsonl")        # every category's val prompts

A row: {"id", "prompt", "tag", "metadata", "source": {"benchmark", "file", "line", ...}}.

- GenEval (`geneval/evaluation_metadata.jsonl`, one JSON per line, e.g.
  {"tag": "position", "include": [{"class": "cow", "count": 1}, {"class": "bench", "count": 1,
  "position": ["left of", 0]}], "prompt": "a photo of a bench left of a cow"}): id "geneval-00042", tag = the
  line's tag, metadata = the whole line (what the GenEval scorer and the ShapeWorld oracle read), source.index = the
  line's 0-based position, which names the prompt's folder in GenEval's output layout (<index:05d>/).
- T2I-CompBench (`t2i_compbench/{category}_{split}.txt`, one prompt per line; 700 train / 300 val per category):
  id "t2i_compbench-color-val-0042", tag = the category, metadata null (no GenEval metadata), source.split.
  Duplicate lines (the train files have a few) stay: every line is one row.

A malformed line stops the conversion with its file and line number: a benchmark with a missing prompt would give
scores that compare with nothing. Other prompt sets register a reader with one decorator line:

    @PROMPT_SETS.register("mybench")
    def mybench(root: Path, split: str | None, categories: list[str] | None) -> list[dict]: ...
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable

from data_prep.converters.common import write_jsonl
from janus_rig.registry import Registry

PROMPT_SET_DIR = Path(__file__).resolve().parent.parent / "prompt_sets"  # the bundled benchmark files

Reader = Callable[[Path, "str | None", "list[str] | None"], list[dict]]
PROMPT_SETS: Registry[Reader] = Registry("prompt set")

GENEVAL_FILE = "evaluation_metadata.jsonl"
T2I_SPLITS = ("train", "val")


def _lines(path: Path) -> list[str]:
    """The file's lines; a blank one is an error (it would shift every later index)."""
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}:{number}: blank line")
    return lines


@PROMPT_SETS.register("geneval")
def geneval(root: Path, split: str | None = None, categories: list[str] | None = None) -> list[dict]:
    """GenEval's 553 metadata lines; `categories` filters by tag."""
    if split not in (None, "val"):
        raise ValueError(f"geneval has one prompt file (its 553 evaluation prompts), no {split!r} split")
    path = root / "geneval" / GENEVAL_FILE
    rows = []
    for index, line in enumerate(_lines(path)):
        where = f"{path}:{index + 1}"
        try:
            meta = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{where}: not JSON: {err}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("prompt"), str) or not meta["prompt"].strip() \
                or not isinstance(meta.get("tag"), str) or not isinstance(meta.get("include"), list):
            raise ValueError(f"{where}: a GenEval line needs a string 'prompt', a string 'tag' and an 'include' list")
        rows.append({"id": f"geneval-{index:05d}", "prompt": meta["prompt"], "tag": meta["tag"], "metadata": meta,
                     "source": {"benchmark": "geneval", "file": GENEVAL_FILE, "line": index + 1, "index": index}})
    return _filter(rows, categories, "geneval", "tag")


@PROMPT_SETS.register("t2i_compbench")
def t2i_compbench(root: Path, split: str | None = None, categories: list[str] | None = None) -> list[dict]:
    """T2I-CompBench prompts of one split (default val), every category found unless `categories` is given."""
    split = split or "val"
    if split not in T2I_SPLITS:
        raise ValueError(f"t2i_compbench split {split!r} is not one of {', '.join(T2I_SPLITS)}")
    folder = root / "t2i_compbench"
    found = sorted(p.name[: -len(f"_{split}.txt")] for p in folder.glob(f"*_{split}.txt"))
    if not found:
        raise FileNotFoundError(f"no {folder}/<category>_{split}.txt files")
    unknown = sorted(set(categories or []) - set(found))
    if unknown:
        raise ValueError(f"t2i_compbench has no {split} prompts for {', '.join(unknown)}; categories: "
                         f"{', '.join(found)}")
    rows = []
    for category in categories or found:
        name = f"{category}_{split}.txt"
        for index, prompt in enumerate(_lines(folder / name)):
            rows.append({"id": f"t2i_compbench-{category}-{split}-{index:04d}", "prompt": prompt,
                         "tag": category, "metadata": None,
                         "source": {"benchmark": "t2i_compbench", "file": name, "line": index + 1, "split": split}})
    return rows


def _filter(rows: list[dict], categories: list[str] | None, name: str, key: str) -> list[dict]:
    if not categories:
        return rows
    present = sorted({r[key] for r in rows})
    unknown = sorted(set(categories) - set(present))
    if unknown:
        raise ValueError(f"{name} has no {key} {', '.join(unknown)}; present: {', '.join(present)}")
    return [r for r in rows if r[key] in categories]


def load_prompt_set(name: str, split: str | None = None, categories: list[str] | None = None,
                    root: str | Path | None = None) -> list[dict]:
    """The rows of a registered prompt set, read from `root` (default: the bundled files)."""
    return PROMPT_SETS.get(name)(Path(root) if root else PROMPT_SET_DIR, split, categories)


def convert_prompt_set(name: str, out: str | Path, split: str | None = None, categories: list[str] | None = None,
                       root: str | Path | None = None) -> dict:
    """Write a prompt set as JSON lines; returns {"prompts", "by_tag", "out"}."""
    rows = load_prompt_set(name, split, categories, root)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    return {"prompts": len(rows), "by_tag": dict(Counter(r["tag"] for r in rows)), "out": str(out)}
