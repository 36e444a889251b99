"""Presets: the 1B/7B configs instantiate on the meta device with the published shapes; unknown names are named."""

from __future__ import annotations

import pytest
import torch
from transformers import JanusForConditionalGeneration

from janus_rig.model.presets import get_preset, list_presets


def meta_model(name: str) -> JanusForConditionalGeneration:
    with torch.device("meta"):
        return JanusForConditionalGeneration(get_preset(name))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_and_rejects():
    assert {"tiny", "janus-pro-1b", "janus-pro-7b"} <= set(list_presets())
    with pytest.raises(KeyError, match="valid names: janus-pro-1b, janus-pro-7b, tiny"):
        get_preset("janus-pro-3b")


def test_janus_pro_1b_published_shapes():
    model = meta_model("janus-pro-1b")
    # The checkpoint's safetensors parameter count (docs/presets.md): only an untied lm_head reaches it.
    assert n_params(model) == 2_076_636_811
    assert model.lm_head.weight is not model.get_input_embeddings().weight
    assert model.lm_head.weight.shape == (102400, 2048)
    assert model.model.language_model.layers[0].mlp.gate_proj.weight.shape == (5632, 2048)
    assert len(model.model.language_model.layers) == 24
    assert model.model.generation_head.vision_head.weight.shape == (16384, 2048)
    assert model.model.generation_embeddings.weight.shape == (16384, 8)
    assert model.model.vqmodel.quantize.embedding.weight.shape == (16384, 8)
    assert model.config.vision_config.num_image_tokens == 576 == (384 // 16) ** 2
    assert model.config.vq_config.num_patches == 24
    assert not model.config.tie_word_embeddings


def test_janus_pro_7b_published_shapes():
    model = meta_model("janus-pro-7b")
    assert model.lm_head.weight.shape == (102400, 4096)
    assert len(model.model.language_model.layers) == 30
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.shape == (4096, 4096)
    assert model.model.language_model.layers[0].mlp.up_proj.weight.shape == (11008, 4096)
    assert model.model.generation_head.vision_head.weight.shape == (16384, 4096)
    assert model.model.aligner.fc1.weight.shape[0] == 4096  # vision features projected to the LM width
    assert 7.3e9 < n_params(model) < 7.5e9


@pytest.mark.parametrize("image_size,patch", [(64, 8), (32, 4)])
def test_tiny_geometry(image_size, patch):
    from janus_rig.model.presets import tiny

    config = tiny(image_size=image_size, patch_size=patch)
    model = JanusForConditionalGeneration(config)
    codes = torch.randint(0, config.vq_config.num_embeddings, (1, config.vision_config.num_image_tokens))
    assert model.decode_image_tokens(codes).shape == (1, image_size, image_size, 3)
    assert config.vision_config.num_image_tokens == 64
