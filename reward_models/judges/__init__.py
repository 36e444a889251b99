"""Judges behind one interface (base.py): `shapeworld` (exact oracle), `hf` (local VLM), `http` (any
OpenAI-compatible server, chosen by passing its URL). `make_judge(name_or_url, **options)` builds one."""

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
    make_judge,
)
from reward_models.judges import hf, http, shapeworld  # noqa: E402,F401  (each registers its judge)

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
