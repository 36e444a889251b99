"""Judges: the registry, the oracle, a tiny random-init Qwen2.5-VL through the hf judge, and the http judge
(exactly the oracle's rewards through `judge serve`; retries, timeouts and the concurrency limit)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from PIL import Image

from janus_rig.chain import Box
from reward_models import RewardConfig, compute_rewards, make_judge
from reward_models.judges import JUDGES, GroundRequest, RubricRequest
from reward_models.judges.http import qwen_resized
from reward_models.judges.shapeworld import image_score
from reward_models.server import start_in_thread
from tests.rewards import World, variants

QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
        try:
            self.rfile.read(int(self.headers["Content-Length"]))
            if step == "sleep":
                time.sleep(1.0)
                return
            if isinstance(step, int):
                self.send_response(step)
                self.end_headers()
                return
            time.sleep(state.get("delay", 0))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": step}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with state["lock"]:
                state["in_flight"] -= 1


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
    """A random-init Qwen2.5-VL (text hidden 32, 2 layers; vision depth 2), a word-level tokenizer, the PIL image
    processor: saved as a model directory, no downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from reward_models.judges.hf import _image_only_processor_class
    from reward_models.judges.prompts import GROUNDING, RUBRICS

    words = " ".join([*RUBRICS.values(), GROUNDING, "user assistant score bbox_2d 0 1 2 3 4 5 6 7 8 9 10"])
    vocab = {"<unk>": 0, "<pad>": 1}
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    for piece, _ in pre.pre_tokenize_str(words):
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre, decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    ids = tokenizer.convert_tokens_to_ids(QWEN_SPECIAL)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         bos_token_id=None, eos_token_id=ids[1], pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1], window_size=56, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids[4], video_token_id=ids[5], vision_start_token_id=ids[2], vision_end_token_id=ids[3],
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_qwen")
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


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
