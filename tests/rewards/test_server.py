"""`judge serve`: the OpenAI-compatible subset, 4xx JSON errors on bad requests, and the server stays up."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.request

import pytest
from PIL import Image

from reward_models.judges import make_judge
from reward_models.judges.base import RubricRequest
from reward_models.judges.http import chat_body, image_data_url
from reward_models.server import start_in_thread

METADATA = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a red circle"}
CHAIN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(100,100),(400,400)<|box_end|>."


@pytest.fixture
def server():
    srv, thread = start_in_thread(make_judge("shapeworld"), "127.0.0.1", 0, max_body=200_000)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _send(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, json.loads(payload) if payload else None


def _good_body() -> bytes:
    request = RubricRequest("semantic", "a red circle", chain=CHAIN, metadata=METADATA)
    return json.dumps(chat_body("shapeworld", request, structured=True, max_tokens=16)).encode()


def _chat(server, body: bytes):
    return _send(server, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})


def test_models_and_a_structured_answer(server):
    status, listing = _send(server, "GET", "/v1/models")
    assert status == 200 and listing["data"][0]["id"] == "shapeworld" and listing["data"][0]["structured_requests"]
    status, reply = _chat(server, _good_body())
    assert status == 200 and reply["object"] == "chat.completion"
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"score": 10.0, "reward": 1.0}


def _with_content(content) -> bytes:
    return json.dumps({"model": "shapeworld", "messages": [{"role": "user", "content": content}]}).encode()


BAD_REQUESTS = {
    "malformed JSON": (b'{"messages": [', 400),
    "not an object": (b"[1, 2]", 400),
    "no messages": (b"{}", 400),
    "empty messages": (b'{"messages": []}', 400),
    "no user message": (json.dumps({"messages": [{"role": "system", "content": "x"}]}).encode(), 400),
    "bad part": (_with_content([{"type": "audio"}]), 400),
    "bad base64": (_with_content([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
                                  {"type": "text", "text": "x"}]), 400),
    "not an image": (_with_content([{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
                                    {"type": "text", "text": "x"}]), 400),
    "remote url": (_with_content([{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]), 400),
    "unstructured to the oracle": (_with_content("How good is this?"), 400),
    "bad block": (_with_content("<janus-rig-request>{nope</janus-rig-request>"), 400),
    "unknown task": (_with_content('<janus-rig-request>{"task": "vibe"}</janus-rig-request>'), 400),
    "ground without image": (_with_content('<janus-rig-request>{"task": "ground", "name": "x"}</janus-rig-request>'), 400),
    "missing metadata": (_with_content('<janus-rig-request>{"task": "semantic", "prompt": "p", "chain": "c"}'
                                       "</janus-rig-request>"), 422),
    "too large": (b" " * 300_000, 413),
    "scene graph without image": (_with_content('<janus-rig-request>{"task": "scene_graph", "vocabulary": '
                                                '{"labels": ["circle"]}}</janus-rig-request>'), 400),
    "compare without kind": (_with_content('<janus-rig-request>{"task": "compare", "prompt": "p"}</janus-rig-request>'),
                             400),
    "chain compare without chains": (_with_content('<janus-rig-request>{"task": "compare", "kind": "chain", '
                                                   '"prompt": "p", "first": "a"}</janus-rig-request>'), 400),
    "image compare with no image": (_with_content('<janus-rig-request>{"task": "compare", "kind": "image", '
                                                  '"prompt": "p"}</janus-rig-request>'), 400),
    "chain compare without metadata": (_with_content('<janus-rig-request>{"task": "compare", "kind": "chain", '
                                                     '"prompt": "p", "first": "a", "second": "b"}</janus-rig-request>'),
                                       422),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_and_the_server_stays_up(server, case):
    body, expected = BAD_REQUESTS[case]
    status, reply = _chat(server, body)
    assert status == expected and 400 <= status < 500
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    status, _ = _chat(server, _good_body())  # still serving
    assert status == 200


def test_other_routes_and_missing_length(server):
    assert _send(server, "GET", "/v2/nothing")[0] == 404
    assert _send(server, "POST", "/v1/completions", b"{}")[0] == 404
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    assert _chat(server, _good_body())[0] == 200


def test_ground_reply_is_in_the_sent_images_pixels(server):
    image = Image.new("RGB", (64, 64))
    from PIL import ImageDraw

    ImageDraw.Draw(image).ellipse((8, 8, 27, 27), fill=(220, 40, 40))
    block = '<janus-rig-request>{"task": "ground", "name": "red circle"}</janus-rig-request>'
    body = _with_content([{"type": "image_url", "image_url": {"url": image_data_url(image)}},
                          {"type": "text", "text": block}])
    status, reply = _chat(server, body)
    boxes = json.loads(reply["choices"][0]["message"]["content"])
    assert status == 200 and len(boxes) == 1 and boxes[0]["label"] == "red circle"
    assert [round(v) for v in boxes[0]["bbox_2d"]] == [8, 8, 28, 28]


def _red_circle_image() -> Image.Image:
    from PIL import ImageDraw

    image = Image.new("RGB", (64, 64))
    ImageDraw.Draw(image).ellipse((8, 8, 27, 27), fill=(220, 40, 40))
    return image


def test_scene_graph_needs_a_vocabulary_and_answers_in_the_prompts_form(server):
    url = {"type": "image_url", "image_url": {"url": image_data_url(_red_circle_image())}}
    block = '<janus-rig-request>{"task": "scene_graph", "vocabulary": {"labels": ["circle"], "attributes": ["red"]}}' \
            "</janus-rig-request>"
    status, reply = _chat(server, _with_content([url, {"type": "text", "text": block}]))
    assert status == 200
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"objects": ["red circle"], "relations": []}
    bad = '<janus-rig-request>{"task": "scene_graph", "vocabulary": {"labels": "circle"}}</janus-rig-request>'
    status, reply = _chat(server, _with_content([url, {"type": "text", "text": bad}]))
    assert status == 400 and "'labels' must be a list of strings" in reply["error"]["message"]


def test_judge_serve_command_on_a_free_port():
    process = subprocess.Popen(
        [sys.executable, "-m", "janus_rig.cli", "judge", "serve", "--judge", "shapeworld", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("serving judge shapeworld at http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(url + "/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == "shapeworld"
    finally:
        process.terminate()
        process.wait(timeout=10)
