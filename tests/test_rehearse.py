"""The multi-process training path (train/distributed.py) and its rehearsal (scripts/rehearse.py, `make rehearse`).

A mini rehearsal: SFT for 2 steps in one process and in two FSDP2 processes over gloo, the weights equal within 1e-4
and every save loading in stock transformers. The save path in two sharded processes: only the main process writes,
and what it writes is whole. The math that makes two processes take one process's step: the SFT loss over split
batches with the whole step's token counts. And the single-process pieces: a policy rebuilt on given weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from janus_rig.model.mixed import sft_loss, target_counts
from janus_rig.model.policy import JanusPolicy, LoraSettings
from train.distributed import (
    PolicyModule,
    PolicyTrainer,
    _policy_keys,
    allow_cpu_fsdp,
    is_fsdp_checkpoint,
    policy_on,
    sharding,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rehearse.py"
PROMPT = "a red circle left of a blue square"


def _load_script():
    spec = importlib.util.spec_from_file_location("rehearse", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the mini rehearsal -----------------------------------------------------------------------------------------------
def test_sft_in_two_fsdp_processes_takes_the_one_process_steps(tmp_path):
    rehearse = _load_script()
    out = tmp_path / "rehearsal"
    code = rehearse.main(["--stages", "sft", "--sft-steps", "2", "--train", "32", "--no-resume", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, json.dumps(report, indent=1)[-3000:]
    sft = report["checks"]["sft"]
    assert sft["max_abs_2proc_vs_1proc"] <= 1e-4 < sft["max_abs_1proc_vs_start"]  # equal, and not trivially
    assert sft["sharded_checkpoints"]  # the two-process checkpoints hold FSDP's own state
    assert set(sft["loads"]) >= {"sft_1proc", "sft_2proc", "sft_2proc/checkpoint-1", "sft_2proc/checkpoint-2"}
    assert all(v == "ok" for v in sft["loads"].values())


def test_reflection_grpo_groups_span_the_processes(tmp_path):
    """num_generations is a group's size over all processes in reflect-grpo too: two processes each redraw half of
    every group (keyed, so the same redraws), the rewards are gathered, and the step equals one process's."""
    rehearse = _load_script()
    out = tmp_path / "rehearsal"
    code = rehearse.main(["--stages", "reflect", "--reflect-steps", "2", "--no-resume", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, json.dumps(report, indent=1)[-3000:]
    reflect = report["checks"]["reflect"]
    assert reflect["max_abs_2proc_vs_1proc"] <= 1e-4 < reflect["max_abs_1proc_vs_start"]
    assert reflect["rewards_1proc"] == reflect["rewards_2proc"] and len(reflect["rewards_1proc"]) == 2


# --- the save path in two sharded processes ---------------------------------------------------------------------------
def _sharded_worker(rank: int, world: int, port: int, policy_dir: str, out: str) -> None:
    """One of two processes: FSDP2 over gloo through accelerate, then a save and a gathered rollout."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), ACCELERATE_USE_FSDP="true", FSDP_VERSION="2",
                      FSDP_AUTO_WRAP_POLICY="TRANSFORMER_BASED_WRAP", FSDP_TRANSFORMER_CLS_TO_WRAP="LlamaDecoderLayer",
                      FSDP_STATE_DICT_TYPE="SHARDED_STATE_DICT")
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from torch.distributed.tensor import DTensor

    from janus_rig.rollout import RolloutConfig, sample
    from train import distributed

    accelerator = Accelerator(cpu=True)
    assert allow_cpu_fsdp(accelerator) and sharding(accelerator) == "fsdp"
    policy = JanusPolicy.load(policy_dir)
    model = accelerator.prepare(PolicyModule(policy.model))
    layer = policy.base.model.language_model.layers[0].self_attn.q_proj.weight
    sharded = isinstance(layer, DTensor) and layer.to_local().numel() < layer.numel()

    writers = []
    original_save = JanusPolicy.save

    def recording_save(self, *args, **kwargs):
        writers.append(rank)
        return original_save(self, *args, **kwargs)

    JanusPolicy.save = recording_save
    saver = _Saver(accelerator, policy, model, out)
    saver.save_model(out, manifest={"stage": "test"})
    JanusPolicy.save = original_save

    whole = distributed.gathered_policy(accelerator, policy, model)  # every process
    plain = all(not isinstance(p, DTensor) for p in whole.base.parameters())
    config = RolloutConfig(group_size=2, max_chain_tokens=6, cfg_weight=2.0)
    rollout = sample(whole, [PROMPT], config, seed=3, sample_offset=2 * rank)  # this process's half of 4 samples
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "sharded": sharded, "writers": writers, "plain": plain, "tokens": rollout.input_ids.tolist(),
        "image_tokens": rollout.image_tokens.tolist()}))
    accelerator.wait_for_everyone()


class _Saver(PolicyTrainer):
    """The mixin's save path without a Trainer: what save_model and _save read."""

    def __init__(self, accelerator, policy, model, out):
        self.accelerator, self.policy, self.model_wrapped = accelerator, policy, model
        self.args = SimpleNamespace(should_save=accelerator.is_main_process, output_dir=out)


def test_sharded_save_is_whole_and_written_by_the_main_process_only(tmp_path, tiny_shapeworld_policy_dir):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file
    from transformers import JanusForConditionalGeneration

    from janus_rig.rollout import RolloutConfig, sample

    out = tmp_path / "saved"
    mp.spawn(_sharded_worker, args=(2, _free_port(), str(tiny_shapeworld_policy_dir), str(out)), nprocs=2)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["sharded"] for r in ranks)  # each process held a slice of the weights
    assert ranks[0]["writers"] == [0] and ranks[1]["writers"] == []  # one writer
    assert all(r["plain"] for r in ranks)  # the gathered policy holds whole tensors

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir)
    expected = policy.base.state_dict()
    saved = load_file(str(out / "model.safetensors"))
    assert saved.keys() == expected.keys()
    for key, tensor in saved.items():  # whole, not shards: the very weights the processes started from
        assert tensor.shape == expected[key].shape and torch.equal(tensor, expected[key]), key
    model, info = JanusForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert json.loads((out / "janus_rig.json").read_text()) == {"stage": "test"}

    # The two processes' rollouts from the gathered weights are one process's four samples.
    whole = sample(policy, [PROMPT], RolloutConfig(group_size=4, max_chain_tokens=6, cfg_weight=2.0), seed=3)
    for r, rank in enumerate(ranks):
        assert torch.equal(torch.tensor(rank["image_tokens"]), whole.image_tokens[2 * r : 2 * r + 2])


# --- the one-process math of two processes --------------------------------------------------------------------------
def _batch(policy, rows: int, length: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    N = policy.num_image_tokens
    ids = torch.randint(5, len(policy.tokenizer), (rows, length + N), generator=g)  # (B, T)
    image_mask = torch.zeros_like(ids, dtype=torch.bool)
    image_mask[:, length:] = True
    ids[image_mask] = torch.randint(0, policy.codebook_size, (rows * N,), generator=g)
    attention = torch.ones_like(ids)
    loss_mask = torch.zeros_like(ids, dtype=torch.bool)
    for b in range(rows):  # targets of different lengths: the per-batch means differ from the step's mean
        loss_mask[b, 4 + 3 * b :] = True
    return ids, image_mask, attention, loss_mask


def test_split_sft_batches_with_the_step_counts_take_the_whole_batch_step(tiny_policy):
    """Two processes (or micro-batches) dividing their sums by the whole step's counts / 2, averaged: the gradient of
    the whole batch's token means, which per-batch means would not give."""
    ids, image_mask, attention, loss_mask = _batch(tiny_policy, 4)
    model = tiny_policy.model
    whole, _ = sft_loss(model, ids, image_mask, attention, loss_mask, text_weight=0.5, image_weight=2.0)
    whole.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    counts = torch.tensor(target_counts(loss_mask, image_mask), dtype=torch.float64)
    parts = [(ids[r], image_mask[r], attention[r], loss_mask[r]) for r in (slice(0, 1), slice(1, 4))]  # uneven
    halves = [sft_loss(model, *part, text_weight=0.5, image_weight=2.0, num_items=tuple((counts / 2).tolist()))[0]
              for part in parts]
    (sum(halves) / 2).backward()  # DDP / FSDP average the processes
    assert (sum(halves) / 2).item() == pytest.approx(whole.item(), rel=1e-5)
    params = dict(model.named_parameters())
    for name, grad in expected.items():
        assert torch.allclose(params[name].grad, grad, atol=1e-6), name
    model.zero_grad()  # each half's own means instead: rows weigh differently, another step
    (sum(sft_loss(model, *part, text_weight=0.5, image_weight=2.0)[0] for part in parts) / 2).backward()
    assert max(float((params[n].grad - g).abs().max()) for n, g in expected.items()) > 1e-4


# --- single-process pieces ------------------------------------------------------------------------------------------
def test_policy_on_given_weights_saves_a_stock_model(tmp_path, tiny_shapeworld_policy_dir):
    from transformers import JanusForConditionalGeneration

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir)
    policy.guidance = 3.0  # attributes the trainers set ride along
    state = {k: v + 0.25 for k, v in _policy_keys(PolicyModule(policy.model).state_dict()).items()}
    whole = policy_on(policy, state)
    assert whole.model is not policy.model and whole.guidance == 3.0 and whole.tokenizer is policy.tokenizer
    assert all(torch.equal(whole.base.state_dict()[k], v) for k, v in state.items())
    assert not any(b.is_meta for b in whole.base.buffers())  # rotary tables etc. from the live policy
    whole.save(tmp_path / "m")
    model, info = JanusForConditionalGeneration.from_pretrained(tmp_path / "m", output_loading_info=True)
    assert not any(info.values())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_policy_on_keeps_lora_adapters_and_merges_like_the_live_policy(tmp_path, tiny_shapeworld_policy_dir):
    from safetensors.torch import load_file

    policy = JanusPolicy.load(tiny_shapeworld_policy_dir, lora=LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # adapters that change the merged weights
    state = _policy_keys(PolicyModule(policy.model).state_dict())
    policy_on(policy, state).save(tmp_path / "copy")
    policy.save(tmp_path / "live")
    assert (tmp_path / "copy" / "adapter" / "adapter_model.safetensors").is_file()
    copy, live = load_file(tmp_path / "copy" / "model.safetensors"), load_file(tmp_path / "live" / "model.safetensors")
    assert copy.keys() == live.keys() and all(torch.equal(copy[k], live[k]) for k in live)


def test_one_process_is_not_sharded_and_cpu_fsdp_needs_an_fsdp_launch(monkeypatch):
    from accelerate.utils import DistributedType

    assert sharding(None) is None
    assert sharding(SimpleNamespace(num_processes=1, distributed_type=DistributedType.FSDP)) is None
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert not allow_cpu_fsdp(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert not allow_cpu_fsdp(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))  # GPUs: accelerate's own


def test_fsdp_checkpoints_are_told_apart(tmp_path):
    assert not is_fsdp_checkpoint(tmp_path)
    (tmp_path / "pytorch_model_fsdp_0").mkdir()
    assert is_fsdp_checkpoint(tmp_path)
    assert _policy_keys({"policy_model.a": 1, "policy_model.b": 2}) == {"a": 1, "b": 2}
