"""The judge interface: rubric questions -> scores in [0, 1], grounding questions -> boxes on the 0..1000 grid.

Every way of judging (the exact ShapeWorld oracle, a local vision-language model, a remote OpenAI-compatible
server) answers the same batched questions, so reward terms and evaluations never know which judge they talk to:

    judge = make_judge("shapeworld")                     # or "hf" with model=DIR, or "http://127.0.0.1:8000/v1"
    judge.score([RubricRequest("semantic", prompt, chain=chain, metadata=meta)])   # -> [0.5]
    judge.ground([GroundRequest(image, "red circle")])                             # -> [[Box(...)]]
    judge.extract_graphs([GraphRequest(image, vocabulary)])                        # -> [SceneGraph(...)] (SG-IoU)
    judge.compare([PairRequest("image", prompt, image_a, image_b, metadata=meta)]) # -> [1.0] (the first is better)

A request carries everything any judge could want: the text and pictures a VLM reads, and the structured facts
(the chain text, GenEval metadata) an oracle reads. A judge that cannot answer returns None for that request
and counts the failure by kind in `judge.stats`; it never raises for one bad request.

Add a judge with one decorator line:

    @JUDGES.register("my-judge")
    class MyJudge(Judge): ...
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from PIL import Image

from janus_rig.chain import Box
from reward_models.scene_graph import SceneGraph, Vocabulary
from janus_rig.registry import Registry

logger = logging.getLogger(__name__)

# Rubric questions (GoT-R1's dual-stage rewards): prompt -> chain text, prompt -> drawn layout, prompt -> image.
RUBRIC_TASKS = ("semantic", "spatial", "prompt_image")
GROUND_TASK = "ground"
GRAPH_TASK = "scene_graph"  # extract a scene graph in a given vocabulary (LAION-SG's SG-IoU)
COMPARE_TASK = "compare"  # which of two images / chains matches the prompt better
PAIR_KINDS = ("image", "chain")
FAILURE_KINDS = (
    "unparseable",  # no score / no box could be read from the reply
    "out_of_range",  # a score outside the rubric's scale, a box outside the image
    "timeout",  # the judge did not answer in time (after retries)
    "http_error",  # connection refused, 4xx/5xx (after retries)
    "bad_request",  # the request lacks what this judge needs (e.g. metadata for the oracle)
    "error",  # anything else the judge raised
)
FAILURES_LOGGED_PER_KIND = 5  # the first few failures of each kind are warnings, the rest debug lines

JUDGES: Registry[type[Judge]] = Registry("judge")


@dataclass(frozen=True, eq=False)
class RubricRequest:
    """One rubric question. `image` is the generated image (prompt_image) or the drawn layout (spatial)."""

    task: str  # one of RUBRIC_TASKS
    prompt: str
    chain: str = ""  # the reasoning chain text (semantic, spatial)
    image: Image.Image | None = None
    metadata: dict | None = None  # GenEval-style metadata: what an oracle judge reads; VLM judges ignore it

    def __post_init__(self):
        if self.task not in RUBRIC_TASKS:
            raise ValueError(f"unknown rubric task {self.task!r}; valid: {', '.join(RUBRIC_TASKS)}")


@dataclass(frozen=True, eq=False)
class GroundRequest:
    """Locate every `name` in `image`; the judge answers with boxes on the 0..1000 grid ([] when none is there)."""

    image: Image.Image
    name: str


@dataclass(frozen=True, eq=False)
class GraphRequest:
    """Write the scene graph of `image` using only the words of `vocabulary` (objects, attributes, predicates)."""

    image: Image.Image
    vocabulary: Vocabulary


@dataclass(frozen=True, eq=False)
class PairRequest:
    """Which of two candidates for `prompt` is better: two images (kind "image") or two reasoning chains ("chain").

    The answer is the preference for `first`: 1.0 first, 0.0 second, 0.5 a tie. Callers that care about position
    bias ask both orders (janus_rig/eval/judge_run.py).
    """

    kind: str  # one of PAIR_KINDS
    prompt: str
    first: Image.Image | str
    second: Image.Image | str
    metadata: dict | None = None  # GenEval-style metadata: what an oracle judge reads

    def __post_init__(self):
        if self.kind not in PAIR_KINDS:
            raise ValueError(f"unknown pair kind {self.kind!r}; valid: {', '.join(PAIR_KINDS)}")
        expected = Image.Image if self.kind == "image" else str
        if not (isinstance(self.first, expected) and isinstance(self.second, expected)):
            raise ValueError(f"a {self.kind} pair needs two {expected.__name__} candidates")


class JudgeStats:
    """Thread-safe counters: requests, and failures by kind (FAILURE_KINDS), with the latest reason of each kind."""

    def __init__(self, judge_name: str):
        self.judge_name = judge_name
        self._counts: Counter = Counter()
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def fail(self, kind: str, detail: str = "") -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; valid: {', '.join(FAILURE_KINDS)}")
        with self._lock:
            self._counts["failures"] += 1
            self._counts[f"failures/{kind}"] += 1
            seen = self._counts[f"failures/{kind}"]
            self._reasons[kind] = detail[:300]
        level = logging.WARNING if seen <= FAILURES_LOGGED_PER_KIND else logging.DEBUG
        logger.log(level, "judge %s: %s (%d so far): %s", self.judge_name, kind, seen, detail[:300])

    def snapshot(self) -> dict[str, int]:
        """requests, failures and failures/<kind> for every kind (zeros included, so logged keys are stable)."""
        with self._lock:
            counts = dict(self._counts)
        out = {"requests": counts.get("requests", 0), "failures": counts.get("failures", 0)}
        out.update({f"failures/{k}": counts.get(f"failures/{k}", 0) for k in FAILURE_KINDS})
        out.update({k: v for k, v in counts.items() if k not in out})
        return out

    def reasons(self) -> dict[str, str]:
        """The latest reason of each failure kind seen, e.g. {"http_error": "POST ...: not an HTTP reply ..."}."""
        with self._lock:
            return dict(self._reasons)

    def log(self) -> None:
        logger.info("judge %s: %s", self.judge_name, self.snapshot())


class Judge:
    """Base class. Subclasses implement `score`, `ground`, `extract_graphs` and `compare`; VLM judges also
    implement `chat` (free text)."""

    name = "judge"
    # True when the judge reads the structured facts (metadata, chain) rather than the picture and prose, so
    # that the http protocol must send them (see docs/rewards.md).
    structured = False
    # True for a judge that runs one call at a time and answers a list in one pass (a model's padded batch):
    # `judge serve` then keeps one call in flight and gathers the requests that arrive meanwhile into the next.
    batched = False

    def __init__(self):
        self.stats = JudgeStats(self.name)

    def score(self, requests: list[RubricRequest]) -> list[float | None]:
        """One score in [0, 1] (the rubric's 0-10 scaled) or None per request."""
        raise NotImplementedError

    def ground(self, requests: list[GroundRequest]) -> list[list[Box] | None]:
        """Per request the boxes found (0..1000 grid, best first; [] when absent), or None when the judge failed."""
        raise NotImplementedError

    def extract_graphs(self, requests: list[GraphRequest]) -> list[SceneGraph | None]:
        """Per request the scene graph seen in the image, restricted to the request's vocabulary, or None."""
        raise NotImplementedError(f"judge {self.name!r} does not extract scene graphs")

    def compare(self, requests: list[PairRequest]) -> list[float | None]:
        """Per request the preference for the first candidate (1.0, 0.5 for a tie, 0.0), or None."""
        raise NotImplementedError(f"judge {self.name!r} does not compare pairs")

    def check(self, request) -> None:
        """Raise ValueError naming what is malformed in a request this judge reads (e.g. the oracle's metadata),
        before any work; `judge serve` answers it with a 400 and the reason. The default reads nothing extra."""

    def chat(self, text: str, images: list[Image.Image]) -> str:
        """A free-form reply to a user message (what `judge serve` answers to an unstructured request)."""
        raise NotImplementedError(f"judge {self.name!r} answers only structured requests (see docs/rewards.md)")

    def chat_many(self, messages: list[tuple[str, list[Image.Image]]]) -> list[str | None]:
        """Replies to several (text, images) user messages, None where the judge failed (counted); what a batch of
        free-form requests to `judge serve` becomes. The default asks `chat` once per message."""
        return [self.chat(text, images) for text, images in messages]

    def close(self) -> None:
        """Release threads, connections or models."""


def is_url(name_or_url: str) -> bool:
    return name_or_url.startswith(("http://", "https://"))

