"""The trainers across processes: whole weights out of sharded ones (for saving and for sampling), the main process
writing alone, and the Trainer mixin that puts the two together. One process, DDP and ZeRO-1/2 hold whole parameters
on every process; FSDP (1 or 2) and DeepSpeed ZeRO-3 hold a slice of each, so anything that reads the weights
outside the wrapped model's forward (a save, a rollout, a bench) must gather them first.

    whole = gathered_policy(accelerator, policy, trainer.model_wrapped)   # every process (a collective)
    rollout = sample(whole, prompts, config, seed=0)                      # whole weights, no collectives

`gathered_policy` returns the policy itself when nothing is sharded; otherwise a copy built on the meta device whose
tensors are the gathered ones (no random init, no hooks: the rollout's own loop over the decoder layers then runs
the same on every process however many steps each takes, which a sharded module could not: its every forward is a
collective). A save gathers with `accelerator.get_state_dict` instead (whole tensors on the main process only) and
`write_policy` writes there alone, in transformers' format.

CPU rehearsal: accelerate runs FSDP only on accelerators; with `use_cpu` it silently trains a DDP replica per
process instead. `allow_cpu_fsdp` (called by `PolicyTrainer` before the Trainer builds its Accelerator) keeps the
FSDP path a launcher asked for on CPU processes (gloo), so `make rehearse` runs the multi-GPU code on two CPU
processes. It does nothing on GPUs or without an FSDP launch.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from peft import get_peft_model
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import JanusForConditionalGeneration

from janus_rig.model.policy import JanusPolicy, unwrap

log = logging.getLogger(__name__)

WRAPPED = "policy_model"  # PolicyModule's attribute: its state-dict keys start with "policy_model."
TRAINING_ARGS_FILE = "training_args.bin"  # transformers' TRAINING_ARGS_NAME, written beside every save


# --- the module the wrapper sees ------------------------------------------------------------------------------------
class PolicyModule(nn.Module):
    """The policy as the Trainer and its wrapper (DDP, FSDP, DeepSpeed) see it: `forward(fn, *args, **kwargs)` runs
    `fn(policy_model, *args, **kwargs)` inside one forward of the wrapped module.

    The losses call the policy's submodules directly (embeddings, decoder layers, heads: `janus_rig.model.mixed`).
    Outside a forward of the wrapped module DDP prepares no gradient reduction and FSDP / ZeRO-3 gather no
    parameters of the root; inside this forward both happen as for any model."""

    accepts_loss_kwargs = False  # the Trainer passes it no num_items_in_batch; each trainer normalises its own loss

    def __init__(self, model: nn.Module):
        super().__init__()
        self.policy_model = model

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs) -> None:
        """`activation_checkpointing: true` reaches the policy's decoder layers through this (the Trainer calls it).
        Non-reentrant by default: with LoRA or frozen embeddings the layers' inputs need no gradient of their own."""
        options = {"use_reentrant": False, **(activation_checkpointing_kwargs or {})}
        unwrap(self.policy_model).activation_checkpointing_enable(options, **kwargs)

    def forward(self, fn, *args, **kwargs):
        return fn(self.policy_model, *args, **kwargs)


# --- what is sharded --------------------------------------------------------------------------------------------------
def sharding(accelerator) -> str | None:
    """"fsdp" or "zero3" when each process holds only a slice of the parameters, else None."""
    if accelerator is None or accelerator.num_processes == 1:
        return None
    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp"
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        stage = accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)
        return "zero3" if stage == 3 else None
    return None


def _policy_keys(state: dict) -> dict:
    """The policy model's own keys: a PolicyModule's "policy_model." prefix dropped (the Trainer's model is one)."""
    prefix = WRAPPED + "."
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def whole_state_dict(accelerator, model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model` whole, on every process (a collective under FSDP and ZeRO-3: every
    process calls it). `model` as the Trainer wrapped it (`trainer.model_wrapped`). Keys of the policy model."""
    kind = sharding(accelerator)
    if kind == "fsdp":  # FSDP 1 and 2: torch's own gather, canonical keys (no wrapper prefixes)
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    elif kind == "zero3":
        deepspeed = _deepspeed()
        module = getattr(model, "module", model)  # the DeepSpeed engine's module
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    else:
        state = accelerator.unwrap_model(model).state_dict() if accelerator is not None else model.state_dict()
    return _policy_keys(state)


@contextmanager
def zero3_gathered(module: nn.Module):
    """`module`'s parameters whole for the block when DeepSpeed ZeRO-3 loaded them partitioned (zero.Init: every
    process holds a slice from the start), else nothing. A collective: every process enters it. The trainers' data
    preparation (the VQ encoding the code cache) runs inside it, before any wrapper exists."""
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]  # DeepSpeed's partitioned parameters
    if not params:
        yield
        return
    with _deepspeed().zero.GatheredParameters(params, modifier_rank=None):
        yield


def _deepspeed():
    try:
        import deepspeed  # optional: the gpu extra (ZeRO-3)
    except ImportError as err:  # only reached under a ZeRO-3 launch, which needs it anyway
        raise ImportError("ZeRO-3 gathers parameters with deepspeed.zero.GatheredParameters: pip install "
                          "deepspeed (an optional extra)") from err
    return deepspeed


# --- a policy on whole weights ----------------------------------------------------------------------------------------
def policy_on(policy: JanusPolicy, state: dict[str, torch.Tensor]) -> JanusPolicy:
    """A copy of `policy` (tokenizer, roles, loop settings alike) whose model holds `state`'s tensors: built on the
    meta device (no memory, no random init), LoRA adapters as the policy has them, then every tensor assigned. Buffers
    a state dict leaves out (non-persistent: the rotary tables) are taken from the policy, which never shards them."""
    base = policy.base
    with torch.device("meta"):
        model = JanusForConditionalGeneration(base.config)
    model.generation_config = copy.deepcopy(base.generation_config)
    if hasattr(policy.model, "peft_config"):
        name = policy.model.active_adapter
        model = get_peft_model(model, copy.deepcopy(policy.model.peft_config[name]), adapter_name=name)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"the gathered weights do not fit the policy: missing {sorted(missing)[:5]}, unexpected "
                         f"{sorted(unexpected)[:5]}")
    live = {_clean(name): buf for name, buf in unwrap(policy.model).named_buffers()}
    for name, buf in list(unwrap(model).named_buffers()):
        if buf.is_meta:
            owner, _, attr = name.rpartition(".")
            unwrap(model).get_submodule(owner)._buffers[attr] = live[name]
    whole = copy.copy(policy)
    whole.model = model.eval().requires_grad_(False)
    return whole


def _clean(name: str) -> str:
    """A parameter or buffer name without FSDP1's and activation checkpointing's wrapper parts."""
    for part in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(part, "")
    return name


def gathered_policy(accelerator, policy: JanusPolicy, model: nn.Module) -> JanusPolicy:
    """The policy with whole weights on this process, for sampling and decoding: `policy` itself when nothing is
    sharded, else `policy_on` the gathered weights (every process must call it; the copy lives until dropped)."""
    if sharding(accelerator) is None:
        return policy
    with torch.no_grad():
        return policy_on(policy, whole_state_dict(accelerator, model))


# --- saving -----------------------------------------------------------------------------------------------------------
def write_policy(accelerator, policy: JanusPolicy, state_dict: dict | None, out: str | Path,
                 manifest: dict | None = None, adapters: bool = True) -> Path:
    """The main process's part of a save: the policy in transformers' format in `out` (LoRA merged, adapters beside
    it; `JanusPolicy.save`), its weights `state_dict`, gathered whole by `accelerator.get_state_dict` on every
    process. Unsharded, the policy's own weights are those tensors and it saves itself."""
    if sharding(accelerator) is None:
        return policy.save(out, manifest, adapters=adapters)
    if not state_dict:
        raise ValueError("a sharded policy saves from a whole state dict: gather it with accelerator.get_state_dict "
                         "on every process and pass it here on the main process")
    return policy_on(policy, _policy_keys(state_dict)).save(out, manifest, adapters=adapters)


def is_fsdp_checkpoint(folder: str | Path) -> bool:
    """Whether a checkpoint holds FSDP's own model state (what a sharded run resumes from): the sharded folder
    pytorch_model_fsdp_0/ or the full pytorch_model_fsdp.bin that accelerate's save_fsdp_model writes."""
    return any(Path(folder).glob("pytorch_model_fsdp*"))


# --- the Trainer mixin ------------------------------------------------------------------------------------------------
class PolicyTrainer:
    """Trainer mixin, listed first: the trainers' `self.policy` saved and restored whatever the sharding.

    Every save goes through `_save(output_dir, state_dict)` with a whole state dict: `save_model` (checkpoint-N and
    the final model) gathers it on every process; the main process writes the policy in transformers' format (LoRA
    merged, adapters beside it, tokenizer, processor, roles). Under FSDP the Trainer also writes its sharded model
    and optimizer state in checkpoint-N, which resuming reads; otherwise resuming loads the checkpoint's policy."""

    policy: JanusPolicy

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if allow_cpu_fsdp(self.accelerator):
            self.is_fsdp_enabled = True

    def gathered_policy(self) -> JanusPolicy:
        """The policy with whole weights for a rollout or a bench (every process calls it at the same point)."""
        return gathered_policy(self.accelerator, self.policy, self.model_wrapped)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False,
                   manifest: dict | None = None) -> None:
        """checkpoint-N's model and the final one: gathered on every process, written by the main process."""
        state = self.accelerator.get_state_dict(self.model_wrapped)  # every process: a collective when sharded
        self._save(output_dir, state_dict=state, manifest=manifest)
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict=None, manifest: dict | None = None) -> None:
        """The Trainer's save hook, with the whole state dict gathered for it: the policy in transformers' format
        (LoRA merged, and the unmerged adapters that resuming restores) and the training arguments, by the main
        process; the Trainer adds optimizer, scheduler, RNG and trainer state (under FSDP: its sharded model too)."""
        if not self.args.should_save:
            return
        out = output_dir or self.args.output_dir
        write_policy(self.accelerator, self.policy, state_dict, out, manifest, adapters=True)
        torch.save(self.args, os.path.join(out, TRAINING_ARGS_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resuming: FSDP reads its own state from the checkpoint (the Trainer's loader); otherwise the checkpoint's
        trained weights (or LoRA adapters) go into the policy the optimizer steps."""
        if getattr(self, "is_fsdp_enabled", False):
            if not is_fsdp_checkpoint(resume_from_checkpoint):
                raise ValueError(f"{resume_from_checkpoint} holds no FSDP model state (pytorch_model_fsdp*): a "
                                 "sharded run resumes only from a checkpoint a sharded run wrote")
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.policy.load_weights(resume_from_checkpoint)


# --- CPU rehearsal ----------------------------------------------------------------------------------------------------
def allow_cpu_fsdp(accelerator) -> bool:
    """Under an FSDP launch (ACCELERATE_USE_FSDP) of CPU processes (MULTI_CPU), turn `accelerator` (just built,
    nothing prepared yet) into an FSDP one with the launcher's plugin (FSDP_* variables); accelerate alone falls back
    to DDP there. True when it did; a no-op anywhere else (GPUs, one process, no FSDP launch)."""
    if (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true"
            or accelerator.distributed_type != DistributedType.MULTI_CPU):
        return False
    state = accelerator.state
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState does on GPUs
    log.info("CPU rehearsal: FSDP (version %s) on %d CPU processes", state.fsdp_plugin.fsdp_version,
             state.num_processes)
    return True
