"""GoT-R1's dual-stage rewards: terms (terms.py), their combination (combine.py), judges (judges/), the judge
server (server.py). `compute_rewards` runs the enabled terms on a batch and combines them:

    config = RewardConfig(terms=["R_sem", "R_spa", "R_RI", "R_PI"], combine="product", judge="shapeworld")
    judge = config.make_judge()
    result = compute_rewards(prompts, chains, images, metadata, judge, config)
    result.totals    # [0.81, None, ...]   None where a term could not be computed
    result.terms     # [{"R_sem": 1.0, "R_spa": 1.0, "R_RI": 0.81, "R_PI": 1.0, "R_PR": 1.0}, ...]
    result.errors    # [None, "R_PI: ValueError: ...", ...]   why a term raised on a sample
    result.metrics   # {"mean/R_RI": ..., "none/total": 1.0, "errors/R_PI": 1.0, "failures/judge": 0.0, ...}

A judge failure (timeout, bad reply, ...) is a None value, counted by the judge (`judge/failures/<kind>`, and this
batch's `failures/judge`). A term that raises on one sample costs that sample, not the batch (see `_term_values`).

The terms run at once, one thread each, so every term's judge questions are in flight together: the http judge's
`concurrency` (judge_options) bounds the requests open at once over the whole step, and `judge serve` can batch
them. Judges are thread-safe (a local model judge takes one call at a time).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from reward_models.combine import COMBINERS, combine, combine_batch
from reward_models.config import RewardConfig
from reward_models.judges import JUDGES, Judge, make_judge
from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS

logger = logging.getLogger(__name__)

# What a term raises on an input it cannot score (malformed metadata, an unusable image, numbers out of range):
# that sample's value is None, counted in `errors/<term>`, and logged in one line. Any other exception is a bug:
# still None for that sample so the rest of the batch counts, but logged with its traceback, and raised when it
# hits every sample of the batch (a broken term must stop a run, not train it on nothing).
INPUT_ERRORS = (ValueError, ArithmeticError, RecursionError)


@dataclass
class RewardResult:
    totals: list[float | None]
    terms: list[dict[str, float | None]]
    metrics: dict[str, float]
    errors: list[str | None] = field(default_factory=list)  # per sample: why a term raised on it, else None


def _as_pil(image):
    if image is None or isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"images must be PIL images or (H, W, 3) uint8 arrays, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _term_values(name, prompts, chains, images, metadata, judge, options) -> tuple[list, list[str | None]]:
    """(values, errors) of one term over the batch. When the batch call raises, the term is asked again one
    sample at a time, so that the sample it cannot score is pinned down and the others keep their values."""
    term, n = REWARD_TERMS.get(name), len(prompts)
    try:
        return list(term(prompts, chains, images, metadata, judge, **options)), [None] * n
    except Exception as err:  # noqa: BLE001 — classified per sample below
        first = err
    values, errors, bugs = [None] * n, [None] * n, []
    for i in range(n):
        try:
            if n == 1:
                raise first
            meta = None if metadata is None else [metadata[i]]
            values[i] = term([prompts[i]], [chains[i]], [images[i]], meta, judge, **options)[0]
        except INPUT_ERRORS as err:
            errors[i] = f"{name}: {type(err).__name__}: {err}"
            logger.warning("reward term %s cannot score sample %d: %s", name, i, errors[i][:300])
        except Exception as err:  # noqa: BLE001 — logged with its traceback, raised if it is every sample's
            errors[i] = f"{name}: {type(err).__name__}: {err}"
            logger.error("reward term %s raised on sample %d (a bug?)", name, i, exc_info=err)
            bugs.append(err)
    if bugs and len(bugs) == n:
        raise bugs[0]
    return values, errors


def compute_rewards(prompts, chains, images, metadata, judge: Judge, config: RewardConfig) -> RewardResult:
    """Run the enabled terms over one batch, combine them, and report per-term values, errors and metrics.

    images: PIL images, (H, W, 3) uint8 arrays (a decoded rollout) or None per sample; judges receive PIL images.
    Never raises for a judge failure or for a sample a term cannot score: those values are None and counted.
    """
    n = len(prompts)
    images = [None] * n if images is None else [_as_pil(image) for image in images]
    if not (len(chains) == len(images) == n and (metadata is None or len(metadata) == n)):
        raise ValueError("prompts, chains, images and metadata must have one entry per sample")
    failures_before = judge.stats.snapshot()["failures"]
    per_term, errors, metrics = {}, [None] * n, {}
    with ThreadPoolExecutor(max_workers=len(config.terms), thread_name_prefix="reward-term") as pool:
        running = {name: pool.submit(_term_values, name, prompts, chains, images, metadata, judge,
                                     config.term_options.get(name, {})) for name in config.terms}
    for name in config.terms:
        values, term_errors = running[name].result()  # re-raises a term that failed on every sample
        per_term[name] = values
        metrics[f"errors/{name}"] = float(sum(e is not None for e in term_errors))
        errors = [mine or theirs for mine, theirs in zip(errors, term_errors)]  # the first term's reason per sample
    totals, rows, combined = combine_batch(per_term, config.combine, config.weights)
    metrics.update(combined)
    snapshot = judge.stats.snapshot()
    metrics["failures/judge"] = float(snapshot["failures"] - failures_before)
    metrics.update({f"judge/{k}": float(v) for k, v in snapshot.items()})
    return RewardResult(totals, rows, metrics, errors)


__all__ = [
    "COMBINERS",
    "DEFAULT_TERMS",
    "INPUT_ERRORS",
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
