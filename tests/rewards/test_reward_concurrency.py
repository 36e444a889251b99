"""A reward step against a slow http judge: every term's questions are in flight together, never more than the judge's
`concurrency` at once, so N questions take about N / concurrency of the one-at-a-time time."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reward_models import RewardConfig, compute_rewards, make_judge
from tests.rewards import World

DELAY = 0.06  # seconds the fake judge takes per question


class _SlowJudge(BaseHTTPRequestHandler):
    """Answers every chat completion with a score after DELAY s, counting the requests in flight at once."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        state = self.server.state
        self.rfile.read(int(self.headers["Content-Length"]))
        with state["lock"]:
            state["calls"] += 1
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        time.sleep(DELAY)
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": '{"score": 5}'}}]}).encode()
        with state["lock"]:  # before the reply: a client that has it may send its next question at once
            state["in_flight"] -= 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 would make the 8th concurrent connect wait on a SYN retry


@pytest.fixture
def slow_judge():
    server = _Server(("127.0.0.1", 0), _SlowJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def reset():
        server.state = {"lock": threading.Lock(), "calls": 0, "in_flight": 0, "max_in_flight": 0}
        return server.state

    yield reset, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("world"), n=8)


def _step(world, url, concurrency, terms, n):
    judge = make_judge(url, model="m", structured=False, concurrency=concurrency, retries=0, timeout=30)
    try:
        start = time.perf_counter()
        result = compute_rewards(world.prompts[:n], world.chains[:n], world.images[:n], world.metadata[:n], judge,
                                 RewardConfig(terms=terms))
        return result, time.perf_counter() - start
    finally:
        judge.close()


def test_the_terms_questions_share_the_concurrency_bound(world, slow_judge):
    reset, url = slow_judge
    state = reset()
    result, _ = _step(world, url, 8, ["R_sem", "R_spa", "R_PI"], 4)  # 4 questions per term, 12 in all
    assert state["calls"] == 12 and result.terms[0] == {"R_sem": 0.5, "R_spa": 0.5, "R_PI": 0.5, "R_PR": 0.5}
    # one term at a time could have at most 4 open; the three terms together fill the bound, and never pass it
    assert state["max_in_flight"] == 8


def test_concurrency_8_is_several_times_faster_than_one_at_a_time(world, slow_judge):
    reset, url = slow_judge
    terms = ["R_sem", "R_spa", "R_RI", "R_PI"]
    state = reset()
    one, sequential = _step(world, url, 1, terms, 8)
    calls = state["calls"]
    assert state["max_in_flight"] == 1 and calls >= 32  # 8 each of R_sem, R_spa, R_PI; a grounding per name
    state = reset()
    eight, concurrent = _step(world, url, 8, terms, 8)
    assert state["calls"] == calls and state["max_in_flight"] == 8
    assert eight.terms == one.terms and eight.totals == one.totals  # the same rewards, in the same order
    print(f"{calls} questions of {DELAY} s: {sequential:.2f} s one at a time, {concurrent:.2f} s at concurrency 8")
    assert sequential >= calls * DELAY
    assert sequential / concurrent >= 3, f"{calls} questions: {sequential:.2f} s one at a time, {concurrent:.2f} s at 8"
