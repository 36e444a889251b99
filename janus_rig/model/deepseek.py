"""deepseek-ai's release layout of Janus / Janus-Pro (and GoT-R1, built on it) -> transformers' Janus: pure rules.

deepseek's directories hold a `MultiModalityCausalLM` (`config.json`: `"model_type": "multi_modality"`, with
`language_config`, `vision_config`, `aligner_config`, `gen_vision_config`, `gen_aligner_config`, `gen_head_config`)
whose weights are named after its own modules:

    language_model.model.layers.3.self_attn.q_proj.weight     -> model.language_model.layers.3.self_attn.q_proj.weight
    vision_model.vision_tower.blocks.0.attn.qkv.weight (3D, D) -> model.vision_model.encoder.layers.0.self_attn.{q,k,v}_proj.weight
    gen_vision_model.encoder.conv_blocks.1.res.0.conv1.weight  -> model.vqmodel.encoder.down.1.block.0.conv1.weight

`target_keys` maps one source key (every key is mapped or dropped for a stated reason; an unknown key is an error,
never passed through), `convert_tensor` also splits SigLIP's merged qkv projection and squeezes its position
embedding, and `janus_config` builds the transformers `JanusConfig`. The published architectures are named in the
config (`siglip_large_patch16_384`, `VQ-16`) rather than spelled out; `NAMED_VISION` / `NAMED_VQ` hold their
fields (the values of Janus-Pro, docs/presets.md), and a config may spell any field out itself with deepseek's
argument names (`width`, `layers`, `heads`, `patch_size`, `mlp_ratio`; `ch`, `encoder_ch_mult`, `z_channels`,
`num_res_blocks`). Orchestration (files, shards, tokenizer) is `janus_rig.model.convert`.
"""

from __future__ import annotations

import re

import torch
from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

DEEPSEEK_MODEL_TYPE = "multi_modality"

# SigLIP towers deepseek's `create_siglip_vit` builds by name (Janus, Janus-Pro and GoT-R1 use the large one).
NAMED_VISION = {
    "siglip_large_patch16_384": {"width": 1024, "layers": 24, "heads": 16, "patch_size": 16, "mlp_ratio": 4.0},
}
# llamagen VQ models deepseek's `VQ_models` builds by class name.
NAMED_VQ = {
    "VQ-16": {"ch": 128, "encoder_ch_mult": [1, 1, 2, 2, 4], "z_channels": 256, "num_res_blocks": 2},
}

# --- keys ----------------------------------------------------------------------------------------------------
# Dropped source keys and why. Each pattern is matched against the whole key.
DROPPED = (
    (re.compile(r"vision_model\.vision_tower\.attn_pool\..+"),
     "SigLIP's attention-pooling head: Janus reads the patch features (select_layer -1), and transformers' "
     "JanusVisionModel has no pooling head"),
    (re.compile(r"gen_vision_model\.quantize\.codebook_used"),
     "the VQ's codebook-usage counter, kept while training the tokenizer; not a weight"),
)

# Renames inside a component, applied in order to the part of the key after the component's prefix.
_VISION = (
    (r"^pos_embed$", "embeddings.position_embedding.weight"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection_layer."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),  # split by convert_tensor
    (r"^blocks\.(\d+)\.norm([12])\.", r"encoder.layers.\1.layer_norm\2."),
    (r"^blocks\.(\d+)\.mlp\.(fc[12])\.", r"encoder.layers.\1.mlp.\2."),
    (r"^norm\.", "post_layernorm."),
)
_VQ = (  # applied one after another to "." + the key's rest
    (r"^\.encoder\.conv_blocks\.", ".encoder.down."),
    (r"^\.decoder\.conv_blocks\.", ".decoder.up."),
    (r"\.res\.", ".block."),
    (r"\.mid\.0\.", ".mid.block_1."),
    (r"\.mid\.1\.", ".mid.attn_1."),
    (r"\.mid\.2\.", ".mid.block_2."),
)
_GEN_HEAD = ((r"^output_mlp_projector\.", "proj_out."), (r"^vision_head\.", "vision_head."))

# (source prefix, target prefix, how the rest is renamed). Order matters: "gen_aligner." before "aligner.".
#   prefix  the rest is kept as it is (the language model is a stock Llama on both sides)
#   first   the first rule that matches renames the rest; no rule matching means an unknown key
#   all     every rule is applied in turn (the VQ's nested renames)
#   mlp     deepseek's MlpProjector, nn.Sequential(Linear, GELU, Linear, ...): Linear i at index 2 i
COMPONENTS = (
    ("language_model.model.", "model.language_model.", "prefix", ()),
    ("language_model.lm_head.", "lm_head.", "prefix", ()),
    ("vision_model.vision_tower.", "model.vision_model.", "first", _VISION),
    ("gen_vision_model.", "model.vqmodel.", "all", _VQ),
    ("gen_aligner.layers.", "model.generation_aligner.", "mlp", ()),
    ("aligner.layers.", "model.aligner.", "mlp", ()),
    ("gen_head.", "model.generation_head.", "first", _GEN_HEAD),
    ("gen_embed.", "model.generation_embeddings.", "prefix", ()),
)


def dropped_reason(key: str) -> str | None:
    """Why a source key is dropped, or None when it is kept."""
    for pattern, reason in DROPPED:
        if pattern.fullmatch(key):
            return reason
    return None


def _mlp_layer(rest: str) -> str | None:
    # deepseek's MlpProjector is nn.Sequential(Linear, GELU, Linear, GELU, ...): Linear i sits at index 2 i.
    match = re.fullmatch(r"(\d+)\.(weight|bias)", rest)
    if not match or int(match[1]) % 2:
        return None
    index = int(match[1]) // 2
    return f"fc1.{match[2]}" if index == 0 else f"hidden_layers.{index - 1}.{match[2]}"


def target_key(key: str) -> str | None:
    """The transformers key of a kept source key (qkv keys keep their `qkv` part: `convert_tensor` splits them);
    None when no rule knows the key."""
    for source, target, mode, renames in COMPONENTS:
        if not key.startswith(source):
            continue
        rest = key[len(source):]
        if mode == "prefix":
            return target + rest
        if mode == "mlp":
            mapped = _mlp_layer(rest)
            return None if mapped is None else target + mapped
        if mode == "all":
            rest = "." + rest
            for pattern, repl in renames:
                rest = re.sub(pattern, repl, rest)
            return target + rest[1:]
        for pattern, repl in renames:
            if re.search(pattern, rest):
                return target + re.sub(pattern, repl, rest, count=1)
        return None
    return None


def convert_tensor(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One kept source tensor -> its transformers tensors: qkv split in three along the output dimension, the
    vision position embedding's batch dimension (1, N, D) squeezed to (N, D). KeyError for an unknown key."""
    target = target_key(key)
    if target is None:
        raise KeyError(key)
    if ".self_attn.qkv." in target:
        if tensor.shape[0] % 3:
            raise ValueError(f"{key}: a merged qkv of {tensor.shape[0]} rows does not split in three")
        q, k, v = tensor.chunk(3, dim=0)  # each (D, ...) of (3 D, ...)
        return {target.replace(".qkv.", f".{name}."): part.contiguous() for name, part in
                zip(("q_proj", "k_proj", "v_proj"), (q, k, v))}
    if target.endswith("embeddings.position_embedding.weight") and tensor.dim() == 3:
        if tensor.shape[0] != 1:
            raise ValueError(f"{key}: position embedding of shape {tuple(tensor.shape)}, expected (1, N, D)")
        tensor = tensor[0]  # (N, D)
    return {target: tensor}


# --- config --------------------------------------------------------------------------------------------------
_LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
                 "rope_theta", "rope_scaling", "attention_bias", "mlp_bias")


def _section(config: dict, name: str, params: bool = True) -> dict:
    section = config.get(name)
    if not isinstance(section, dict):
        raise ValueError(f"config.json: no {name!r} object")
    if not params:
        return section
    values = section.get("params", {})
    if not isinstance(values, dict):
        raise ValueError(f"config.json: {name}.params is not an object")
    return values


def _named(table: dict, name, overrides: dict, fields: tuple[str, ...], where: str) -> dict:
    """A named architecture's fields, overridden by those the config spells out; ValueError when neither has one."""
    values = dict(table.get(name, {}))
    values.update({k: overrides[k] for k in fields if k in overrides})
    missing = [k for k in fields if k not in values]
    if missing:
        raise ValueError(f"config.json: {where} {name!r} is not an architecture janus-rig knows "
                         f"({', '.join(table)}); spell out {', '.join(missing)} in {where.split('.')[0]}.params")
    return values


def janus_config(config: dict, vocab_size: int, image_token_id: int, bos: int, eos: int, pad: int) -> JanusConfig:
    """The transformers JanusConfig of a deepseek `config.json` (a dict). `vocab_size` is the embedding's row
    count (the weights' truth; GoT-R1 may have grown it), the token ids come from the tokenizer.

    Example section (Janus-Pro-1B): `"gen_head_config": {"cls": "vision_head", "params": {"image_token_embed": 2048,
    "image_token_size": 16384, "n_embed": 2048}}`.
    """
    language = _section(config, "language_config", params=False)
    text = LlamaConfig(**{k: language[k] for k in _LLAMA_FIELDS if k in language and language[k] is not None})
    text.vocab_size = vocab_size
    text.bos_token_id, text.eos_token_id, text.pad_token_id = bos, eos, pad
    text.tie_word_embeddings = False  # deepseek's language model keeps a separate lm_head
    hidden = text.hidden_size

    vision_params = _section(config, "vision_config")
    if vision_params.get("select_layer", -1) != -1:
        raise ValueError(f"config.json: vision_config.params.select_layer {vision_params['select_layer']} "
                         "(transformers' Janus reads the last layer only)")
    tower = _named(NAMED_VISION, vision_params.get("model_name"), vision_params,
                   ("width", "layers", "heads", "patch_size", "mlp_ratio"), "vision_config.model_name")
    image_size = int(vision_params.get("image_size", 384))
    aligner = _section(config, "aligner_config")
    _check_mlp(config, "aligner_config", aligner, tower["width"], hidden)
    vision = JanusVisionConfig(
        hidden_size=tower["width"], num_hidden_layers=tower["layers"], num_attention_heads=tower["heads"],
        image_size=image_size, patch_size=tower["patch_size"], mlp_ratio=float(tower["mlp_ratio"]),
        projection_dim=aligner["n_embed"], depth=aligner["depth"],
        num_image_tokens=(image_size // tower["patch_size"]) ** 2, use_qk_norm=False, layer_norm_eps=1e-6,
        hidden_act="gelu", attention_bias=True,
    )

    gen_vision = _section(config, "gen_vision_config")
    vq_cls = _section(config, "gen_vision_config", params=False).get("cls")
    vq_arch = _named(NAMED_VQ, vq_cls, gen_vision, ("ch", "encoder_ch_mult", "z_channels", "num_res_blocks"),
                     "gen_vision_config.cls")
    if gen_vision.get("decoder_ch_mult", vq_arch["encoder_ch_mult"]) != vq_arch["encoder_ch_mult"]:
        raise ValueError("config.json: gen_vision_config decoder_ch_mult differs from encoder_ch_mult "
                         "(transformers' JanusVQVAE mirrors one list)")
    embed_dim, codebook = gen_vision.get("n_embed", 8), gen_vision.get("image_token_size", 16384)
    gen_aligner = _section(config, "gen_aligner_config")
    _check_mlp(config, "gen_aligner_config", gen_aligner, embed_dim, hidden)
    gen_head = _section(config, "gen_head_config")
    if gen_head.get("image_token_size", codebook) != codebook or gen_head.get("n_embed", hidden) != hidden:
        raise ValueError(f"config.json: gen_head_config {gen_head} does not match the VQ codebook {codebook} and "
                         f"the language model width {hidden}")
    mult = list(vq_arch["encoder_ch_mult"])
    vq = JanusVQVAEConfig(
        embed_dim=embed_dim, num_embeddings=codebook, latent_channels=vq_arch["z_channels"],
        base_channels=vq_arch["ch"], channel_multiplier=mult, num_res_blocks=vq_arch["num_res_blocks"],
        num_patches=image_size // 2 ** (len(mult) - 1), projection_dim=gen_aligner["n_embed"],
        image_token_embed_dim=gen_head.get("image_token_embed", hidden), num_hidden_layers=gen_aligner["depth"],
        double_latent=False, hidden_act="gelu",
    )
    return JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.to_dict(),
                       image_token_id=image_token_id, tie_word_embeddings=False)


def _check_mlp(config: dict, name: str, params: dict, input_dim: int, hidden: int) -> None:
    kind = _section(config, name, params=False).get("cls", "MlpProjector")
    projector = params.get("projector_type", "mlp_gelu")
    if kind != "MlpProjector" or projector != "mlp_gelu":
        raise ValueError(f"config.json: {name} is a {kind} / {projector}; transformers' Janus has the "
                         "MlpProjector / mlp_gelu aligner only")
    for field in ("n_embed", "depth"):
        if not isinstance(params.get(field), int):
            raise ValueError(f"config.json: {name}.params.{field} must be an integer")
    if params["n_embed"] != hidden or params.get("input_dim", input_dim) != input_dim:
        raise ValueError(f"config.json: {name} maps {params.get('input_dim')} -> {params['n_embed']}, expected "
                         f"{input_dim} -> {hidden}")
