"""Sample images (and their reasoning chains) for a list of prompts and write them out for people to look at.

    policy = JanusPolicy.load("runs/quickstart/grpo")
    traces = generate(policy, ["a red circle left of a blue square"], "out", RolloutConfig(group_size=4), seed=0)
    write_gallery("out", traces, header={"model": "runs/quickstart/grpo"})   # janus_rig.gallery

Output layout (paths inside traces are relative to `out_dir`, so the folder can be moved or served as it is):

    out/images/0000_00.png     sample 0 of prompt 0, decoded at the model's native size
    out/overlays/0000_00.png   the same image upscaled (nearest) to `display_size`, the chain's planned boxes drawn
    out/traces.jsonl           one JSON line per sample, written batch by batch (fields: see `_trace`)
    out/index.html             the gallery: `janus-rig generate` writes it with `write_gallery`

Determinism: prompts are sampled `batch_size` at a time and batch b is drawn with seed + b. The same prompts,
settings, seed and batch size give identical chains and images. A different batch size gives different (equally
valid) draws: the sampler's per-step draws depend on which rows share the call.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from janus_rig.chain import draw_boxes, parse_chain
from janus_rig.lines import json_object, read_lines
from janus_rig.rollout.config import RolloutConfig
from janus_rig.rollout.sampler import sample

IMAGES_DIR, OVERLAYS_DIR, TRACES_FILE = "images", "overlays", "traces.jsonl"


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file, one per line (blank lines and lines starting with '#' skipped), or from a .jsonl
    file with a "prompt" string on every non-blank line, e.g. a GenEval metadata line:

        {"tag": "position", "include": [{"class": "dog", "count": 1}, ...], "prompt": "a photo of a dog right of a cup"}

    Raises ValueError naming the bad lines as FILE:LINE, FileNotFoundError when the file is missing.
    """
    if Path(path).suffix.lower() != ".jsonl":
        return read_lines(path, lambda text, number, ordinal: text.strip(), what="prompts",
                          skip=lambda text: not text.strip() or text.strip().startswith("#"))
    return read_lines(path, lambda text, number, ordinal: prompt_of(json_object(text)), what="prompts")


def prompt_of(row: dict) -> str:
    """The "prompt" string of a JSONL row; ValueError when there is none."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('no "prompt" string')
    return prompt


def sample_name(prompt_index: int, k: int) -> str:
    return f"{prompt_index:04d}_{k:02d}.png"


def _trace(out: Path, image: Image.Image, prompt: str, prompt_index: int, k: int, seed: int, chain: str,
           truncated: bool, timings: dict, display_size: int) -> dict:
    """Write one sample's image and overlay; return its trace (the traces.jsonl line)."""
    parsed = parse_chain(chain)  # lenient: a garbled chain still gives its readable objects and its problems
    name = sample_name(prompt_index, k)
    image_path, overlay_path = f"{IMAGES_DIR}/{name}", f"{OVERLAYS_DIR}/{name}"
    image.save(out / image_path)
    draw_boxes(image, parsed.objects, size=(display_size, display_size)).save(out / overlay_path)
    return {
        "prompt": prompt,
        "prompt_index": prompt_index,
        "sample": k,
        "seed": seed,  # of the batch this sample was drawn in
        "chain": chain,
        "objects": [{"name": o.name, "box": list(o.box.as_tuple()) if o.box else None} for o in parsed.objects],
        "problems": [{"kind": p.kind, "position": p.position, "message": p.message} for p in parsed.problems],
        "truncated": truncated,
        "image": image_path,
        "overlay": overlay_path,
        "timings": timings,
    }


def generate(
    policy,
    prompts: list[str],
    out_dir: str | Path,
    config: RolloutConfig,
    seed: int = 0,
    batch_size: int = 4,
    display_size: int = 256,
    progress: bool = True,
) -> list[dict]:
    """Draw `config.group_size` samples per prompt, `batch_size` prompts per sampler call (batch_size x group_size
    images in flight); write images, overlays and traces.jsonl under `out_dir`; return the traces in order."""
    if not prompts:
        raise ValueError("no prompts to generate from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if display_size < 1:
        raise ValueError(f"display_size must be >= 1 pixel, got {display_size}")
    out = Path(out_dir)
    for sub in (IMAGES_DIR, OVERLAYS_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    traces = []
    starts = range(0, len(prompts), batch_size)
    with open(out / TRACES_FILE, "w", encoding="utf-8") as log:
        for b, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress)):
            batch_seed = seed + b
            rollout = sample(policy, prompts[start : start + batch_size], config, seed=batch_seed)
            decode_start = time.perf_counter()
            pixels = policy.decode_images(rollout.image_tokens)  # (R, S, S, 3) uint8
            timings = {
                "text_s": rollout.timings["text_s"],
                "image_s": rollout.timings["image_s"],
                "decode_s": time.perf_counter() - decode_start,
            }
            truncated = rollout.truncated.tolist()
            for r, local in enumerate(rollout.prompt_index.tolist()):
                index = start + local
                trace = _trace(out, Image.fromarray(pixels[r].numpy()), prompts[index], index,
                               r % config.group_size,  # rows are prompt-major
                               batch_seed, rollout.chains[r], truncated[r], timings, display_size)
                log.write(json.dumps(trace) + "\n")
                traces.append(trace)
            log.flush()  # a long run can be inspected while it goes
    return traces
