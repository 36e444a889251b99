"""scripts/gpu_checks.py, the prepared GPU measurements, smoke-run on the CPU with the tiny preset so that a lent
GPU's few minutes are not spent on a script that does not run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_checks.py"


def test_gpu_checks_run_on_the_tiny_preset(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_checks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--prompts-per-step", "1",
                        "--repeats", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert code == 0, json.dumps(report, indent=1)[:3000]
    decode = report["decode"]
    assert decode["floor_ms_per_step"] > 0 and decode["bandwidth_gb_s"] > 0
    for path in ("ours_eager", "transformers_dynamic_cache", "transformers_static_cache"):
        assert decode[path]["ms_per_step"] > decode["floor_ms_per_step"]  # nothing beats the memory floor
    grpo = report["grpo"]
    assert grpo["summary"]["steps"] == 2 and grpo["num_generations"] == 16 and grpo["lora_r"] == 32
    assert [s["step"] for s in grpo["per_step"]] == [1, 2] and all(s["time/update_s"] > 0 for s in grpo["per_step"])
