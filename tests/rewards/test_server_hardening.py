"""`judge serve` under attack: metadata bounds and types, timeouts, a bounded pool, byte and connection caps, an api
key, and a fuzz run of 10,000 generated requests (issue 28, defects 1, 4 and 5)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from reward_models.judges import make_judge
from reward_models.judges.base import PairRequest, RubricRequest
from reward_models.judges.http import chat_body
from reward_models.server import API_KEY_ENV, ServerConfig, exposure_warning, start_in_thread
from tests.rewards.server_fuzz import BATCH, EXAMPLES, batch, seeds, send

METADATA = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a red circle"}
CHAIN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(100,100),(400,400)<|box_end|>."


@contextmanager
def serving(**settings):
    server, thread = start_in_thread(make_judge("shapeworld"), "127.0.0.1", 0, **settings)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _body(metadata=METADATA, task="semantic") -> bytes:
    if task == "compare":
        request = PairRequest("chain", "a red circle", CHAIN, CHAIN, metadata=metadata)
    else:
        request = RubricRequest(task, "a red circle", chain=CHAIN, metadata=metadata)
    return json.dumps(chat_body("shapeworld", request, structured=True, max_tokens=16)).encode()


def _post(address, body: bytes, headers: dict | None = None, timeout: float = 10):
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json",
                                                                           **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null"), response
    finally:
        conn.close()


def _raw(address, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes, then read until the server closes (or `timeout`); everything it sent."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return reply


# --- defects 1 and 4: the oracle's metadata, in the library and through the server ---------------------------

HUGE_OR_MALFORMED = {
    "count 3,000,000": ({"include": [{"class": "circle", "count": 3_000_000}]}, "count must be an integer in 1..64"),
    "count 10**9": ({"include": [{"class": "circle", "count": 10**9}]}, "count must be an integer in 1..64"),
    "colour a list": ({"include": [{"class": "circle", "count": 1, "color": ["red"]}]}, "colour ['red']"),
    "colour a dict": ({"include": [{"class": "circle", "count": 1, "color": {"a": 1}}]}, "include[0]: colour"),
    "count a string": ({"include": [{"class": "circle", "count": "2"}]}, "include[0]: count"),
    "count a float": ({"include": [{"class": "circle", "count": 2.5}]}, "include[0]: count"),
    "count a bool": ({"include": [{"class": "circle", "count": True}]}, "include[0]: count"),
    "count negative": ({"include": [{"class": "circle", "count": -1}]}, "include[0]: count"),
    "include not a list": ({"include": {"class": "circle"}}, "non-empty 'include' list"),
    "entry not an object": ({"include": ["circle"]}, "include[0] must be an object"),
}


@pytest.mark.parametrize("case", sorted(HUGE_OR_MALFORMED))
def test_the_library_refuses_bad_metadata_at_once(case):
    metadata, reason = HUGE_OR_MALFORMED[case]
    judge = make_judge("shapeworld")
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        judge.check(RubricRequest("semantic", "p", chain="c", metadata=metadata))
    assert reason in str(err.value)
    assert judge.score([RubricRequest("semantic", "p", chain="c", metadata=metadata)]) == [None]
    assert time.perf_counter() - start < 0.1  # the audit's count of 3,000,000 took 1.2 s and +230 MB
    assert judge.stats.snapshot()["failures/bad_request"] == 1


def test_huge_counts_and_bad_types_are_a_400_with_the_reason_and_the_server_goes_on():
    with serving() as server:
        for case, (metadata, reason) in sorted(HUGE_OR_MALFORMED.items()):
            for task in ("semantic", "compare"):
                status, reply, _ = _post(server.server_address, _body(metadata, task))
                assert status == 400, (case, status, reply)
                assert reason in reply["error"]["message"], case
        status, reply, _ = _post(server.server_address, _body())
        assert status == 200 and json.loads(reply["choices"][0]["message"]["content"])["reward"] == 1.0


# --- defect 5: connections, bytes, keys -----------------------------------------------------------------------

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_an_idle_or_half_sent_request_is_dropped_after_idle_timeout():
    with serving(idle_timeout=0.3) as server:
        start = time.perf_counter()
        assert _raw(server.server_address, b"") == b""  # connected, never sent a byte
        assert _raw(server.server_address, HEAD) == b""  # headers never finished
        assert time.perf_counter() - start < 2
        reply = _raw(server.server_address, HEAD + b"Content-Length: 100\r\n\r\n{\"messages\"")  # body stalls
        assert reply.startswith(b"HTTP/1.1 408 ") and b"stalled" in reply
        assert _post(server.server_address, _body())[0] == 200


def test_a_trickled_body_is_cut_off_at_request_timeout():
    with serving(idle_timeout=0.5, request_timeout=1.0) as server:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n")
            start = time.perf_counter()
            for _ in range(50):  # a byte every 0.1 s: never idle for 0.5 s, never done
                sock.sendall(b" ")
                if select.select([sock], [], [], 0.1)[0]:
                    break
            reply = sock.recv(4096)
            elapsed = time.perf_counter() - start
        assert reply.startswith(b"HTTP/1.1 408 ") and b"took over 1 s" in reply
        assert 0.9 < elapsed < 2.0
        assert _post(server.server_address, _body())[0] == 200


def test_request_bodies_held_at_once_are_capped_with_a_503():
    with serving(max_body=10_000, max_pending_bytes=20_000) as server:
        holders = [socket.create_connection(server.server_address) for _ in range(2)]
        try:
            for sock in holders:  # two bodies of 10 kB announced, not yet sent: 20 kB held
                sock.sendall(HEAD + b"Content-Length: 10000\r\n\r\n")
            time.sleep(0.2)
            status, reply, response = _post(server.server_address, b" " * 10)
            assert status == 503 and "max_pending_bytes=20000" in reply["error"]["message"]
            assert response.getheader("Retry-After") == "1"
        finally:
            for sock in holders:
                sock.close()
        time.sleep(0.2)
        assert _post(server.server_address, _body())[0] == 200


def test_open_connections_are_capped_with_a_503():
    with serving(max_connections=3) as server:
        idle = [socket.create_connection(server.server_address) for _ in range(3)]
        try:
            time.sleep(0.2)
            reply = _raw(server.server_address, b"GET /v1/models HTTP/1.1\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 503 ") and b"max_connections=3" in reply
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert _post(server.server_address, _body())[0] == 200


def test_a_50_mb_body_is_still_a_413_read_by_the_client():
    with serving() as server:  # the default limit, 32 MiB
        status, reply, _ = _post(server.server_address, b" " * (50 * 2**20), timeout=30)
        assert status == 413 and "exceeds the limit" in reply["error"]["message"]
        assert _post(server.server_address, _body())[0] == 200


def test_bad_content_lengths_and_methods_are_4xx():
    with serving() as server:
        for data, status in [
            (HEAD + b"Content-Length: 12, 13\r\n\r\n", b"400"),
            (HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", b"400"),
            (HEAD + b"Content-Length: -1\r\n\r\n", b"400"),
            (HEAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", b"413"),
            (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
            (HEAD + b"X: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
            (HEAD + b"".join(b"X%d: y\r\n" % i for i in range(150)) + b"\r\n", b"400"),
            (b"DELETE /v1/models HTTP/1.1\r\n\r\n", b"405"),
            (b"NONSENSE\r\n\r\n", b"400"),
            (b"GET /v1/models HTTP/9\r\n\r\n", b"400"),
        ]:
            assert _raw(server.server_address, data).split(b" ", 2)[1] == status, data[:80]


def test_expect_100_continue_gets_a_continue_then_the_answer():
    with serving() as server:
        body = _body()
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(HEAD + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(body)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")


def test_keep_alive_serves_several_requests_on_one_connection():
    with serving() as server:
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
        for _ in range(3):
            conn.request("POST", "/v1/chat/completions", body=_body())
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
        first_socket = conn.sock
        conn.request("GET", "/v1/models")
        assert conn.getresponse().status == 200 and conn.sock is first_socket
        conn.close()


def test_api_key_401_without_or_with_a_wrong_one_200_with_it():
    with serving(api_key="s3cret") as server:
        address = server.server_address
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"},
                        {"Authorization": "Bearer s3cret-and-more"}, {"Authorization": "Bearer"}):
            status, reply, response = _post(address, _body(), headers)
            assert status == 401 and "api key" in reply["error"]["message"], headers
            assert response.getheader("WWW-Authenticate").startswith("Bearer")
        assert _raw(address, b"GET /v1/models HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 401 ")
        # refused before the body is read: a 1 MB body announced but never sent is answered at once
        assert _raw(address, HEAD + b"Content-Length: 1000000\r\n\r\n", timeout=3).startswith(b"HTTP/1.1 401 ")
        status, reply, _ = _post(address, _body(), {"Authorization": "Bearer s3cret"})
        assert status == 200 and json.loads(reply["choices"][0]["message"]["content"])["reward"] == 1.0
        key = {"Authorization": "bearer s3cret"}
        conn = http.client.HTTPConnection(*address, timeout=5)
        conn.request("GET", "/v1/models", headers=key)
        assert conn.getresponse().status == 200
        conn.close()


def test_the_http_judge_with_the_key_scores_through_the_server():
    with serving(api_key="s3cret") as server:
        assert make_judge(server.url, api_key="s3cret", retries=0).score(
            [RubricRequest("semantic", "a red circle", chain=CHAIN, metadata=METADATA)]) == [1.0]
        without = make_judge(server.url, retries=0, structured=True)
        assert without.score([RubricRequest("semantic", "a red circle", chain=CHAIN, metadata=METADATA)]) == [None]


def test_non_loopback_without_a_key_warns(caplog, monkeypatch):
    assert exposure_warning("0.0.0.0", None) and "without an api key" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("::", None) and exposure_warning("192.168.1.7", None)
    assert exposure_warning("judge.example.org", None)  # a name may resolve to anything
    for quiet in [("127.0.0.1", None), ("127.0.0.2", None), ("::1", None), ("localhost", None),
                  ("0.0.0.0", "key")]:
        assert exposure_warning(*quiet) is None, quiet
    with caplog.at_level(logging.WARNING, logger="reward_models.server"), serving():
        pass
    assert not [r for r in caplog.records if "without an api key" in r.getMessage()]
    # the server logs whatever the decision says (tests bind only 127.0.0.1, so the decision is stood in for)
    import reward_models.server

    monkeypatch.setattr(reward_models.server, "exposure_warning", lambda host, key: f"exposed {host} {key}")
    with caplog.at_level(logging.WARNING, logger="reward_models.server"), serving():
        pass
    assert [r for r in caplog.records if r.getMessage() == "exposed 127.0.0.1 None"]


def test_settings_are_checked_and_the_command_reads_the_key_from_the_environment(monkeypatch):
    for bad in ({"workers": 0}, {"max_body": 10, "max_pending_bytes": 5}, {"idle_timeout": 0}, {"api_key": ""}):
        with pytest.raises(ValueError):
            ServerConfig(**bad)
    import argparse

    from janus_rig.commands import judge_serve

    parser = argparse.ArgumentParser()
    judge_serve.add_arguments(parser)
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    config = judge_serve.server_config(parser.parse_args(["--workers", "3", "--max-body-mb", "1"]))
    assert (config.api_key, config.workers, config.max_body) == ("from-env", 3, 2**20)
    assert judge_serve.server_config(parser.parse_args(["--api-key", "flag"])).api_key == "flag"


# --- a real `judge serve` process: 1,000 half-open connections, then the fuzz run -----------------------------

WORKERS = 4
FUZZ_KEY = "fuzz-key"


def _status_of(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def served_process(tmp_path_factory):
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's threads and memory from /proc")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # 1,000 client sockets here and 1,000 in the server (the child inherits the limit)
        if hard != resource.RLIM_INFINITY and hard < 4096:
            pytest.skip(f"needs 4096 open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    log = tmp_path_factory.mktemp("judge_serve") / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "janus_rig.cli", "judge", "serve", "--judge", "shapeworld", "--port", "0",
             "--workers", str(WORKERS), "--max-body-mb", "2", "--max-pending-mb", "16"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, API_KEY_ENV: FUZZ_KEY},
        )
    try:
        line = process.stdout.readline()
        assert line.startswith("serving judge shapeworld at http://127.0.0.1:"), line + log.read_text()
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        yield process, ("127.0.0.1", port), log
    finally:
        process.terminate()
        process.wait(timeout=10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _good(address) -> int:
    return _post(address, _body(), {"Authorization": f"Bearer {FUZZ_KEY}"})[0]


def test_1000_half_open_connections_do_not_delay_a_good_request(served_process):
    process, address, _ = served_process
    assert _good(address) == 200
    held = []
    try:
        for i in range(1000):  # half stop inside the headers, half inside an announced 1 kB body
            sock = socket.create_connection(address, timeout=5)
            key = b"Authorization: Bearer " + FUZZ_KEY.encode() + b"\r\n"
            sock.sendall(HEAD + key + (b"Content-Le" if i % 2 else b"Content-Length: 1000\r\n\r\n{\"mess"))
            held.append(sock)
        time.sleep(0.3)
        start = time.perf_counter()
        assert _good(address) == 200
        elapsed = time.perf_counter() - start
        threads = _status_of(process.pid, "Threads")
    finally:
        for sock in held:
            sock.close()
    print(f"a good request behind 1,000 half-open connections: {elapsed:.3f} s, server threads {threads}")
    assert elapsed < 1.0, f"a good request took {elapsed:.2f} s behind 1,000 half-open connections"
    assert threads <= WORKERS + 3, f"{threads} threads (the audit saw 1,002)"
    assert process.poll() is None


def test_fuzz_10000_requests_no_5xx_server_up_memory_bounded(served_process):
    process, address, log = served_process
    for _ in range(50):  # warm up: the judge's first images, the allocator's pools
        assert _good(address) == 200
    rss_before = _status_of(process.pid, "VmRSS")
    statuses: Counter = Counter()
    connection = [None]
    start = time.perf_counter()

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(seeds)
    def run_batch(seed):
        for request in batch(*seed):
            statuses[send(address, request, connection, FUZZ_KEY)] += 1

    run_batch()
    elapsed = time.perf_counter() - start
    rss_after, peak = _status_of(process.pid, "VmRSS"), _status_of(process.pid, "VmHWM")
    total = sum(statuses.values())
    summary = f"{total} requests in {elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}; " \
              f"RSS {rss_before // 1024} -> {rss_after // 1024} MiB, peak {peak // 1024} MiB"
    print(summary)
    assert total == EXAMPLES * BATCH, summary
    assert not [s for s in statuses if s >= 500 or s == 0], summary + "\n" + log.read_text()[-3000:]
    assert statuses[200] >= total // 20, summary  # the run reached the judge, not only the parsers
    assert process.poll() is None and _good(address) == 200
    assert rss_after - rss_before < 64 * 1024, summary  # KiB
    assert peak < 768 * 1024, summary
