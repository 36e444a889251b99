import doctest
import math
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import janus_rig.chain.chain as chain_module
from janus_rig.chain import (
    BOX_END,
    BOX_START,
    CHAIN_TOKENS,
    COORD_MAX,
    OBJ_END,
    OBJ_START,
    PROBLEM_KINDS,
    Box,
    ChainFormatError,
    ChainObject,
    format_chain,
    format_span,
    parse_chain,
)
from tests.timing import fastest_run

EXAMPLE = (
    "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> sits left of a "
    "<|obj_start|>blue square<|obj_end|> <|box_start|>(500,500),(800,800)<|box_end|>."
)
GOT_R1_7B = (  # a GoT-R1-7B sample as its authors publish it, ending in the image-start token
    "A <|obj_start|>vibrant still life painting<|obj_end|> <|box_start|>(0,60),(997,983)<|box_end|> showcases a "
    "<|obj_start|>bouquet of red tulips<|obj_end|> <|box_start|>(0,60),(698,780)<|box_end|> in a <|obj_start|>yellow "
    "vase<|obj_end|> <|box_start|>(65,488),(582,982)<|box_end|>, creating a harmonious scene.<begin_of_image>"
)
COMMON_SIZES = [(32, 32), (64, 64), (384, 384), (512, 512), (1024, 1024), (640, 480), (480, 640), (1, 1), (7, 13)]


def span(name, box):
    return f"{OBJ_START}{name}{OBJ_END} {BOX_START}{box}{BOX_END}"


# --- hypothesis strategies -------------------------------------------------------------------------------------

@st.composite
def boxes(draw):
    x1, x2 = sorted(draw(st.lists(st.integers(0, COORD_MAX), min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(st.integers(0, COORD_MAX), min_size=2, max_size=2, unique=True)))
    return Box(x1, y1, x2, y2)


def no_token(s):
    return not any(t in s for t in CHAIN_TOKENS)


# Characters that stress the reader: token fragments, box punctuation, whitespace, non-ASCII digits and letters.
TRICKY = st.sampled_from(list("ab <|>_()0123456789,+-.\n\té中٣") + ["<|", "|>", "obj_start", "box_end"])
pieces = st.lists(TRICKY | st.characters(), max_size=12).map("".join).filter(no_token)
names = pieces.map(str.strip).filter(bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, boxes(), pieces), max_size=6), pieces)
def test_format_then_parse_round_trips(spans, first_text):
    parts, objects, texts = [first_text], [], [first_text]
    for name, box, text in spans:
        objects.append(ChainObject(name, box))
        texts.append(text)
        parts += [objects[-1], text]
    parsed = parse_chain(format_chain(parts), strict=True)
    assert parsed.ok
    assert parsed.objects == objects
    assert parsed.texts == texts


def fuzz_strings(n=1000, seed=0):
    """Seeded adversarial chains: token soup, broken boxes, and truncations/splices of valid chains."""
    rng = random.Random(seed)
    atoms = list(CHAIN_TOKENS) * 3 + [
        "(", ")", ",", " ", "\n", "-", "+", ".", "12", "1000", "1001", "-5", "99999999999999999999", "0" * 5000,
        "x", "é", "中", "٣", "<|", "|>", "<begin_of_image>", "(1,2),(3,4)", "( 12, 30 ), (400,500)", "(5,5),(5,5)",
        span("cat", "(1,2),(300,400)"), span(" ", "(1,2),(3,4)"), span("dog", "(1,x),(2,3)"),
    ]
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:
            out.append("".join(rng.choice(atoms) for _ in range(rng.randint(0, 25))))
        elif kind < 0.8:
            cut = rng.randint(0, len(GOT_R1_7B))
            out.append(GOT_R1_7B[:cut])
        else:  # a valid chain with a random slice deleted and a random atom spliced in
            a, b = sorted(rng.randint(0, len(EXAMPLE)) for _ in range(2))
            out.append(EXAMPLE[:a] + rng.choice(atoms) + EXAMPLE[b:])
    return out


def check_invariants(text):
    parsed = parse_chain(text)
    assert len(parsed.texts) == len(parsed.objects) + 1
    for obj in parsed.objects:
        assert obj.name and obj.name == obj.name.strip() and no_token(obj.name)
        assert obj.box is None or isinstance(obj.box, Box)
    assert all(no_token(t) for t in parsed.texts)
    assert all(p.kind in PROBLEM_KINDS and 0 <= p.position <= len(text) for p in parsed.problems)
    assert [p.position for p in parsed.problems] == sorted(p.position for p in parsed.problems)
    assert "non_canonical" not in {p.kind for p in parsed.problems}
    assert sum(parsed.problem_counts().values()) == len(parsed.problems)
    # strict stops at the first problem the lenient pass met, unless a non-canonical form comes first
    try:
        strict = parse_chain(text, strict=True)
    except ChainFormatError as err:
        first = parsed.problems[0] if parsed.problems else None
        assert err.kind == "non_canonical" or (first and (err.kind, err.position) == (first.kind, first.position))
        if err.kind == "non_canonical":
            assert not first or err.position <= first.position
    else:
        assert parsed.ok and strict == parsed
    return parsed


def test_thousand_adversarial_strings_never_raise():
    for text in fuzz_strings():
        check_invariants(text)


def test_every_truncation_of_a_real_chain_parses():
    for cut in range(len(GOT_R1_7B) + 1):
        parsed = check_invariants(GOT_R1_7B[:cut])
        assert len(parsed.objects) <= 3


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CHAIN_TOKENS) | TRICKY | st.characters(), max_size=40).map("".join))
def test_random_strings_never_raise(text):
    check_invariants(text)


def test_text_without_tokens_is_one_text():
    parsed = parse_chain("no spans here (1,2),(3,4) <begin_of_image>")
    assert parsed.ok and parsed.objects == [] and parsed.texts == ["no spans here (1,2),(3,4) <begin_of_image>"]


# --- linear time on hostile input (issue 28) ---------------------------------------------------------------------

def plain_join_dropping_tokens(pieces):
    """The reference: the joined text with tokens deleted pass after pass until none is left (quadratic)."""
    text = "".join(pieces)
    while "|>" in text and chain_module._TOKEN_RE.search(text):
        text = chain_module._TOKEN_RE.sub("", text)
    return text


# Fragments that join into tokens, nested ("<|obj_<|obj_" + "start|>start|>") or across several pieces.
FRAGMENTS = [*CHAIN_TOKENS, "<|", "<", "|", ">", "|>", "obj_", "box_", "start", "end", "start|>", "end|>", "<|obj_",
             "<|box_", "<|obj_start", "_", "x", " ", "é"]


def joined_pieces(rng):
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(0, 6))]


def test_dropping_tokens_equals_the_plain_version():
    rng = random.Random(28)
    for _ in range(3000):
        pieces = joined_pieces(rng)
        assert chain_module._join_dropping_tokens(pieces) == plain_join_dropping_tokens(pieces), pieces


def test_parse_chain_equals_the_plain_version(monkeypatch):
    rng = random.Random(29)
    texts = fuzz_strings(500) + ["".join(rng.choice(FRAGMENTS + ["(1,2),(3,4)", "cat"]) for _ in range(30))
                                 for _ in range(1000)]
    fast = [(parse_chain(t), strict_outcome(t)) for t in texts]
    monkeypatch.setattr(chain_module, "_join_dropping_tokens", plain_join_dropping_tokens)
    assert fast == [(parse_chain(t), strict_outcome(t)) for t in texts]


def strict_outcome(text):
    try:
        return parse_chain(text, strict=True)
    except ChainFormatError as err:
        return (err.kind, err.position)


MB = 1_000_000


def fill(unit):
    return unit * (MB // len(unit))


HOSTILE_CHAINS = {
    "nested partial tokens": "<|obj_" * (MB // 13) + "start|>" * (MB // 13),  # the audit's shape, 1 MB
    "nested partial box tokens": "<|box_" * (MB // 13) + "end|>" * (MB // 13),
    "many spans": fill(span("a", "(1,2),(3,4)")),
    "many broken spans": fill(span("a", "(1,x),(3,4)") + BOX_END + OBJ_START),
    "many openers": fill(OBJ_START),
    "a long coordinate": span("a", f"({'1' * MB},2),(3,4)"),
    "a long whitespace box": span("a", " " * MB),
    "long whitespace": " " * MB,
    "token ends": fill("|>"),
    "nested brackets": "(" * (MB // 2) + ")" * (MB // 2),
}


@pytest.mark.parametrize("shape", HOSTILE_CHAINS)
def test_a_megabyte_of_hostile_input_parses_in_under_a_second(shape):
    text = HOSTILE_CHAINS[shape]
    assert fastest_run(parse_chain, text) < 1.0  # linear; the quadratic reader took minutes on 1 MB
    assert all(no_token(t) for t in parse_chain(text).texts)


# --- reading valid chains ---------------------------------------------------------------------------------------

def test_reads_the_example():
    parsed = parse_chain(EXAMPLE, strict=True)
    assert [(o.name, o.box.as_tuple()) for o in parsed.objects] == [
        ("red circle", (31, 47, 312, 328)),
        ("blue square", (500, 500, 800, 800)),
    ]
    assert parsed.texts == ["A ", " sits left of a ", "."]


def test_reads_the_real_got_r1_sample():
    parsed = parse_chain(GOT_R1_7B, strict=True)
    assert [o.name for o in parsed.objects] == ["vibrant still life painting", "bouquet of red tulips", "yellow vase"]
    assert parsed.texts[-1] == ", creating a harmonious scene.<begin_of_image>"


def test_lenient_forms_are_read_without_problems():
    text = f"x {OBJ_START}  cat \n{OBJ_END}\n\t{BOX_START}( 12, 030 ), (+400,500){BOX_END} y"
    parsed = parse_chain(text)
    assert parsed.ok
    assert parsed.objects == [ChainObject("cat", Box(12, 30, 400, 500))]
    assert parsed.texts == ["x ", " y"]
    no_space = parse_chain(f"{OBJ_START}cat{OBJ_END}{BOX_START}(1,2),(3,4){BOX_END}")
    assert no_space.ok and no_space.objects[0].box == Box(1, 2, 3, 4)


def test_module_doctests():
    assert doctest.testmod(chain_module).failed == 0


# --- every problem kind, with its position ----------------------------------------------------------------------

def problem(text, kind):
    parsed = parse_chain(text)
    found = [p for p in parsed.problems if p.kind == kind]
    assert found, parsed.problems
    return parsed, found[0]


def test_unclosed_object_span_keeps_its_text():
    text = f"a {OBJ_START}cat sat"
    parsed, p = problem(text, "unclosed_span")
    assert p.position == 2 and parsed.objects == [] and parsed.texts == ["a cat sat"]


def test_unclosed_box_span_leaves_the_object_without_box():
    text = f"{OBJ_START}cat{OBJ_END} {BOX_START}(1,2),(3"
    parsed, p = problem(text, "unclosed_span")
    assert p.position == text.index(BOX_START)
    assert parsed.objects == [ChainObject("cat", None)] and parsed.texts == ["", "(1,2),(3"]


def test_duplicated_obj_start_reports_the_first_as_unclosed():
    text = f"{OBJ_START}{span('cat', '(1,2),(3,4)')}"
    parsed, p = problem(text, "unclosed_span")
    assert p.position == 0 and parsed.objects == [ChainObject("cat", Box(1, 2, 3, 4))]


def test_stray_token():
    text = f"a {OBJ_END}b {BOX_END}c"
    parsed = parse_chain(text)
    assert [(p.kind, p.position) for p in parsed.problems] == [("stray_token", 2), ("stray_token", text.index(BOX_END))]
    assert parsed.texts == ["a b c"]


def test_orphan_box_is_dropped():
    text = f"a {BOX_START}(1,2),(3,4){BOX_END} b"
    parsed, p = problem(text, "orphan_box")
    assert p.position == 2 and parsed.texts == ["a  b"]


def test_text_between_object_and_box_detaches_the_box():
    text = f"{OBJ_START}cat{OBJ_END} is at {BOX_START}(1,2),(3,4){BOX_END}."
    parsed = parse_chain(text)
    assert [p.kind for p in parsed.problems] == ["missing_box", "orphan_box"]
    assert parsed.problems[0].position == text.index(OBJ_END) + len(OBJ_END)
    assert parsed.objects == [ChainObject("cat", None)] and parsed.texts == ["", " is at ."]


def test_missing_box_at_the_end():
    text = f"a {OBJ_START}cat{OBJ_END} sleeps"
    parsed, p = problem(text, "missing_box")
    assert p.position == text.index(" sleeps") and parsed.objects == [ChainObject("cat", None)]
    assert parsed.texts == ["a ", " sleeps"]


def test_empty_name_drops_the_span():
    text = f"a {span('  ', '(1,2),(3,4)')} b"
    parsed, p = problem(text, "empty_name")
    assert p.position == 2 and parsed.objects == [] and parsed.texts == ["a  b"]


@pytest.mark.parametrize("box_text", ["1,2,3,4", "(1,2),(3,4),(5,6)", "(1,2)", "", "(1,2)(3,4)", "((1,2),(3,4))"])
def test_malformed_box(box_text):
    text = f"{OBJ_START}cat{OBJ_END} {BOX_START}{box_text}{BOX_END}"
    parsed, p = problem(text, "malformed_box")
    assert p.position == text.index(BOX_START) + len(BOX_START) and parsed.objects == [ChainObject("cat", None)]


@pytest.mark.parametrize("coords, bad", [("(1,2),(3.5,4)", "3.5"), ("(1,2),(x,4)", "x"), ("(1,2),(3,٣)", "٣"),
                                         ("(1,2),(,4)", ",4")])
def test_non_numeric(coords, bad):
    text = f"{OBJ_START}cat{OBJ_END} {BOX_START}{coords}{BOX_END}"
    parsed, p = problem(text, "non_numeric")
    assert p.position == text.index(bad, text.index(BOX_START) + len(BOX_START)) and parsed.objects[0].box is None


def test_out_of_range_is_clamped():
    text = f"{OBJ_START}cat{OBJ_END} {BOX_START}(-5,2),(1200,400){BOX_END}"
    parsed = parse_chain(text)
    assert [(p.kind, p.position) for p in parsed.problems] == [
        ("out_of_range", text.index("-5")),
        ("out_of_range", text.index("1200")),
    ]
    assert parsed.objects[0].box == Box(0, 2, 1000, 400)


def test_huge_numbers_are_out_of_range_not_a_crash():
    parsed = parse_chain(span("cat", f"(1,2),({'9' * 5000},4)"))
    assert [p.kind for p in parsed.problems] == ["out_of_range"] and parsed.objects[0].box == Box(1, 2, 1000, 4)


@pytest.mark.parametrize(
    "coords, at", [("(300,2),(100,4)", "100"), ("(1,5),(3,5)", "5)<"), ("(1001,2),(1200,4)", "1200")]
)
def test_inverted_or_degenerate_box(coords, at):
    text = f"{OBJ_START}cat{OBJ_END} {BOX_START}{coords}{BOX_END}"
    parsed, p = problem(text, "inverted_box")
    assert p.position == text.index(at) and parsed.objects[0].box is None  # at the x2 or y2 not past x1 or y1


def test_problem_counts_lists_every_kind():
    counts = parse_chain(f"{OBJ_END}{OBJ_END}{OBJ_START}").problem_counts()
    assert set(counts) == set(PROBLEM_KINDS)
    assert counts["stray_token"] == 2 and counts["unclosed_span"] == 1 and sum(counts.values()) == 3


# --- strict mode -------------------------------------------------------------------------------------------------

def test_strict_raises_at_the_first_problem():
    text = f"ok {span('cat', '(1,2),(3,4)')} then {OBJ_END} and {OBJ_START}dog"
    with pytest.raises(ChainFormatError) as info:
        parse_chain(text, strict=True)
    assert (info.value.kind, info.value.position) == ("stray_token", text.index(OBJ_END, text.index("then")))
    assert "stray_token" in str(info.value) and str(info.value.position) in str(info.value)
    assert len(parse_chain(text).problems) == 2


@pytest.mark.parametrize(
    "text, marker",
    [
        (f"{OBJ_START} cat{OBJ_END} {BOX_START}(1,2),(3,4){BOX_END}", " cat"),
        (f"{OBJ_START}cat{OBJ_END}\n{BOX_START}(1,2),(3,4){BOX_END}", "\n"),
        (f"{OBJ_START}cat{OBJ_END}{BOX_START}(1,2),(3,4){BOX_END}", BOX_START),
        (f"{OBJ_START}cat{OBJ_END} {BOX_START}( 1,2),(3,4){BOX_END}", "( 1"),
        (f"{OBJ_START}cat{OBJ_END} {BOX_START}(01,2),(3,4){BOX_END}", "(01"),
        (f"{OBJ_START}cat{OBJ_END} {BOX_START}(+1,2),(3,4){BOX_END}", "(+1"),
    ],
)
def test_strict_rejects_lenient_forms(text, marker):
    assert parse_chain(text).ok
    with pytest.raises(ChainFormatError) as info:
        parse_chain(text, strict=True)
    assert info.value.kind == "non_canonical" and info.value.position == text.index(marker)


def test_chain_format_error_is_a_picklable_value_error():
    err = ChainFormatError("missing_box", 7, "object 'cat' has no box")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.kind, copy.position, str(copy)) == ("missing_box", 7, str(err))


# --- formatting ---------------------------------------------------------------------------------------------------

def test_format_span_and_chain():
    cat, dog = ChainObject("cat", Box(1, 2, 3, 4)), ChainObject("dog", Box(10, 20, 30, 40))
    assert format_span("cat", Box(1, 2, 3, 4)) == span("cat", "(1,2),(3,4)")
    assert format_chain(["A ", cat, " left of ", dog, "."]) == f"A {span('cat', '(1,2),(3,4)')} left of " + span(
        "dog", "(10,20),(30,40)"
    ) + "."
    assert parse_chain(format_chain([cat, dog])).texts == ["", "", ""]


@pytest.mark.parametrize(
    "parts",
    [
        [ChainObject("", Box(1, 2, 3, 4))],
        [ChainObject("  ", Box(1, 2, 3, 4))],
        [ChainObject(" cat", Box(1, 2, 3, 4))],
        [ChainObject(f"a{OBJ_END}", Box(1, 2, 3, 4))],
        [f"text {BOX_START}"],
        ["<|", "obj_end|>"],  # the token only appears once the pieces are joined
        [ChainObject("cat", None)],
    ],
)
def test_format_chain_rejects_bad_parts(parts):
    with pytest.raises(ValueError):
        format_chain(parts)


# --- boxes --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "coords", [(0, 0, 0, 10), (5, 10, 6, 10), (10, 0, 5, 5), (-1, 0, 5, 5), (0, 0, 1001, 5), (0.5, 0, 5, 5),
               (True, 0, 5, 5), ("1", 0, 5, 5)],
)
def test_box_validation(coords):
    with pytest.raises(ValueError, match="Box"):
        Box(*coords)


def test_box_geometry():
    box = Box(0, 0, 100, 50)
    assert box.area == 5000 and box.center == (50.0, 25.0) and box.as_tuple() == (0, 0, 100, 50)
    assert box.to_pixels(640, 480) == (0.0, 0.0, 64.0, 24.0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 100, 100), (0, 0, 100, 100), 1.0),
        ((0, 0, 100, 100), (200, 200, 300, 300), 0.0),
        ((0, 0, 100, 100), (100, 0, 200, 100), 0.0),  # touching edges
        ((0, 0, 100, 100), (50, 0, 150, 100), 1 / 3),
        ((0, 0, 100, 100), (0, 0, 50, 100), 0.5),  # contained
        ((0, 0, 100, 100), (50, 50, 150, 150), 2500 / 17500),
    ],
)
def test_iou(a, b, expected):
    assert math.isclose(Box(*a).iou(Box(*b)), expected) and math.isclose(Box(*b).iou(Box(*a)), expected)


@pytest.mark.parametrize("width, height", COMMON_SIZES)
def test_pixel_round_trip_is_exact_for_every_coordinate(width, height):
    # Each coordinate converts independently, so checking all 1001 values per axis covers every valid box.
    for v in range(COORD_MAX):
        box = Box(v, v, v + 1, v + 1)
        assert Box.from_pixels(*box.to_pixels(width, height), width, height) == box


@settings(max_examples=200, deadline=None)
@given(boxes(), st.sampled_from(COMMON_SIZES))
def test_pixel_round_trip_property(box, size):
    assert Box.from_pixels(*box.to_pixels(*size), *size) == box


def test_from_pixels_rounds_clamps_and_keeps_a_valid_box():
    assert Box.from_pixels(3.2, 6.4, 32.0, 60.0, 64, 64) == Box(50, 100, 500, 938)
    assert Box.from_pixels(-10, -10, 500, 500, 384, 384) == Box(0, 0, 1000, 1000)
    assert Box.from_pixels(64, 0, 10, 32, 64, 64) == Box(156, 0, 1000, 500)  # corners in either order
    assert Box.from_pixels(10, 10, 10, 10, 64, 64) == Box(156, 156, 157, 157)  # widened to one unit
    assert Box.from_pixels(64, 64, 64, 64, 64, 64) == Box(999, 999, 1000, 1000)
    with pytest.raises(ValueError):
        Box.from_pixels(float("nan"), 0, 5, 5, 64, 64)
    with pytest.raises(ValueError):
        Box(0, 0, 5, 5).to_pixels(0, 64)
