"""GoT-R1's dual-stage rewards: terms (terms.py), their combination (combine.py), judges (judges/), the judge
server (server.py). `compute_rewards` runs the enabled terms on a batch and combines them:

    config = RewardConfig(terms=["R_sem", "R_spa", "R_RI", "R_PI"], combine="product", judge="shapeworld")
    judge = config.make_judge()
    result = compute_rewards(prompts, chains, images, metadata, judge, config)
    result.totals    # [0.81, None, ...]   None where a term could not be computed
    result.terms     # [{"R_sem": 1.0, "R_spa": 1.0, "R_RI": 0.81, "R_PI": 1.0, "R_PR": 1.0}, ...]
    result.metrics   # {"mean/R_RI": ..., "none/total": 1.0, "judge/failures": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from reward_models.combine import COMBINERS, combine, combine_batch
from reward_models.config import RewardConfig
from reward_models.judges import JUDGES, Judge, make_judge
from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS


@dataclass
class RewardResult:
    totals: list[float | None]
    terms: list[dict[str, float | None]]
    metrics: dict[str, float]


def _as_pil(image):
    if image is None or isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"images must be PIL images or (H, W, 3) uint8 arrays, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def compute_rewards(prompts, chains, images, metadata, judge: Judge, config: RewardConfig) -> RewardResult:
    """Run the enabled terms over one batch, combine them, and report per-term values and metrics.

    images: PIL images, (H, W, 3) uint8 arrays (a decoded rollout) or None per sample; judges receive PIL images.
    """
    n = len(prompts)
    images = [None] * n if images is None else [_as_pil(image) for image in images]
    if not (len(chains) == len(images) == n and (metadata is None or len(metadata) == n)):
        raise ValueError("prompts, chains, images and metadata must have one entry per sample")
    per_term = {
        name: REWARD_TERMS.get(name)(prompts, chains, images, metadata, judge, **config.term_options.get(name, {}))
        for name in config.terms
    }
    totals, rows, metrics = combine_batch(per_term, config.combine, config.weights)
    metrics.update({f"judge/{k}": float(v) for k, v in judge.stats.snapshot().items()})
    return RewardResult(totals, rows, metrics)


__all__ = [
    "COMBINERS",
    "DEFAULT_TERMS",
    "JUDGES",
    "REWARD_TERMS",
    "Judge",
    "RewardConfig",
    "RewardResult",
    "combine",
    "combine_batch",
    "compute_rewards",
    "make_judge",
]
