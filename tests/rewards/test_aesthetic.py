"""The aesthetic term on tiny random-init open_clip models saved in the documented local layout.

Needs the `clip` extra (`make test-clip`); skipped where open_clip (or its torchvision) does not import.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reward_models.aesthetic import import_open_clip

try:
    open_clip = import_open_clip()
except ImportError as err:
    pytest.skip(f"needs the clip extra (make test-clip): {err}", allow_module_level=True)

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from janus_rig.cli import main  # noqa: E402
from reward_models import REWARD_TERMS, RewardConfig, compute_rewards, make_judge  # noqa: E402
from reward_models.aesthetic import (  # noqa: E402
    CONFIG_FILE, HEAD_FILE, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, TINY_MODEL_CFG, AestheticScorer, build_open_clip,
    convert, make_tiny_model_dir,
)
from tests.rewards import World  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, open_clip's default
STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("head"), score="head", seed=1)


@pytest.fixture(scope="module")
def similarity_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("similarity"), score="similarity", seed=2, low=-1.0, high=1.0)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Noise pictures of different sizes and modes (square, wide, grey): preprocessing sees each case."""
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (96, 64), (40, 40), (32, 48), (50, 50)]
    out = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    out.append(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L"))
    return out


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(directory: Path, **changes) -> None:
    path = directory / CONFIG_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def plain_pixels(image: Image.Image, side: int = TINY_MODEL_CFG["vision_cfg"]["image_size"]) -> torch.Tensor:
    """By hand: shortest side -> `side` (bicubic), centre crop, [0, 1], normalise; (3, side, side)."""
    image = image.convert("RGB")
    w, h = image.size
    scale = side / min(w, h)
    w2, h2 = (side, int(h * scale)) if w <= h else (int(w * scale), side)
    image = image.resize((w2, h2), Image.BICUBIC)
    left, top = int(round((w2 - side) / 2)), int(round((h2 - side) / 2))
    pixels = np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.float32) / 255.0  # (H, W, 3)
    return (torch.from_numpy(pixels).permute(2, 0, 1) - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def plain_model(directory: Path):
    model = open_clip.CLIP(**json.loads((directory / OPEN_CLIP_CONFIG).read_text())["model_cfg"]).eval()
    model.load_state_dict(load_file(directory / OPEN_CLIP_WEIGHTS[0]))
    return model


def plain_image_embedding(model, images) -> torch.Tensor:
    with torch.no_grad():
        features = model.encode_image(torch.stack([plain_pixels(im) for im in images]))  # (B, D)
    return features / features.norm(dim=-1, keepdim=True)


def test_head_score_is_the_head_on_the_normalised_embedding_scaled_to_unit(head_dir, images):
    config = json.loads((head_dir / CONFIG_FILE).read_text())
    assert config["activation"] == "relu"
    head = load_file(head_dir / HEAD_FILE)
    emb = plain_image_embedding(plain_model(head_dir), images)  # (B, D)
    hidden = torch.relu(emb @ head["linear.0.weight"].T + head["linear.0.bias"])  # (B, 8)
    raw = (hidden @ head["linear.1.weight"].T + head["linear.1.bias"]).squeeze(-1)  # (B,)
    expected = ((raw - config["low"]) / (config["high"] - config["low"])).clamp(0, 1)
    got = AestheticScorer(head_dir)(images, ["unused"] * len(images))
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert len(set(round(v, 6) for v in got)) == len(images)  # the images are told apart


def test_similarity_score_is_the_image_prompt_cosine(similarity_dir, images):
    model = plain_model(similarity_dir)
    prompts = ["a red circle", "two blue squares", "a green triangle left of a circle", "x", "", "a grey picture"]
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=TINY_MODEL_CFG["text_cfg"]["context_length"])(prompts)
    with torch.no_grad():
        text = model.encode_text(tokens)  # (B, D)
    cosine = (plain_image_embedding(model, images) * (text / text.norm(dim=-1, keepdim=True))).sum(-1)  # (B,)
    scorer = AestheticScorer(similarity_dir)  # low -1, high 1
    assert scorer(images, prompts) == pytest.approx(((cosine + 1) / 2).tolist(), abs=1e-5)
    one_image = [images[0]] * 3
    assert len(set(round(v, 6) for v in scorer(one_image, prompts[:3]))) == 3  # the prompt matters


def test_one_value_in_unit_interval_per_image_deterministic_and_batched(head_dir, images):
    whole = AestheticScorer(head_dir, batch_size=32)(images, ["p"] * len(images))
    assert len(whole) == len(images) and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in whole)
    assert AestheticScorer(head_dir, batch_size=32)(images, ["p"] * len(images)) == whole  # a new load, same values
    in_pairs = AestheticScorer(head_dir, batch_size=2)(images, ["p"] * len(images))
    one_by_one = [AestheticScorer(head_dir, batch_size=1)([im], ["p"])[0] for im in images[:2]]
    assert in_pairs == pytest.approx(whole, abs=1e-6) and one_by_one == pytest.approx(whole[:2], abs=1e-6)
    assert AestheticScorer(head_dir)([], []) == []


def test_raw_scores_outside_low_high_clamp(head_dir, images, tmp_path):
    raw = AestheticScorer(head_dir).raw_scores(images, ["p"] * len(images))
    lo, hi = min(raw), max(raw)
    below, above = copy_dir(head_dir, tmp_path / "below"), copy_dir(head_dir, tmp_path / "above")
    edit_config(below, low=hi + 1, high=hi + 2)
    edit_config(above, low=lo - 2, high=lo - 1)
    assert AestheticScorer(below)(images, ["p"] * len(images)) == [0.0] * len(images)
    assert AestheticScorer(above)(images, ["p"] * len(images)) == [1.0] * len(images)


def test_nan_scores_and_empty_images_are_none_and_counted(head_dir, images, tmp_path):
    broken = copy_dir(head_dir, tmp_path / "nan_head")
    head = load_file(broken / HEAD_FILE)
    head["linear.1.bias"] = torch.full_like(head["linear.1.bias"], math.nan)
    save_file(head, broken / HEAD_FILE)
    scorer = AestheticScorer(broken)
    assert scorer(images[:3], ["p"] * 3) == [None, None, None]
    assert scorer.stats.snapshot()["failures/out_of_range"] == 3

    scorer = AestheticScorer(head_dir)
    values = scorer([images[0], Image.new("RGB", (0, 0)), images[1]], ["p"] * 3)
    assert values[1] is None and values[0] is not None and values[2] is not None
    assert scorer.stats.snapshot()["failures/bad_request"] == 1 and scorer.stats.snapshot()["requests"] == 3
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scorer(images[:2], ["p"])


@pytest.mark.parametrize("missing", [CONFIG_FILE, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS[0], HEAD_FILE])
def test_a_missing_file_is_named(head_dir, tmp_path, missing):
    directory = copy_dir(head_dir, tmp_path / "model")
    (directory / missing).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        AestheticScorer(directory)


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere not found.*never downloads"):
        AestheticScorer(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"score": "beauty"}, "'score' is 'beauty'; valid: head, similarity"),
        ({"low": 1.0, "high": 1.0}, "need high > low"),
        ({"high": "big"}, "'high' must be a finite number"),
        ({"activation": "tanh"}, "'activation' is 'tanh'"),
        ({"scale": 2}, r"unknown field\(s\) \['scale'\]"),
    ],
)
def test_bad_aesthetic_json_names_the_field(head_dir, tmp_path, changes, message):
    directory = copy_dir(head_dir, tmp_path / "model")
    edit_config(directory, **changes)
    with pytest.raises(ValueError, match=message):
        AestheticScorer(directory)


def test_weights_that_do_not_fit_are_reported(head_dir, tmp_path):
    wrong_head = copy_dir(head_dir, tmp_path / "wrong_head")
    save_file({"linear.0.weight": torch.zeros(1, 7), "linear.0.bias": torch.zeros(1)}, wrong_head / HEAD_FILE)
    with pytest.raises(ValueError, match="takes 7 inputs but gets 16"):
        AestheticScorer(wrong_head)
    wrong_clip = copy_dir(head_dir, tmp_path / "wrong_clip")
    config = json.loads((wrong_clip / OPEN_CLIP_CONFIG).read_text())
    config["model_cfg"]["vision_cfg"]["width"] = 48
    (wrong_clip / OPEN_CLIP_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit open_clip_config.json"):
        AestheticScorer(wrong_clip)
    hub_text = copy_dir(head_dir, tmp_path / "hub_text")
    config = json.loads((hub_text / OPEN_CLIP_CONFIG).read_text())
    config["model_cfg"]["text_cfg"]["hf_model_name"] = "some-org/some-text-model"
    (hub_text / OPEN_CLIP_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="would be downloaded"):
        AestheticScorer(hub_text)


def test_loading_and_scoring_never_touch_the_network(head_dir, similarity_dir, images, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the aesthetic term opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for directory in (head_dir, similarity_dir):
        assert len(AestheticScorer(directory)(images[:2], ["a", "b"])) == 2


def test_the_term_fits_the_interface_and_the_reward_config(head_dir, tmp_path):
    world = World(tmp_path / "world", n=4)
    images = list(world.images)
    images[2] = None  # no image: the term cannot be computed
    term = REWARD_TERMS.get("aesthetic")
    values = term(world.prompts, world.chains, images, world.metadata, make_judge("shapeworld"), model_dir=str(head_dir))
    assert len(values) == 4 and values[2] is None and all(0.0 <= values[i] <= 1.0 for i in (0, 1, 3))

    config = RewardConfig(terms=["R_PI", "aesthetic"], term_options={"aesthetic": {"model_dir": str(head_dir)}})
    result = compute_rewards(world.prompts, world.chains, images, world.metadata, make_judge("shapeworld"), config)
    assert [row["aesthetic"] for row in result.terms] == pytest.approx(values)
    for row, total in zip(result.terms, result.totals):
        assert total is None if row["aesthetic"] is None else total == pytest.approx(row["R_PI"] * row["aesthetic"])
    assert result.metrics["none/aesthetic"] == 1.0
    with pytest.raises(ValueError, match="model_dir"):
        RewardConfig(terms=["R_PI", "aesthetic"])


def test_reward_command_with_the_aesthetic_term(head_dir, tmp_path, capsys):
    world = World(tmp_path / "world", n=3)
    out = tmp_path / "rewards.jsonl"
    argv = ["reward", "--records", str(world.records_path), "--terms", "R_PI", "aesthetic",
            "--term-option", f"aesthetic.model_dir={head_dir}", "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(set(r["terms"]) == {"R_PI", "aesthetic"} for r in rows)
    assert all(0.0 <= r["terms"]["aesthetic"] <= 1.0 for r in rows)
    assert all(r["reward"] == pytest.approx(r["terms"]["R_PI"] * r["terms"]["aesthetic"]) for r in rows)


def test_convert_a_laion_style_checkpoint(tmp_path, images):
    """An architecture + weights file + a LAION-style predictor (Linear/Dropout stack) -> the same scores."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "janus-tiny-clip.json").write_text(json.dumps(TINY_MODEL_CFG))
    open_clip.add_model_config(tmp_path / "configs")
    torch.manual_seed(5)
    model, _ = build_open_clip("janus-tiny-clip")
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    dim = TINY_MODEL_CFG["embed_dim"]
    predictor = torch.nn.Sequential(  # LAION's improved aesthetic predictor, in small
        torch.nn.Linear(dim, 12), torch.nn.Dropout(0.2), torch.nn.Linear(12, 4), torch.nn.Dropout(0.1),
        torch.nn.Linear(4, 1),
    ).eval()
    torch.save(predictor.state_dict(), tmp_path / "predictor.pth")  # 0.weight, 0.bias, 2.weight, ..., 4.bias

    out = convert(tmp_path / "converted", score="head", low=-1.0, high=1.0, arch="janus-tiny-clip",
                  clip_weights=tmp_path / "clip.pt", head_checkpoint=tmp_path / "predictor.pth")
    with torch.no_grad():
        raw = predictor(plain_image_embedding(model, images)).squeeze(-1)  # (B,)
    assert AestheticScorer(out)(images, ["p"] * len(images)) == pytest.approx(((raw + 1) / 2).clamp(0, 1).tolist(), abs=1e-5)

    snapshot = tmp_path / "snapshot"  # open_clip files already there (a hub snapshot): only aesthetic.json is added
    snapshot.mkdir()
    for name in (OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS[0]):
        shutil.copy(out / name, snapshot / name)
    convert(snapshot, score="similarity", low=-1.0, high=1.0)
    assert json.loads((snapshot / CONFIG_FILE).read_text())["score"] == "similarity"
    assert len(AestheticScorer(snapshot)(images[:2], ["a", "b"])) == 2

    with pytest.raises(ValueError, match="needs a head checkpoint"):
        convert(tmp_path / "x", score="head", low=0.0, high=1.0, arch="janus-tiny-clip", clip_weights=tmp_path / "clip.pt")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        convert(tmp_path / "x", score="similarity", low=0.0, high=1.0, arch="janus-tiny-clip", clip_weights=tmp_path / "no.pt")


def test_the_script_writes_a_directory_the_term_loads(tmp_path, capsys):
    path = Path(__file__).resolve().parents[2] / "scripts" / "make_aesthetic_model.py"
    spec = importlib.util.spec_from_file_location("make_aesthetic_model", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["tiny", str(tmp_path / "tiny"), "--score", "similarity"]) == 0
    assert len(AestheticScorer(tmp_path / "tiny")(images_of(2), ["a", "b"])) == 2
    assert script.main(["convert", str(tmp_path / "y"), "--score", "head", "--head", str(tmp_path / "none.pth"),
                        "--low", "1", "--high", "10"]) == 1
    assert "head checkpoint" in capsys.readouterr().err


def images_of(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), (40 * i, 90, 200 - 40 * i)) for i in range(n)]
