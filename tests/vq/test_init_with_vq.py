"""`janus-rig init --preset tiny --vq DIR --tokenizer DIR` builds the tiny policy around a trained VQ."""

from __future__ import annotations

import torch
from transformers import JanusForConditionalGeneration, JanusVQVAE

from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
from janus_rig.cli import main as cli
from tests.vq.test_vq import make_world


def test_init_around_a_trained_vq(tmp_path):
    world = make_world(tmp_path / "world", size=32)
    assert cli(["vq", "train", "--world", str(world), "--out", str(tmp_path / "vq"), "--steps", "3", "--warmup-steps", "1",
                "--batch-size", "4", "--kmeans-vectors", "256", "--kmeans-iters", "1", "--time-budget-s", "0"]) == 0
    shapeworld_tokenizer().save_pretrained(tmp_path / "tok")
    out = tmp_path / "policy"
    assert cli(["init", "--preset", "tiny", "--vq", str(tmp_path / "vq"), "--tokenizer", str(tmp_path / "tok"),
                "--out", str(out)]) == 0

    model = JanusForConditionalGeneration.from_pretrained(out)
    vq = JanusVQVAE.from_pretrained(tmp_path / "vq")
    # The geometry comes from the VQ: a 32 px world with 8x8 tokens -> 4 px patches.
    assert model.config.vision_config.image_size == 32 and model.config.vision_config.patch_size == 4
    assert model.config.vision_config.num_image_tokens == 64
    for name, tensor in vq.state_dict().items():
        torch.testing.assert_close(model.model.vqmodel.state_dict()[name], tensor)
    codes = torch.randint(0, vq.config.num_embeddings, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(model.decode_image_tokens(codes), vq.decode(codes).permute(0, 2, 3, 1))
