"""Settings of one rollout: how many samples per prompt, how the chain and the image tokens are drawn.

GoT-R1's GRPO stage: group size 16, text and image temperature 1.0, CFG weight 5, chain up to 600 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class RolloutConfig:
    group_size: int = field(default=4, metadata={"help": "samples per prompt (GRPO's G; GoT-R1 uses 16)"})
    chain: bool = field(
        default=True,
        metadata={
            "help": "write a reasoning chain before the image; False is the no-reasoning ablation: the prompt "
            "without the chain instruction, then <begin_of_image> right away"
        },
    )
    max_chain_tokens: int = field(
        default=600,
        metadata={"help": "chain tokens before <begin_of_image> is forced and the row is flagged `truncated`"},
    )
    min_chain_tokens: int = field(
        default=0, metadata={"help": "<begin_of_image> cannot be sampled before this many chain tokens"}
    )
    text_temperature: float = field(default=1.0, metadata={"help": "divides the chain logits"})
    text_top_k: int | None = field(default=None, metadata={"help": "sample the chain from the k likeliest tokens"})
    text_top_p: float = field(default=1.0, metadata={"help": "nucleus sampling of the chain (1.0: off)"})
    suppress_special: bool = field(
        default=True,
        metadata={
            "help": "the chain never samples BOS, EOS, pad, <image_placeholder> or <end_of_image> "
            "(none of them is chain text; <begin_of_image> ends the chain)"
        },
    )
    cfg_weight: float = field(
        default=5.0, metadata={"help": "classifier-free guidance: logits = u + w * (c - u); 1.0 turns it off"}
    )
    image_temperature: float = field(default=1.0, metadata={"help": "divides the guided image logits"})
    image_top_k: int | None = field(default=None, metadata={"help": "sample image codes from the k likeliest"})
    images: bool = field(
        default=True,
        metadata={"help": "sample the image; False stops every row after its chain (no codes: N = 0), for "
                  "training on the chain alone with rewards that read no image"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "compute dtype of the rollout: auto (the weights'), bf16, fp16 or fp32. One other than the "
                  "weights' runs the forwards under torch.autocast and keeps the KV caches in it (bf16 on an fp32 "
                  "LoRA base: half the cache memory, tensor-core matmuls); log-probs are fp32 either way"},
    )

    def __post_init__(self):
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.max_chain_tokens < 0:
            raise ValueError(f"max_chain_tokens must be >= 0, got {self.max_chain_tokens}")
        if not 0 <= self.min_chain_tokens <= self.max_chain_tokens:
            raise ValueError(
                f"min_chain_tokens={self.min_chain_tokens} must lie in 0..max_chain_tokens={self.max_chain_tokens}; "
                "set min_chain_tokens = max_chain_tokens for chains of a fixed length"
            )
        if not self.chain and not self.images:
            raise ValueError("chain=False and images=False leave nothing to sample")
        if not self.chain and self.min_chain_tokens:
            raise ValueError("chain=False writes no chain: drop min_chain_tokens (or set chain=True)")
        for name in ("text_temperature", "image_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}; for near-greedy use 1e-3")
        if not 0 < self.text_top_p <= 1:
            raise ValueError(f"text_top_p must lie in (0, 1], got {self.text_top_p}; 1.0 turns it off")
        for name in ("text_top_k", "image_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (off), got {value}")
        if not self.cfg_weight >= 0:
            raise ValueError(f"cfg_weight must be >= 0, got {self.cfg_weight}; 1.0 means no guidance")
        if self.dtype != "auto" and self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: auto, {', '.join(COMPUTE_DTYPES)}")

    def compute_dtype(self, weights: torch.dtype) -> torch.dtype:
        """The dtype the rollout computes in, for a policy whose weights are in `weights`."""
        if self.dtype == "auto":
            return weights
        dtype = COMPUTE_DTYPES[self.dtype]
        if dtype == torch.float32 and weights != torch.float32:
            raise ValueError(f"dtype fp32 cannot run {weights} weights in fp32 (autocast only lowers precision): "
                             "load the policy in float32, or use dtype auto")
        return dtype

    @property
    def guided(self) -> bool:
        """Whether unconditional rows are needed at all (w = 1 is the conditional distribution itself)."""
        return self.cfg_weight != 1.0
