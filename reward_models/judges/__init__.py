"""Judges behind one interface (base.py, with the JUDGES registry): `shapeworld` (exact oracle), `hf` (local VLM),
`http` (any OpenAI-compatible server, chosen by passing its URL). `make_judge(name_or_url, **options)` builds one,
once every built-in judge has registered itself (imported here)."""

from reward_models.judges.base import (
    FAILURE_KINDS,
    JUDGES,
    PAIR_KINDS,
    RUBRIC_TASKS,
    GraphRequest,
    GroundRequest,
    Judge,
    JudgeStats,
    PairRequest,
    RubricRequest,
    is_url,
)
from reward_models.judges import hf, http, shapeworld  # noqa: F401  (each registers its judge)


def make_judge(name_or_url: str, **options) -> Judge:
    """A judge by registry name ("shapeworld", "hf", ...) or an OpenAI-compatible base URL ("http://host:port/v1").

    Options set to None are dropped, so callers can pass every CLI flag whether or not this judge takes it.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if is_url(name_or_url):
        return JUDGES.get("http")(url=name_or_url, **options)
    return JUDGES.get(name_or_url)(**options)


__all__ = [
    "FAILURE_KINDS",
    "JUDGES",
    "PAIR_KINDS",
    "RUBRIC_TASKS",
    "GraphRequest",
    "GroundRequest",
    "Judge",
    "JudgeStats",
    "PairRequest",
    "RubricRequest",
    "is_url",
    "make_judge",
]
