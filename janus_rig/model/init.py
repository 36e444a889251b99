"""Create a random-init policy directory from a preset (`janus-rig init`).

The directory holds weights, config, tokenizer, image processor and a generation config, so that plain
`JanusForConditionalGeneration.from_pretrained(DIR).generate(..., generation_mode="image")` works out of the box.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, JanusForConditionalGeneration, JanusVQVAE

from janus_rig.model.policy import (
    DEFAULT_GUIDANCE,
    JanusPolicy,
    make_generation_config,
    make_image_processor,
    manifest,
    require_dir,
    resolve_dtype,
)
from janus_rig.model.loading import strict_from_pretrained
from janus_rig.model.presets import PRESETS
from janus_rig.model.tokenizer import add_chain_tokens, add_role_tokens
from janus_rig.model.tokens import SpecialTokenIds

log = logging.getLogger(__name__)


def _vq_geometry(vq: JanusVQVAE) -> tuple[int, int]:
    """(image_size, patch_size) a trained VQ implies: it downsamples by 2 ** (levels - 1)."""
    patch = 2 ** (len(vq.config.channel_multiplier) - 1)
    return vq.config.num_patches * patch, patch


def init_policy(
    preset: str,
    out_dir: str | Path | None = None,
    tokenizer: str | Path | object | None = None,
    vq_dir: str | Path | None = None,
    dtype: str = "float32",
    seed: int = 0,
    guidance_scale: float = DEFAULT_GUIDANCE,
) -> JanusPolicy:
    """Build (and save, when out_dir is given) a random-init policy; a trained VQ may be plugged in.

    `tokenizer` is a directory or a tokenizer object (the tiny preset's own is the ShapeWorld word tokenizer,
    `data_prep.shapeworld.tokenizer.shapeworld_tokenizer()`, which `janus-rig init` and `sft` use by default).
    """
    build = PRESETS.get(preset)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = AutoTokenizer.from_pretrained(require_dir(tokenizer, "tokenizer"))
        add_chain_tokens(tokenizer)
        add_role_tokens(tokenizer)
    elif tokenizer is not None:
        add_chain_tokens(tokenizer)
        add_role_tokens(tokenizer)
    else:
        raise ValueError("init_policy needs a tokenizer: a directory or a tokenizer object")
    tokens = SpecialTokenIds.from_tokenizer(tokenizer)

    vq = None
    if vq_dir is not None:
        vq = strict_from_pretrained(JanusVQVAE, vq_dir, "VQ")
        image_size, patch_size = _vq_geometry(vq)
        if preset != "tiny":
            raise ValueError("--vq plugs a trained ShapeWorld VQ into the tiny preset; other presets use their own")
        config = build(image_size=image_size, patch_size=patch_size)
    else:
        config = build()

    config.text_config.vocab_size = max(config.text_config.vocab_size, len(tokenizer))
    config.image_token_id = tokens.image
    text = config.text_config
    text.bos_token_id, text.eos_token_id, text.pad_token_id = tokens.bos, tokens.eos, tokens.pad
    if vq is not None:
        hidden = config.text_config.hidden_size
        if vq.config.projection_dim != hidden or vq.config.image_token_embed_dim != hidden:
            raise ValueError(
                f"VQ in {vq_dir} projects to {vq.config.projection_dim} but the {preset} language model is {hidden} wide"
            )
        config.vq_config = vq.config

    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    if vq is not None:
        model.model.vqmodel.load_state_dict(vq.state_dict())
    model.to(resolve_dtype(dtype))
    model.generation_config = make_generation_config(tokens, config.vision_config.num_image_tokens, guidance_scale)
    policy = JanusPolicy(model, tokenizer, make_image_processor(config.vision_config.image_size))
    if out_dir is not None:
        policy.save(out_dir, manifest(preset=preset, seed=seed, vq=str(vq_dir) if vq_dir else None, dtype=dtype))
    return policy
