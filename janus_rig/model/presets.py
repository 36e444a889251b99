"""Named model presets: architectures as `JanusConfig`s, chosen by name (`janus-rig init --preset NAME`).

A preset fixes the architecture only. Token ids that depend on the tokenizer (vocab size, `<image_placeholder>`)
are filled in by `janus_rig.model.init` from the tokenizer it is given.
"""

from __future__ import annotations

from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

from janus_rig.registry import Registry

PRESETS: Registry = Registry("model preset")


def list_presets() -> list[str]:
    return PRESETS.names()


def get_preset(name: str) -> JanusConfig:
    return PRESETS.get(name)()


# ---------------------------------------------------------------------------------------------------------------
# tiny: ShapeWorld scale. A 4-layer Llama (hidden 256) over 64 image tokens (64 px / 8 px patches) and a small VQ
# with 256 codes; trains on 2 CPU cores in minutes.
TINY_HIDDEN = 256
TINY_IMAGE_SIZE = 64
TINY_PATCH_SIZE = 8


def tiny_vq_config(image_size: int = TINY_IMAGE_SIZE, patch_size: int = TINY_PATCH_SIZE,
                   num_embeddings: int = 256) -> JanusVQVAEConfig:
    # The decoder upsamples by 2 ** (len(channel_multiplier) - 1), which must equal the patch size; GroupNorm(32)
    # needs base_channels * every multiplier to be a multiple of 32. Sized for `janus-rig vq train` on 2 CPU cores
    # (docs/vq.md): no res-blocks in the encoder (num_res_blocks 0 -> one per decoder level), 32 channels at the
    # full-resolution levels, where nearly all the compute goes; 64 at the token grid. With num_res_blocks 0 the
    # encoder never changes width, so every multiplier but the last must be 1.
    levels = patch_size.bit_length()  # 8 -> 4 levels -> 3 downsamplings
    if 2 ** (levels - 1) != patch_size:
        raise ValueError(f"tiny VQ needs a power-of-two patch size, got {patch_size}")
    return JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=num_embeddings,
        latent_channels=64,
        base_channels=32,
        channel_multiplier=[1] * (levels - 1) + [2],
        num_res_blocks=0,
        num_patches=image_size // patch_size,
        projection_dim=TINY_HIDDEN,
        image_token_embed_dim=TINY_HIDDEN,
        num_hidden_layers=2,
    )


@PRESETS.register("tiny")
def tiny(image_size: int = TINY_IMAGE_SIZE, patch_size: int = TINY_PATCH_SIZE) -> JanusConfig:
    num_tokens = (image_size // patch_size) ** 2
    text = LlamaConfig(
        vocab_size=512,  # widened to the tokenizer's size by init
        hidden_size=TINY_HIDDEN,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    vision = JanusVisionConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=TINY_HIDDEN,
        depth=2,
        num_image_tokens=num_tokens,
    )
    return JanusConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        vq_config=tiny_vq_config(image_size, patch_size).to_dict(),
        tie_word_embeddings=False,
    )


# ---------------------------------------------------------------------------------------------------------------
# Janus-Pro 1B / 7B: the published architectures of deepseek-community/Janus-Pro-1B and -7B (transformers format).
# Every value and its source is in docs/presets.md. 1B is confirmed end to end: built untied it has exactly the
# checkpoint's 2,076,636,811 parameters. The published config has no top-level tie_word_embeddings key and
# JanusConfig defaults it to True, so it is set False here: the checkpoints store a separate lm_head.
def _janus_pro(hidden: int, intermediate: int, layers: int, heads: int, image_token_id: int) -> JanusConfig:
    text = LlamaConfig(
        vocab_size=102400,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=16384,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        tie_word_embeddings=False,
    )
    vision = JanusVisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=384,
        patch_size=16,
        mlp_ratio=4.0,
        projection_dim=hidden,
        depth=2,
        num_image_tokens=576,
        use_qk_norm=False,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        attention_bias=True,
    )
    vq = JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=16384,
        latent_channels=256,
        base_channels=128,
        channel_multiplier=[1, 1, 2, 2, 4],
        num_res_blocks=2,
        num_patches=24,
        projection_dim=hidden,
        image_token_embed_dim=hidden,
        num_hidden_layers=2,
        double_latent=False,
    )
    return JanusConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        vq_config=vq.to_dict(),
        image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


@PRESETS.register("janus-pro-1b")
def janus_pro_1b() -> JanusConfig:
    return _janus_pro(hidden=2048, intermediate=5632, layers=24, heads=16, image_token_id=100581)


@PRESETS.register("janus-pro-7b")
def janus_pro_7b() -> JanusConfig:
    # image_token_id 100594 rests on two secondary sources (docs/presets.md); init takes it from the tokenizer.
    return _janus_pro(hidden=4096, intermediate=11008, layers=30, heads=32, image_token_id=100594)
