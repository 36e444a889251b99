"""`report_to: tensorboard` on every trainer (train/tracking.py): 2-step GRPO and SFT runs, a 1-step reflection
(editor) run and a short VQ run write TensorBoard event files whose scalar tags hold finite values; the GRPO trainers'
gallery strips arrive as images, pixel for pixel the PNGs in OUTPUT_DIR/gallery. Then the strip callback alone."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from tests.grpo.test_trainer import grpo_config  # noqa: E402  (also registers its test reward terms)
from tests.sft.test_data import make_world, sft_config  # noqa: E402
from train.tracking import (  # noqa: E402
    STRIP_TAG,
    SampleStrips,
    ScalarBoard,
    strip_pixels,
    tensorboard_dir,
    track,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def default_logging_dir(monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)  # the events go to OUTPUT_DIR/runs/<time>_<host>


def read_events(output_dir: Path) -> EventAccumulator:
    """The run's one TensorBoard folder (OUTPUT_DIR/runs/<time>_<host>), everything in it loaded."""
    runs = list((output_dir / "runs").iterdir())
    assert len(runs) == 1, runs
    events = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def assert_finite_scalars(events: EventAccumulator, tags: set[str]) -> None:
    missing = tags - set(events.Tags()["scalars"])
    assert not missing, f"missing {sorted(missing)}; logged: {sorted(events.Tags()['scalars'])}"
    for tag in tags:
        values = [e.value for e in events.Scalars(tag)]
        assert values and all(math.isfinite(v) for v in values), (tag, values)


@pytest.fixture(scope="module")
def grpo_world(tmp_path_factory):
    from data_prep.shapeworld.world import write_world

    out = tmp_path_factory.mktemp("grpo_world")
    write_world(out, train=12, val=2, bench_per_tag=1, size=64, progress=False)
    return out


def test_grpo_logs_scalars_and_sample_strips(tmp_path, grpo_world, tiny_shapeworld_policy_dir):
    from train.grpo.trainer import run_grpo

    run_grpo(grpo_config(tmp_path, grpo_world, tiny_shapeworld_policy_dir, report_to="tensorboard", beta=0.04,
                         eval_every=2, eval_prompts=2))
    out = tmp_path / "out"
    events = read_events(out)
    assert_finite_scalars(events, {
        "train/loss", "train/grad_norm", "train/learning_rate", "train/reward", "train/reward_std", "train/accuracy",
        "train/reward/mean/R_sem", "train/reward/mean/test_brightness", "train/chain_length", "train/truncated",
        "train/clip_ratio/low", "train/clip_ratio/high", "train/clip_ratio/region", "train/ratio_mean", "train/kl",
        "train/adv/frac_zero_std_groups", "train/time/rollout_s", "train/time/update_s", "train/eval/accuracy"})
    assert [e.step for e in events.Scalars("train/reward")] == [1, 2]

    strips = events.Images(STRIP_TAG)  # gallery_every 1: the strips of steps 0 and 1
    assert [e.step for e in strips] == [0, 1]
    for event in strips:
        png = strip_pixels(out / "gallery" / f"step_{event.step:06d}.png")  # (H, W, 3)
        # a row of the step's 2 prompts' first samples: 128-px tiles over gallery_strip's 36-px caption
        assert (event.height, event.width) == png.shape[:2] == (128 + 36, 2 * 128)
        logged = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        assert np.array_equal(logged, png)  # the strip itself: images with their chains' boxes drawn


def test_reflection_editor_logs_scalars_and_before_after_strips(tmp_path_factory, tmp_path,
                                                               tiny_shapeworld_policy_dir):
    from data_prep.shapeworld.perturb import write_reflect_data
    from data_prep.shapeworld.world import write_world
    from tests.reflect_train.test_trainer import config
    from train.reflect.trainer import run_reflect_grpo

    world = tmp_path_factory.mktemp("reflect_world")
    write_world(world, train=12, val=2, bench_per_tag=1, size=32, progress=False)
    write_reflect_data(world, 16, seed=0, keep_fraction=0.2, progress=False)
    run_reflect_grpo(config(tmp_path, world, tiny_shapeworld_policy_dir, phase="editor", reward="judge",
                            report_to="tensorboard"))
    out = tmp_path / "out"
    events = read_events(out)
    assert_finite_scalars(events, {"train/loss", "train/reward", "train/reward/judge", "train/reward/oracle",
                                   "train/clip_ratio/region", "train/loop/redrawn_tokens"})
    (strip,) = events.Images(STRIP_TAG)
    logged = np.asarray(Image.open(io.BytesIO(strip.encoded_image_string)).convert("RGB"))
    assert strip.step == 0 and np.array_equal(logged, strip_pixels(out / "gallery" / "step_000000.png"))


def test_sft_logs_train_and_eval_scalars(tmp_path_factory, tmp_path):
    from train.sft.trainer import run_sft

    world = make_world(tmp_path_factory.mktemp("sft_world"), train=8, val=2)
    run_sft(sft_config(tmp_path, world, max_steps=2, report_to="tensorboard", per_device_train_batch_size=4,
                       logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="no",
                       dataloader_pin_memory=False, disable_tqdm=True))
    events = read_events(tmp_path / "out")
    assert_finite_scalars(events, {"train/loss", "train/text_nll", "train/image_nll", "train/grad_norm",
                                   "train/learning_rate", "eval/loss", "eval/text_nll", "eval/image_nll"})
    assert [e.step for e in events.Scalars("train/text_nll")] == [1, 2]
    assert not events.Tags()["images"]  # SFT samples nothing: no gallery


def test_vq_logs_its_history_rows(tmp_path_factory, tmp_path):
    from tests.vq.test_vq import make_world as make_vq_world
    from tests.vq.test_vq import small_config
    from train.vq.trainer import train_vq

    world = make_vq_world(tmp_path_factory.mktemp("vq_world"), n_train=8, n_val=2)
    metrics = train_vq(small_config(world, tmp_path / "vq", steps=10, log_every=5, train_eval_images=4,
                                    report_to="tensorboard"))
    events = read_events(tmp_path / "vq")
    assert_finite_scalars(events, {"train/loss", "train/mse", "train/commit", "train/grad_norm", "train/alive"})
    assert [e.step for e in events.Scalars("train/loss")] == [row["step"] for row in metrics["history"]] == [5, 10]


def test_vq_refuses_an_unknown_report_to():
    from train.vq.config import VQTrainConfig

    with pytest.raises(ValueError, match="valid: none, tensorboard"):
        VQTrainConfig(report_to="wandb")


# --- the strip callback alone --------------------------------------------------------------------------------------
class FakeWriter:
    def __init__(self):
        self.images = []

    def add_image(self, tag, pixels, step, dataformats):
        self.images.append((tag, step, pixels.shape, dataformats))

    def flush(self):
        pass


class FakeState:
    is_world_process_zero = True


def write_strip(gallery: Path, step: int, width: int = 8) -> None:
    gallery.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, 4), (255, 0, 0)).save(gallery / f"step_{step:06d}.png")


def test_strips_are_logged_once_at_their_step_and_a_resumed_runs_old_ones_not_at_all(tmp_path):
    gallery = tmp_path / "gallery"
    write_strip(gallery, 0)  # an earlier run's, there before training begins
    board = type("Board", (), {"tb_writer": FakeWriter()})()
    strips = SampleStrips(board, gallery)
    strips.on_train_begin(None, FakeState(), None)
    write_strip(gallery, 10, width=12)
    (gallery / "notes.txt").write_text("not a strip")
    strips.on_step_end(None, FakeState(), None)
    strips.on_step_end(None, FakeState(), None)  # nothing new
    assert board.tb_writer.images == [(STRIP_TAG, 10, (4, 12, 3), "HWC")]


def test_track_adds_the_strip_callback_only_with_tensorboard():
    from transformers.integrations import TensorBoardCallback

    class Handler:
        def __init__(self, callbacks):
            self.callbacks = callbacks

    class Stub:
        def __init__(self, callbacks):
            self.callback_handler = Handler(callbacks)

        def add_callback(self, callback):
            self.callback_handler.callbacks.append(callback)

    plain = Stub([])
    assert track(plain, "gallery") is plain and plain.callback_handler.callbacks == []
    board = TensorBoardCallback()
    reporting = track(Stub([board]), "gallery")
    added = reporting.callback_handler.callbacks[-1]
    assert isinstance(added, SampleStrips) and added.board is board


def test_scalar_board_none_writes_nothing_and_the_env_moves_the_events(tmp_path, monkeypatch):
    board = ScalarBoard("none", tmp_path)
    board.log({"loss": 1.0}, 1)
    board.close()
    assert not (tmp_path / "runs").exists()
    assert tensorboard_dir(tmp_path).parent == tmp_path / "runs"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "elsewhere"))
    assert tensorboard_dir(tmp_path) == tmp_path / "elsewhere"
