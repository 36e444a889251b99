"""The policy: init -> save -> plain transformers load -> transformers' own image generate -> decode."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, JanusForConditionalGeneration, JanusProcessor

from janus_rig.chain import CHAIN_TOKENS
from janus_rig.cli import main as cli
from janus_rig.model.policy import JanusPolicy, LoraSettings, TrainableParts, apply_lora, parts_from_dict, set_trainable
from janus_rig.model.tokenizer import build_word_tokenizer
from janus_rig.model.tokens import SpecialTokenIds
from janus_rig.chain.roles import ROLE_TOKENS


def test_init_cli_dir_loads_and_generates_in_plain_transformers(tmp_path, word_tokenizer):
    tok_dir = tmp_path / "tok"
    word_tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "tiny"
    assert cli(["init", "--preset", "tiny", "--out", str(out), "--tokenizer", str(tok_dir), "--cfg", "3"]) == 0
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "janus_rig.json"} <= {
        p.name for p in out.iterdir()
    }

    # Only transformers from here on: no janus_rig code.
    model = JanusForConditionalGeneration.from_pretrained(out)
    processor = JanusProcessor.from_pretrained(out)
    tokenizer = processor.tokenizer
    assert model.generation_config.generation_kwargs["boi_token_id"] == tokenizer.convert_tokens_to_ids("<begin_of_image>")
    assert model.generation_config.guidance_scale == 3
    inputs = processor(text=["User: a red circle\n\nAssistant:"] * 2, generation_mode="image", return_tensors="pt")
    torch.manual_seed(0)
    codes = model.generate(**inputs, generation_mode="image")
    n = model.config.vision_config.num_image_tokens
    assert codes.shape == (2, n)
    assert int(codes.max()) < model.config.vq_config.num_embeddings
    pixels = model.decode_image_tokens(codes)
    assert pixels.shape == (2, 64, 64, 3)
    assert torch.isfinite(pixels).all()

    # Text generation (the chain phase) works through transformers too.
    text = model.generate(**inputs, generation_mode="text", max_new_tokens=5, do_sample=False)
    assert text.shape[1] == inputs["input_ids"].shape[1] + 5


def test_understanding_path_through_processor(tiny_policy_dir):
    from PIL import Image

    model = JanusForConditionalGeneration.from_pretrained(tiny_policy_dir)
    processor = JanusProcessor.from_pretrained(tiny_policy_dir)
    assert processor.num_image_tokens == model.config.vision_config.num_image_tokens
    inputs = processor(
        text="User: <image_placeholder>\nList every object in the image with its box.\n\nAssistant:",
        images=Image.new("RGB", (64, 64), (220, 40, 40)),
        return_tensors="pt",
    )
    n_placeholders = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_placeholders == model.config.vision_config.num_image_tokens
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_vq_and_vision_frozen_by_default(tiny_policy):
    base = tiny_policy.base
    assert not any(p.requires_grad for p in base.model.vqmodel.parameters())
    assert not any(p.requires_grad for p in base.model.vision_model.parameters())
    assert all(p.requires_grad for p in base.model.language_model.parameters())
    assert all(p.requires_grad for p in base.model.generation_head.parameters())
    counts = set_trainable(base, TrainableParts(language_model=False, vqmodel=True))
    assert counts["language_model"] == 0 and counts["vqmodel"] > 0
    assert all(p.requires_grad for p in base.model.vqmodel.parameters())
    with pytest.raises(ValueError, match="valid"):
        parts_from_dict({"langauge_model": True})


def test_lora_trains_only_adapters_and_saves_merged(tiny_policy, tmp_path):
    set_trainable(tiny_policy.base, TrainableParts(**{k: False for k in TrainableParts.__dataclass_fields__}))
    tiny_policy.model = apply_lora(tiny_policy.base, LoraSettings(r=4, alpha=8))
    trainable = [n for n, p in tiny_policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".language_model." in n for n in trainable)  # not the vision tower's q_proj
    # Make the adapters non-trivial, then save (merged) and reload without peft.
    with torch.no_grad():
        for n, p in tiny_policy.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    ids = torch.tensor([tiny_policy.encode_prompt("a red circle")])
    with torch.no_grad():
        expected = tiny_policy.model(input_ids=ids).logits
    tiny_policy.save(tmp_path / "merged")
    plain = JanusForConditionalGeneration.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        got = plain(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert isinstance(tiny_policy.base, JanusForConditionalGeneration)


def test_lora_modules_to_save_train_the_generation_head(tiny_policy):
    set_trainable(tiny_policy.base, TrainableParts(**{k: False for k in TrainableParts.__dataclass_fields__}))
    model = apply_lora(tiny_policy.base, LoraSettings(r=4, modules_to_save=("generation_head",)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("generation_head" in n and "lora_" not in n for n in trainable)
    assert not any("lm_head" in n for n in trainable)


def test_load_adds_missing_chain_tokens_and_resizes(tmp_path):
    """A transformers-format Janus directory whose tokenizer lacks the chain tokens (like stock Janus-Pro)."""
    from janus_rig.model.init import init_policy
    from janus_rig.model.prompts import template_texts

    plain_tok = build_word_tokenizer([*template_texts(), "a red circle"], numbers=20, chain_tokens=False)
    assert not set(CHAIN_TOKENS) & set(plain_tok.get_vocab())
    # Build a policy with the full tokenizer, then save it with the plain one and an exact-size vocabulary.
    policy = init_policy("tiny", tokenizer=build_word_tokenizer([*template_texts(), "a red circle"], numbers=20))
    model = policy.base
    model.resize_token_embeddings(len(plain_tok))
    model.save_pretrained(tmp_path / "stock")
    plain_tok.save_pretrained(tmp_path / "stock")
    old_rows = model.get_input_embeddings().weight[: len(plain_tok)].clone()

    loaded = JanusPolicy.load(tmp_path / "stock")
    assert set(CHAIN_TOKENS) <= set(loaded.tokenizer.get_vocab())
    assert set(ROLE_TOKENS) <= set(loaded.tokenizer.get_vocab())
    assert loaded.base.config.text_config.vocab_size >= len(loaded.tokenizer) == len(plain_tok) + 4 + len(ROLE_TOKENS)
    torch.testing.assert_close(loaded.base.get_input_embeddings().weight[: len(plain_tok)], old_rows)
    # And the chain tokens are single tokens now.
    ids = loaded.encode_text("<|obj_start|>red circle<|obj_end|>")
    assert ids[0] == loaded.tokens.chain[0] and ids[-1] == loaded.tokens.chain[1]
    assert loaded.image_processor.size.height == 64  # rebuilt from the config when the directory has none


def test_policy_rejects_mismatched_tokenizer(tiny_policy, word_tokenizer):
    too_big = build_word_tokenizer(["other words"], numbers=3000)  # more tokens than the model has rows
    with pytest.raises(ValueError, match="tokens but the model"):
        JanusPolicy(tiny_policy.base, too_big)
    tiny_policy.base.config.image_token_id = 7  # not the tokenizer's <image_placeholder>
    with pytest.raises(ValueError, match="image_token_id"):
        JanusPolicy(tiny_policy.base, word_tokenizer)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        JanusPolicy.load("/nonexistent/dir")


def test_special_token_ids_and_manifest(tiny_policy_dir):
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir)
    ids = SpecialTokenIds.from_tokenizer(tok)
    assert len({ids.bos, ids.eos, ids.pad, ids.image, ids.boi, ids.eoi, *ids.chain}) == 10
    assert tok.image_token == "<image_placeholder>" and tok.boi_token == "<begin_of_image>"
    manifest = json.loads((tiny_policy_dir / "janus_rig.json").read_text())
    assert manifest["preset"] == "tiny"


def test_decode_images_uint8(tiny_policy):
    codes = torch.randint(0, tiny_policy.codebook_size, (3, tiny_policy.num_image_tokens))
    pixels = tiny_policy.decode_images(codes)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 64, 64, 3)
