"""Serve any local judge as an OpenAI-compatible chat-completions server (the subset the http judge uses).

    GET  /v1/models              {"object": "list", "data": [{"id": <judge>, "structured_requests": <bool>, ...}]}
    POST /v1/chat/completions    {"model", "messages": [{"role": "user", "content": [parts]}], ...}

A request whose text holds a `<janus-rig-request>{json}</janus-rig-request>` block is a structured question
(docs/rewards.md, docs/eval_suite.md): the server rebuilds the request (rubric, ground, scene graph, compare),
asks the judge, and answers with

    rubric:      {"score": <0-10>, "reward": <the exact value in [0, 1]>}
    grounding:   [{"bbox_2d": [x1, y1, x2, y2], "label": name}, ...]   pixels of the image as received
    scene graph: {"objects": [entity, ...], "relations": [[subject, predicate, object], ...]}   (the VLM prompt's form)
    comparison:  {"better": 1 | 2 | "tie", "preference": <the exact preference for the first, in [0, 1]>}

Any other request goes to the judge's free-form `chat` (VLM judges); the oracle answers those with a 400.
Reading a body into a judge request, and its bounds, is reward_models/server_requests.py.

Transport. One asyncio event loop reads every connection, so an idle or half-sent connection costs a socket and a
small buffer, never a thread; a complete request goes to a pool of `workers` threads that read and check it, then
ask the judge (judges guard their own state). Limits (ServerConfig): request line + headers within MAX_HEADER_BYTES
(431) and within `idle_timeout` of the connection going quiet; the body within `max_body` (413), flowing (no gap
over `idle_timeout`) and complete within `request_timeout` (408); request bodies held at once within
`max_pending_bytes` (503 with Retry-After); at most `max_connections` open (503). With `api_key` set every request
needs `Authorization: Bearer <key>` (401), checked before the body is read. Errors are JSON
{"error": {"message", "type", "code"}} and the server stays up.

Batching. A judge that answers a list in one pass (`Judge.batched`: the hf judge's padded generate) gets one call
at a time: the checked requests that arrive while it works, or within `batch_window` of the first of them, go
together into its next call, up to `max_batch` (vLLM's continuous batching, at the grain of whole requests rather
than decoding steps). The window is not waited when no other request is on its way. A request that fails its
checks is answered at once and never joins a batch; a judge call that raises is made again one request at a time,
so each request gets its own reply or its own error (server_requests.answer_batch). Other judges answer each
request alone on a worker, several at once.
"""

from __future__ import annotations

import asyncio
import hmac
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from http import HTTPStatus

from reward_models.judges.base import Judge
from reward_models.server_requests import (
    BadRequest,
    Question,
    answer_batch,
    completion,
    error_payload,
    failure,
    read_question,
)

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 2**10  # request line + headers (nginx's default buffer for large headers is 8 KiB)
LISTEN_BACKLOG = 1024  # connections the kernel queues before the loop accepts them (a burst of clients)
LINGER_SECONDS = 2.0  # after refusing a request whose body is unread, read and drop it this long, so the client
#                       gets the reply instead of a connection reset
API_KEY_ENV = "JANUS_RIG_JUDGE_API_KEY"
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")


@dataclass
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind (default: loopback only; any other address without an api key logs a warning)"})
    port: int = field(default=8000, metadata={"help": "port (0: any free port; the URL is printed)"})
    max_body: int = field(default=32 * 2**20, metadata={
        "help": "largest request body accepted, in bytes (413 above it, refused before it is read)"})
    max_pending_bytes: int = field(default=128 * 2**20, metadata={
        "help": "request bodies held at once over all connections, in bytes; a request that would pass it gets "
                "503 with Retry-After (the http judge retries it)"})
    workers: int = field(default=8, metadata={
        "help": "threads that ask the judge; further complete requests wait their turn (memory stays near "
                "max_pending_bytes + workers x one request's images)"})
    max_connections: int = field(default=2048, metadata={
        "help": "open connections at once; one more gets 503 (each costs a file descriptor: see `ulimit -n`)"})
    idle_timeout: float = field(default=10.0, metadata={
        "help": "seconds a connection may wait for a request's headers, or stall mid-body or mid-reply, "
                "before it is dropped"})
    request_timeout: float = field(default=60.0, metadata={
        "help": "seconds for one whole body to arrive (408 after), so a client trickling bytes cannot hold it"})
    api_key: str | None = field(default=None, metadata={
        "help": f"require `Authorization: Bearer <key>` on every request (401 without); default ${API_KEY_ENV}"})
    max_batch: int = field(default=32, metadata={
        "help": "requests answered by one call of a batched judge (hf: one generate; give it batch_size >= this); "
                "1 answers each alone"})
    batch_window: float = field(default=0.01, metadata={
        "help": "seconds a batched judge's next call waits for more requests to join the first (only while others "
                "are on their way; 0: never waits)"})

    def __post_init__(self):
        for name in ("max_body", "max_pending_bytes", "workers", "max_connections", "max_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("idle_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.batch_window <= 1:
            raise ValueError(f"batch_window must be between 0 and 1 s, got {self.batch_window!r}")
        if self.max_pending_bytes < self.max_body:
            raise ValueError(f"max_pending_bytes ({self.max_pending_bytes}) must be at least max_body "
                             f"({self.max_body}), or no body of the largest size could ever be read")
        if self.api_key == "":
            raise ValueError("an empty api key would accept `Bearer ` alone; give a key or none")

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log when a server is reachable beyond this machine with no key; None when it is not."""
    if api_key or is_loopback(host):
        return None
    return (f"judge server bound to {host} without an api key: anyone who can reach this port can use the judge "
            f"(set --api-key or ${API_KEY_ENV}, or bind 127.0.0.1)")


class _Refused(Exception):
    """A reply sent before the request was read in full: the connection closes after it (see _refuse)."""

    def __init__(self, status: HTTPStatus, message: str, headers: tuple[str, ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


class JudgeServer:
    """A judge behind HTTP. `serve_forever()` runs it (on any thread); `shutdown()` from another thread stops it
    and returns once it has stopped; `server_close()` releases the port."""

    def __init__(self, judge: Judge, config: ServerConfig | None = None):
        self.judge, self.config = judge, config or ServerConfig()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self.socket = socket.create_server((self.config.host, self.config.port), family=family,
                                           backlog=LISTEN_BACKLOG)
        warning = exposure_warning(self.config.host, self.config.api_key)
        if warning:
            logger.warning(warning)
        self._lock = threading.Lock()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future | None = None
        self._stopped = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._connections: set[asyncio.Task] = set()
        self._pending = 0  # body bytes held now (read or being read); only the loop thread touches it
        self._incoming = 0  # chat requests past their headers, not yet checked and queued for the judge (loop only)
        self._batcher: _Batcher | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def serve_forever(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        with self._lock:
            self._closing = True
            loop, stopping = self._loop, self._stopping
        if loop is None:  # not serving (yet): serve_forever sees _closing and returns at once
            return
        try:
            loop.call_soon_threadsafe(lambda: stopping.done() or stopping.set_result(None))
        except RuntimeError:  # the loop has already closed
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()

    def batch_summary(self) -> dict:
        """{"calls", "requests", "mean", "largest"}: the judge calls made so far and the requests they answered."""
        sizes = {} if self._batcher is None else dict(self._batcher.sizes)  # a C-level copy: the loop may add to it
        calls, requests = sum(sizes.values()), sum(size * n for size, n in sizes.items())
        return {"calls": calls, "requests": requests, "mean": round(requests / calls, 2) if calls else 0.0,
                "largest": max(sizes, default=0)}

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closing:
                return
            self._loop, self._stopping = loop, loop.create_future()
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="judge-worker")
        batched = self.judge.batched
        self._batcher = _Batcher(self.judge, self._pool, max_batch=self.config.max_batch if batched else 1,
                                 window=self.config.batch_window, slots=1 if batched else self.config.workers,
                                 incoming=lambda: self._incoming)
        server = await asyncio.start_server(self._connection, sock=self.socket, limit=MAX_HEADER_BYTES,
                                            backlog=LISTEN_BACKLOG)  # it listens again: 100 by default
        try:
            await self._stopping
        finally:
            self._batcher.closed = True  # no new judge calls on the way out
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            self._pool.shutdown(wait=False, cancel_futures=True)  # a judge call in progress finishes on its own

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            if len(self._connections) > self.config.max_connections:
                raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE,
                               f"too many open connections (max_connections={self.config.max_connections})",
                               ("Retry-After: 1",))
            while await self._one_request(reader, writer):
                pass
        except _Refused as refused:
            await self._refuse(reader, writer, refused.status, error_payload(refused.status, str(refused)),
                               refused.headers)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: there is no one to answer
        except asyncio.CancelledError:
            pass  # shutting down; ending normally spares asyncio's connection callback a traceback (Python 3.11)
        except Exception:  # noqa: BLE001 — a bug on one connection must not stop the server
            logger.exception("judge server: connection handler failed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read, answer and log one request; whether the connection stays open for another."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.config.idle_timeout)
        except asyncio.IncompleteReadError:
            return False  # closed between requests, or half-way through the headers
        except asyncio.LimitOverrunError:
            raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                           f"request line and headers exceed {MAX_HEADER_BYTES} bytes") from None
        method, path, version, headers = _parse_head(head)
        keep_alive = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
        if self.config.api_key is not None and not _authorized(headers.get("Authorization"), self.config.api_key):
            raise _Refused(HTTPStatus.UNAUTHORIZED, "missing or wrong api key: send `Authorization: Bearer <key>`",
                           ('WWW-Authenticate: Bearer realm="janus-rig-judge"',))
        chat = method == "POST" and path in CHAT_PATHS
        if chat:
            status, payload = await self._chat(reader, writer, headers)
        elif method not in ("GET", "POST"):
            raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method[:20]} is not served; use GET or POST",
                           ("Allow: GET, POST",))
        elif method == "GET" and path in MODELS_PATHS:
            model = {"id": self.judge.name, "object": "model", "created": 0, "owned_by": "janus-rig",
                     "structured_requests": self.judge.structured}
            status, payload = HTTPStatus.OK, {"object": "list", "data": [model]}
        else:
            route = "/v1/models" if method == "GET" else "/v1/chat/completions"
            status = HTTPStatus.NOT_FOUND
            payload = error_payload(status, f"no route {method} {path[:100]}; try {route}")
        if not chat and _has_body(headers):  # a body no route reads: answer, then drop it and close
            await self._refuse(reader, writer, status, payload)
            return False
        logger.debug("%s %s %s -> %d", writer.get_extra_info("peername"), method, path[:100], status)
        await self._send(writer, status, payload, keep_alive)
        return keep_alive

    async def _chat(self, reader, writer, headers) -> tuple[HTTPStatus, dict]:
        """Read the body (holding its bytes against max_pending_bytes), have a worker check it, and the judge
        answer it (in a batch, for a batched judge)."""
        if headers.get("Transfer-Encoding") is not None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not accepted; send a Content-Length")
        size = _content_length(headers, self.config.max_body)
        if self._pending + size > self.config.max_pending_bytes:
            raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, f"busy: request bodies held now would pass "
                           f"max_pending_bytes={self.config.max_pending_bytes}; retry shortly", ("Retry-After: 1",))
        self._pending += size
        self._incoming += 1
        on_its_way = True
        try:
            if headers.get("Expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await self._read_body(reader, size)
            loop = asyncio.get_running_loop()
            try:
                question = await loop.run_in_executor(self._pool, read_question, self.judge, body)
            except Exception as err:  # noqa: BLE001 — BadRequest: its 4xx; a bug in reading: 500
                if not isinstance(err, BadRequest):
                    logger.error("judge server: reading a request failed", exc_info=err)
                return failure(err)  # answered alone: it never joins a batch
            self._incoming -= 1
            on_its_way = False
            try:
                reply = await self._batcher.ask(question)
            except Exception as err:  # noqa: BLE001 — this question's own error (server_requests.answer_batch)
                return failure(err)
            return HTTPStatus.OK, completion(self.judge, question, reply)
        finally:
            self._pending -= size
            if on_its_way:  # refused, cut off or malformed: a batch waiting for it need not wait
                self._incoming -= 1
                self._batcher.pump()

    async def _read_body(self, reader: asyncio.StreamReader, size: int) -> bytearray:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        body = bytearray()
        while len(body) < size:
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(reader.read(size - len(body)), min(left, self.config.idle_timeout))
            except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
                raise _Refused(HTTPStatus.REQUEST_TIMEOUT, f"the body stalled or took over "
                               f"{self.config.request_timeout:g} s ({len(body)} of {size} bytes came)") from None
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(body[:100]), size)
            body += chunk
        return body

    async def _send(self, writer, status: HTTPStatus, payload: dict, keep_alive: bool,
                    extra: tuple[str, ...] = ()) -> None:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {int(status)} {status.phrase}", "Server: janus-rig-judge/1",
                "Content-Type: application/json", f"Content-Length: {len(data)}",
                f"Connection: {'keep-alive' if keep_alive else 'close'}", *extra]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await asyncio.wait_for(writer.drain(), self.config.idle_timeout)

    async def _refuse(self, reader, writer, status: HTTPStatus, payload: dict, headers: tuple[str, ...] = ()) -> None:
        """Reply, close our side, then drop what the client still sends (its unread body) for a moment: closing
        a socket with unread data resets it, and the client would see the reset instead of the reply."""
        try:
            await self._send(writer, status, payload, False, headers)
            if writer.can_write_eof():
                writer.write_eof()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LINGER_SECONDS
            while (left := deadline - loop.time()) > 0 and await asyncio.wait_for(reader.read(2**16), left):
                pass
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass


class _Batcher:
    """Gathers checked questions into judge calls, on the event loop (the module docstring's Batching).

    At most `slots` calls run at once, each on a worker, each taking up to `max_batch` questions, oldest first.
    While a slot is free but fewer than max_batch questions wait, the call waits until the oldest has waited
    `window` seconds, unless `incoming()` says no other request is on its way.
    """

    def __init__(self, judge: Judge, pool: ThreadPoolExecutor, *, max_batch: int, window: float, slots: int,
                 incoming):
        self.judge, self.pool, self.incoming = judge, pool, incoming
        self.max_batch, self.window, self.free = max_batch, window, slots
        self.queue: deque[tuple[float, Question, asyncio.Future]] = deque()  # (arrival, question, its reply)
        self.timer: asyncio.TimerHandle | None = None
        self.sizes: Counter = Counter()  # questions per call -> calls
        self.closed = False

    async def ask(self, question: Question) -> str:
        """The reply text; raises the question's own error (BadRequest, or what the judge raised on it)."""
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self.queue.append((loop.time(), question, reply))
        self.pump()
        return await reply

    def pump(self) -> None:
        """Start every call that may start now; otherwise set a timer for the oldest question's window."""
        loop = asyncio.get_running_loop()
        while self.free and self.queue and not self.closed:
            while self.queue and self.queue[0][2].done():  # its client left (the connection was cancelled)
                self.queue.popleft()
            if not self.queue:
                return
            wait = self.queue[0][0] + self.window - loop.time()
            if len(self.queue) < self.max_batch and wait > 0 and self.incoming() > 0:
                if self.timer is None:
                    self.timer = loop.call_later(wait, self._window_closed)
                return
            batch = []
            while self.queue and len(batch) < self.max_batch:
                _, question, reply = self.queue.popleft()
                if not reply.done():
                    batch.append((question, reply))
            if batch:
                self.free -= 1
                self.sizes[len(batch)] += 1
                call = loop.run_in_executor(self.pool, answer_batch, self.judge, [q for q, _ in batch])
                call.add_done_callback(lambda done, batch=batch: self._answered(batch, done))

    def _window_closed(self) -> None:
        self.timer = None
        self.pump()

    def _answered(self, batch: list[tuple[Question, asyncio.Future]], call: asyncio.Future) -> None:
        self.free += 1
        if call.cancelled():  # shutting down
            for _, reply in batch:
                reply.cancel()
            return
        error = call.exception()  # answer_batch reports per question; this is a bug in it, for every question
        replies = [error] * len(batch) if error is not None else call.result()
        for (_, reply), text in zip(batch, replies):
            if reply.done():
                continue
            if isinstance(text, BaseException):
                reply.set_exception(text)
            else:
                reply.set_result(text)
        self.pump()


def _parse_head(head: bytes) -> tuple[str, str, str, http.client.HTTPMessage]:
    """(method, path without query or trailing slash, version, headers) of a request head; _Refused when bad."""
    request_line, _, rest = head.partition(b"\r\n")
    parts = request_line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refused(HTTPStatus.BAD_REQUEST, f"bad request line {request_line[:100]!r}")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as err:  # too many headers, a line too long
        raise _Refused(HTTPStatus.BAD_REQUEST, f"bad headers: {str(err)[:100]}") from None
    method, target, version = parts
    return method, target.split("?", 1)[0].rstrip("/"), version, headers


def _has_body(headers) -> bool:
    return headers.get("Transfer-Encoding") is not None or headers.get("Content-Length", "0").strip() != "0"


def _content_length(headers, max_body: int) -> int:
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
    value = ", ".join(sorted(values))
    if len(values) > 1 or not re.fullmatch(r"[0-9]+", value):
        raise _Refused(HTTPStatus.BAD_REQUEST, f"bad Content-Length {value[:60]!r}")
    size = int(value) if len(value) <= 15 else max_body + 1  # int() of a 5,000-digit string raises
    if size > max_body:
        raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"body of {value[:20]} bytes exceeds the limit of {max_body}")
    return size


def _authorized(header: str | None, api_key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    # parse_headers decoded the header as latin-1, so this gives back the bytes sent; compare_digest takes the
    # same time however much of a guessed key is right
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), api_key.encode())


def api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def start_in_thread(judge: Judge, host: str = "127.0.0.1", port: int = 0, **settings) -> tuple[JudgeServer, threading.Thread]:
    """A running server on a background thread (port 0: a free port; see server.url). Stop: server.shutdown().

    `settings` are ServerConfig fields (max_body, workers, idle_timeout, api_key, ...).
    """
    server = JudgeServer(judge, ServerConfig(host=host, port=port, **settings))
    thread = threading.Thread(target=server.serve_forever, name="judge-server", daemon=True)
    thread.start()
    return server, thread
