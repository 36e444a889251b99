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
Bad requests (body too large, malformed JSON, missing fields, bad base64, undecodable image) get a 4xx JSON
error {"error": {"message", "type", "code"}} and the server stays up. ThreadingHTTPServer: one thread per
connection; judges guard their own state.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from janus_rig.eval.sg_iou import Vocabulary
from reward_models.judges.base import (
    COMPARE_TASK,
    GRAPH_TASK,
    GROUND_TASK,
    PAIR_KINDS,
    RUBRIC_TASKS,
    GraphRequest,
    GroundRequest,
    Judge,
    PairRequest,
    RubricRequest,
)
from reward_models.judges.http import STRUCTURED_RE, Request

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 2**20  # a few full-size PNGs; anything larger is refused before it is read
MAX_IMAGES = 8
MAX_IMAGE_PIXELS = 4096 * 4096  # PIL's decompression-bomb guard is only a warning below 2x its limit
UNPROCESSABLE = HTTPStatus.UNPROCESSABLE_ENTITY  # well-formed, but the judge could not answer it
DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/webp;base64,")


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def decode_image(url: str) -> Image.Image:
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIXES):
        raise BadRequest("image_url.url must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched")
    payload = url.split(",", 1)[1]
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f"image_url is not valid base64: {err}") from None
    try:
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise BadRequest(f"image of {image.width}x{image.height} exceeds {MAX_IMAGE_PIXELS} pixels")
        return image.convert("RGB")
    except BadRequest:
        raise
    except Exception as err:  # noqa: BLE001 — any decoder error is the client's bad image
        raise BadRequest(f"image_url does not decode as an image: {type(err).__name__}: {err}") from None


def read_message(body) -> tuple[str, list[Image.Image]]:
    """(all text of the last user message, its images) from a chat-completions body; BadRequest when malformed."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise BadRequest("no message with role 'user'")
    content = user[-1].get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list) or not content:
        raise BadRequest("the user message's 'content' must be a string or a non-empty list of parts")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            if len(images) >= MAX_IMAGES:
                raise BadRequest(f"at most {MAX_IMAGES} images per request")
            images.append(decode_image(part["image_url"].get("url")))
        else:
            raise BadRequest(
                f"content part {str(part)[:80]} is neither {{type: text, text}} nor {{type: image_url, image_url: {{url}}}}"
            )
    return "\n".join(texts), images


def structured_request(text: str, images: list[Image.Image]) -> Request | None:
    """The structured question in a message, None when there is none; BadRequest when it is malformed."""
    match = STRUCTURED_RE.search(text)
    if match is None:
        return None
    try:
        fields = json.loads(match.group(1))
    except ValueError as err:
        raise BadRequest(f"the janus-rig-request block is not JSON: {err}") from None
    if not isinstance(fields, dict):
        raise BadRequest("the janus-rig-request block must be a JSON object")
    task = fields.get("task")
    image = images[0] if images else None
    if task == GROUND_TASK:
        if image is None or not isinstance(fields.get("name"), str):
            raise BadRequest("a ground request needs an image and a string 'name'")
        return GroundRequest(image, fields["name"])
    if task == GRAPH_TASK:
        if image is None:
            raise BadRequest("a scene_graph request needs an image")
        try:
            return GraphRequest(image, Vocabulary.from_json(fields.get("vocabulary")))
        except ValueError as err:
            raise BadRequest(f"a scene_graph request needs a 'vocabulary': {err}") from None
    if task == COMPARE_TASK:
        return _pair_request(fields, images)
    if task not in RUBRIC_TASKS:
        valid = (*RUBRIC_TASKS, GROUND_TASK, GRAPH_TASK, COMPARE_TASK)
        raise BadRequest(f"unknown task {task!r}; valid: {', '.join(valid)}")
    prompt, chain, metadata = fields.get("prompt"), fields.get("chain", ""), fields.get("metadata")
    if not isinstance(prompt, str) or not isinstance(chain, str) or not (metadata is None or isinstance(metadata, dict)):
        raise BadRequest("a rubric request needs a string 'prompt', a string 'chain' and an object (or null) 'metadata'")
    if task in ("spatial", "prompt_image") and image is None:
        raise BadRequest(f"a {task} request needs an image")
    return RubricRequest(task, prompt, chain=chain, image=image, metadata=metadata)


def _pair_request(fields: dict, images: list[Image.Image]) -> PairRequest:
    kind, prompt, metadata = fields.get("kind"), fields.get("prompt"), fields.get("metadata")
    if kind not in PAIR_KINDS or not isinstance(prompt, str) or not (metadata is None or isinstance(metadata, dict)):
        raise BadRequest(f"a compare request needs 'kind' ({' or '.join(PAIR_KINDS)}), a string 'prompt' and an "
                         "object (or null) 'metadata'")
    if kind == "image":
        if len(images) != 2:
            raise BadRequest(f"an image compare request needs exactly 2 images, got {len(images)}")
        first, second = images
    else:
        first, second = fields.get("first"), fields.get("second")
        if not (isinstance(first, str) and isinstance(second, str)):
            raise BadRequest("a chain compare request needs string 'first' and 'second' chains")
    return PairRequest(kind, prompt, first, second, metadata=metadata)


def answer(judge: Judge, request: Request) -> str:
    """The reply text for a structured question (see the module docstring)."""
    if isinstance(request, GroundRequest):
        boxes = judge.ground([request])[0]
        if boxes is None:
            raise BadRequest("the judge could not ground this request (see the server log)", UNPROCESSABLE)
        width, height = request.image.size
        return json.dumps([{"bbox_2d": list(b.to_pixels(width, height)), "label": request.name} for b in boxes])
    if isinstance(request, GraphRequest):
        graph = judge.extract_graphs([request])[0]
        if graph is None:
            raise BadRequest("the judge could not extract this scene graph (see the server log)", UNPROCESSABLE)
        found = graph.to_json()
        return json.dumps({"objects": found["entities"], "relations": found["triples"]})
    if isinstance(request, PairRequest):
        preference = judge.compare([request])[0]
        if preference is None:
            raise BadRequest("the judge could not compare this pair (see the server log)", UNPROCESSABLE)
        better = 1 if preference > 0.5 else 2 if preference < 0.5 else "tie"
        return json.dumps({"better": better, "preference": preference})
    score = judge.score([request])[0]
    if score is None:
        raise BadRequest("the judge could not score this request (see the server log)", UNPROCESSABLE)
    return json.dumps({"score": 10 * score, "reward": score})


def make_handler(judge: Judge, max_body: int):
    class Handler(BaseHTTPRequestHandler):
        server_version = "janus-rig-judge/1"

        def log_message(self, format, *args):  # noqa: A002 — BaseHTTPRequestHandler's signature
            logger.debug("%s %s", self.address_string(), format % args)

        def send_json(self, status: int, payload) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def send_error_json(self, status: HTTPStatus, message: str) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self.send_json(status, {"error": {"message": message, "type": kind, "code": int(status)}})

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                model = {"id": judge.name, "object": "model", "created": 0, "owned_by": "janus-rig",
                         "structured_requests": judge.structured}
                self.send_json(HTTPStatus.OK, {"object": "list", "data": [model]})
            else:
                self.send_error_json(HTTPStatus.NOT_FOUND, f"no route GET {self.path}; try /v1/models")

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self.send_error_json(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; try /v1/chat/completions")
                return
            try:
                body = self.read_body()
                text, images = read_message(body)
                request = structured_request(text, images)
                if request is not None:
                    reply = answer(judge, request)
                else:
                    try:
                        reply = judge.chat(text, images)
                    except NotImplementedError as err:
                        raise BadRequest(str(err)) from None
            except BadRequest as err:
                self.send_error_json(err.status, str(err))
                return
            except Exception as err:  # noqa: BLE001 — a judge crash answers 500; the server stays up
                logger.exception("judge %s failed", judge.name)
                self.send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, f"judge failed: {type(err).__name__}: {err}")
                return
            self.send_json(HTTPStatus.OK, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or judge.name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })

        def read_body(self):
            length = self.headers.get("Content-Length")
            if length is None:
                raise BadRequest("Content-Length is required", HTTPStatus.LENGTH_REQUIRED)
            try:
                size = int(length)
            except ValueError:
                raise BadRequest(f"bad Content-Length {length!r}") from None
            if size < 0:
                raise BadRequest(f"bad Content-Length {length!r}")
            if size > max_body:
                self.close_connection = True  # the unread body must not be taken for the next request
                too_large = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                raise BadRequest(f"body of {size} bytes exceeds the limit of {max_body}", too_large)
            raw = self.rfile.read(size)
            try:
                return json.loads(raw)
            except (ValueError, RecursionError) as err:
                raise BadRequest(f"the body is not JSON: {err}") from None

    return Handler


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the load test opens many connections at once

    def __init__(self, judge: Judge, host: str = "127.0.0.1", port: int = 8000, max_body: int = MAX_BODY_BYTES):
        super().__init__((host, port), make_handler(judge, max_body))
        self.judge = judge

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def start_in_thread(judge: Judge, host: str = "127.0.0.1", port: int = 0, **kwargs) -> tuple[JudgeServer, threading.Thread]:
    """A running server on a background thread (port 0: a free port; see server.url). Stop: server.shutdown()."""
    server = JudgeServer(judge, host, port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="judge-server", daemon=True)
    thread.start()
    return server, thread
