"""Judge replies: the forms judges really write are read, and no reply whatsoever raises."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from janus_rig.chain import Box
from reward_models.scene_graph import SceneGraph, Vocabulary
import reward_models.judges.parse as parse_module
from reward_models.judges.parse import parse_boxes, parse_preference, parse_scene_graph, parse_score
from tests.timing import fastest_run

VOCABULARY = Vocabulary(labels=("circle", "square"), attributes=("red", "blue"), predicates=("left of", "above"))
RED_LEFT_OF_BLUE = {("red circle", "left of", "blue square")}


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"score": 8}', 0.8),
        ('```json\n{"reasoning": "fine", "score": "8"}\n```', 0.8),
        ("I would give it 8/10.", 0.8),
        ("The layout matches.\nScore: 7.5", 0.75),
        ("**Score**: 9 out of 10", 0.9),
        ("8", 0.8),
        ('{"description": "a red circle", "caption": "x", "reasoning": "y", "score": 10}', 1.0),
        ('Sure! Here it is: {"score": 3} Hope that helps.', 0.3),
        ('[{"score": 4}]', 0.4),
        ('{"Score": 6}', 0.6),
        ('{"score": 6.666666666666667, "reward": 0.6666666666666666}', 0.6666666666666666),  # exact, janus-rig
        ('{"result": {"score": 2}}', 0.2),
        ("score of 3 for colour, but overall score: 8", 0.8),  # the last one: the conclusion
        ("80/100", 0.8),
    ],
)
def test_scores_read(reply, expected):
    parsed = parse_score(reply)
    assert parsed.ok and parsed.value == pytest.approx(expected)


@pytest.mark.parametrize(
    "reply, failure",
    [
        ("", "unparseable"),
        ("The image is lovely.", "unparseable"),
        ('{"reasoning": "no score given"}', "unparseable"),
        ('{"score": "high"}', "unparseable"),
        ('{"score": true}', "unparseable"),
        ('{"score": NaN}', "unparseable"),
        ('{"score": 15}', "out_of_range"),
        ("Score: -3", "out_of_range"),
        ("12/10", "out_of_range"),
        (None, "unparseable"),
        ('{"score": 1e999}', "unparseable"),
    ],
)
def test_score_failures(reply, failure):
    parsed = parse_score(reply)
    assert parsed.value is None and parsed.failure == failure


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n[{"bbox_2d": [10, 20, 110, 220], "label": "red circle"}]\n```',
        '{"bbox": [10, 20, 110, 220]}',
        "The circle is at [10, 20, 110, 220].",
        "(10,20),(110,220)",
        '{"bbox_2d": [[10, 20], [110, 220]]}',
        '[[10, 20, 110, 220]]',
        '{"bbox_2d": [110, 220, 10, 20]}',  # corners in either order
    ],
)
def test_boxes_read_and_mapped_to_the_grid(reply):
    parsed = parse_boxes(reply, 440, 440)
    assert parsed.ok and parsed.value == [Box.from_pixels(10, 20, 110, 220, 440, 440)]


def test_several_boxes_and_explicit_absence():
    two = '[{"bbox_2d": [0, 0, 100, 100], "label": "a"}, {"bbox_2d": [200, 200, 300, 300], "label": "a"}]'
    assert len(parse_boxes(two, 1000, 1000).value) == 2
    for absent in ("[]", '{"bbox_2d": null}', '```json\n[]\n```'):
        parsed = parse_boxes(absent, 100, 100)
        assert parsed.ok and parsed.value == []


@pytest.mark.parametrize(
    "reply, failure",
    [
        ("I cannot find it.", "unparseable"),
        ('{"label": "red circle"}', "unparseable"),
        ('{"bbox_2d": [1, 2, 3]}', "unparseable"),
        ('{"bbox_2d": [10, 20, 5000, 220]}', "out_of_range"),
        ('{"bbox_2d": [-50, 20, 100, 220]}', "out_of_range"),
    ],
)
def test_box_failures(reply, failure):
    parsed = parse_boxes(reply, 440, 440)
    assert parsed.value is None and parsed.failure == failure


@pytest.mark.parametrize(
    "reply",
    [
        '{"objects": ["red circle", "blue square"], "relations": [["red circle", "left of", "blue square"]]}',
        '```json\n{"objects": ["Red Circle"], "relations": [["the red circle", "left of", "blue square"]]}\n```',
        '[{"subject": "red circle", "predicate": "left of", "object": "blue square"}]',
        '[["red circle", "left of", "blue square"]]',
        '{"scene_graph": {"triples": [{"head": "red circle", "relation": "left of", "tail": "blue square"}]}}',
        '{"items": [{"item_id": 0, "label": "circle", "attributes": ["red"]}, {"item_id": 1, "label": "square", '
        '"attributes": ["blue"]}], "relations": [{"triple_id": 0, "item1": 0, "relation": "left of", "item2": 1}]}',
        "Looking at the image I see (red circle, left of, blue square).",
        "Objects: red circle, blue square\nRelations:\n- (red circle, left of, blue square)",
    ],
)
def test_scene_graphs_read(reply):
    parsed = parse_scene_graph(reply, VOCABULARY)
    assert parsed.ok and parsed.value.triples == RED_LEFT_OF_BLUE
    assert parsed.value.entities == {"red circle", "blue square"} and parsed.value.dropped == 0


def test_scene_graph_vocabulary_and_explicit_nothing():
    reply = ('{"objects": ["yellow circle", "dog", 7], "relations": [["red circle", "under", "blue square"], '
             '["red circle", "above", "cat"], ["red circle", "above"]]}')
    graph = parse_scene_graph(reply, VOCABULARY).value
    # yellow: no attribute (dropped); dog; 7; 'under'; 'cat'; the 2-element relation -> 6 dropped
    assert graph.entities == {"circle"} and graph.triples == set() and graph.dropped == 6
    for nothing in ("[]", '{"objects": [], "relations": []}', "```json\n{\"relations\": []}\n```"):
        assert parse_scene_graph(nothing, VOCABULARY).value == SceneGraph.build()
    for garbage in ("", "a red circle is left of a blue square", '{"score": 8}', None, "[1, 2, 3]"):
        parsed = parse_scene_graph(garbage, VOCABULARY)
        assert parsed.value is None and parsed.failure == "unparseable"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"better": 1}', 1.0),
        ('{"reasoning": "the circle is misplaced in image 1", "better": 2}', 0.0),
        ('```json\n{"better": "tie"}\n```', 0.5),
        ('{"better": "Image 1"}', 1.0),
        ('{"winner": "second"}', 0.0),
        ('{"better": 2, "preference": 0.25}', 0.25),  # the exact value (a served oracle) wins
        ("Image 2 is better.", 0.0),
        ("Image 1 is clearly better than image 2.", 1.0),
        ("Both have flaws. Answer: 1", 1.0),
        ("Verdict: tie", 0.5),
        ("2", 0.0),
    ],
)
def test_preferences_read(reply, expected):
    parsed = parse_preference(reply)
    assert parsed.ok and parsed.value == expected


@pytest.mark.parametrize("reply, failure", [
    ("", "unparseable"), ("They are both nice.", "unparseable"), ('{"better": 3}', "out_of_range"),
    ('{"better": true}', "unparseable"), (None, "unparseable"), ("3", "out_of_range"),
])
def test_preference_failures(reply, failure):
    parsed = parse_preference(reply)
    assert parsed.value is None and parsed.failure == failure


ADVERSARIAL = [
    "[" * 100_000,
    "{" * 50_000 + "}" * 50_000,
    '{"score": ' + "9" * 5000 + "}",
    '{"score": 1' + "0" * 400 + "}",
    "Score: " + "9" * 5000,
    "score: 1e308 / 1e-308",
    "8/0",
    "8/-10",
    '{"score": [8]}',
    '{"score": {"score": {"score": 8}}}',
    "```json\n```",
    "```",
    "```json\n{\"score\": 8",
    '{"bbox_2d": [NaN, 1, 2, 3]}',
    '{"bbox_2d": [1e400, 1, 2, 3]}',
    '{"bbox_2d": ["a", "b", "c", "d"]}',
    '{"bbox_2d": [[1, 2], [3]]}',
    '{"bbox_2d": {"x": 1}}',
    "[1, 2, 3, 4] " * 5000,
    "(1,2),(3,4)" * 3000,
    "\x00\x01\x02 score \ud7ff",
    "٣/١٠",
    "score: ٨",
    '{"score": "8/0"}',
    '{"score": "inf"}',
    '"just a string"',
    "null",
    "[null, null]",
    "-0",
    "score:-0.0",
    "{}" * 10_000,
    json.dumps({"a": [{"b": [{"c": [{"score": 5}]}]}]}),
]


@pytest.mark.parametrize("reply", ADVERSARIAL)
def test_adversarial_replies_never_raise(reply):
    for parsed in (parse_score(reply), parse_boxes(reply, 100, 100), parse_boxes(reply, 0.5, 1e9),
                   parse_scene_graph(reply, VOCABULARY), parse_preference(reply)):
        assert parsed.failure in (None, "unparseable", "out_of_range")
        if parsed.ok:
            assert parsed.value is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["score", "Score", "reward", "bbox_2d", "bbox", "label", "x"]) | st.text(max_size=5), inner, max_size=5
    ),
    max_leaves=20,
)
replies = st.one_of(
    st.text(max_size=300),
    json_values.map(lambda v: json.dumps(v)),
    st.tuples(st.text(max_size=50), json_values, st.text(max_size=50))
    .map(lambda t: f"{t[0]}```json\n{json.dumps(t[1])}\n```{t[2]}"),
    st.tuples(st.text(max_size=30), st.floats(allow_nan=True), st.floats(allow_nan=True))
    .map(lambda t: f"{t[0]} score: {t[1]}/{t[2]}"),
    st.lists(st.sampled_from(list("{}[](),:\"0123456789.-e score/bbox_2d ")), max_size=200).map("".join),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=replies)
def test_a_thousand_malformed_replies_parse_without_an_exception(reply):
    score = parse_score(reply)
    assert score.failure in (None, "unparseable", "out_of_range")
    if score.ok:
        assert 0.0 <= score.value <= 1.0
    boxes = parse_boxes(reply, 64, 48)
    assert boxes.failure in (None, "unparseable", "out_of_range")
    if boxes.ok:
        assert all(isinstance(b, Box) for b in boxes.value)
    graph = parse_scene_graph(reply, VOCABULARY)
    assert graph.failure in (None, "unparseable") and (graph.value is None) == (not graph.ok)
    preference = parse_preference(reply)
    assert preference.failure in (None, "unparseable", "out_of_range")
    if preference.ok:
        assert 0.0 <= preference.value <= 1.0


# --- linear time on hostile replies (issue 28) ---------------------------------------------------------------------

NUMBER = parse_module._NUMBER
CANDIDATE = parse_module._CANDIDATE
# The patterns as they were before issue 28, kept as the reference: same matches, but quadratic on some input.
PLAIN_PATTERNS = {
    "_RATIO_RE": re.compile(rf"(?i)({NUMBER})\s*(?:/|out\s+of)\s*(10|100)\b"),
    "_TRIPLE_RE": re.compile(r"[(\[]{0},{0},{0}[)\]]".format(r"\s*([^()\[\],\n]{1,80}?)\s*")),
    "_OBJECTS_LINE_RE": re.compile(r"(?im)^[\W_]*objects?[\W_]*:\s*(.+)$"),
    "_BETTER_RE": re.compile(
        rf"(?i)\b{CANDIDATE}\s*#?\s*([12])\b\s+(?:is|looks|matches|fits|seems)\s+(?:\w+\s+){{0,2}}better"
        rf"|\b(?:better|winner|answer|choice|verdict|prefer(?:red|ence)?)\b\W{{0,6}}(?:(?:is|:|=)\W{{0,4}})?"
        rf"(?:{CANDIDATE}\s*#?\s*)?([12]|tie)\b"),
    "_PAIR_BOX_RE": re.compile(rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*,?\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)"),
}
ATOMS = ["1", "12", "0", "7", ".", "5", "e", "E", "-", "+", "/", " / ", " out of ", "10", "100", "score", "Score:",
         "rating", ":", "=", "*", "#", "image", "Image 2", "candidate ", " is better", " looks much better", "tie",
         "better", "answer", "(", ")", "[", "]", ",", "\n", " ", "  ", "\t", "_", "objects", "Objects:", "object",
         "red circle", "blue square", "left of", "a", "é", "٣", '"', "{", "}", "x" * 85]
# Near-misses of each form the patterns read, from the pieces they are made of.
SPACES = ["", " ", "  ", "\n", " \n ", "\t"]
NUMBERS = ["1", "8", "12", "7.5", ".5", "1.", "1e3", "-2", "+3", "1.2.3", "99999", ""]
WORDS = ["red circle", "left of", "a", " ", "7", "x" * 79, "x" * 81, "a\nb", "a b", "_", "é"]
TEMPLATES = [
    "{n}{s}/{s}{d}", "{n}{s}out of{s}{d}", "score{s}:{s}{n}{s}/{s}{n}",
    "({n}{s},{s}{n}){s}{c}{s}({n},{s}{n})", "[{n},{s}{n},{n},{s}{n}]",
    "({w}{s},{s}{w},{s}{w})", "[{s}{w},{w}{s},{w}]", "{lead}objects{lead}:{s}{w}, {w}",
    "{cand}{s}{hash}{s}{k} is better", "{cand}{s}{k} looks much better", "answer{s}:{s}{cand}{s}{hash}{k}",
]


def hostile_corpus(n=3000, seed=28):
    """Atom soup and near-misses of every form, joined: what the patterns see in replies, and some they never do."""
    rng = random.Random(seed)
    fill = {"n": NUMBERS, "s": SPACES, "d": ["10", "100", "1", "1000"], "c": [",", "", ";"], "w": WORDS,
            "lead": ["", "\n", "- ", "_", "\n\n", "**"], "cand": ["image", "Image", "option", "candidate", "x"],
            "hash": ["", "#", "# "], "k": ["1", "2", "3", "tie"]}

    def segment():
        if rng.random() < 0.4:
            return "".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 12)))
        template = rng.choice(TEMPLATES)
        return re.sub(r"{(\w+)}", lambda m: rng.choice(fill[m.group(1)]), template)

    return ["".join(segment() for _ in range(rng.randint(0, 4))) for _ in range(n)]


def triples(pattern, text):
    """What parse_scene_graph keeps of a triple pattern's matches (each part must hold a letter)."""
    return [m.groups() for m in pattern.finditer(text) if all(re.search("[^\\W\\d_]", g) for g in m.groups())]


def test_patterns_match_what_the_plain_ones_matched():
    for text in hostile_corpus():
        for name in ("_RATIO_RE", "_BETTER_RE", "_PAIR_BOX_RE"):
            fast, plain = getattr(parse_module, name), PLAIN_PATTERNS[name]
            assert [m.groups() for m in fast.finditer(text)] == [m.groups() for m in plain.finditer(text)], (name, text)
        # the objects line may now start on a later line of the same lead-in: the names it reads are the same
        assert ([m.group(1) for m in parse_module._OBJECTS_LINE_RE.finditer(text)]
                == [m.group(1) for m in PLAIN_PATTERNS["_OBJECTS_LINE_RE"].finditer(text)]), text
        assert triples(parse_module._TRIPLE_RE, text) == triples(PLAIN_PATTERNS["_TRIPLE_RE"], text), text


def test_parsers_answer_what_they_answered_with_the_plain_patterns(monkeypatch):
    corpus = hostile_corpus(1500, seed=29)

    def answers():
        return [(parse_score(t), parse_boxes(t, 100, 100), parse_scene_graph(t, VOCABULARY), parse_preference(t))
                for t in corpus]

    fast = answers()
    for name, pattern in PLAIN_PATTERNS.items():
        monkeypatch.setattr(parse_module, name, pattern)
    assert fast == answers()


MB = 1_000_000


def fill(unit):
    return unit * (MB // len(unit))


HOSTILE_REPLIES = {
    "digits": "1" * MB,  # the audit's shape: a ratio search restarted inside every digit run
    "digit runs and slashes": fill("1" * 50 + "/"),
    "nested brackets": "[" * MB,
    "nested objects": fill('{"score":'),
    "many boxes": fill("[1, 2, 3, 4] (1,2),(3,4) "),
    "many triples": fill("(red circle, left of, blue square) "),
    "long whitespace": " " * MB,
    "blank lines": "\n" * MB,
    "a candidate then whitespace": "image" + " " * MB,
    "a pair then whitespace": "(1,2)" + " " * MB,
    "an open triple then whitespace": "(a,b," + " " * MB,
    "fences": fill("```json\n{"),
}


@pytest.mark.parametrize("shape", HOSTILE_REPLIES)
def test_a_megabyte_of_hostile_reply_parses_in_under_a_second(shape):
    reply = HOSTILE_REPLIES[shape]
    for parse in (parse_score, lambda r: parse_boxes(r, 100, 100), lambda r: parse_scene_graph(r, VOCABULARY),
                  parse_preference):
        assert fastest_run(parse, reply) < 1.0  # linear; the quadratic patterns took seconds to minutes here
        assert parse(reply).failure in (None, "unparseable", "out_of_range")


