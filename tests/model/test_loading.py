"""Strict loading: a wrong directory is refused in one line (never a traceback, never a random model); LoRA saves
are standard peft adapter directories; the chain and role tokens fit the Janus-Pro vocabularies at real size."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, models
from transformers import JanusForConditionalGeneration, PreTrainedTokenizerFast

from janus_rig.chain import CHAIN_TOKENS
from janus_rig.cli import main
from janus_rig.model.loading import LoadError, layout, strict_from_pretrained
from janus_rig.model.policy import ADAPTER_DIR, ADAPTERS, JanusPolicy, LoraSettings, apply_lora
from janus_rig.model.presets import get_preset
from janus_rig.model.tokenizer import add_chain_tokens, add_role_tokens
from janus_rig.model.tokens import BOI, BOS, EOI, EOS, IMAGE, MODEL_SPECIFIC, PAD, SpecialTokenIds
from janus_rig.chain.roles import ROLE_TOKENS
from tests.model.deepseek_fixture import write_deepseek_dir

pytestmark = pytest.mark.usefixtures("one_thread")
DOWN = "model.language_model.layers.1.mlp.down_proj.weight"


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_weights(directory, edit):
    state = dict(load_file(directory / "model.safetensors"))
    edit(state)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def _generate(capsys, model, out) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["generate", "--model", str(model), "--prompt", "a red circle", "--num", "1", "--out", str(out)])
    # transformers' own progress bar for reading weights may come first; the error is the one line after it
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line]
    return code, "\n".join(lines)


def test_broken_directories_are_refused_in_one_line(tiny_policy_dir, word_tokenizer, tmp_path, capsys):
    cases = {}
    d = _copy(tiny_policy_dir, tmp_path / "missing")
    _edit_weights(d, lambda s: s.pop(DOWN))
    cases["missing"] = (d, f"missing tensors {DOWN}")
    d = _copy(tiny_policy_dir, tmp_path / "shape")
    _edit_weights(d, lambda s: s.update({DOWN: torch.zeros(3, 3)}))
    cases["shape"] = (d, f"mis-shaped tensors (checkpoint vs model) {DOWN} (3, 3) vs")
    d = _copy(tiny_policy_dir, tmp_path / "unexpected")
    _edit_weights(d, lambda s: s.update({"model.extra.weight": torch.zeros(2)}))
    cases["unexpected"] = (d, "unexpected tensors model.extra.weight")
    d = _copy(tiny_policy_dir, tmp_path / "config")
    (d / "config.json").write_text('{"model_type": "janus", "text_config": ')
    cases["config"] = (d, "config.json: not valid JSON")
    d = _copy(tiny_policy_dir, tmp_path / "truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])
    cases["truncated"] = (d, "corrupt or truncated")
    d = _copy(tiny_policy_dir, tmp_path / "llama")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    cases["other"] = (d, "holds a 'llama' model, not a Janus model")
    policy = JanusPolicy.load(tiny_policy_dir)
    cases["deepseek"] = (write_deepseek_dir(policy.base, word_tokenizer, tmp_path / "deepseek"),
                         "convert it first: janus-rig convert janus-pro")
    cases["no config"] = (tmp_path, "is not a model directory (no config.json)")
    for name, (model, message) in cases.items():
        with pytest.raises(LoadError) as err:
            JanusPolicy.load(model)
        assert message in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
        code, stderr = _generate(capsys, model, tmp_path / f"gen_{name}")
        assert code == 2 and message in stderr and len(stderr.splitlines()) == 1, (name, stderr)


def test_many_missing_tensors_are_counted(tiny_policy_dir, tmp_path):
    d = _copy(tiny_policy_dir, tmp_path / "many")
    _edit_weights(d, lambda s: [s.pop(k) for k in [k for k in s if ".mlp." in k and "language_model" in k]])
    with pytest.raises(LoadError, match=r"and 7 more \(12\)"):  # 4 layers x 3 MLP weights: 5 named, 12 counted
        JanusPolicy.load(d)


def test_strict_loading_reaches_the_vq_and_judge_paths(tmp_path):
    """`init --vq` and the hf judge load through the same strict path."""
    from transformers import JanusVQVAE

    from janus_rig.model.presets import tiny_vq_config

    vq = tmp_path / "vq"
    JanusVQVAE(tiny_vq_config(image_size=32, patch_size=8)).save_pretrained(vq)
    _edit_weights(vq, lambda s: s.pop("quantize.embedding.weight"))
    with pytest.raises(LoadError, match="missing tensors quantize.embedding.weight"):
        strict_from_pretrained(JanusVQVAE, vq, "VQ")
    code = main(["init", "--preset", "tiny", "--vq", str(vq), "--out", str(tmp_path / "init")])
    assert code == 2


def test_hf_judge_refuses_a_broken_model(tmp_path):
    from reward_models import make_judge
    from tests.rewards import build_tiny_qwen

    qwen = build_tiny_qwen(tmp_path / "qwen")
    weights = tmp_path / "qwen" / "model.safetensors"
    state = dict(load_file(weights))
    dropped = sorted(state)[0]
    state.pop(dropped)
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(LoadError, match="missing tensors"):
        make_judge("hf", model=qwen)
    with pytest.raises(FileNotFoundError, match="judge model directory"):
        make_judge("hf", model=str(tmp_path / "nowhere"))


def test_layouts(tiny_policy_dir, word_tokenizer, tmp_path):
    assert layout(tiny_policy_dir) == "janus"
    policy = JanusPolicy.load(tiny_policy_dir)
    assert layout(write_deepseek_dir(policy.base, word_tokenizer, tmp_path / "ds")) == "deepseek"
    with pytest.raises(FileNotFoundError):
        layout(tmp_path / "nowhere")


# --- adapters as peft writes them ------------------------------------------------------------------------------
def test_lora_save_is_a_standard_adapter_directory(tiny_policy_dir, tmp_path, capsys):
    policy = JanusPolicy.load(tiny_policy_dir, lora=LoraSettings(r=4, alpha=8, modules_to_save=("generation_head",)))
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ids = torch.tensor([policy.encode_prompt("a red circle")])
    with torch.no_grad():
        expected = policy.model(input_ids=ids).logits
        hidden = torch.randn(1, 3, policy.base.config.text_config.hidden_size)
        expected_image = policy.base.model.generation_head(hidden)
    policy.save(tmp_path / "run")
    adapter = tmp_path / "run" / ADAPTER_DIR
    assert (adapter / ADAPTERS).is_file() and (adapter / "adapter_config.json").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_policy_dir)

    stock = JanusForConditionalGeneration.from_pretrained(tiny_policy_dir)
    with_adapter = PeftModel.from_pretrained(stock, adapter).eval()
    merged = JanusForConditionalGeneration.from_pretrained(tmp_path / "run").eval()
    with torch.no_grad():
        got_adapter = with_adapter(input_ids=ids).logits
        got_merged = merged(input_ids=ids).logits
        torch.testing.assert_close(with_adapter.base_model.model.model.generation_head(hidden), expected_image)
    torch.testing.assert_close(got_adapter, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_merged, got_adapter, atol=1e-4, rtol=1e-4)

    # Our tools load the adapter directory on its base.
    loaded = JanusPolicy.load(adapter)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, expected, atol=1e-4, rtol=1e-4)
    code, err = _generate(capsys, adapter, tmp_path / "gen")
    assert code == 0, err

    # An adapter whose base is gone is named.
    moved = _copy(adapter, tmp_path / "orphan")
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone"}))
    with pytest.raises(LoadError, match="'/gone' is not a local directory"):
        JanusPolicy.load(moved)


def test_resume_reads_the_adapter_directory(tiny_policy_dir, tmp_path):
    a = JanusPolicy.load(tiny_policy_dir, lora=LoraSettings(r=4))
    with torch.no_grad():
        for name, p in a.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    a.save(tmp_path / "ckpt")
    b = JanusPolicy.load(tiny_policy_dir, lora=LoraSettings(r=4))
    b.load_weights(tmp_path / "ckpt")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- token ids at real size ------------------------------------------------------------------------------------
def janus_pro_like_tokenizer(size: int, image: int, boi: int, eoi: int, bos=100000, eos=100001, pad=100002):
    """A tokenizer with `size` entries and Janus-Pro's special tokens at the given ids (no download: the ids are
    what matters here, not the merges)."""
    fixed = {bos: BOS, eos: EOS, pad: PAD, image: IMAGE, boi: BOI, eoi: EOI}
    vocab = {fixed.get(i, f"t{i}"): i for i in range(size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fixed.values()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens=dict(MODEL_SPECIFIC))


@pytest.mark.parametrize("preset,size,image,boi,eoi", [
    ("janus-pro-1b", 100015, 100581, 100003, 100004),  # ids of docs/presets.md; 7B's image id there too
    ("janus-pro-7b", 100015, 100594, 100016, 100017),
])
def test_chain_and_role_tokens_fit_the_janus_pro_vocabulary(preset, size, image, boi, eoi):
    # The published tokenizers place <image_placeholder> beyond their base vocabulary; ours mirrors that shape.
    tokenizer = janus_pro_like_tokenizer(max(size, image + 1), image, boi, eoi)
    n = len(tokenizer)
    added = add_chain_tokens(tokenizer) + add_role_tokens(tokenizer)
    assert added == len(CHAIN_TOKENS) + len(ROLE_TOKENS)
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    assert (ids.image, ids.boi, ids.eoi, ids.bos, ids.eos, ids.pad) == (image, boi, eoi, 100000, 100001, 100002)
    assert sorted(ids.chain) == list(range(n, n + len(CHAIN_TOKENS)))  # appended, nothing renumbered
    config = get_preset(preset)
    rows = config.text_config.vocab_size
    assert len(tokenizer) <= rows == 102400  # the new tokens use spare rows: no resize, no new random rows
    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    assert model.get_input_embeddings().weight.shape[0] == model.lm_head.weight.shape[0] == rows
    assert max(ids.chain) < rows and config.image_token_id == image
    # Image tokens are a separate codebook: the generation head's rows do not move with the text vocabulary.
    assert model.model.generation_head.vision_head.weight.shape[0] == config.vq_config.num_embeddings == 16384
