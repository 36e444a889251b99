"""A real `janus-rig sft` process killed (SIGKILL) at a random step after a checkpoint, then resumed, ends with the
weights and the logged losses of an uninterrupted run (tests/kill.py); checkpoints appear whole or not at all."""

from __future__ import annotations

import pytest

from tests.kill import kill_resume_and_compare
from tests.sft.test_data import make_world

MAX_STEPS = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), train=8, val=2)


@pytest.mark.parametrize("seed", [0])
def test_killed_sft_resumes_to_the_uninterrupted_result(tmp_path, world, seed):
    def argv(out):
        # condition dropout on: the resumed run must also restore the RNG that draws it
        return ["sft", "--init_preset", "tiny", "--world", str(world), "--output_dir", str(out),
                "--cache_dir", f"{out}_cache", "--max_steps", str(MAX_STEPS), "--save_steps", "1",
                "--save_total_limit", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2",
                "--warmup_steps", "0", "--logging_steps", "1", "--cond_dropout", "0.5", "--seed", "3",
                "--report_to", "none", "--disable_tqdm", "true", "--dataloader_pin_memory", "false"]

    kill_resume_and_compare(tmp_path, argv, MAX_STEPS, seed, "sft_summary.json",
                            keys=("loss", "text_nll", "image_nll", "learning_rate"))
