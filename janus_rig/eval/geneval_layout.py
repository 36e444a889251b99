"""GenEval's folder layout, read and written the way its official scorer (evaluate_images.py) walks it.

    <outdir>/00000/metadata.jsonl      one line: the prompt's metadata, e.g. {"tag": "colors", "include": [...], ...}
    <outdir>/00000/samples/0000.png    the k-th sample for that prompt
    <outdir>/00001/...

Prompt folders are the subfolders whose name is all digits; samples are files named digits + ".png".
What we add beside them (`janus-rig eval geneval`) stays out of samples/, so the scorer never sees it:

    <outdir>/00000/chains.jsonl        one JSON line per sample: {"sample": k, "image": "samples/0000.png", "chain", ...}
    <outdir>/00000/overlays/0000.png   the sample with its chain's planned boxes drawn
"""

from __future__ import annotations

import json
import re
from pathlib import Path

METADATA_FILE = "metadata.jsonl"
SAMPLES_DIR = "samples"
CHAINS_FILE = "chains.jsonl"
OVERLAYS_DIR = "overlays"
_SAMPLE_RE = re.compile(r"\d+\.png")


def prompt_dir(outdir: str | Path, index: int) -> Path:
    return Path(outdir) / f"{index:05d}"


def sample_path(outdir: str | Path, index: int, k: int) -> Path:
    return prompt_dir(outdir, index) / SAMPLES_DIR / f"{k:04d}.png"


def overlay_path(outdir: str | Path, index: int, k: int) -> Path:
    return prompt_dir(outdir, index) / OVERLAYS_DIR / f"{k:04d}.png"


def write_prompt_dir(outdir: str | Path, index: int, metadata: dict) -> Path:
    """Create <outdir>/<index:05d>/ with its metadata.jsonl and an empty samples/ folder; return the prompt folder."""
    folder = prompt_dir(outdir, index)
    (folder / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).write_text(json.dumps(metadata) + "\n")
    return folder


def read_metadata(folder: str | Path) -> dict:
    """The metadata of one prompt folder; ValueError (naming the file) when it is missing or malformed."""
    path = Path(folder) / METADATA_FILE
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read metadata ({err.strerror or err})") from None
    try:
        metadata = json.loads(text)  # GenEval reads the file as one JSON document
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: metadata must be a JSON object")
    for key in ("tag", "prompt"):
        if not isinstance(metadata.get(key), str):
            raise ValueError(f"{path}: metadata has no {key!r} string")
    return metadata


def prompt_dirs(outdir: str | Path) -> list[Path]:
    """The prompt folders of a GenEval output folder, in index order."""
    root = Path(outdir)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def sample_paths(folder: str | Path) -> list[Path]:
    """The sample images of one prompt folder, in index order."""
    samples = Path(folder) / SAMPLES_DIR
    if not samples.is_dir():
        return []
    found = [p for p in samples.iterdir() if p.is_file() and _SAMPLE_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.stem))


def read_chains(folder: str | Path) -> list[dict]:
    """The chains.jsonl records of one prompt folder, in file order ([] when it has none); ValueError naming
    FILE:LINE for a line that is not a JSON object."""
    path = Path(folder) / CHAINS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: malformed JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: must be a JSON object")
        records.append(record)
    return records
