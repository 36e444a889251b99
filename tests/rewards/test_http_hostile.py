"""The http judge against a hostile server (tests/rewards/hostile.py): every bad reply is a counted failure with
its reason, never an exception out of `score`; one deadline bounds each attempt, so a server that drips a byte at a
time cannot hold a call; what may answer differently next time (a body cut short, a non-JSON 200) is retried."""

from __future__ import annotations

import re
import socket
import time

import pytest
from PIL import Image

from reward_models import RewardConfig, compute_rewards, make_judge
from reward_models.judges import RubricRequest
from tests.rewards import hostile
from tests.rewards.hostile import HostileServer


def _question():
    return RubricRequest("prompt_image", "a red circle", image=Image.new("RGB", (32, 32)))


def _judge(url, **options):
    options = {"model": "m", "structured": False, "retries": 1, "backoff": 0.0, "timeout": 5.0, **options}
    return make_judge(url, **options)


# (name, behaviour, failure kind, words of the reason, attempts with retries=1)
BAD_REPLIES = [
    ("not HTTP", hostile.GARBAGE, "http_error", "not an HTTP reply", 1),
    ("truncated body", hostile.TRUNCATED, "http_error", "broke off after", 2),
    ("70 kB header line", hostile.LONG_HEADER, "http_error", "header line", 1),
    ("JSON nested 100,000 deep", hostile.DEEP_JSON, "unparseable", "RecursionError", 2),
    ("non-JSON 200", hostile.NOT_JSON, "unparseable", "not JSON", 2),
    ("reset", hostile.reset, "http_error", "reset|closed", 2),
    ("closed without a byte", hostile.silence, "http_error", "closed the connection", 2),
    ("50 MiB announced", hostile.TOO_LARGE, "http_error", "limit", 1),
    ("bad chunk size", hostile.BAD_CHUNK, "http_error", "broke off after", 2),
    ("503", hostile.reply(b'{"error": "busy"}', "503 Service Unavailable"), "http_error", "HTTP 503", 2),
]


@pytest.mark.parametrize("name, behaviour, kind, reason, attempts", BAD_REPLIES, ids=[c[0] for c in BAD_REPLIES])
def test_a_bad_reply_is_a_counted_failure_with_its_reason(name, behaviour, kind, reason, attempts):
    with HostileServer([behaviour]) as server:
        judge = _judge(server.url)
        try:
            assert judge.score([_question()]) == [None]
            stats = judge.stats.snapshot()
            assert stats["requests"] == 1 and stats["failures"] == 1 and stats[f"failures/{kind}"] == 1
            assert re.search(reason, judge.stats.reasons()[kind]), judge.stats.reasons()
            assert len(server.requests) == attempts  # retried only when another attempt could answer
        finally:
            judge.close()


def test_a_non_json_200_is_retried_and_the_retry_counts():
    with HostileServer([hostile.NOT_JSON, hostile.ok('{"score": 7}')]) as server:
        judge = _judge(server.url)
        assert judge.score([_question()]) == [pytest.approx(0.7)]
        assert judge.stats.snapshot()["failures"] == 0 and len(server.requests) == 2
        judge.close()


@pytest.mark.parametrize("behaviour", [hostile.CHUNKED_OK, hostile.CLOSE_DELIMITED_OK], ids=["chunked", "until-close"])
def test_good_replies_without_content_length_are_read(behaviour):
    with HostileServer([behaviour]) as server:
        judge = _judge(server.url)
        assert judge.score([_question()]) == [pytest.approx(0.7)]
        judge.close()


@pytest.mark.parametrize("dripped", [20, 200], ids=["status line", "whole reply"])
def test_a_drip_is_cut_at_the_deadline(dripped):
    # A byte every 0.3 s never trips a 0.5 s timeout per read: the old client waited for all 20 (6 s), then scored.
    with HostileServer([hostile.drip(hostile.head(Content_Length=len(hostile.chat_body())) + hostile.chat_body(),
                                     interval=0.3, dripped=dripped)]) as server:
        judge = _judge(server.url, timeout=0.5, retries=0)
        start = time.monotonic()
        assert judge.score([_question()]) == [None]
        elapsed = time.monotonic() - start
        assert elapsed < 0.5 + 0.6, f"the call took {elapsed:.2f} s with a 0.5 s deadline"
        assert judge.stats.snapshot()["failures/timeout"] == 1 and "within 0.5 s" in judge.stats.reasons()["timeout"]
        judge.close()


def test_retries_each_get_their_own_deadline():
    with HostileServer([hostile.drip(hostile.chat_body(), interval=0.3)]) as server:
        judge = _judge(server.url, timeout=0.4, retries=2)
        start = time.monotonic()
        assert judge.score([_question()]) == [None]
        assert time.monotonic() - start < 3 * 0.4 + 0.8 and len(server.requests) == 3
        judge.close()


def test_a_slow_reply_within_the_deadline_is_read():
    with HostileServer([hostile.drip(hostile.head(Content_Length=len(hostile.chat_body())) + hostile.chat_body(),
                                     interval=0.02, dripped=10)]) as server:
        judge = _judge(server.url, timeout=5.0)
        assert judge.score([_question()]) == [pytest.approx(0.7)]
        judge.close()


def test_a_model_list_with_a_non_object_entry_fails_every_request_with_the_reason():
    with HostileServer([hostile.MODELS_WITH_A_STRING]) as server:
        judge = make_judge(server.url, retries=0)  # no model given: it is read from GET /models
        assert judge.score([_question()] * 2) == [None, None]
        assert judge.stats.snapshot()["failures/http_error"] == 2
        assert "entry 1 is not a model" in judge.stats.reasons()["http_error"]
        assert server.requests == [("GET", "/v1/models")]
        judge.close()


def test_connection_refused_is_counted_with_the_reason():
    probe = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    probe.close()  # nothing listens there now
    judge = _judge(url, retries=0)
    assert judge.score([_question()]) == [None]
    assert "ConnectionRefusedError" in judge.stats.reasons()["http_error"]
    judge.close()


def test_compute_rewards_through_a_garbage_server_gives_none_and_counts():
    with HostileServer([hostile.GARBAGE]) as server:
        config = RewardConfig(terms=["R_sem", "R_PI"], judge=server.url, judge_model="m",
                              judge_options={"structured": False, "retries": 0})
        judge = config.make_judge()
        image = Image.new("RGB", (32, 32))
        result = compute_rewards(["a red circle"] * 3, ["a chain"] * 3, [image] * 3, None, judge, config)
        assert result.totals == [None] * 3 and result.errors == [None] * 3
        assert result.metrics["none/total"] == 3 and result.metrics["failures/judge"] == 6
        judge.close()


def test_bad_judge_urls_and_keys_fail_at_once():
    with pytest.raises(ValueError, match="http"):
        make_judge("http://:80/v1")
    with pytest.raises(ValueError, match="line break"):
        make_judge("http://127.0.0.1:9/v1", api_key="key\r\nX-Injected: 1")
