"""A hostile HTTP server on 127.0.0.1 for the http judge's tests: each request gets the next behaviour of its
script (a reply that is not HTTP, a truncated body, a byte every 0.3 s, a reset, ...; the last one repeats).

Threads only. Every connection is bounded in time (CONNECTION_S, and a drip stops once the client has gone), and
the server stops itself at `close()` or after LIFETIME_S, whichever comes first:

    with HostileServer([GARBAGE]) as server:
        judge = make_judge(server.url, model="m", structured=False)
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

CONNECTION_S = 10.0  # the longest any one connection is served
LIFETIME_S = 120.0  # the longest the server runs, should a test forget to close it
MAX_HEAD = 2**20


def chat_body(content: str = '{"score": 7}') -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def head(status: str = "200 OK", **fields) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k.replace('_', '-')}: {v}" for k, v in fields.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw(data: bytes):
    """Send these bytes, then close."""
    return lambda conn: conn.sendall(data)


def reply(body: bytes, status: str = "200 OK"):
    return raw(head(status, Content_Type="application/json", Content_Length=len(body)) + body)


def ok(content: str = '{"score": 7}'):
    return reply(chat_body(content))


def drip(data: bytes, interval: float = 0.3, dripped: int = 20):
    """The first `dripped` bytes one at a time, `interval` s apart (each read of the client gets a byte well
    within any per-read timeout), then the rest: a patient client gets a good reply after dripped x interval s."""

    def behave(conn):
        for i in range(min(dripped, len(data))):
            conn.sendall(data[i:i + 1])  # raises once the client has closed: the drip ends with it
            time.sleep(interval)
        conn.sendall(data[dripped:])

    return behave


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() now sends RST


def silence(conn):
    """Close without a byte."""


GARBAGE = raw(b"GARBAGE\r\n\r\n")
TRUNCATED = raw(head(Content_Length=1000) + b'{"choices": [{"message": ')
LONG_HEADER = raw(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 70_000 + b"\r\n" + head()[len(b"HTTP/1.1 200 OK\r\n"):])
DEEP_JSON = reply(b"[" * 100_000 + b"]" * 100_000)  # valid JSON that json.loads cannot decode (RecursionError)
NOT_JSON = reply(b"<html>502 upstream busy</html>")
TOO_LARGE = raw(head(Content_Length=50 * 2**20))  # announced, never sent
BAD_CHUNK = raw(head(Transfer_Encoding="chunked") + b"zz\r\n")
CHUNKED_OK = raw(head(Transfer_Encoding="chunked") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chat_body()), chat_body()))
CLOSE_DELIMITED_OK = raw(head() + chat_body())  # no Content-Length: the body ends when the server closes
MODELS_WITH_A_STRING = reply(json.dumps({"object": "list", "data": [{"id": "m"}, "not a model"]}).encode())


class HostileServer:
    def __init__(self, script: list):
        self.script = list(script)
        self.requests: list[tuple[str, str]] = []  # (method, path) per request read
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._serve, name="hostile-server", daemon=True)
        self._thread.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        end = time.monotonic() + LIFETIME_S
        with self._listener:
            while not self._stop.is_set() and time.monotonic() < end:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(CONNECTION_S)
            try:
                method, path = _read_request(conn)
                with self._lock:
                    self.requests.append((method, path))
                    behave = self.script[min(len(self.requests), len(self.script)) - 1]
                behave(conn)
            except OSError:
                pass  # the client gave up (a drip, a deadline): that is what some tests look for


def _read_request(conn: socket.socket) -> tuple[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_HEAD:
            raise ConnectionError("no complete request head")
        data += chunk
    head_part, body = data.split(b"\r\n\r\n", 1)
    lines = head_part.decode("latin-1").split("\r\n")
    method, path = lines[0].split()[:2]
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the request body stopped short")
        body += chunk
    return method, path
