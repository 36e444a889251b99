"""Batched judging: the hf judge's padded batch gives the replies of one question at a time, and `judge serve`
gathers concurrent requests into one judge call without letting a bad request or a judge exception spill over.
The http judge is checked against our server speaking the OpenAI chat-completions protocol with image parts."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from reward_models.judges import Judge, RubricRequest, make_judge
from reward_models.judges.http import chat_body, image_data_url
from reward_models.server import start_in_thread
from reward_models.server_requests import BadRequest, Question, answer_batch
from tests.rewards import build_tiny_qwen


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"))


def _messages(n: int, seed: int = 0) -> list[tuple[str, list[Image.Image]]]:
    """Texts of 1-4 sentences with 0, 1 or 2 images of different sizes: every row of a batch is padded."""
    rng = np.random.default_rng(seed)
    words = "Locate the red circle , report the bbox coordinates in JSON format . score 7 perfect".split()
    out = []
    for k in range(n):
        text = " ".join(rng.choice(words, size=6 * (1 + k % 4)))
        images = [Image.fromarray(rng.integers(0, 256, (int(rng.integers(40, 110)), int(rng.integers(40, 110)), 3),
                                               dtype=np.uint8)) for _ in range(k % 3)]
        out.append((text, images))
    return out


# --- the hf judge: one padded generate == one question at a time --------------------------------------------------


def test_hf_batched_greedy_replies_equal_one_question_at_a_time(tiny_qwen_dir):
    judge = make_judge("hf", model=tiny_qwen_dir, batch_size=16, max_new_tokens=12)
    messages = _messages(10)
    alone = [judge.chat_many([m])[0] for m in messages]
    batched = judge.chat_many(messages)
    assert batched == alone
    assert len(set(alone)) > 1 and all(alone)  # not vacuous: the rows differ, and every one generated
    assert judge.stats.snapshot()["failures/error"] == 0
    judge.close()


def test_hf_batch_that_raises_is_asked_again_one_question_at_a_time(tiny_qwen_dir, monkeypatch):
    judge = make_judge("hf", model=tiny_qwen_dir, batch_size=8, max_new_tokens=4)
    messages = _messages(3)
    alone = [judge.chat_many([m])[0] for m in messages]
    real = judge._generate_batch

    def refuses_the_bad_one(batch):
        if any(text == "bad" for text, _ in batch):
            raise ValueError("the processor refuses this one")
        return real(batch)

    monkeypatch.setattr(judge, "_generate_batch", refuses_the_bad_one)
    replies = judge.chat_many([messages[0], ("bad", []), messages[1], messages[2]])
    assert replies == [alone[0], None, alone[1], alone[2]]
    stats = judge.stats.snapshot()
    assert stats["failures/error"] == 1 and "refuses" in judge.stats.reasons()["error"]
    judge.close()


# --- answer_batch: one judge call per kind, errors per question ---------------------------------------------------


class SlowBatchedJudge(Judge):
    """Answers `len(prompt) / 100` after `delay` seconds per call, one call at a time (like a model); records each
    call's size and the prompts it saw. A call holding the prompt "poison" raises; free-form chats are echoed."""

    name = "slow-batched"
    structured = True
    batched = True

    def __init__(self, delay: float = 0.2):
        super().__init__()
        self.delay, self.calls, self.seen = delay, [], []
        self._lock = threading.Lock()

    def score(self, requests):
        with self._lock:
            self.calls.append(len(requests))
            self.seen += [r.prompt for r in requests]
            time.sleep(self.delay)
            if any(r.prompt == "poison" for r in requests):
                raise RuntimeError("poisoned by one request")
            return [len(r.prompt) / 100 for r in requests]

    def chat_many(self, messages):
        with self._lock:
            self.calls.append(len(messages))
            time.sleep(self.delay)
            return [f"echo {text} with {len(images)} images" for text, images in messages]


def _question(prompt: str) -> Question:
    return Question("rubric text", [], RubricRequest("semantic", prompt), None)


def test_answer_batch_reports_a_judge_exception_per_question():
    judge = SlowBatchedJudge(delay=0)
    questions = [_question("aa"), _question("poison"), Question("hi", [], None, None), _question("aaaa")]
    replies = answer_batch(judge, questions)
    assert json.loads(replies[0]) == {"score": 0.2, "reward": 0.02} and json.loads(replies[3])["reward"] == 0.04
    assert isinstance(replies[1], RuntimeError) and "poisoned" in str(replies[1])
    assert replies[2] == "echo hi with 0 images"
    # the rubric call of 3 raised and was made again one question at a time; the chat went in its own call
    assert judge.calls == [3, 1, 1, 1, 1]
    oracle = make_judge("shapeworld")  # a judge without free-form chat: the chat is a 400, the rest unharmed
    replies = answer_batch(oracle, [Question("hi", [], None, None)])
    assert isinstance(replies[0], BadRequest) and replies[0].status == 400


# --- the server: concurrent requests -> one judge call ----------------------------------------------------------


@pytest.fixture
def serve():
    running = []

    def start(judge, **settings):
        server, thread = start_in_thread(judge, "127.0.0.1", 0, **settings)
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _prompts(n: int) -> list[str]:
    return ["p" * k for k in range(1, n + 1)]  # a distinct answer each: replies cannot be swapped unnoticed


def _score_distinct(server, n: int, concurrency: int) -> None:
    """n distinct rubric requests through the http judge at `concurrency`; each reply is its own request's."""
    remote = make_judge(server.url, structured=True, concurrency=concurrency, retries=0, timeout=30)
    try:
        prompts = _prompts(n)
        assert remote.score([RubricRequest("semantic", p) for p in prompts]) == [len(p) / 100 for p in prompts]
    finally:
        remote.close()


def test_concurrent_requests_are_answered_in_batches_up_to_max_batch(serve):
    judge = SlowBatchedJudge()
    server = serve(judge, max_batch=5)
    _score_distinct(server, 16, concurrency=16)
    assert sum(judge.calls) == 16 and max(judge.calls) <= 5
    assert max(judge.calls) >= 2 and len(judge.calls) < 16  # gathered while the judge was busy
    calls = len(judge.calls)
    assert server.batch_summary() == {"calls": calls, "requests": 16, "mean": round(16 / calls, 2),
                                      "largest": max(judge.calls)}


def test_max_batch_1_and_unbatched_judges_answer_each_request_alone(serve):
    for judge, settings in ((SlowBatchedJudge(delay=0.05), {"max_batch": 1}), (SlowBatchedJudge(delay=0.05), {})):
        if not settings:
            judge.batched = False  # e.g. the oracle: each request alone, several workers at once
        server = serve(judge, **settings)
        _score_distinct(server, 8, concurrency=8)
        assert judge.calls == [1] * 8


def test_a_lone_request_does_not_wait_for_the_window(serve):
    judge = SlowBatchedJudge(delay=0)
    server = serve(judge, batch_window=1.0)
    remote = make_judge(server.url, structured=True, retries=0, timeout=30)
    try:
        remote.score([RubricRequest("semantic", "warm up")])
        start = time.perf_counter()
        assert remote.score([RubricRequest("semantic", "pp")]) == [0.02]
        assert time.perf_counter() - start < 0.5  # nothing else was on its way: no 1 s wait
    finally:
        remote.close()


def _post(server, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*server.server_address, timeout=30)
    try:
        connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _body(prompt: str) -> bytes:
    return json.dumps(chat_body("m", RubricRequest("semantic", prompt), structured=True, max_tokens=8)).encode()


def test_bad_requests_and_a_judge_exception_never_spill_over_a_batch(serve):
    judge = SlowBatchedJudge()
    server = serve(judge)
    bad_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    bad = [b"{not json", json.dumps({"messages": [{"role": "user", "content": [bad_image]}]}).encode(),
           _body("x").replace(b'\\"semantic\\"', b'\\"nonsense\\"')]
    good = _prompts(9)
    bodies = [_body(p) for p in good] + bad + [_body("poison")]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: _post(server, body), bodies))
    for prompt, (status, payload) in zip(good, answers):
        assert status == 200, payload
        assert json.loads(payload["choices"][0]["message"]["content"])["reward"] == len(prompt) / 100
    for status, payload in answers[len(good) : len(good) + len(bad)]:
        assert status == 400 and payload["error"]["type"] == "invalid_request_error"
    status, payload = answers[-1]
    assert status == 500 and "poisoned by one request" in payload["error"]["message"]
    assert "x" not in judge.seen and "nonsense" not in judge.seen  # refused before any batch
    assert sorted(set(judge.seen)) == sorted(good + ["poison"])


# --- the http judge against our server speaking the OpenAI protocol (what vLLM serves) ----------------------------


def test_http_judge_through_the_served_hf_judge_replies_as_the_local_one(tiny_qwen_dir, serve):
    local = make_judge("hf", model=tiny_qwen_dir, batch_size=8, max_new_tokens=8)
    messages = _messages(8, seed=1)
    expected = [local.chat(text, images) for text, images in messages]  # one at a time
    server = serve(local, max_batch=8)
    remote = make_judge(server.url, retries=0, timeout=60)
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda m: remote.chat(*m), messages))
        assert got == expected  # PNG data URLs are lossless; the batched generate answers as one at a time
        assert remote.structured is False and remote.model == "hf"  # a VLM gets the plain rubric, as from vLLM
        request = RubricRequest("prompt_image", "a red circle", image=messages[1][1][0])
        assert remote.score([request]) == local.score([request])
    finally:
        remote.close()
    assert server.batch_summary()["largest"] >= 2  # the eight concurrent chats shared generate calls


def test_the_wire_format_is_openai_chat_completions_with_image_parts():
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    body = chat_body("Qwen/Qwen2.5-VL-7B-Instruct", RubricRequest("prompt_image", "a red circle", image=image),
                     structured=False, max_tokens=64)
    (message,) = body["messages"]
    assert message["role"] == "user" and [part["type"] for part in message["content"]] == ["image_url", "text"]
    assert message["content"][0]["image_url"]["url"] == image_data_url(image)
    assert message["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and body["temperature"] == 0.0 and body["max_tokens"] == 64


def test_batch_settings_are_checked_and_the_command_passes_them_on():
    import argparse

    from janus_rig.commands import judge_serve
    from reward_models.server import ServerConfig

    for bad in ({"max_batch": 0}, {"max_batch": 2.5}, {"batch_window": -0.1}, {"batch_window": float("nan")}):
        with pytest.raises(ValueError, match="max_batch|batch_window"):
            ServerConfig(**bad)
    parser = argparse.ArgumentParser()
    judge_serve.add_arguments(parser)
    config = judge_serve.server_config(parser.parse_args(["--max-batch", "4", "--batch-window", "0"]))
    assert (config.max_batch, config.batch_window) == (4, 0.0)


def test_bench_judge_runs_both_modes_and_writes_json(tmp_path, capsys):
    from janus_rig.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "judge", "--requests", "8", "--clients", "4", "--max-batch", "4", "--max-new-tokens", "2",
                 "--json-out", str(out)]) == 0
    result = json.loads(out.read_text())
    one, batched = result["modes"]["one at a time"], result["modes"]["batched"]
    assert (one["max_batch"], batched["max_batch"]) == (1, 4) and one["errors"] == batched["errors"] == 0
    assert one["calls"] == {"calls": 12, "requests": 12, "mean": 1.0, "largest": 1}  # warm-up 4 + timed 8
    assert batched["calls"]["requests"] == 12 and batched["calls"]["largest"] <= 4
    assert result["ratio"] == pytest.approx(batched["requests_per_s"] / one["requests_per_s"], rel=1e-2)
    assert "ratio" in capsys.readouterr().out
