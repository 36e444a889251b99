"""`make rehearse`: the multi-GPU training path rehearsed on two CPU processes, checked against one process.

    python scripts/rehearse.py --out runs/rehearsal            # SFT and GRPO, ~2-3 min on 2 cores
    python scripts/rehearse.py --stages sft --sft-steps 2 --no-resume --out /tmp/r   # the CI test's mini version

On a small ShapeWorld world (32 px, the tiny preset), each stage trains the same steps twice from the same start: once
in one process (batch 4, gradient accumulation 2) and once in two processes sharded by FSDP2 over gloo (batch 4 each,
no accumulation: the same global batch of 8, the same seed, the same rows), then resumes the two-process run from its
sharded checkpoint half-way. GRPO samples its rollouts while sharded (from the gathered weights) and scores them with
the exact ShapeWorld oracle judge. Folders under OUT:

    world/                        janus-rig world --train 256 --size 32 --chains prompt
    sft_start/                    janus-rig init --preset tiny --vq checkpoints/shapeworld/vq
    sft_1proc/ sft_2proc/         SFT, one process / two FSDP processes (checkpoints inside)
    sft_2proc_resumed/            the two-process run resumed from sft_2proc's middle checkpoint
    grpo_start/                   a copy of checkpoints/shapeworld/sft (a model whose rollouts earn graded rewards)
    grpo_1proc/ grpo_2proc/ grpo_2proc_resumed/
    logs/                         every command's output
    report.json                   what ran, how long it took, and the checks

Checks: every saved folder (final models and checkpoints) loads in stock transformers
(`JanusForConditionalGeneration.from_pretrained`, no missing or unexpected keys, full shapes); the two-process weights
equal the one-process weights within 1e-4 (max abs, fp32); the resumed run equals the straight one within 1e-4;
the two-process checkpoints hold FSDP's sharded state; the weights moved from the start (so equality is not trivial).
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FSDP_CONFIG = ROOT / "train" / "accelerate" / "rehearsal" / "fsdp2_cpu.yaml"
SHIPPED = ROOT / "checkpoints" / "shapeworld"
TOLERANCE = 1e-4  # max abs difference between weights trained in one and in two processes (fp32)
PROCESSES = 2
PER_DEVICE_BATCH = 4  # one process accumulates PROCESSES micro-batches of this: the same global batch

# What both runs of a stage share (flags of janus-rig sft / grpo). Condition dropout is off: its draws are keyed by
# (seed, step, process), so two processes would drop other rows than one.
SFT_FLAGS = ["--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
             "--weight_decay", "0.01", "--max_grad_norm", "1.0", "--seed", "0", "--cond_dropout", "0",
             "--logging_steps", "1", "--save_strategy", "steps", "--report_to", "none",
             "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false"]
GRPO_FLAGS = ["--tags", "position", "complex", "--num_generations", "4", "--max_completion_length", "64",
              "--cfg_weight", "3.0", "--optimize", "both", "--loss_type", "dapo", "--learning_rate", "1e-4",
              "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--max_grad_norm", "1.0", "--seed", "0",
              "--reward_terms", "R_sem", "R_spa", "R_RI", "R_PI", "--reward_combine", "product",
              "--judge", "shapeworld", "--gallery_every", "0", "--logging_steps", "1", "--save_strategy", "steps",
              "--report_to", "none"]
# Reflection-GRPO's editor phase: G region-locked redraws of fixed edits (WORLD/reflect.jsonl) scored by the exact
# judge, so the rewards do not depend on which process drew a redraw; a group's redraws are split over the processes.
REFLECT_FLAGS = ["--phase", "editor", "--reward", "judge", "--judge", "shapeworld", "--num_generations", "4",
                 "--cfg_weight", "3.0", "--loss_type", "dapo", "--learning_rate", "1e-4", "--lr_scheduler_type",
                 "constant", "--warmup_steps", "0", "--max_grad_norm", "1.0", "--seed", "0", "--gallery_every", "0",
                 "--eval_every", "0", "--logging_steps", "1", "--save_strategy", "steps", "--report_to", "none"]
COMMANDS = {"sft": ("sft", SFT_FLAGS), "grpo": ("grpo", GRPO_FLAGS), "reflect": ("reflect-grpo", REFLECT_FLAGS)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/rehearsal", help="output folder (emptied first)")
    parser.add_argument("--stages", nargs="+", choices=("sft", "grpo", "reflect"), default=["sft", "grpo", "reflect"])
    parser.add_argument("--sft-steps", type=int, default=6, help="optimizer steps of each SFT run")
    parser.add_argument("--grpo-steps", type=int, default=4, help="optimizer steps of each GRPO run")
    parser.add_argument("--reflect-steps", type=int, default=2, help="optimizer steps of each Reflection-GRPO run")
    parser.add_argument("--train", type=int, default=256, help="train records of the world")
    parser.add_argument("--no-resume", action="store_true", help="skip the resumed two-process runs")
    return parser.parse_args(argv)


# --- running commands -------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def janus(*args: str) -> list[str]:
    return [sys.executable, "-m", "janus_rig.cli", *args]


def launch(*args: str) -> list[str]:
    """`janus-rig ARGS` in PROCESSES processes under the CPU FSDP config; --use_cpu makes them CPU processes."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
            "--num_processes", str(PROCESSES), "--main_process_port", str(free_port()),
            "-m", "janus_rig.cli", *args, "--use_cpu", "true"]


class Runner:
    """Runs commands from the repository root, each one's output in OUT/logs/NAME.log; records what ran."""

    def __init__(self, out: Path):
        self.out, self.runs = out, {}
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                    "TOKENIZERS_PARALLELISM": "false"}

    def __call__(self, name: str, cmd: list[str]) -> None:
        log = self.out / "logs" / f"{name}.log"
        print(f"[rehearse] {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        with open(log, "w") as f:
            code = subprocess.call(cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        seconds = round(time.perf_counter() - started, 1)
        self.runs[name] = {"command": " ".join(cmd[1:]), "seconds": seconds, "exit": code, "log": str(log)}
        if code:
            tail = log.read_text().splitlines()[-20:]
            raise RuntimeError(f"{name} failed (exit {code}); the end of {log}:\n" + "\n".join(tail))


# --- the stages -------------------------------------------------------------------------------------------------------
def prepare(run: Runner, out: Path, train: int) -> Path:
    world = out / "world"
    run("world", janus("world", "--out", str(world), "--train", str(train), "--val", "16", "--bench-per-tag", "2",
                       "--heldout-per-tag", "0", "--size", "32", "--chains", "prompt", "--quiet", "--overwrite"))
    return world


def stage(run: Runner, out: Path, kind: str, world: Path, start: Path, steps: int, resume: bool) -> dict:
    """One stage's three (or four) runs: -> the folders, by role."""
    command, flags = COMMANDS[kind]
    half = max(steps // 2, 1)
    common = [command, "--world", str(world), "--model_name_or_path", str(start), "--max_steps", str(steps),
              "--save_steps", str(half), "--per_device_train_batch_size", str(PER_DEVICE_BATCH), *flags]
    if kind == "grpo":  # the bench (the gathered policy, sampled by the main process) at the start and the end
        common += ["--eval_every", str(steps), "--eval_prompts", "4"]
    one, two = out / f"{kind}_1proc", out / f"{kind}_2proc"
    run(f"{kind}_1proc", janus(*common, "--output_dir", str(one), "--gradient_accumulation_steps", str(PROCESSES),
                               "--use_cpu", "true", "--overwrite_output_dir", "true"))
    extra = ["--cache_dir", str(out / "cache_2proc")] if kind == "sft" else []  # built by the main process first
    run(f"{kind}_2proc", launch(*common, *extra, "--output_dir", str(two), "--gradient_accumulation_steps", "1",
                                "--overwrite_output_dir", "true"))
    dirs = {"start": start, "1proc": one, "2proc": two}
    if resume:
        resumed = out / f"{kind}_2proc_resumed"
        shutil.copytree(two / f"checkpoint-{half}", resumed / f"checkpoint-{half}")
        run(f"{kind}_2proc_resumed", launch(*common, *extra, "--output_dir", str(resumed),
                                            "--gradient_accumulation_steps", "1", "--resume_from_checkpoint", "true"))
        dirs["resumed"] = resumed
    return dirs


# --- the checks -------------------------------------------------------------------------------------------------------
def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_abs(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        raise ValueError(f"different tensors: {sorted(set(a) ^ set(b))[:5]}")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def loads_in_transformers(folder: Path, shapes: dict) -> str:
    """"ok", or what is wrong: JanusForConditionalGeneration.from_pretrained with no missing, unexpected or
    mismatched keys, every tensor the full shape of the start's."""
    from transformers import JanusForConditionalGeneration
    from transformers.utils import logging

    logging.disable_progress_bar()
    try:
        model, info = JanusForConditionalGeneration.from_pretrained(str(folder), output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - reported, not raised: the report names every folder
        return f"does not load: {type(err).__name__}: {err}"
    problems = {k: v for k, v in info.items() if v}
    if problems:
        return f"loading info {problems}"
    saved = weights(folder)
    wrong = [k for k, v in saved.items() if tuple(v.shape) != shapes.get(k)]
    return f"not full shapes: {wrong[:5]}" if wrong else "ok"


def train_rewards(folder: Path) -> list[float]:
    lines = [json.loads(line) for line in open(folder / "train_log.jsonl") if line.strip()]
    return [round(h["reward"], 6) for h in lines if "reward" in h]


def check(kind: str, dirs: dict) -> dict:
    start = weights(dirs["start"])
    shapes = {k: tuple(v.shape) for k, v in start.items()}
    one, two = weights(dirs["1proc"]), weights(dirs["2proc"])
    result = {"max_abs_2proc_vs_1proc": max_abs(one, two), "max_abs_1proc_vs_start": max_abs(one, start),
              "tolerance": TOLERANCE}
    folders = list(dirs.values())
    folders += [c for d in folders for c in sorted(d.glob("checkpoint-*"))]
    result["loads"] = {str(f.relative_to(dirs["1proc"].parent)): loads_in_transformers(f, shapes) for f in folders}
    result["sharded_checkpoints"] = all(any(c.glob("pytorch_model_fsdp*")) for c in dirs["2proc"].glob("checkpoint-*"))
    ok = (result["max_abs_2proc_vs_1proc"] <= TOLERANCE and result["max_abs_1proc_vs_start"] > TOLERANCE
          and all(v == "ok" for v in result["loads"].values()) and result["sharded_checkpoints"])
    if "resumed" in dirs:
        result["max_abs_resumed_vs_2proc"] = max_abs(weights(dirs["resumed"]), two)
        ok = ok and result["max_abs_resumed_vs_2proc"] <= TOLERANCE
    if kind == "reflect":  # the same rewards at every step
        result["rewards_1proc"], result["rewards_2proc"] = train_rewards(dirs["1proc"]), train_rewards(dirs["2proc"])
        ok = ok and result["rewards_1proc"] == result["rewards_2proc"]
    if kind == "grpo":  # the rollouts themselves: the same rewards at every step, the same final bench
        result["rewards_1proc"], result["rewards_2proc"] = train_rewards(dirs["1proc"]), train_rewards(dirs["2proc"])
        benches = [json.loads((dirs[r] / "grpo_summary.json").read_text()).get("final_bench")
                   for r in ("1proc", "2proc")]
        result["final_bench_1proc"], result["final_bench_2proc"] = benches
        ok = ok and result["rewards_1proc"] == result["rewards_2proc"] and benches[0] == benches[1]
    result["ok"] = ok
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    run = Runner(out)
    report = {"settings": {**vars(args), "processes": PROCESSES, "per_device_batch": PER_DEVICE_BATCH,
                           "fsdp_config": str(FSDP_CONFIG.relative_to(ROOT)), "tolerance": TOLERANCE},
              "runs": run.runs, "checks": {}}
    try:
        world = prepare(run, out, args.train)
        if "sft" in args.stages:
            run("sft_start", janus("init", "--preset", "tiny", "--vq", str(SHIPPED / "vq"), "--out",
                                   str(out / "sft_start"), "--seed", "0"))
            dirs = stage(run, out, "sft", world, out / "sft_start", args.sft_steps, not args.no_resume)
            report["checks"]["sft"] = check("sft", dirs)
        if "grpo" in args.stages:
            shutil.copytree(SHIPPED / "sft", out / "grpo_start")
            dirs = stage(run, out, "grpo", world, out / "grpo_start", args.grpo_steps, not args.no_resume)
            report["checks"]["grpo"] = check("grpo", dirs)
        if "reflect" in args.stages:
            run("reflect_data", janus("reflect-data", "--world", str(world), "--n", "32", "--quiet"))
            shutil.copytree(SHIPPED / "sft", out / "reflect_start")
            dirs = stage(run, out, "reflect", world, out / "reflect_start", args.reflect_steps, not args.no_resume)
            report["checks"]["reflect"] = check("reflect", dirs)
        report["passed"] = all(c["ok"] for c in report["checks"].values())
    except RuntimeError as err:
        report["error"], report["passed"] = str(err), False
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for kind, c in report["checks"].items():
        print(f"[rehearse] {kind}: 2 proc vs 1 proc max abs {c['max_abs_2proc_vs_1proc']:.2e} (moved "
              f"{c['max_abs_1proc_vs_start']:.2e} from the start), resumed vs straight "
              f"{c.get('max_abs_resumed_vs_2proc', float('nan')):.2e}: {'ok' if c['ok'] else 'FAILED'}")
    print(f"[rehearse] {'passed' if report['passed'] else 'FAILED'} in {report['seconds']} s: {out / 'report.json'}"
          + (f"\n{report['error']}" if "error" in report else ""))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
