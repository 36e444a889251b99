"""A judge behind any OpenAI-compatible chat-completions server (vLLM, SGLang, `janus-rig judge serve`, ...).

    judge = make_judge("http://127.0.0.1:8000/v1", timeout=60, retries=3, concurrency=16)

Each question is one POST {url}/chat/completions with one user message whose content is the image (a base64 PNG
data URL, when the question has one) then the rubric text (prompts.py). Requests run on a thread pool of
`concurrency` workers; timeouts, connection errors, 429 and 5xx are retried with exponential backoff
(backoff x 2^attempt seconds); other 4xx are not. Every failure is counted by kind in `judge.stats`.

Structured judging. A server whose model entry in GET {url}/models carries `"structured_requests": true` (the
served ShapeWorld oracle does) reads the question's facts rather than its prose: the client then appends one
more text part, `<janus-rig-request>{json}</janus-rig-request>`, with the task, prompt, chain, metadata, object
name, vocabulary (scene graphs) or pair (comparisons). `structured=True/False` forces it on or off. The protocol
is documented in docs/rewards.md (and its evaluation questions in docs/eval_suite.md).

Grounding coordinates (`coords`): "pixels" (the reply is in pixels of the image as sent: `judge serve`),
"qwen2.5-vl" (the server resizes as Qwen2.5-VL's processor does: the client computes the same smart_resize),
"norm1000" (a 0..1000 grid).
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from janus_rig.chain import Box
from janus_rig.eval.sg_iou import SceneGraph
from reward_models.judges.base import (
    COMPARE_TASK,
    GRAPH_TASK,
    GROUND_TASK,
    JUDGES,
    GraphRequest,
    GroundRequest,
    Judge,
    PairRequest,
    RubricRequest,
)
from reward_models.judges.parse import parse_boxes, parse_preference, parse_scene_graph, parse_score
from reward_models.judges.prompts import question

STRUCTURED_OPEN, STRUCTURED_CLOSE = "<janus-rig-request>", "</janus-rig-request>"
STRUCTURED_RE = re.compile(re.escape(STRUCTURED_OPEN) + r"(.*?)" + re.escape(STRUCTURED_CLOSE), re.DOTALL)
PROTOCOL_VERSION = 1
RETRY_STATUS = (429, 500, 502, 503, 504)
COORD_SPACES = ("pixels", "qwen2.5-vl", "norm1000")
# Qwen2.5-VL's preprocessor_config.json: the resize a server applies before the model sees the image.
QWEN_FACTOR, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 28, 56 * 56, 28 * 28 * 16384


# --- the wire format (shared with reward_models/server.py) -----------------------------------------------------


def image_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def structured_block(fields: dict) -> str:
    return STRUCTURED_OPEN + json.dumps({"version": PROTOCOL_VERSION, **fields}) + STRUCTURED_CLOSE


Request = RubricRequest | GroundRequest | GraphRequest | PairRequest


def request_fields(request: Request) -> dict:
    """The facts of a request, as the structured block carries them (a pair's images travel as image parts)."""
    if isinstance(request, GroundRequest):
        return {"task": GROUND_TASK, "name": request.name}
    if isinstance(request, GraphRequest):
        return {"task": GRAPH_TASK, "vocabulary": request.vocabulary.to_json()}
    if isinstance(request, PairRequest):
        chains = {} if request.kind == "image" else {"first": request.first, "second": request.second}
        return {"task": COMPARE_TASK, "kind": request.kind, "prompt": request.prompt, "metadata": request.metadata,
                **chains}
    return {"task": request.task, "prompt": request.prompt, "chain": request.chain, "metadata": request.metadata}


def chat_body(model: str, request: Request, structured: bool, max_tokens: int) -> dict:
    """The chat-completions body for one question: [images], its text (prompts.question), [structured block]."""
    text, images = question(request)
    content = [{"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in images]
    content.append({"type": "text", "text": text})
    if structured:
        content.append({"type": "text", "text": structured_block(request_fields(request))})
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }


def qwen_resized(width: int, height: int) -> tuple[int, int]:
    """(width, height) after Qwen2.5-VL's smart_resize (sides multiples of 28, pixels within its bounds)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # no torchvision needed

    h, w = smart_resize(height, width, factor=QWEN_FACTOR, min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    return w, h


# --- the client --------------------------------------------------------------------------------------------------


class JudgeHTTPError(Exception):
    """A failed call: `kind` is the failure kind counted (http_error, timeout, unparseable)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@JUDGES.register("http")
class HttpJudge(Judge):
    name = "http"

    def __init__(
        self,
        url: str,
        model: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        structured: bool | None = None,
        coords: str = "pixels",
        max_tokens: int = 512,
        api_key: str | None = None,
    ):
        super().__init__()
        if coords not in COORD_SPACES:
            raise ValueError(f"unknown coords {coords!r}; valid: {', '.join(COORD_SPACES)}")
        if timeout <= 0 or retries < 0 or backoff < 0 or concurrency < 1:
            raise ValueError("need timeout > 0, retries >= 0, backoff >= 0 and concurrency >= 1")
        self.url = url.rstrip("/")
        self.model, self.structured_override = model, structured
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.coords, self.max_tokens = coords, max_tokens
        self.api_key = api_key
        self.structured = bool(structured)
        self._discovered = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http-judge")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- the interface ---------------------------------------------------------------------------------------

    def score(self, requests: list[RubricRequest]) -> list[float | None]:
        return self._ask(requests, lambda request, reply: parse_score(reply))

    def ground(self, requests: list[GroundRequest]) -> list[list[Box] | None]:
        def read(request, reply):
            width, height = self._space(request.image)
            return parse_boxes(reply, width, height)

        return self._ask(requests, read)

    def extract_graphs(self, requests: list[GraphRequest]) -> list[SceneGraph | None]:
        return self._ask(requests, lambda request, reply: parse_scene_graph(reply, request.vocabulary))

    def compare(self, requests: list[PairRequest]) -> list[float | None]:
        return self._ask(requests, lambda request, reply: parse_preference(reply))

    def chat(self, text: str, images: list[Image.Image]) -> str:
        self._discover()
        content = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in images]
        content.append({"type": "text", "text": text})
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": self.max_tokens}
        return self._post_chat(body)

    # --- helpers ---------------------------------------------------------------------------------------------

    def _space(self, image: Image.Image) -> tuple[float, float]:
        if self.coords == "norm1000":
            return 1000.0, 1000.0
        if self.coords == "qwen2.5-vl":
            return qwen_resized(*image.size)
        return image.size

    def _ask(self, requests, read) -> list:
        if not requests:
            return []
        try:
            self._discover()
        except JudgeHTTPError as failure:
            for _ in requests:
                self.stats.count("requests")
                self.stats.fail(failure.kind, str(failure))
            return [None] * len(requests)
        return list(self._pool.map(lambda r: self._ask_one(r, read), requests))

    def _ask_one(self, request, read):
        self.stats.count("requests")
        try:
            reply = self._post_chat(chat_body(self.model, request, self.structured, self.max_tokens))
        except JudgeHTTPError as failure:
            self.stats.fail(failure.kind, str(failure))
            return None
        parsed = read(request, reply)
        if not parsed.ok:
            self.stats.fail(parsed.failure, parsed.detail)
        return parsed.value

    def _discover(self) -> None:
        """Once: the model name (the server's first model unless given) and whether it reads structured requests."""
        with self._lock:
            if self._discovered:
                return
            if self.model is None or self.structured_override is None:
                listing = self._call("GET", "/models", None)
                models = listing.get("data") if isinstance(listing, dict) else None
                if not isinstance(models, list) or not models or not isinstance(models[0], dict):
                    raise JudgeHTTPError("http_error", f"{self.url}/models lists no model")
                entry = next((m for m in models if m.get("id") == self.model), models[0])
                self.model = self.model or str(entry.get("id"))
                if self.structured_override is None:
                    self.structured = entry.get("structured_requests") is True
            self._discovered = True

    def _post_chat(self, body: dict) -> str:
        reply = self._call("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeHTTPError("unparseable", f"not a chat completion: {str(reply)[:200]}") from None
        if not isinstance(content, str):
            raise JudgeHTTPError("unparseable", f"message content is {type(content).__name__}, not text")
        return content

    def _call(self, method: str, path: str, body: dict | None):
        """One HTTP call with retries; the decoded JSON reply, or JudgeHTTPError(kind)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        failure = JudgeHTTPError("http_error", "no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))
            request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                failure = JudgeHTTPError("http_error", f"HTTP {err.code} from {path}: {_error_text(err)}")
                if err.code not in RETRY_STATUS:
                    raise failure from None
                continue
            except (TimeoutError, socket.timeout) as err:
                failure = JudgeHTTPError("timeout", f"{path}: no answer in {self.timeout:g} s ({err})")
                continue
            except urllib.error.URLError as err:
                is_timeout = isinstance(err.reason, (TimeoutError, socket.timeout))
                failure = JudgeHTTPError("timeout" if is_timeout else "http_error", f"{path}: {err.reason}")
                continue
            except (ConnectionError, OSError) as err:
                failure = JudgeHTTPError("http_error", f"{path}: {err}")
                continue
            try:
                return json.loads(raw)
            except ValueError:
                raise JudgeHTTPError("unparseable", f"{path} answered non-JSON: {raw[:200]!r}") from None
        raise failure


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return err.read()[:300].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 — the body of an error is a courtesy
        return ""
