"""Judges: the registry, the oracle, a tiny random-init Qwen2.5-VL through the hf judge, and the http judge
(exactly the oracle's rewards through `judge serve`; retries, timeouts and the concurrency limit)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from janus_rig.chain import Box
from reward_models import RewardConfig, compute_rewards, make_judge
from reward_models.scene_graph import Vocabulary
from reward_models.judges import JUDGES, GraphRequest, GroundRequest, PairRequest, RubricRequest
from reward_models.judges.http import qwen_resized
from reward_models.judges.shapeworld import image_score
from reward_models.server import start_in_thread
from tests.rewards import World, build_tiny_qwen, variants

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("world"), n=40)


# --- registry -----------------------------------------------------------------------------------------------------


def test_judges_by_name_or_url():
    assert JUDGES.names() == ["hf", "http", "shapeworld"]
    assert make_judge("shapeworld").name == "shapeworld"
    judge = make_judge("http://127.0.0.1:9/v1", timeout=1, model=None)
    assert judge.name == "http" and judge.url == "http://127.0.0.1:9/v1"
    judge.close()
    with pytest.raises(KeyError, match="valid names: hf, http, shapeworld"):
        make_judge("qwen")


# --- the oracle ---------------------------------------------------------------------------------------------------


def test_oracle_partial_credit(world):
    from data_prep.shapeworld.detect import detect

    i = next(i for i, m in enumerate(world.metadata) if len(m["include"]) >= 2)
    dets = detect(world.images[i])
    assert image_score(world.metadata[i], dets) == 1.0
    assert image_score(world.metadata[i], []) == 0.0
    partial = image_score(world.metadata[i], dets[:1])  # one object left
    assert 0.0 <= partial <= 0.5


def test_oracle_counts_requests_and_bad_requests(world):
    judge = make_judge("shapeworld")
    out = judge.score([RubricRequest("semantic", "p", chain=world.chains[0]),
                       RubricRequest("semantic", "p", chain=world.chains[0], metadata=world.metadata[0])])
    assert out == [None, 1.0]
    stats = judge.stats.snapshot()
    assert stats["requests"] == 2 and stats["failures/bad_request"] == 1
    boxes = judge.ground([GroundRequest(world.images[0], "purple triangle"), GroundRequest(world.images[0], "dog")])
    assert all(isinstance(b, list) for b in boxes) and boxes[1] == []


def _vocabulary(record) -> Vocabulary:
    from reward_models.scene_graph import reference_graph

    graph = record["scene_graph"]
    return reference_graph(graph["items"], graph["relations"])[1]


def test_oracle_scene_graphs_are_the_records_own(world):
    judge = make_judge("shapeworld")
    requests = [GraphRequest(image, _vocabulary(r)) for image, r in zip(world.images, world.records)]
    graphs = judge.extract_graphs(requests)
    for graph, record, request in zip(graphs, world.records, requests):
        items = record["scene_graph"]["items"]
        assert graph.entities == {f"{i['attributes'][0]} {i['label']}" for i in items}  # every object, exactly
        names = {i["item_id"]: f"{i['attributes'][0]} {i['label']}" for i in items}
        stated = {(names[r["item1"]], r["relation"], names[r["item2"]]) for r in record["scene_graph"]["relations"]}
        assert stated <= graph.triples  # every stated relation holds in the ground-truth render
        assert {p for _, p, _ in graph.triples} == set(request.vocabulary.predicates)  # only the record's words
    narrow = Vocabulary(labels=("circle",), attributes=(), predicates=())
    some = next(i for i, r in enumerate(world.records)
                if any(x["label"] != "circle" for x in r["scene_graph"]["items"]))
    graph = judge.extract_graphs([GraphRequest(world.images[some], narrow)])[0]
    assert graph.entities <= {"circle"} and not graph.triples and graph.dropped >= 1
    assert judge.stats.snapshot()["failures"] == 0


def test_oracle_compares_images_and_chains(world):
    judge = make_judge("shapeworld")
    i = next(i for i, m in enumerate(world.metadata) if m["tag"] in ("position", "complex"))
    j = world.other(i)
    meta, prompt = world.metadata[i], world.prompts[i]
    image_pairs = [PairRequest("image", prompt, world.images[i], world.images[j], metadata=meta),
                   PairRequest("image", prompt, world.images[j], world.images[i], metadata=meta),
                   PairRequest("image", prompt, world.images[i], world.images[i], metadata=meta)]
    assert judge.compare(image_pairs) == [1.0, 0.0, 0.5]
    chain_pairs = [PairRequest("chain", prompt, world.chains[i], world.chains[j], metadata=meta),
                   PairRequest("chain", prompt, world.chains[i], world.chains[i])]  # no metadata: bad request
    assert judge.compare(chain_pairs) == [1.0, None]
    assert judge.stats.snapshot()["failures/bad_request"] == 1
    with pytest.raises(ValueError, match="two str candidates"):
        PairRequest("chain", prompt, world.images[i], world.chains[i])


# --- the http judge against `judge serve --judge shapeworld` ----------------------------------------------------------


@pytest.fixture
def served_oracle():
    server, thread = start_in_thread(make_judge("shapeworld"), "127.0.0.1", 0)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_http_judge_gives_exactly_the_oracles_rewards(world, served_oracle):
    local, remote = make_judge("shapeworld"), make_judge(served_oracle.url, concurrency=8, timeout=30)
    try:
        assert remote.structured is False  # discovered on first use
        config = RewardConfig()
        for chains, images in variants(world).values():
            expected = compute_rewards(world.prompts, chains, images, world.metadata, local, config)
            got = compute_rewards(world.prompts, chains, images, world.metadata, remote, config)
            assert got.totals == expected.totals  # exactly, not approximately
            assert got.terms == expected.terms
        assert remote.structured is True
        stats = remote.stats.snapshot()
        assert stats["requests"] > 0 and stats["failures"] == 0
    finally:
        remote.close()


def test_http_judge_gives_exactly_the_oracles_scene_graphs_and_preferences(world, served_oracle):
    local, remote = make_judge("shapeworld"), make_judge(served_oracle.url, concurrency=8, timeout=30)
    try:
        vocabularies = [_vocabulary(r) for r in world.records]
        # the record's own vocabulary, and another record's (objects the vocabulary cannot name are left out)
        for shift in (0, 7):
            requests = [GraphRequest(image, vocabularies[(k + shift) % len(vocabularies)])
                        for k, image in enumerate(world.images)]
            expected, got = local.extract_graphs(requests), remote.extract_graphs(requests)
            assert [(g.entities, g.triples) for g in got] == [(g.entities, g.triples) for g in expected]
            assert any(g.triples for g in expected)  # not vacuous
        n = len(world.records)
        pairs = [PairRequest(kind, world.prompts[k], a[k], a[world.other(k)], metadata=world.metadata[k])
                 for kind, a in (("image", world.images), ("chain", world.chains)) for k in range(n)]
        assert remote.compare(pairs) == local.compare(pairs)
        assert remote.stats.snapshot()["failures"] == 0
    finally:
        remote.close()


def test_http_judge_without_structured_protocol_gets_a_4xx_from_the_oracle(world, served_oracle):
    judge = make_judge(served_oracle.url, structured=False, retries=0)
    try:
        out = judge.score([RubricRequest("semantic", world.prompts[0], chain=world.chains[0], metadata=world.metadata[0])])
        assert out == [None] and judge.stats.snapshot()["failures/http_error"] == 1
    finally:
        judge.close()


class _Scripted(BaseHTTPRequestHandler):
    """A fake OpenAI-compatible server: replies per `script` (a status code, 'sleep', or a reply text)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        state = self.server.state
        with state["lock"]:
            state["calls"] += 1
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            step = state["script"][min(state["calls"], len(state["script"])) - 1]
        done = False

        def finished():  # before the reply's last byte: a client that has read it may send its next request at once
            nonlocal done
            if not done:
                done = True
                with state["lock"]:
                    state["in_flight"] -= 1

        try:
            self.rfile.read(int(self.headers["Content-Length"]))
            if step == "sleep":
                time.sleep(1.0)
                return
            if isinstance(step, int):
                finished()
                self.send_response(step)
                self.end_headers()
                return
            time.sleep(state.get("delay", 0))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": step}}]}).encode()
            finished()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            finished()


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    server.state = {"lock": threading.Lock(), "calls": 0, "in_flight": 0, "max_in_flight": 0, "script": []}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _question():
    return RubricRequest("prompt_image", "a red circle", image=Image.new("RGB", (32, 32)))


def test_http_retries_with_backoff(scripted):
    server, url = scripted
    server.state["script"] = [503, 500, '{"score": 7}']
    judge = make_judge(url, model="m", structured=False, retries=3, backoff=0.05)
    start = time.perf_counter()
    assert judge.score([_question()]) == [pytest.approx(0.7)]
    assert time.perf_counter() - start >= 0.05 + 0.1  # 0.05 then 0.1 s of backoff
    assert server.state["calls"] == 3 and judge.stats.snapshot()["failures"] == 0
    judge.close()


def test_http_gives_up_and_counts(scripted):
    server, url = scripted
    server.state["script"] = [503]
    judge = make_judge(url, model="m", structured=False, retries=2, backoff=0.01)
    assert judge.score([_question()]) == [None]
    assert server.state["calls"] == 3 and judge.stats.snapshot()["failures/http_error"] == 1
    server.state["calls"], server.state["script"] = 0, [404]
    assert judge.score([_question()]) == [None] and server.state["calls"] == 1  # a 4xx is not retried
    server.state["calls"], server.state["script"] = 0, ["no idea", "Score: 42"]
    assert judge.score([_question()] * 2) == [None, None]
    stats = judge.stats.snapshot()
    assert stats["failures/unparseable"] == 1 and stats["failures/out_of_range"] == 1
    judge.close()


def test_http_timeout_counted(scripted):
    server, url = scripted
    server.state["script"] = ["sleep"]
    judge = make_judge(url, model="m", structured=False, timeout=0.2, retries=1, backoff=0.01)
    assert judge.score([_question()]) == [None]
    assert judge.stats.snapshot()["failures/timeout"] == 1 and server.state["calls"] == 2
    judge.close()


def test_http_concurrency_limit(scripted):
    server, url = scripted
    server.state["script"], server.state["delay"] = ['{"score": 5}'], 0.05
    judge = make_judge(url, model="m", structured=False, concurrency=3)
    assert judge.score([_question()] * 12) == [0.5] * 12
    assert 2 <= server.state["max_in_flight"] <= 3
    judge.close()


def test_http_unreachable_server_fails_every_request():
    judge = make_judge("http://127.0.0.1:9/v1", retries=0, timeout=2)  # discard port: nothing listens
    assert judge.score([_question()] * 2) == [None, None]
    assert judge.stats.snapshot()["failures/http_error"] == 2
    judge.close()


def test_http_coordinate_spaces(scripted):
    server, url = scripted
    server.state["script"] = ['[{"bbox_2d": [0, 0, 28, 28], "label": "x"}]']
    image = Image.new("RGB", (64, 64))
    assert qwen_resized(64, 64) == (56, 56)
    spaces = {"pixels": Box(0, 0, 438, 438), "qwen2.5-vl": Box(0, 0, 500, 500), "norm1000": Box(0, 0, 28, 28)}
    for coords, expected in spaces.items():
        judge = make_judge(url, model="m", structured=False, coords=coords)
        assert judge.ground([GroundRequest(image, "x")]) == [[expected]]
        judge.close()


# --- the hf judge with a tiny random-init Qwen2.5-VL -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"))


def test_hf_judge_counts_garbage_replies_as_failures(tiny_qwen_dir, world):
    judge = make_judge("hf", model=tiny_qwen_dir, batch_size=4, max_new_tokens=8)
    config = RewardConfig(judge="hf", judge_model=tiny_qwen_dir)
    result = compute_rewards(world.prompts[:2], world.chains[:2], world.images[:2], world.metadata[:2], judge, config)
    stats = judge.stats.snapshot()
    # 2 R_sem + 2 R_spa + 2 R_PI rubric questions + one grounding question per distinct planned name
    names = sum(len(set(_names(c))) for c in world.chains[:2])
    assert stats["requests"] == 6 + names
    assert stats["failures"] == sum(stats[f"failures/{k}"] for k in ("unparseable", "out_of_range", "error"))
    for row, total in zip(result.terms, result.totals):
        for value in row.values():
            assert value is None or 0.0 <= value <= 1.0  # garbage is None (or a lucky parse), never NaN, no crash
        assert total is None or 0.0 <= total <= 1.0
    assert stats["failures"] >= 1 and stats["failures/error"] == 0  # it ran; its replies were garbage
    print("tiny Qwen2.5-VL judge:", stats)
    judge.close()


def _names(chain):
    from janus_rig.chain import parse_chain

    return [o.name for o in parse_chain(chain).objects if o.box is not None]


def test_hf_judge_scene_graphs_and_pairs_from_a_random_model_are_counted_failures(tiny_qwen_dir, world):
    judge = make_judge("hf", model=tiny_qwen_dir, batch_size=4, max_new_tokens=8)
    requests = [GraphRequest(image, _vocabulary(r)) for image, r in zip(world.images[:3], world.records)]
    graphs = judge.extract_graphs(requests)
    pairs = judge.compare([PairRequest("image", world.prompts[0], world.images[0], world.images[1]),
                           PairRequest("chain", world.prompts[0], world.chains[0], world.chains[1])])
    stats = judge.stats.snapshot()
    assert len(graphs) == 3 and len(pairs) == 2 and stats["requests"] == 5
    assert stats["failures"] == sum(g is None for g in graphs) + sum(p is None for p in pairs) >= 1
    assert stats["failures/error"] == 0  # it ran; its replies were garbage
    judge.close()


def test_hf_judge_reads_scene_graphs_and_preferences(tiny_qwen_dir, world, monkeypatch):
    judge = make_judge("hf", model=tiny_qwen_dir, max_new_tokens=2)
    vocabulary = Vocabulary(("circle", "square"), ("red", "blue"), ("left of",))
    reply = 'Here: {"objects": ["red circle", "dog"], "relations": [["red circle", "left of", "blue square"]]}'
    monkeypatch.setattr(judge, "_generate", lambda items: [(reply, [])] * len(items))
    graph = judge.extract_graphs([GraphRequest(world.images[0], vocabulary)])[0]
    assert graph.triples == {("red circle", "left of", "blue square")} and graph.dropped == 1
    monkeypatch.setattr(judge, "_generate", lambda items: [("Image 2 is better.", [])] * len(items))
    assert judge.compare([PairRequest("image", "p", world.images[0], world.images[1])]) == [0.0]
    judge.close()


def test_hf_judge_reads_boxes_in_the_resized_pixel_space(tiny_qwen_dir, monkeypatch):
    judge = make_judge("hf", model=tiny_qwen_dir, max_new_tokens=2)
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    _, sizes = judge._generate([("Locate the red circle, report the bbox coordinates in JSON format.", [image])])[0]
    assert sizes == [qwen_resized(64, 64)] == [(56, 56)]  # the processor's smart_resize: grid x patch size
    monkeypatch.setattr(judge, "_generate", lambda items: [('```json\n[{"bbox_2d": [0, 0, 28, 28]}]\n```', sizes)])
    assert judge.ground([GroundRequest(image, "red circle")]) == [[Box(0, 0, 500, 500)]]
    monkeypatch.setattr(judge, "_generate", lambda items: [("Sure! score: 8/10", [])])
    assert judge.score([RubricRequest("semantic", "p", chain="c")]) == [pytest.approx(0.8)]
    monkeypatch.setattr(judge, "_generate", lambda items: [("hello", [])])
    assert judge.chat("hi", []) == "hello"
    judge.close()


def test_hf_judge_served_answers_chat_and_structured_requests(tiny_qwen_dir, world):
    hf = make_judge("hf", model=tiny_qwen_dir, max_new_tokens=4)
    server, thread = start_in_thread(hf, "127.0.0.1", 0)
    remote = make_judge(server.url, retries=0, timeout=60)
    try:
        assert isinstance(remote.chat("Locate the red circle", [world.images[0]]), str)  # free-form: a VLM judge chats
        assert remote.structured is False  # a VLM reads pictures and prose, not metadata
        assert remote.score([RubricRequest("semantic", world.prompts[0], chain=world.chains[0])]) == [None]
        assert remote.stats.snapshot()["failures/unparseable"] == 1  # garbage served is garbage counted
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
