"""Tiny checkpoints in deepseek-ai's release layout, written from a tiny transformers-format model.

The inverse mapping here is written independently of `janus_rig.model.deepseek` (from deepseek's module names:
`MultiModalityCausalLM` with a timm SigLIP `vision_tower`, `MlpProjector` aligners as nn.Sequential, llamagen's VQ
with `conv_blocks` / `res` / `mid` lists, a `vision_head` gen head), so a wrong rule on either side shows up as a
failed round trip rather than cancelling out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import JanusForConditionalGeneration

from janus_rig.model.presets import get_preset

# transformers prefix -> deepseek prefix, for the plain renames; first match wins.
_PREFIXES = (
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.generation_embeddings.", "gen_embed."),
    ("model.generation_head.proj_out.", "gen_head.output_mlp_projector."),
    ("model.generation_head.vision_head.", "gen_head.vision_head."),
)
_VISION = (
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.projection_layer\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.(\d+)\.layer_norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
    (r"^post_layernorm\.", "norm."),
)


def tiny_janus(seed: int = 0, tokenizer=None) -> JanusForConditionalGeneration:
    """The tiny preset with one res-block per VQ level (so the VQ's `res` lists are exercised)."""
    config = get_preset("tiny")
    config.vq_config.num_res_blocks = 1
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()
        config.text_config.vocab_size = max(config.text_config.vocab_size, len(tokenizer))
        config.image_token_id = vocab["<image_placeholder>"]
        config.text_config.bos_token_id = tokenizer.bos_token_id
        config.text_config.eos_token_id = tokenizer.eos_token_id
        config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    return JanusForConditionalGeneration(config).eval()


def deepseek_state(model: JanusForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The model's weights under deepseek's names, q/k/v merged, pos_embed (1, N, D), plus the tensors deepseek
    stores that transformers drops (the attention-pool head, the VQ's codebook-usage buffer)."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        tensor = tensor.clone()
        prefix = next(((hf, ds) for hf, ds in _PREFIXES if key.startswith(hf)), None)
        if prefix is not None:
            out[prefix[1] + key[len(prefix[0]):]] = tensor
        elif key.startswith("model.vision_model."):
            rest = key[len("model.vision_model."):]
            if rest == "embeddings.position_embedding.weight":
                out["vision_model.vision_tower.pos_embed"] = tensor[None]  # (1, N, D)
                continue
            match = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if match:
                qkv.setdefault(f"vision_model.vision_tower.blocks.{match[1]}.attn.qkv.{match[3]}", {})[match[2]] = tensor
                continue
            for pattern, repl in _VISION:
                if re.search(pattern, rest):
                    out["vision_model.vision_tower." + re.sub(pattern, repl, rest)] = tensor
                    break
            else:
                raise AssertionError(f"no inverse rule for {key}")
        elif key.startswith(("model.aligner.", "model.generation_aligner.")):
            part, rest = key.split(".")[1], key.split(".", 2)[2]
            name = "aligner" if part == "aligner" else "gen_aligner"
            match = re.fullmatch(r"(fc1|hidden_layers\.(\d+))\.(weight|bias)", rest)
            index = 0 if match[1] == "fc1" else 2 * (int(match[2]) + 1)
            out[f"{name}.layers.{index}.{match[3]}"] = tensor
        elif key.startswith("model.vqmodel."):
            rest = key[len("model.vqmodel."):]
            rest = re.sub(r"^encoder\.down\.", "encoder.conv_blocks.", rest)
            rest = re.sub(r"^decoder\.up\.", "decoder.conv_blocks.", rest)
            rest = rest.replace(".block.", ".res.").replace("mid.block_1.", "mid.0.")
            rest = rest.replace("mid.attn_1.", "mid.1.").replace("mid.block_2.", "mid.2.")
            out["gen_vision_model." + rest] = tensor
        else:
            raise AssertionError(f"no inverse rule for {key}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # (3 D, ...)
    width = model.config.vision_config.hidden_size
    torch.manual_seed(1)
    out["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width)
    out["vision_model.vision_tower.attn_pool.kv.weight"] = torch.randn(2 * width, width)
    out["vision_model.vision_tower.attn_pool.proj.weight"] = torch.randn(width, width)
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)
    return out


def deepseek_config(model: JanusForConditionalGeneration, vq_name: str = "VQ-tiny") -> dict:
    """config.json as deepseek writes it, with the tiny towers spelled out (deepseek's own argument names)."""
    text, vision, vq = model.config.text_config, model.config.vision_config, model.config.vq_config
    mlp = {"cls": "MlpProjector", "model_type": "aligner"}
    return {
        "model_type": "multi_modality",
        "architectures": ["MultiModalityCausalLM"],
        "torch_dtype": "float32",
        "language_config": {
            "model_type": "llama", "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads, "max_position_embeddings": text.max_position_embeddings,
            "vocab_size": text.vocab_size, "rms_norm_eps": text.rms_norm_eps, "torch_dtype": "float32",
            "_attn_implementation": "flash_attention_2",
        },
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision", "params": {
            "image_size": vision.image_size, "model_name": "siglip_tiny_test", "select_feature": "same",
            "select_layer": -1, "width": vision.hidden_size, "layers": vision.num_hidden_layers,
            "heads": vision.num_attention_heads, "patch_size": vision.patch_size, "mlp_ratio": vision.mlp_ratio}},
        "aligner_config": {**mlp, "params": {"depth": vision.depth, "input_dim": vision.hidden_size,
                                             "n_embed": text.hidden_size, "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": vq_name, "model_type": "gen_vision", "params": {
            "image_token_size": vq.num_embeddings, "n_embed": vq.embed_dim, "ch": vq.base_channels,
            "encoder_ch_mult": list(vq.channel_multiplier), "z_channels": vq.latent_channels,
            "num_res_blocks": vq.num_res_blocks}},
        "gen_aligner_config": {**mlp, "model_type": "gen_aligner", "params": {
            "depth": vq.num_hidden_layers, "input_dim": vq.embed_dim, "n_embed": text.hidden_size,
            "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head", "params": {
            "image_token_embed": vq.image_token_embed_dim, "image_token_size": vq.num_embeddings,
            "n_embed": text.hidden_size}},
    }


def write_deepseek_dir(model, tokenizer, out: Path, fmt: str = "safetensors", shards: int = 1,
                       state: dict | None = None) -> Path:
    """A deepseek-layout directory: config.json, weights (safetensors or .bin; one file or `shards` with an
    index), tokenizer files and preprocessor_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    state = deepseek_state(model) if state is None else state
    (out / "config.json").write_text(json.dumps(deepseek_config(model), indent=2))
    keys = sorted(state)
    groups = [keys[i::shards] for i in range(shards)]
    single = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    names = [single] if shards == 1 else [single.replace(".", f"-{i + 1:05d}-of-{shards:05d}.", 1)
                                         for i in range(shards)]
    for name, group in zip(names, groups):
        part = {k: state[k].contiguous() for k in group}
        if fmt == "safetensors":
            save_file(part, out / name, metadata={"format": "pt"})
        else:
            torch.save(part, out / name)
    if shards > 1:
        index = {"metadata": {}, "weight_map": {k: names[i] for i, group in enumerate(groups) for k in group}}
        (out / f"{single}.index.json").write_text(json.dumps(index))
    tokenizer.save_pretrained(out)
    size = model.config.vision_config.image_size
    (out / "preprocessor_config.json").write_text(json.dumps({
        "background_color": [127, 127, 127], "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "VLMImageProcessor", "image_size": size, "image_std": [0.5, 0.5, 0.5],
        "min_size": 14, "processor_class": "VLChatProcessor", "rescale_factor": 0.00392156862745098}))
    return out
