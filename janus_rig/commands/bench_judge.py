"""`janus-rig bench judge`: requests/s of `judge serve` with a VLM judge, batched vs one request per generate.

    janus-rig bench judge --json-out judge_bench.json          # a tiny random-init Qwen2.5-VL, on the CPU
    janus-rig bench judge --model /models/Qwen2.5-VL-7B-Instruct --device cuda --requests 1024 --clients 64

Each mode starts its own `judge serve --judge hf` process on a free port (the same code, only --max-batch differs)
and sends the same `--requests` R_PI questions (an image and the GoT-R1 rubric) from `--clients` concurrent
connections through the http judge, after an untimed warm-up round. The judge's replies from a random-init model
are garbage (counted as unparseable): only transport errors count as errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "bench judge"
HELP = "requests/s of `judge serve` with a VLM judge (tiny Qwen2.5-VL by default): batched vs max batch 1"
CALLS_RE = re.compile(r"judge calls (\{.*\})")  # what `judge serve` logs on exit (judge_serve.run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="judge model directory (default: a tiny random-init "
                        "Qwen2.5-VL built in a temporary directory, see --hidden-size)")
    parser.add_argument("--hidden-size", type=int, default=32, help="tiny model: text hidden size (from 256 up the "
                        "CPU's prefill is compute-bound and batching saves little: docs/performance.md)")
    parser.add_argument("--layers", type=int, default=2, help="tiny model: text layers")
    parser.add_argument("--device", default="cpu", help="the judge's device (cpu, cuda)")
    parser.add_argument("--requests", type=int, default=256, help="timed requests per mode")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client connections")
    parser.add_argument("--max-batch", type=int, default=32, help="the batched mode's --max-batch (and the judge's "
                        "batch_size); the other mode uses 1")
    parser.add_argument("--batch-window", type=float, default=0.01, help="the batched mode's --batch-window, seconds")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens the judge generates per reply")
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images sent, in pixels")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per mode, alternating (medians reported)")
    parser.add_argument("--json-out", default=None, help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    logging.getLogger("reward_models.judges.base").setLevel(logging.ERROR)  # a random model's replies: all garbage
    for name in ("requests", "clients", "max_batch", "max_new_tokens", "image_size", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    with tempfile.TemporaryDirectory(prefix="judge-bench-") as scratch:
        model = args.model or _tiny_model(Path(scratch) / "qwen", args.hidden_size, args.layers)
        questions = _questions(args.requests + args.clients, args.image_size)
        described = args.model or f"tiny Qwen2.5-VL (random init, hidden {args.hidden_size} x {args.layers} layers)"
        print(f"judge bench: {described}, {_parameters(model) / 1e6:.1f} M parameters, {args.requests} requests "
              f"from {args.clients} clients, {args.max_new_tokens} new tokens, {args.image_size}px images, "
              f"device {args.device}", flush=True)
        modes = {"one at a time": 1, "batched": args.max_batch}
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for rep in range(args.repeats):
            for mode, max_batch in modes.items():
                runs[mode].append(_run_mode(model, max_batch, questions, args, Path(scratch) / f"{rep}-{max_batch}"))
                print(f"  run {rep + 1}/{args.repeats} {mode}: {runs[mode][-1]['requests_per_s']:.1f} requests/s",
                      flush=True)
    summary = {mode: _median_run(results) for mode, results in runs.items()}
    ratio = summary["batched"]["requests_per_s"] / summary["one at a time"]["requests_per_s"]
    print(f"{'mode':<15} {'max batch':>9} {'seconds':>8} {'requests/s':>10} {'judge calls':>11} {'mean batch':>10} "
          f"{'errors':>6}")
    for mode, row in summary.items():
        print(f"{mode:<15} {row['max_batch']:>9} {row['seconds']:>8.2f} {row['requests_per_s']:>10.1f} "
              f"{row['calls']['calls']:>11} {row['calls']['mean']:>10.2f} {row['errors']:>6}")
    print(f"ratio {ratio:.2f}")
    result = {"model": described, "device": args.device, "requests": args.requests, "clients": args.clients,
              "max_new_tokens": args.max_new_tokens, "image_size": args.image_size, "repeats": args.repeats,
              "modes": summary, "ratio": round(ratio, 3), "command": getattr(args, "command_line", None)}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if all(row["errors"] == 0 for row in summary.values()) else 1


def _tiny_model(out: Path, hidden_size: int, layers: int) -> str:
    from reward_models.judges.hf import make_tiny_model_dir

    return make_tiny_model_dir(out, hidden_size=hidden_size, layers=layers)


def _parameters(model_dir: str) -> int:
    from safetensors import safe_open

    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(path), "pt") as weights:
            for key in weights.keys():
                shape = weights.get_slice(key).get_shape()
                total += math.prod(shape)
    return total


def _questions(n: int, size: int):
    """n R_PI questions, each its own random image (so no two requests are the same bytes)."""
    import numpy as np
    from PIL import Image

    from reward_models.judges import RubricRequest

    rng = np.random.default_rng(0)
    return [RubricRequest("prompt_image", f"a photo of {k % 4 + 1} red circles",
                          image=Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
            for k in range(n)]


def _run_mode(model: str, max_batch: int, questions, args, scratch: Path) -> dict:
    from reward_models.judges import make_judge

    scratch.mkdir(parents=True)
    log = scratch / "judge_serve.log"
    command = [sys.executable, "-m", "janus_rig.cli", "judge", "serve", "--judge", "hf", "--model", model,
               "--port", "0", "--max-batch", str(max_batch), "--batch-window", str(args.batch_window),
               "--judge-option", f"batch_size={max_batch}", "--judge-option", f"max_new_tokens={args.max_new_tokens}",
               "--judge-option", f"device={args.device}"]
    with open(log, "w") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        url = _served_url(server, log)
        judge = make_judge(url, concurrency=args.clients, retries=0, timeout=600)
        try:
            judge.score(questions[: args.clients])  # warm-up, untimed: first allocations, the discovery request
            before = judge.stats.snapshot()
            start = time.perf_counter()
            judge.score(questions[args.clients :])
            seconds = time.perf_counter() - start
            after = judge.stats.snapshot()
        finally:
            judge.close()
    finally:
        server.send_signal(signal.SIGINT)  # judge serve logs its judge calls on the way out
        try:
            server.wait(timeout=120)  # a loaded machine can take a while to shut the judge down
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    errors = sum(after[f"failures/{k}"] - before[f"failures/{k}"] for k in ("http_error", "timeout"))
    calls = CALLS_RE.findall(log.read_text())
    if not calls:
        raise RuntimeError(f"judge serve (max batch {max_batch}) logged no judge calls on exit; its log:\n"
                           f"{log.read_text()[-2000:]}")
    return {"max_batch": max_batch, "seconds": round(seconds, 3), "requests_per_s": round(args.requests / seconds, 2),
            "errors": errors, "calls": json.loads(calls[-1])}


def _served_url(server: subprocess.Popen, log: Path) -> str:
    line = server.stdout.readline()  # "serving judge hf at http://127.0.0.1:PORT/v1" once loaded, "" if it died
    if not line.startswith("serving judge"):
        raise RuntimeError(f"judge serve did not start: {line!r}; its log:\n{log.read_text()[-2000:]}")
    return line.rsplit(" ", 1)[1].strip()


def _median_run(results: list[dict]) -> dict:
    """The run with the median requests/s (the middle one of an odd count)."""
    ordered = sorted(results, key=lambda r: r["requests_per_s"])
    median = ordered[(len(ordered) - 1) // 2]
    return {**median, "all_requests_per_s": [r["requests_per_s"] for r in results],
            "median_requests_per_s": statistics.median(r["requests_per_s"] for r in results)}
