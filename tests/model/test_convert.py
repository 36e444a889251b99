"""`janus-rig convert janus-pro`: tiny deepseek-layout checkpoints (written by an independent inverse mapping,
tests/model/deepseek_fixture.py) convert to a model whose logits and sampled tokens equal the original's exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import JanusForConditionalGeneration

from janus_rig.chain import BOX_END, BOX_START, CHAIN_TOKENS, OBJ_END, OBJ_START
from janus_rig.cli import main
from janus_rig.model.convert import REPORT, convert_deepseek
from janus_rig.model.deepseek import NAMED_VISION, NAMED_VQ, janus_config
from janus_rig.model.loading import LoadError
from janus_rig.model.policy import JanusPolicy
from janus_rig.model.presets import get_preset
from janus_rig.model.prompts import template_texts
from janus_rig.model.tokenizer import build_word_tokenizer
from janus_rig.rollout import sample
from janus_rig.rollout.config import RolloutConfig
from tests.conftest import TEST_TEXTS
from tests.model.deepseek_fixture import deepseek_config, deepseek_state, tiny_janus, write_deepseek_dir

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def original(tmp_path_factory, word_tokenizer):
    """A tiny transformers-format Janus saved the way janus-rig saves models (the reference)."""
    model = tiny_janus(seed=3, tokenizer=word_tokenizer)
    out = tmp_path_factory.mktemp("original")
    JanusPolicy(model, word_tokenizer).save(out)
    return out


def _same_model(a: JanusPolicy, b: JanusPolicy) -> None:
    ids = torch.tensor([a.encode_prompt(PROMPT)])
    assert ids.tolist() == [b.encode_prompt(PROMPT)]
    with torch.no_grad():
        assert torch.equal(a.base(input_ids=ids).logits, b.base(input_ids=ids).logits)
    config = RolloutConfig(group_size=2, max_chain_tokens=12, cfg_weight=3.0)
    ra, rb = sample(a, [PROMPT], config, seed=5), sample(b, [PROMPT], config, seed=5)
    assert torch.equal(ra.input_ids, rb.input_ids)  # chain and image tokens, drawn the same
    assert ra.image_tokens.shape[1] == a.num_image_tokens and torch.equal(ra.image_tokens, rb.image_tokens)


@pytest.mark.parametrize("fmt,shards", [("safetensors", 1), ("safetensors", 3), ("bin", 1), ("bin", 2)])
def test_converted_model_equals_the_original(tmp_path, original, word_tokenizer, fmt, shards):
    reference = JanusPolicy.load(original)
    source = write_deepseek_dir(reference.base, word_tokenizer, tmp_path / "deepseek", fmt=fmt, shards=shards)
    report = convert_deepseek(source, tmp_path / "hf")
    converted = JanusPolicy.load(tmp_path / "hf")
    _same_model(reference, converted)

    # Stock transformers loads it too, with every tensor equal.
    stock = JanusForConditionalGeneration.from_pretrained(tmp_path / "hf")
    ref_state, got = reference.base.state_dict(), stock.state_dict()
    assert ref_state.keys() == got.keys() and all(torch.equal(ref_state[k], got[k]) for k in ref_state)
    # The report: every source key is accounted for, the merged qkv split, the dropped tensors named with a reason.
    written = json.loads((tmp_path / "hf" / REPORT).read_text())
    dropped = sum(len(keys) for keys in report.dropped.values())
    assert report.mapped + dropped == len(deepseek_state(reference.base)) and dropped == 4
    assert report.split == 2 * reference.base.config.vision_config.num_hidden_layers  # qkv weight and bias per layer
    assert any("attn_pool" in key for keys in written["dropped"].values() for key in keys)
    assert all(reason for reason in written["dropped"])
    assert report.parameters == sum(p.numel() for p in reference.base.parameters())
    assert len(report.files) == shards and written["dtype"] == "float32"
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["guidance_scale"] == 5 and generation["generation_kwargs"]["boi_token_id"] == reference.tokens.boi
    assert (tmp_path / "hf" / "processor_config.json").is_file()


def test_dtype_casts_floating_weights(tmp_path, original, word_tokenizer):
    reference = JanusPolicy.load(original)
    source = write_deepseek_dir(reference.base, word_tokenizer, tmp_path / "deepseek")
    report = convert_deepseek(source, tmp_path / "hf", dtype="bfloat16")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    assert report.dtype == "bfloat16" and all(t.dtype == torch.bfloat16 for t in weights.values())
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == "bfloat16"


def test_got_r1_chain_token_ids_are_kept(tmp_path):
    """GoT-R1 adds the chain tokens in its own order; their ids must survive conversion and loading."""
    tokenizer = build_word_tokenizer([*template_texts(), *TEST_TEXTS], chain_tokens=False)
    theirs = (BOX_END, OBJ_START, BOX_START, OBJ_END)  # not janus-rig's order
    tokenizer.add_tokens(list(theirs))
    ids = {t: tokenizer.get_vocab()[t] for t in CHAIN_TOKENS}
    ours = build_word_tokenizer([*template_texts(), *TEST_TEXTS], chain_tokens=False)
    ours.add_tokens(list(CHAIN_TOKENS))
    assert ids != {t: ours.get_vocab()[t] for t in CHAIN_TOKENS}  # the test means something

    model = tiny_janus(seed=4, tokenizer=tokenizer)
    source = write_deepseek_dir(model, tokenizer, tmp_path / "got-r1")
    report = convert_deepseek(source, tmp_path / "hf")
    assert {t: report.tokens[t] for t in CHAIN_TOKENS} == ids
    loaded = JanusPolicy.load(tmp_path / "hf")
    assert {t: loaded.tokenizer.get_vocab()[t] for t in CHAIN_TOKENS} == ids
    chain = f"{OBJ_START}red circle{OBJ_END} {BOX_START}(1,2),(30,40){BOX_END}"
    assert loaded.decode_text(tokenizer.encode(chain, add_special_tokens=False)) == chain


def test_stock_tokenizer_without_chain_tokens_is_noted(tmp_path):
    tokenizer = build_word_tokenizer([*template_texts(), *TEST_TEXTS], chain_tokens=False)
    model = tiny_janus(seed=5, tokenizer=tokenizer)
    report = convert_deepseek(write_deepseek_dir(model, tokenizer, tmp_path / "stock"), tmp_path / "hf")
    assert any("no chain tokens" in note for note in report.notes)
    loaded = JanusPolicy.load(tmp_path / "hf")  # adds them on load, into spare rows
    assert set(CHAIN_TOKENS) <= set(loaded.tokenizer.get_vocab())


def test_named_architectures_are_janus_pro(tmp_path):
    """The published config names its towers; the fields behind the names are the Janus-Pro preset's."""
    preset = get_preset("janus-pro-1b")
    config = {
        "model_type": "multi_modality",
        "language_config": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
                            "num_attention_heads": 16, "num_key_value_heads": 16, "max_position_embeddings": 16384,
                            "vocab_size": 102400, "model_type": "llama", "torch_dtype": "bfloat16"},
        "vision_config": {"cls": "CLIPVisionTower", "params": {"image_size": 384, "model_name":
                                                                "siglip_large_patch16_384", "select_layer": -1}},
        "aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "input_dim": 1024, "n_embed": 2048,
                                                              "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "params": {"image_token_size": 16384, "n_embed": 8}},
        "gen_aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "input_dim": 8, "n_embed": 2048,
                                                                  "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "params": {"image_token_embed": 2048, "image_token_size": 16384,
                                                              "n_embed": 2048}},
    }
    built = janus_config(config, 102400, 100581, 100000, 100001, 100002)
    for part in ("vision_config", "vq_config"):
        want, got = getattr(preset, part).to_dict(), getattr(built, part).to_dict()
        differ = {k: (want[k], got.get(k)) for k in want if k not in ("_name_or_path",) and want[k] != got.get(k)}
        assert not differ, (part, differ)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert getattr(built.text_config, key) == getattr(preset.text_config, key)
    with torch.device("meta"):
        n = sum(p.numel() for p in JanusForConditionalGeneration(built).parameters())
    assert n == 2_076_636_811  # the published Janus-Pro-1B's parameter count (docs/presets.md)
    assert "siglip_large_patch16_384" in NAMED_VISION and "VQ-16" in NAMED_VQ


# --- bad sources: one line, nothing written --------------------------------------------------------------------
def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()  # what earlier steps printed
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_sources_are_named_in_one_line(tmp_path, original, word_tokenizer, capsys):
    reference = JanusPolicy.load(original)
    state = deepseek_state(reference.base)

    def source(name, mutate_state=None, mutate_config=None):
        s = dict(state)
        if mutate_state:
            mutate_state(s)
        src = write_deepseek_dir(reference.base, word_tokenizer, tmp_path / name, state=s)
        if mutate_config:
            config = json.loads((src / "config.json").read_text())
            mutate_config(config)
            (src / "config.json").write_text(json.dumps(config))
        return src

    cases = {
        "unknown": (source("unknown", lambda s: s.update({"vision_model.extra_head.weight": torch.zeros(2)})),
                    "no rule maps: vision_model.extra_head.weight"),
        "missing": (source("missing", lambda s: s.pop("language_model.model.layers.1.mlp.down_proj.weight")),
                    "no source tensor fills model.language_model.layers.1.mlp.down_proj.weight"),
        "shape": (source("shape", mutate_config=lambda c: c["language_config"].update(intermediate_size=700)),
                  "mis-shaped"),
        "arch": (source("arch", mutate_config=lambda c: c["vision_config"]["params"].pop("width")),
                 "spell out width"),
        "janus": (original, "it loads in janus-rig as it is"),
    }
    truncated = source("truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (truncated, "corrupt or truncated")
    bad_json = source("bad_json")
    (bad_json / "config.json").write_text('{"model_type": "multi_modality",')
    cases["bad_json"] = (bad_json, "not valid JSON")
    for name, (src, message) in cases.items():
        out = tmp_path / f"out_{name}"
        code, err = _cli(capsys, "convert", "janus-pro", str(src), "--out", str(out))
        assert code == 2 and message in err and len(err.splitlines()) == 1, (name, err)
        assert not out.exists() or not any(out.iterdir()), name


def test_bin_with_code_is_refused(tmp_path, original, word_tokenizer):
    """.bin files are read with weights_only: a pickle that is not plain tensors is refused, never run."""
    reference = JanusPolicy.load(original)
    src = write_deepseek_dir(reference.base, word_tokenizer, tmp_path / "src", fmt="bin")
    torch.save({"w": torch.zeros(1), "x": Exploit()}, src / "pytorch_model.bin")
    with pytest.raises(LoadError, match="pytorch_model.bin"):
        convert_deepseek(src, tmp_path / "out")


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_deepseek_config_of_the_fixture_round_trips(original):
    """The fixture's config (deepseek's names) builds the original architecture exactly."""
    model = JanusPolicy.load(original).base
    built = janus_config(deepseek_config(model), model.config.text_config.vocab_size, model.config.image_token_id,
                         1, 2, 0)
    for part in ("vision_config", "vq_config"):
        want, got = getattr(model.config, part).to_dict(), getattr(built, part).to_dict()
        assert {k: v for k, v in want.items() if v != got.get(k) and k not in ("_name_or_path", "dtype")} == {}
