"""`janus-rig vq train`: the training forward equals transformers' encode/decode, the quantizer math, a smoke run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import JanusVQVAE

from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import COLORS, MAX_SIDE, MIN_SIDE, SHAPES, Scene, SceneObject
from janus_rig.cli import main
from train.vq.config import VQTrainConfig
from train.vq.quantize import (
    consistency_loss,
    duplicate_codes,
    ema_update,
    quantize,
    restart_dead_codes,
    same_content_codes,
)
from janus_rig.model.pixels import to_uint8, to_unit_range
from train.vq.trainer import VQTrainer, build_vq, load_world, token_entropy, train_vq, vq_forward

SIZE = 32  # tests run the 32 px / 4 px-patch geometry: same 8x8 tokens as the default, a quarter of the pixels


def random_scene(rng: random.Random, size: int) -> Scene:
    """1-4 non-overlapping objects, sides MIN_SIDE..MAX_SIDE of the canvas, any colour and shape."""
    objects: list[SceneObject] = []
    for _ in range(100):
        if len(objects) == rng.randint(1, 4):
            break
        side = rng.randint(round(MIN_SIDE * size), round(MAX_SIDE * size))
        x, y = rng.randint(0, size - side), rng.randint(0, size - side)
        box = (x, y, x + side, y + side)
        if all(box[2] < o.box[0] or o.box[2] < box[0] or box[3] < o.box[1] or o.box[3] < box[1] for o in objects):
            objects.append(SceneObject(rng.choice(SHAPES), rng.choice(list(COLORS)), box))
    return Scene(size, tuple(objects))


def make_world(root: Path, n_train: int = 24, n_val: int = 5, size: int = SIZE, seed: int = 0) -> Path:
    """A throwaway world in the world writer's layout (world.json, {train,val}.jsonl, images/)."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    (root / "world.json").write_text(json.dumps({"size": size}))
    for split, n in (("train", n_train), ("val", n_val)):
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(n):
                scene = random_scene(rng, size)
                image = f"images/{split}-{i:06d}.png"
                render(scene).save(root / image)
                include = [{"class": o.shape, "count": 1, "color": o.color} for o in scene.objects[:1]]
                metadata = {"tag": "colors", "include": include, "prompt": f"a photo of a {scene.objects[0].name}"}
                record = {"id": f"{split}-{i:06d}", "tag": "colors", "prompt": metadata["prompt"], "chain": "",
                          "image": image, "metadata": metadata, "scene": scene.to_json()}
                f.write(json.dumps(record) + "\n")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("world"))


def small_config(world: Path, out: Path, **overrides) -> VQTrainConfig:
    values = dict(world=str(world), out=str(out), steps=20, batch_size=4, warmup_steps=2, dead_code_interval=5,
                  log_every=5, eval_batch_size=8, time_budget_s=0, seed=0, kmeans_vectors=512, kmeans_iters=2)
    values.update(overrides)
    return VQTrainConfig(**values)


def unit_codebook(vq: JanusVQVAE) -> JanusVQVAE:
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(F.normalize(vq.quantize.embedding.weight, dim=1))
    return vq


def assert_matches_transformers(vq: JanusVQVAE, pixels: torch.Tensor) -> None:
    """Training-time tokens == encode's tokens, and the training reconstruction == decode of those tokens."""
    with torch.no_grad():
        recon, q = vq_forward(vq, pixels)
        tokens = vq.encode(pixels).image_tokens  # (B*h*w,)
        assert torch.equal(q.indices, tokens)
        decoded = vq.decode(tokens.view(len(pixels), -1))  # (B, 3, H, W)
    torch.testing.assert_close(recon, decoded, atol=1e-5, rtol=1e-5)


# --- the forward against transformers -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_forward_matches_encode_and_decode(size):
    torch.manual_seed(0)
    vq = unit_codebook(build_vq(size, 8)).eval()
    pixels = torch.rand(3, 3, size, size) * 2 - 1
    assert_matches_transformers(vq, pixels)


def test_forward_matches_after_training_steps(world, tmp_path):
    trainer = VQTrainer(small_config(world, tmp_path, dead_code_interval=2), load_world(world))
    trainer.init_codebook()
    for _ in range(4):  # crosses two dead-code restarts
        trainer.train_step()
    assert torch.allclose(trainer.codebook.norm(dim=1), torch.ones(len(trainer.codebook)), atol=1e-5)
    assert_matches_transformers(trainer.vq.eval(), to_unit_range(trainer.world.val))


@pytest.mark.parametrize("update", ["ema", "grad"])
def test_straight_through_gradient_reaches_encoder(world, tmp_path, update):
    trainer = VQTrainer(small_config(world, tmp_path, codebook_update=update), load_world(world))
    recon, q = vq_forward(trainer.vq, trainer.next_batch())
    (recon.square().mean() + q.commitment + q.codebook).backward()
    grads = [p.grad for p in trainer.vq.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert trainer.vq.encoder.conv_in.weight.grad.abs().sum() > 0
    assert trainer.vq.quant_conv.weight.grad.abs().sum() > 0
    codebook_grad = trainer.codebook.grad
    assert (codebook_grad is not None and codebook_grad.abs().sum() > 0) == (update == "grad")


# --- quantizer math against plain loops -------------------------------------------------------------------------
def test_quantize_picks_the_most_cosine_similar_code():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3)  # (B, D, h, w)
    codebook = torch.randn(10, 4) * 3  # unnormalised on purpose: the quantizer compares directions
    q = quantize(z, codebook)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    expected = [max(range(10), key=lambda k: F.cosine_similarity(r, codebook[k], dim=0).item()) for r in rows]
    assert q.indices.tolist() == expected
    torch.testing.assert_close(q.z_q.permute(0, 2, 3, 1).reshape(-1, 4), F.normalize(codebook[q.indices], dim=1))


def test_ema_update_matches_a_loop():
    torch.manual_seed(0)
    ema_sum, z_n = torch.randn(5, 3), F.normalize(torch.randn(12, 3), dim=1)
    indices = torch.tensor([0, 0, 1, 3, 3, 3, 0, 1, 1, 3, 0, 0])  # codes 2 and 4 unused
    expected = ema_sum.clone()
    for k in range(5):
        members = z_n[indices == k]
        if len(members):
            expected[k] = 0.9 * ema_sum[k] + 0.1 * members.sum(0)
    codebook = ema_update(ema_sum, z_n, indices, 0.9)
    torch.testing.assert_close(ema_sum, expected)
    torch.testing.assert_close(codebook, F.normalize(expected, dim=1))


def test_dead_code_restart_replaces_only_unused_codes():
    torch.manual_seed(0)
    codebook = F.normalize(torch.randn(6, 4), dim=1)
    before = codebook.clone()
    usage = torch.tensor([3.0, 0.0, 1.0, 0.0, 0.0, 7.0])
    recent = F.normalize(torch.randn(20, 4), dim=1)
    dead = restart_dead_codes(codebook, usage, recent, torch.Generator().manual_seed(0), noise=0.0)
    assert dead.tolist() == [1, 3, 4]
    assert torch.equal(codebook[[0, 2, 5]], before[[0, 2, 5]])
    for k in dead.tolist():  # each restarted code is one of the recent encoder outputs
        assert torch.allclose((recent @ codebook[k]).max(), torch.tensor(1.0), atol=1e-6)
    assert restart_dead_codes(codebook, torch.ones(6), recent, torch.Generator()).numel() == 0


def test_dead_codes_are_restarted_during_training(world, tmp_path):
    trainer = VQTrainer(small_config(world, tmp_path, dead_code_interval=1), load_world(world))
    trainer.init_codebook()
    with torch.no_grad():  # collapse the codebook so that nearly every code is dead
        trainer.codebook.copy_(trainer.codebook[:1].expand_as(trainer.codebook))
        trainer.ema_sum.copy_(trainer.codebook)
    trainer.train_step()
    assert trainer.alive < 10  # measured before the restart
    assert trainer.codebook.unique(dim=0).shape[0] > 100  # the dead ones were re-seeded apart


# --- the training run -----------------------------------------------------------------------------------------
def test_training_run_writes_the_vq_metrics_and_reconstructions(world, tmp_path):
    out = tmp_path / "vq"
    metrics = train_vq(small_config(world, out))
    assert metrics["steps"] == 20 and metrics["history"] and metrics["history"][-1]["step"] == 20
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("steps", "train_time_s", "wall_time_s", "train_mse", "val_mse", "codes_used_val", "codes_alive",
                "same_verdict", "same_objects", "token_entropy_nats", "token_entropy_per_position_nats"):
        assert key in saved
    val_ids = [json.loads(line)["id"] for line in (world / "val.jsonl").read_text().splitlines()]
    assert sorted(p.stem for p in (out / "recon").glob("*.png")) == sorted(val_ids)

    vq = JanusVQVAE.from_pretrained(out)
    torch.manual_seed(0)
    fresh = build_vq(SIZE, 8)
    assert not torch.equal(vq.decoder.conv_out.weight, fresh.decoder.conv_out.weight)  # it trained
    # the saved model's own encode/decode reproduces the written reconstructions
    originals = load_world(world).val
    with torch.no_grad():
        tokens = vq.encode(to_unit_range(originals)).image_tokens.view(len(originals), -1)
        recon = to_uint8(vq.decode(tokens))
    for vid, image in zip(val_ids, recon):
        written = torch.from_numpy(np.array(Image.open(out / "recon" / f"{vid}.png")))
        assert torch.equal(written.permute(2, 0, 1), image)


def test_cli_runs_and_is_deterministic(world, tmp_path):
    args = ["vq", "train", "--world", str(world), "--steps", "6", "--batch-size", "4", "--warmup-steps", "1",
            "--dead-code-interval", "3", "--time-budget-s", "0", "--seed", "3", "--kmeans-vectors", "512"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = JanusVQVAE.from_pretrained(tmp_path / "a").state_dict()
    b = JanusVQVAE.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_codebook_size_sets_the_vq_and_the_policy_image_vocabulary(world, tmp_path):
    out = tmp_path / "vq"
    # with every codebook-hygiene option on (consistency pull, duplicate and same-content restarts by error)
    metrics = train_vq(small_config(world, out, codebook_size=32, consistency_weight=1.0, dedup_threshold=0.98,
                                    content_dedup_purity=0.9, restart_by_error=True))
    assert "consistency" in metrics["history"][-1]
    vq = JanusVQVAE.from_pretrained(out)
    assert vq.quantize.embedding.weight.shape[0] == 32
    assert main(["init", "--preset", "tiny", "--vq", str(out), "--out", str(tmp_path / "policy")]) == 0
    from janus_rig.model.policy import JanusPolicy

    model = JanusPolicy.load(tmp_path / "policy").model
    assert model.model.generation_embeddings.num_embeddings == 32
    assert model.model.generation_head.vision_head.out_features == 32


def test_consistency_loss_pulls_only_identical_patches_together():
    # one image, 2x2 patches of 2x2 px: patches 0 and 3 black, patch 1 red, patch 2 black too -> groups {0,2,3}, {1}
    pixels = -torch.ones(1, 3, 4, 4)
    pixels[0, 0, 0:2, 2:4] = 1.0  # top-right patch red
    z = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    black = z[[0, 2, 3]]
    expected = (black - black.mean(0)).pow(2).sum(1).sum() / 4  # the red patch is alone: distance 0
    assert consistency_loss(z, pixels, patch=2).item() == pytest.approx(expected.item(), rel=1e-5)
    same = z.clone()
    same[[2, 3]] = same[0].clone()
    assert consistency_loss(same, pixels, patch=2).item() == pytest.approx(0.0, abs=1e-7)
    # a different pixel value makes a patch its own group
    pixels[0, 1, 2, 0] = 0.5
    alone = (z[[0, 3]] - z[[0, 3]].mean(0)).pow(2).sum(1).sum() / 4
    assert consistency_loss(z, pixels, patch=2).item() == pytest.approx(alone.item(), rel=1e-5)


def test_same_content_codes_keeps_the_most_used_of_codes_holding_one_content():
    # codes 0 and 1 both hold only content 5 (0 more often); code 2 is mixed; code 3 holds content 2 alone
    indices = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    groups = torch.tensor([5, 5, 5, 5, 5, 5, 5, 1, 2])
    duplicates, owned = same_content_codes(indices, groups, num_codes=4, purity=0.9)
    assert duplicates.tolist() == [1] and owned.tolist() == [2, 5]
    # with a lax purity code 2 (2/3 content 5) joins the duplicates of content 5
    assert same_content_codes(indices, groups, num_codes=4, purity=0.6)[0].tolist() == [1, 2]
    assert same_content_codes(torch.tensor([0, 1]), torch.tensor([0, 1]), 2, 0.9)[0].numel() == 0


def test_duplicate_codes_marks_the_later_of_near_identical_codes():
    codebook = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0.01, 0], [0, 0, 1]]), dim=1)
    assert duplicate_codes(codebook, 0.99).tolist() == [2]


def test_error_weighted_restarts_draw_only_where_weights_are_positive():
    codebook = F.normalize(torch.randn(4, 3), dim=1)
    recent = F.normalize(torch.randn(10, 3), dim=1)
    weights = torch.zeros(10)
    weights[7] = 1.0  # only output 7 is badly quantised
    dead = restart_dead_codes(codebook, torch.tensor([1.0, 0, 0, 1]), recent, torch.Generator().manual_seed(0),
                              noise=0.0, weights=weights)
    assert dead.tolist() == [1, 2]
    assert torch.allclose(codebook[1], recent[7]) and torch.allclose(codebook[2], recent[7])


def test_token_entropy_counts_codes_overall_and_per_position():
    # position 0 always code 3, position 1 codes 0/1 half and half: per-position entropies 0 and ln 2
    tokens = torch.tensor([[3, 0], [3, 1], [3, 0], [3, 1]])
    got = token_entropy(tokens, num_codes=4)
    assert got["token_entropy_per_position_nats"] == pytest.approx(np.log(2) / 2, abs=1e-3)
    overall = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))  # code 3: 1/2, codes 0 and 1: 1/4 each
    assert got["token_entropy_nats"] == pytest.approx(overall, abs=1e-3)
    assert got["top_code_share"] == 0.5


# --- bad input ------------------------------------------------------------------------------------------------------
def test_missing_world_dir_names_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["vq", "train", "--world", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_val_record_with_missing_image_names_the_record(tmp_path, capsys):
    root = make_world(tmp_path / "w", n_train=4, n_val=2)
    (root / "images" / "val-000001.png").unlink()
    assert main(["vq", "train", "--world", str(root), "--out", str(tmp_path / "out"), "--steps", "2",
                 "--warmup-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "val-000001" in err and "not found" in err


def test_bad_config_fails_with_a_fix_it_message():
    with pytest.raises(ValueError, match="codebook_update"):
        VQTrainConfig(codebook_update="kmeans")
    with pytest.raises(ValueError, match="multiple of grid"):
        VQTrainConfig(image_size=60)
