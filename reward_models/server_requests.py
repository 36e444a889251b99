"""What `judge serve` is asked and what it answers: a chat-completions body -> a judge request -> the reply.

The transport (HTTP, limits on connections and bytes) is reward_models/server.py; this module sees one complete
body at a time, on a worker thread (`read_question`), and a batch of checked questions (`answer_batch`, one judge
call per kind of question). Everything a client sends is bounded and type-checked here before the judge
does any work: the body's JSON, the message text (MAX_TEXT_CHARS), the images (count, per-image and per-request
pixels, formats), the structured block's fields, and the judge's own reading of it (`Judge.check`: the ShapeWorld
oracle's metadata bounds). Anything malformed is a BadRequest (4xx with the reason); only a judge that raises on a
well-formed request gives a 500.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus

from PIL import Image

from reward_models.scene_graph import Vocabulary
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

MAX_IMAGES = 8
MAX_IMAGE_PIXELS = 4096 * 4096  # PIL's decompression-bomb guard is only a warning below 2x its limit
# All images of one request together: decoded RGB costs 3 bytes a pixel (48 MiB here), and each worker thread
# holds one request's images, so memory stays near workers x this however large the images are.
MAX_REQUEST_PIXELS = 4096 * 4096
MAX_TEXT_CHARS = 2**20  # the user message's text (rubric, prompt, chain, metadata block): far above any real chain
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # what the data URL prefixes promise; PIL's other decoders are not exposed
UNPROCESSABLE = HTTPStatus.UNPROCESSABLE_ENTITY  # well-formed, but the judge could not answer it
DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/webp;base64,")


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def error_payload(status: HTTPStatus, message: str) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": int(status)}}


def decode_image(url: str) -> Image.Image:
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIXES):
        raise BadRequest("image_url.url must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched")
    payload = url.split(",", 1)[1]
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f"image_url is not valid base64: {err}") from None
    try:
        image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)  # reads the header only
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
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise BadRequest("the user message's 'content' must be a string or a non-empty list of parts")
    texts, urls = [], []
    for part in content:  # every part is checked before any image is decoded
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            urls.append(part["image_url"].get("url"))
        else:
            raise BadRequest(
                f"content part {str(part)[:80]} is neither {{type: text, text}} nor {{type: image_url, image_url: {{url}}}}"
            )
    text = "\n".join(texts)
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest(f"the message text has {len(text)} characters; at most {MAX_TEXT_CHARS}")
    if len(urls) > MAX_IMAGES:
        raise BadRequest(f"at most {MAX_IMAGES} images per request, got {len(urls)}")
    images, pixels = [], 0
    for url in urls:
        images.append(decode_image(url))
        pixels += images[-1].width * images[-1].height
        if pixels > MAX_REQUEST_PIXELS:
            raise BadRequest(f"the images of one request exceed {MAX_REQUEST_PIXELS} pixels together")
    return text, images


def structured_request(text: str, images: list[Image.Image]) -> Request | None:
    """The structured question in a message, None when there is none; BadRequest when it is malformed."""
    match = STRUCTURED_RE.search(text)
    if match is None:
        return None
    try:
        fields = json.loads(match.group(1))
    except (ValueError, RecursionError) as err:
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
    if not isinstance(task, str) or task not in RUBRIC_TASKS:
        valid = (*RUBRIC_TASKS, GROUND_TASK, GRAPH_TASK, COMPARE_TASK)
        raise BadRequest(f"unknown task {str(task)[:80]!r}; valid: {', '.join(valid)}")
    prompt, chain, metadata = fields.get("prompt"), fields.get("chain", ""), fields.get("metadata")
    if not isinstance(prompt, str) or not isinstance(chain, str) or not (metadata is None or isinstance(metadata, dict)):
        raise BadRequest("a rubric request needs a string 'prompt', a string 'chain' and an object (or null) 'metadata'")
    if task in ("spatial", "prompt_image") and image is None:
        raise BadRequest(f"a {task} request needs an image")
    return RubricRequest(task, prompt, chain=chain, image=image, metadata=metadata)


def _pair_request(fields: dict, images: list[Image.Image]) -> PairRequest:
    kind, prompt, metadata = fields.get("kind"), fields.get("prompt"), fields.get("metadata")
    if (not isinstance(kind, str) or kind not in PAIR_KINDS or not isinstance(prompt, str)
            or not (metadata is None or isinstance(metadata, dict))):
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


@dataclass(frozen=True, eq=False)
class Question:
    """One checked request: a structured `request`, or (None) a free-form chat of `text` and `images`."""

    text: str
    images: list[Image.Image]
    request: Request | None
    model: str | None  # the body's model field, echoed in the reply


def read_question(judge: Judge, raw: bytes | bytearray) -> Question:
    """The question in one POST /chat/completions body, checked (the judge's own bounds included) before any work;
    BadRequest with the reason when it is malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not JSON: {str(err)[:200]}") from None
    text, images = read_message(body)
    request = structured_request(text, images)
    if request is not None:
        try:
            judge.check(request)  # the judge's own bounds (the oracle's metadata), before any work
        except ValueError as err:
            raise BadRequest(str(err)) from None
    model = body.get("model")
    return Question(text, images, request, model[:200] if isinstance(model, str) and model else None)


# What each kind of structured request asks the judge; free-form chats go to `chat_many`.
ASKS = {RubricRequest: "score", GroundRequest: "ground", GraphRequest: "extract_graphs", PairRequest: "compare"}


def answer_batch(judge: Judge, questions: list[Question]) -> list[str | Exception]:
    """Per question its reply text, or the exception to answer it with (BadRequest: 4xx; anything else: 500).

    One judge call per kind of question (a VLM judge: one generate for a batch of the same kind). A call that
    raises is made again one question at a time, so one question the judge cannot take costs only its own reply.
    """
    out: list[str | Exception] = [None] * len(questions)
    groups: dict[str, list[int]] = {}
    for i, question in enumerate(questions):
        kind = "chat" if question.request is None else ASKS[type(question.request)]
        groups.setdefault(kind, []).append(i)
    for kind, members in groups.items():
        for i, reply in zip(members, _ask(judge, kind, [questions[i] for i in members])):
            out[i] = reply
    return out


def _ask(judge: Judge, kind: str, questions: list[Question]) -> list[str | Exception]:
    try:
        if kind == "chat":
            try:
                values = judge.chat_many([(q.text, q.images) for q in questions])
            except NotImplementedError as err:
                raise BadRequest(str(err)) from None
        else:
            values = getattr(judge, kind)([q.request for q in questions])
        if len(values) != len(questions):
            raise RuntimeError(f"judge {judge.name} gave {len(values)} answers to {len(questions)} questions")
    except BadRequest as err:
        return [err] * len(questions)
    except Exception as err:  # noqa: BLE001 — reported per question; the server stays up
        if len(questions) == 1:
            logger.error("judge %s failed", judge.name, exc_info=err)
            return [err]
        logger.warning("judge %s failed on a batch of %d (%s: %s); asking each alone", judge.name, len(questions),
                       type(err).__name__, str(err)[:200])
        return [reply for q in questions for reply in _ask(judge, kind, [q])]
    out = []
    for question, value in zip(questions, values):
        try:
            out.append(reply_text(question, value))
        except Exception as err:  # noqa: BLE001 — BadRequest (no answer: 4xx), or an answer of the wrong form (500)
            if not isinstance(err, BadRequest):
                logger.error("judge %s answered in a form the server cannot send", judge.name, exc_info=err)
            out.append(err)
    return out


def reply_text(question: Question, value) -> str:
    """The reply text for the judge's answer to one question (see reward_models/server.py for the forms)."""
    request = question.request
    if request is None:
        if value is None:
            raise BadRequest("the judge failed on this message (see the server log)",
                             HTTPStatus.INTERNAL_SERVER_ERROR)
        return value
    if value is None:
        what = {GroundRequest: "ground this request", GraphRequest: "extract this scene graph",
                PairRequest: "compare this pair"}
        raise BadRequest(f"the judge could not {what.get(type(request), 'score this request')} (see the server log)",
                         UNPROCESSABLE)
    if isinstance(request, GroundRequest):
        width, height = request.image.size
        return json.dumps([{"bbox_2d": list(b.to_pixels(width, height)), "label": request.name} for b in value])
    if isinstance(request, GraphRequest):
        found = value.to_json()
        return json.dumps({"objects": found["entities"], "relations": found["triples"]})
    if isinstance(request, PairRequest):
        better = 1 if value > 0.5 else 2 if value < 0.5 else "tie"
        return json.dumps({"better": better, "preference": value})
    return json.dumps({"score": 10 * value, "reward": value})


def failure(err: Exception) -> tuple[HTTPStatus, dict]:
    """(status, error payload) for a question that got no reply: a BadRequest's own status, else 500."""
    if isinstance(err, BadRequest):
        return err.status, error_payload(err.status, str(err))
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    return status, error_payload(status, f"judge failed: {type(err).__name__}: {str(err)[:500]}")


def completion(judge: Judge, question: Question, reply: str) -> dict:
    """The chat-completion payload carrying `reply`."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": question.model or judge.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }

