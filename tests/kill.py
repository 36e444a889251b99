"""The kill test of a trainer: a real `janus-rig` process is SIGKILLed at a seeded random point after one of its
checkpoints, resumed with `--resume_from_checkpoint true`, and must end where an uninterrupted run of the same
command ends: every weight equal, every logged loss equal. Used by tests/sft/test_kill.py and tests/grpo/test_resume.py.

The straight run and the run to be killed start together (one torch thread each, so two cores run them side by side);
the kill waits for checkpoint-K (K drawn from the seed), then a drawn fraction of a step, so it may land inside the next
save. Before resuming, an incomplete `checkpoint-(C+1)` (weights, no trainer_state.json: what an in-place writer
leaves when killed) is put next to the newest complete checkpoint C; resuming must skip it and say so.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
# one thread per process: the two runs share the machine's cores, and a thread count is part of what makes a CPU run
# bit-reproducible
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
TIMEOUT_S = 240


def start(argv: list[str], log: Path) -> subprocess.Popen:
    """`python -m janus_rig.cli ARGV` with stdout and stderr in LOG (a file: a full pipe would stall the child)."""
    with open(log, "w") as sink:
        return subprocess.Popen([sys.executable, "-m", "janus_rig.cli", *argv], cwd=REPO, env=ENV, stdout=sink,
                                stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> str:
    """Wait for a run that must succeed; -> its output."""
    try:
        code = process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    text = log.read_text()
    assert code == 0, f"{' '.join(map(str, process.args))} exited {code}:\n{text[-3000:]}"
    return text


def kill_after_checkpoint(process: subprocess.Popen, out: Path, step: int, extra_s: float, log: Path) -> None:
    """SIGKILL `process` `extra_s` seconds after OUT/checkpoint-STEP appeared."""
    marker = out / f"checkpoint-{step}" / "trainer_state.json"
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.is_file():
        assert process.poll() is None, f"the run ended before checkpoint-{step}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint-{step} after {TIMEOUT_S} s"
        time.sleep(0.005)
    time.sleep(extra_s)
    process.send_signal(signal.SIGKILL)
    process.wait()


def complete_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def logged(checkpoint: Path, keys: tuple[str, ...]) -> dict[int, dict]:
    """{step: {key: value}} of the training log lines in a checkpoint's trainer_state.json."""
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: {k: h[k] for k in keys} for h in history if keys[0] in h}


def kill_resume_and_compare(tmp_path: Path, argv_for, max_steps: int, seed: int, summary_file: str,
                            keys: tuple[str, ...] = ("loss",), step_s: float = 0.2) -> dict:
    """The kill test (module docstring). argv_for(out) -> the command's argv writing into `out` (save_steps 1,
    max_steps `max_steps`); `summary_file` is what the command writes last. -> what happened, for the report."""
    rng = random.Random(seed)
    kill_at, extra_s = rng.randint(1, max_steps - 3), rng.uniform(0, step_s)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    logs = {name: tmp_path / f"{name}.log" for name in ("straight", "killed", "resumed")}
    straight_run = start(argv_for(straight), logs["straight"])
    killed_run = start(argv_for(killed), logs["killed"])
    try:
        kill_after_checkpoint(killed_run, killed, kill_at, extra_s, logs["killed"])
    finally:
        if killed_run.poll() is None:
            killed_run.kill()
    assert killed_run.returncode == -signal.SIGKILL
    assert not (killed / summary_file).exists(), "the run finished before it was killed"
    finish(straight_run, logs["straight"])

    newest = complete_steps(killed)[-1]
    assert newest < max_steps
    half = killed / f"checkpoint-{newest + 1}"  # a half-written checkpoint, as an in-place writer leaves one
    assert not half.exists(), f"{half} exists although incomplete: checkpoints must appear whole"
    half.mkdir()
    shutil.copy(killed / f"checkpoint-{newest}" / "model.safetensors", half / "model.safetensors")

    output = finish(start([*argv_for(killed), "--resume_from_checkpoint", "true"], logs["resumed"]), logs["resumed"])
    assert f"skipped {half}, an incomplete checkpoint: no trainer_state.json" in output

    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs from the uninterrupted run's"
    last = f"checkpoint-{max_steps}"
    assert logged(killed / last, keys) == logged(straight / last, keys)
    assert sorted(logged(straight / last, keys)) == list(range(1, max_steps + 1))
    return {"killed_after_checkpoint": kill_at, "extra_s": extra_s, "resumed_from": newest}
