"""A judge behind any OpenAI-compatible chat-completions server (vLLM, SGLang, `janus-rig judge serve`, ...).

    judge = make_judge("http://127.0.0.1:8000/v1", timeout=60, retries=3, concurrency=16)

Each question is one POST {url}/chat/completions with one user message whose content is the image (a base64 PNG
data URL, when the question has one) then the rubric text (prompts.py). Requests run on one thread pool of
`concurrency` workers, shared by every caller: at most `concurrency` requests are open at once however many
threads ask (compute_rewards asks for all its terms at once), and a retry keeps its worker. Each attempt has one deadline, `timeout` seconds from connecting to the last byte of the
reply. Timeouts, connection errors (refused, reset, closed early), a body cut short, 429, 5xx and a 2xx whose body
is not JSON are retried `retries` times with exponential backoff (backoff x 2^attempt seconds); replies that will
not change (other 4xx, a reply that is not HTTP, a header line over 64 KiB, a body over 32 MiB) are not. A call
thus takes at most (retries + 1) x timeout plus the backoff. Every failure is counted by kind in `judge.stats`
(with its reason: `judge.stats.reasons()`); `score` and the other questions never raise for a transport failure.

Why the standard library's http.client, not the `openai` client or httpx with a retry library: neither gives a
total deadline. httpx's timeouts (and so openai's, which is built on httpx) bound each connect, read, write and
pool wait, not the request, so a server that sends a byte inside every read timeout holds a call as long as it
likes (httpcore declined a total timeout: encode/httpcore#936); a deadline there still needs the per-read
recomputation done here, or a watchdog thread. They would add httpx, httpcore, h11, anyio, certifi and idna (and
for openai pydantic, jiter, distro and sniffio) for two kinds of call, and which failures to retry (a non-JSON 200)
would still be ours to write. What failed before (urllib let http.client's own exceptions for a bad status line,
a long header line or a truncated body escape) is fixed by catching http.client's documented exceptions in one place
(`HttpJudge._attempt`); the deadline is the socket timeout recomputed before every connect, send and read
(`_Deadline`). Host name resolution is not under the deadline.

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
import http.client
import io
import itertools
import json
import random
import re
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from janus_rig.chain import Box
from reward_models.scene_graph import SceneGraph
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
    h, w = smart_resize(height, width, factor=QWEN_FACTOR, min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    return w, h


# --- the transport: one HTTP exchange within one deadline ------------------------------------------------------

MAX_REPLY_BYTES = 32 * 2**20  # a judge's reply is a few kB: a bigger one is refused, not held in memory
READ_CHUNK = 2**16  # bytes per read of a reply without Content-Length


class ReplyTooLarge(http.client.HTTPException):
    pass


def _left(deadline: float) -> float:
    """Seconds left before `deadline` (time.monotonic); TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request's deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """The socket's own file (so http.client's closing works as usual), each read waiting only for what is left
    of the deadline: a socket timeout alone bounds one read, and a server sending a byte per read never trips it."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._file, self._deadline = sock, sock.makefile("rb", buffering=0), deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(_left(self._deadline))
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


class _DeadlineSocket:
    """What http.client builds its response on: it only calls makefile("rb")."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _Deadline:
    """Mixed into http.client's connections: connect, every send and every read of the reply share one deadline."""

    def __init__(self, host: str, port: int | None, deadline: float, **kwargs):
        super().__init__(host, port, timeout=_left(deadline), **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = _left(self.deadline)
        super().connect()

    def send(self, data) -> None:
        if self.sock is not None:
            self.sock.settimeout(_left(self.deadline))
        super().send(data)

    def response_class(self, sock, *args, **kwargs) -> http.client.HTTPResponse:
        # http.client calls self.response_class(sock, method=...): as a method, it hands the response our reader.
        return http.client.HTTPResponse(_DeadlineSocket(sock, self.deadline), *args, **kwargs)


class _Connection(_Deadline, http.client.HTTPConnection):
    pass


class _SecureConnection(_Deadline, http.client.HTTPSConnection):
    pass


def exchange(scheme: str, host: str, port: int | None, method: str, path: str, body: bytes | None,
             headers: dict[str, str], deadline: float) -> tuple[int, bytes]:
    """One request on a fresh connection, all of it before `deadline`: (status, body).

    Raises TimeoutError past the deadline, OSError when the connection fails, http.client.HTTPException when the
    reply is not HTTP or stops short (ValueError for a URL it cannot send), ReplyTooLarge over MAX_REPLY_BYTES.
    """
    connection = (_SecureConnection if scheme == "https" else _Connection)(host, port, deadline)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        try:
            return response.status, _read_body(response)
        finally:
            response.close()
    finally:
        connection.close()


def _read_body(response: http.client.HTTPResponse) -> bytes:
    if response.length is not None:  # Content-Length: a shorter body raises IncompleteRead
        if response.length > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"a reply of {response.length} bytes (the limit is {MAX_REPLY_BYTES})")
        return response.read()
    chunks, size = [], 0  # chunked, or delimited by the server closing the connection
    while chunk := response.read(READ_CHUNK):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"a reply of more than {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _snippet(raw: bytes) -> str:
    return repr(raw[:200].decode("utf-8", "replace"))


def _outline(value) -> str:
    """What a JSON value is, for an error message (never its repr: it may be huge or nested thousands deep)."""
    if isinstance(value, dict):
        return f"an object with keys {[str(key)[:40] for key in itertools.islice(value, 5)]}"
    return f"a JSON {type(value).__name__}"


# --- the client --------------------------------------------------------------------------------------------------


class JudgeHTTPError(Exception):
    """A failed call: `kind` is the failure kind counted (http_error, timeout, unparseable, bad_request);
    `retry` says whether another attempt could answer differently."""

    def __init__(self, kind: str, detail: str, retry: bool = False):
        super().__init__(detail)
        self.kind, self.retry = kind, retry


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
        if api_key is not None and any(c in api_key for c in "\r\n"):
            raise ValueError("the judge's api_key holds a line break")
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"judge URL {url!r}: expected http(s)://host[:port]/path")
        self._scheme, self._host, self._port, self._path = parts.scheme, parts.hostname, parts.port, parts.path
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
            parsed = read(request, reply)
        except JudgeHTTPError as failure:
            self.stats.fail(failure.kind, str(failure))
            return None
        except ValueError as err:  # a question this client cannot put (e.g. an image below Qwen's smallest size)
            self.stats.fail("bad_request", f"{type(err).__name__}: {err}")
            return None
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
                if not isinstance(models, list) or not models:
                    raise JudgeHTTPError("http_error", f"{self.url}/models lists no model ({_outline(listing)})")
                for i, entry in enumerate(models):
                    if not (isinstance(entry, dict) and isinstance(entry.get("id"), str)):
                        raise JudgeHTTPError(
                            "http_error", f"{self.url}/models: entry {i} is not a model with a string id "
                                          f"({_outline(entry)})")
                entry = next((m for m in models if m["id"] == self.model), models[0])
                self.model = self.model or entry["id"]
                if self.structured_override is None:
                    self.structured = entry.get("structured_requests") is True
            self._discovered = True

    def _post_chat(self, body: dict) -> str:
        reply = self._call("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeHTTPError("unparseable", f"not a chat completion: {_outline(reply)}") from None
        if not isinstance(content, str):
            raise JudgeHTTPError("unparseable", f"message content is {type(content).__name__}, not text")
        return content

    def _call(self, method: str, path: str, body: dict | None):
        """One HTTP call with retries (backoff x 2^k s between attempts, each attempt within `timeout`): the
        decoded JSON reply, or JudgeHTTPError(kind)."""
        try:
            data = None if body is None else json.dumps(body).encode()
        except (TypeError, ValueError, RecursionError) as err:  # metadata that is not plain JSON
            raise JudgeHTTPError("bad_request", f"the request cannot be sent as JSON: {err}") from None
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        failure = JudgeHTTPError("http_error", "no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))
            try:
                return self._attempt(method, path, data, headers)
            except JudgeHTTPError as err:
                failure = err
                if not err.retry:
                    break
        raise failure

    def _attempt(self, method: str, path: str, data: bytes | None, headers: dict[str, str]):
        """One exchange within `timeout` seconds, start to finish: the decoded JSON of a 2xx reply."""
        where = f"{method} {self.url}{path}"
        try:
            status, raw = exchange(self._scheme, self._host, self._port, method, self._path + path, data, headers,
                                   time.monotonic() + self.timeout)
        except TimeoutError:
            raise JudgeHTTPError("timeout", f"{where}: no complete reply within {self.timeout:g} s", True) from None
        except http.client.RemoteDisconnected:
            raise JudgeHTTPError("http_error", f"{where}: the server closed the connection without a reply",
                                 True) from None
        except http.client.IncompleteRead as err:
            raise JudgeHTTPError("http_error", f"{where}: the reply's body broke off after {len(err.partial)} bytes",
                                 True) from None
        except http.client.LineTooLong as err:
            raise JudgeHTTPError("http_error", f"{where}: not a usable HTTP reply ({err})") from None
        except http.client.BadStatusLine as err:
            raise JudgeHTTPError("http_error", f"{where}: not an HTTP reply (status line {err.line[:100]!r})") from None
        except ReplyTooLarge as err:
            raise JudgeHTTPError("http_error", f"{where}: {err}") from None
        except (http.client.HTTPException, ValueError) as err:  # http.client's other protocol errors
            raise JudgeHTTPError("http_error", f"{where}: HTTP protocol error ({type(err).__name__}: {err})") from None
        except OSError as err:  # refused, reset, unreachable, TLS
            raise JudgeHTTPError("http_error", f"{where}: {type(err).__name__}: {err}", True) from None
        if not 200 <= status < 300:
            raise JudgeHTTPError("http_error", f"{where}: HTTP {status}: {_snippet(raw)}", status in RETRY_STATUS)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as err:  # a proxy's error page, a reply cut short, JSON nested too deep
            raise JudgeHTTPError("unparseable", f"{where}: HTTP {status} with a body that is not JSON "
                                                f"({type(err).__name__}): {_snippet(raw)}", True) from None
