"""Generated requests for fuzzing `judge serve` (tests/rewards/test_server_hardening.py), and the sender.

Hypothesis draws one seed request per example — a valid structured question (so the judge itself runs), a chat
body with wrong types anywhere, or a whole raw HTTP request — and a seed; a plain seeded `random.Random` then
derives the rest of the batch from it by mutation (a field of the body or of its `<janus-rig-request>` block
replaced by a hostile value or deleted, the auth header changed; for raw requests, another request line and set of
headers). Hypothesis finds structure; the mutations give volume cheaply (drawing 10,000 rich requests with
hypothesis alone took 22 s).

A request is ("chat", body bytes, auth) — sent with http.client on a kept-alive connection — or ("raw", bytes) — a
whole HTTP request written to a fresh socket. Every raw request is complete (its head ends; its body is all there
or its length is refused at once), so each one must get an answer.
"""

from __future__ import annotations

import base64
import copy
import http.client
import io
import json
import random
import socket

from hypothesis import strategies as st
from PIL import Image, ImageDraw

from data_prep.shapeworld.relations import RELATIONS
from data_prep.shapeworld.scene import COLORS, SHAPES

BATCH, EXAMPLES = 20, 500  # 10,000 requests: 500 hypothesis examples, each a seed request and 19 mutants
OPEN, CLOSE = "<janus-rig-request>", "</janus-rig-request>"


def _url(image: Image.Image, fmt: str = "PNG", kind: str = "png") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode()


def _scene() -> Image.Image:
    image = Image.new("RGB", (64, 64))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 24, 20, 40), fill=COLORS["red"])
    draw.rectangle((40, 24, 56, 40), fill=COLORS["blue"])
    return image


GOOD_IMAGES = [_url(_scene()), _url(Image.new("RGB", (1, 1))), _url(_scene(), "JPEG", "jpeg")]
BAD_IMAGES = [
    _url(Image.new("1", (4100, 4100))),  # over the per-image pixel bound: refused from the header alone
    _url(Image.new("RGB", (8, 8)), "GIF", "png"),  # a GIF called a PNG: a decoder the server does not expose
    "data:image/png;base64,aGVsbG8=",  # not an image
    "data:image/png;base64,@@@",  # not base64
    "http://127.0.0.1:1/a.png",  # remote: never fetched
]
# What a mutation puts in place of any field: wrong types, the audit's counts, long and odd strings.
HOSTILE = [None, True, False, 0, -1, 2.5, float("nan"), float("inf"), 3_000_000, 10**9, 10**400, "", "red", "x" * 5000,
           "\x00", "\ud800", ["red"], {"red": 1}, [], {}, [[[[[[]]]]]], list(range(300)), {"include": "circle"},
           [{"class": "circle", "count": 10**9}], "<|obj_start|>" * 500]
BENIGN = [1, 2, 3, "red", "blue", "green", "circle", "square", "triangle", "left of", "above", "a red circle"]
CHAIN = ("<|obj_start|>red circle<|obj_end|> <|box_start|>(60,370),(310,620)<|box_end|> left of "
         "<|obj_start|>blue square<|obj_end|> <|box_start|>(620,370),(870,620)<|box_end|>")

# --- hypothesis: the seed requests ----------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def valid_metadata(draw) -> dict:
    include = []
    for i in range(draw(st.integers(1, 3))):
        clause = {"class": draw(st.sampled_from(SHAPES)), "count": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            clause["color"] = draw(st.sampled_from(list(COLORS)))
        if i and draw(st.booleans()):
            clause["position"] = [draw(st.sampled_from(RELATIONS)), draw(st.integers(0, i - 1))]
        include.append(clause)
    record = {"tag": "fuzz", "include": include}
    if draw(st.booleans()):
        record["exclude"] = [{"class": draw(st.sampled_from(SHAPES)), "count": draw(st.integers(1, 5))}]
    return record


chains = st.one_of(st.just(CHAIN), st.lists(st.sampled_from(
    ["<|obj_start|>", "<|obj_end|>", "<|box_start|>", "<|box_end|>", "(100,100),(400,400)", "red circle",
     "blue square", "(", ")", ",", " "]), max_size=20).map("".join), st.text(max_size=30))


@st.composite
def valid_blocks(draw) -> tuple[dict, list[str]]:
    """(a well-formed structured block, the image URLs it needs)."""
    task = draw(st.sampled_from(["semantic", "spatial", "prompt_image", "ground", "scene_graph", "compare"]))
    image = draw(st.sampled_from(GOOD_IMAGES))
    if task == "ground":
        return {"task": task, "name": draw(st.sampled_from(["red circle", "square", "green triangle"]))}, [image]
    if task == "scene_graph":
        return {"task": task, "vocabulary": {"labels": list(SHAPES), "attributes": list(COLORS),
                                             "predicates": list(RELATIONS)}}, [image]
    metadata = draw(valid_metadata())
    if task == "compare":
        if draw(st.booleans()):
            return {"task": task, "kind": "image", "prompt": "p", "metadata": metadata}, [image, image]
        return {"task": task, "kind": "chain", "prompt": "p", "metadata": metadata, "first": draw(chains),
                "second": draw(chains)}, []
    block = {"task": task, "prompt": "a red circle left of a blue square", "chain": draw(chains), "metadata": metadata}
    return block, [image] if task != "semantic" else []


def chat_body(block, images: list[str], text: str = "Rate this.") -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    content += [{"type": "text", "text": text}, {"type": "text", "text": OPEN + json.dumps(block) + CLOSE}]
    return {"model": "shapeworld", "messages": [{"role": "user", "content": content}], "max_tokens": 64}


valid_chats = valid_blocks().map(lambda b: ("chat", chat_body(*b), "right"))
parts = st.one_of(
    st.sampled_from(GOOD_IMAGES + BAD_IMAGES).map(lambda u: {"type": "image_url", "image_url": {"url": u}}),
    st.fixed_dictionaries({"type": json_values, "text": json_values, "image_url": json_values}),
    st.sampled_from([OPEN + "{nope" + CLOSE, OPEN + "[1]" + CLOSE, OPEN + "[" * 100_000 + CLOSE,
                     "x" * (2**20 + 1), "How good is this?", ""]).map(lambda t: {"type": "text", "text": t}),
    json_values,
)
odd_chats = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
        {"role": st.one_of(st.just("user"), json_values), "content": st.one_of(st.lists(parts, max_size=4),
                                                                                json_values)}), max_size=2)},
        optional={"model": json_values}),
    st.just(chat_body({"task": "semantic"}, [GOOD_IMAGES[1]] * 9)),  # too many images
    json_values,
).map(lambda body: ("chat", body, "right"))
raw_bodies = st.sampled_from([b"", b"\xff\xfe{", b'{"messages": [', b"[" * 50_000, b"1e999999", b'{"a": NaN}',
                              b"9" * 5000, b'{"messages": [{"role": "user", "content": "hi"}]}'])
# Each example draws one of each kind; a seeded choice picks which one the batch grows from (half valid questions, whose
# mutants reach the oracle's rules; the rest odd bodies and raw requests), so the mix does not rest on how
# hypothesis weighs its choices.
seeds = st.tuples(valid_chats, odd_chats, raw_bodies.map(lambda b: ("raw", b)), st.integers(0, 2**32 - 1))
KIND_OF_SEED = [0] * 5 + [1] * 3 + [2] * 2  # valid, odd, raw


# --- plain random: the mutants --------------------------------------------------------------------------------

AUTH = ["right"] * 17 + ["none", "Bearer wrong", "Basic Zm9v"]


def _slots(value, out: list) -> list:
    """Every (container, key) in a JSON tree, so one can be replaced or deleted."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((value, key))
        _slots(child, out)
    return out


def _mutate(value, rng: random.Random) -> None:
    slots = _slots(value, [])
    if not slots:
        return
    container, key = rng.choice(slots)
    roll = rng.random()
    if isinstance(container, dict) and roll < 0.15:
        del container[key]
    elif roll < 0.5:  # a value of the right kind: a different question the judge must answer
        container[key] = rng.choice(BENIGN)
    else:
        container[key] = copy.deepcopy(rng.choice(HOSTILE))  # a fresh one: later mutations may edit it


def _block_parts(body) -> list[dict]:
    """The text parts of a body that hold exactly one parseable block."""
    messages = body.get("messages") if isinstance(body, dict) else None
    found = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str) and text.startswith(OPEN) and text.endswith(CLOSE):
                found.append(part)
    return found


def _chat_mutant(body, rng: random.Random):
    body = json.loads(json.dumps(body))  # a deep copy
    for _ in range(rng.choice([1, 1, 2, 3])):
        parts = _block_parts(body)
        if parts and rng.random() < 0.85:  # mostly inside the block: the fields the judge reads
            part = rng.choice(parts)
            try:
                block = json.loads(part["text"][len(OPEN):-len(CLOSE)])
            except (ValueError, RecursionError):  # a seed's deliberately broken block: leave it so
                continue
            _mutate(block, rng)
            part["text"] = OPEN + json.dumps(block) + CLOSE
        else:
            _mutate(body, rng)
    return body


def _raw_request(body: bytes, rng: random.Random) -> bytes:
    method = rng.choice([b"POST"] * 6 + [b"GET", b"PUT", b"HEAD", b"post", b"G\x00T", b""])
    path = rng.choice([b"/v1/chat/completions"] * 4 + [b"/v1/models", b"/chat/completions/", b"/v1/models?x=1",
                       b"/", b"*", b"/%00", b"/" + b"a" * 5000])
    version = rng.choice([b"HTTP/1.1"] * 5 + [b"HTTP/1.0", b"HTTP/2", b"", b"HTTP/1.1 extra"])
    length = rng.choice([[b"Content-Length: %d" % len(body)]] * 4 + [
        [], [b"Content-Length: 1x"], [b"Content-Length: -5"], [b"Content-Length: " + b"9" * rng.randint(8, 6000)],
        [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)],
        [b"Content-Length: %d" % (len(body) // 2)]])
    auth = [b"Authorization: Bearer fuzz-key"] if rng.random() < 0.85 else rng.choice(
        [[], [b"Authorization: Bearer wrong"], [b"Authorization: \xff\xfe"]])
    extra = rng.sample([b"Transfer-Encoding: chunked", b"Expect: 100-continue", b"Expect: weird", b"Connection: close",
                        b"Connection: keep-alive", b"X-Long: " + b"v" * 20_000, b"no colon here", b" folded",
                        b"\x00: \x00", b"Host: " + b"h" * 300], rng.choice([0, 0, 0, 1, 2]))
    head = b" ".join(p for p in (method, path, version) if p) + b"\r\n"
    return head + b"".join(h + b"\r\n" for h in length + auth + extra) + b"\r\n" + body


def batch(valid, odd, raw, seed: int) -> list[tuple]:
    """One of the drawn requests and BATCH - 1 mutants of it, encoded for `send`."""
    # hypothesis favours small and boundary integers: the whole example seeds the generator (a str seed is
    # hashed with SHA-512, the same on every run), so repeated integers still give different batches
    rng = random.Random(f"{seed}:{valid!r}:{odd!r}:{raw!r}")
    kind, *rest = (valid, odd, raw)[rng.choice(KIND_OF_SEED)]
    if kind == "raw":
        return [("raw", _raw_request(rest[0], rng)) for _ in range(BATCH)]
    body, auth = rest
    out = [("chat", json.dumps(body).encode(), auth)]
    for _ in range(BATCH - 1):
        out.append(("chat", json.dumps(_chat_mutant(body, rng)).encode(), rng.choice(AUTH)))
    return out


# --- sending --------------------------------------------------------------------------------------------------


def _status_line(reply: bytes) -> int:
    """The final status of a raw reply (after any 100 Continue); 0 when the server sent nothing readable."""
    while reply.startswith(b"HTTP/1.1 100 "):
        reply = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""
    fields = reply.split(b" ", 2)
    return int(fields[1]) if len(fields) > 2 and reply.startswith(b"HTTP/1.1 ") and fields[1].isdigit() else 0


def send(address, request, connection: list, key: str) -> int:
    """Send one request; its HTTP status (0: no answer, -1: the transport failed)."""
    if request[0] == "raw":
        with socket.create_connection(address, timeout=10) as sock:
            try:
                sock.sendall(request[1])
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # refused early (a 4xx sent before the body was read) and closed: read what it said
                pass
            reply = b""
            try:
                while len(reply) < 4096 and (chunk := sock.recv(4096)):
                    reply += chunk
            except OSError:
                pass
        return _status_line(reply)
    _, body, auth = request
    headers = {"Content-Type": "application/json"}
    if auth != "none":
        headers["Authorization"] = f"Bearer {key}" if auth == "right" else auth
    for attempt in range(2):  # a kept-alive connection the server closed after its last reply: reconnect once
        if connection[0] is None:
            connection[0] = http.client.HTTPConnection(*address, timeout=10)
        try:
            connection[0].request("POST", "/v1/chat/completions", body=body, headers=headers)
            response = connection[0].getresponse()
            response.read()
            if response.will_close:
                connection[0].close()
                connection[0] = None
            return response.status
        except (http.client.HTTPException, ConnectionError) as err:
            connection[0].close()
            connection[0] = None
            if attempt or not isinstance(err, (http.client.RemoteDisconnected, BrokenPipeError)):
                return -1
    return -1
