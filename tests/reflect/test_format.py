"""The checker's and actor's formats: exact round trips, every malformed kind, truncation, adversarial strings."""

from __future__ import annotations

import random

import pytest

from janus_rig.chain import CHAIN_TOKENS, Box, ChainFormatError, ChainObject, format_chain
from janus_rig.chain.roles import (
    ALL_PROBLEM_KINDS,
    DECISION,
    EDIT_BOXES,
    EDIT_END,
    EDIT_START,
    NOTHING_SEEN,
    REFLECT_END,
    REFLECT_START,
    ROLE_TOKENS,
    VERDICT,
    RoleFormatError,
    Verdict,
    format_edit,
    format_reflection,
    parse_edit,
    parse_reflection,
)

SEEN = format_chain(["The image shows a ", ChainObject("red circle", Box(531, 47, 812, 328)), " and a ",
                     ChainObject("blue square", Box(500, 500, 800, 800)), "."])
PLAN = format_chain(["A ", ChainObject("red circle", Box(31, 47, 312, 328)), " left of a ",
                     ChainObject("blue square", Box(500, 500, 800, 800)), "."])
VERDICTS = [Verdict("blue square", True), Verdict("red circle", True), Verdict("red circle left of blue square", False)]
BOXES = [ChainObject("red circle", Box(531, 47, 812, 328)), ChainObject("red circle", Box(31, 47, 312, 328))]
REFLECTION = format_reflection(SEEN, VERDICTS, "edit")
EDIT = format_edit(PLAN, BOXES)


def kinds(parsed) -> list[str]:
    return [p.kind for p in parsed.problems]


def test_reflection_round_trip():
    assert REFLECTION == (f"{REFLECT_START}{SEEN}\n{VERDICT}blue square: yes\n{VERDICT}red circle: yes\n"
                          f"{VERDICT}red circle left of blue square: no\n{DECISION}edit{REFLECT_END}")
    parsed = parse_reflection(REFLECTION, strict=True)
    assert parsed.ok and parsed.decision == "edit" and parsed.verdicts == VERDICTS
    assert [(o.name, o.box.as_tuple()) for o in parsed.seen.objects] == [
        ("red circle", (531, 47, 812, 328)), ("blue square", (500, 500, 800, 800))]
    empty = format_reflection(NOTHING_SEEN, [Verdict("circle", False)], "edit")
    assert parse_reflection(empty, strict=True).seen.objects == []
    counts = parsed.problem_counts()
    assert set(counts) == set(ALL_PROBLEM_KINDS) and not any(counts.values())


def test_edit_round_trip():
    assert EDIT == (f"{EDIT_START}{PLAN}\n{EDIT_BOXES}<|obj_start|>red circle<|obj_end|> <|box_start|>(531,47),"
                    f"(812,328)<|box_end|> <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|>"
                    f"{EDIT_END}")
    parsed = parse_edit(EDIT, strict=True)
    assert parsed.ok and parsed.usable and parsed.chain_text == PLAN
    assert [(o.name, o.box.as_tuple()) for o in parsed.boxes] == [(o.name, o.box.as_tuple()) for o in BOXES]
    assert [o.name for o in parsed.chain.objects] == ["red circle", "blue square"]


def test_lenient_reading_of_sloppy_but_readable_output():
    text = (f"  junk {REFLECT_START}  {SEEN}  \n\n{VERDICT}  Red   Circle :YES \n{VERDICT}blue square: no"
            f"{DECISION} KEEP {REFLECT_END} trailing")
    parsed = parse_reflection(text)
    assert [(v.statement, v.holds) for v in parsed.verdicts] == [("Red   Circle", True), ("blue square", False)]
    assert parsed.verdicts[0].key == "red circle" and parsed.decision == "keep"
    assert kinds(parsed) == ["text_outside", "text_outside"]
    assert len(parsed.seen.objects) == 2 and not parsed.seen.problems
    with pytest.raises(RoleFormatError) as err:
        parse_reflection(text, strict=True)
    assert err.value.kind == "text_outside" and err.value.position == 0


@pytest.mark.parametrize(("text", "expected", "decision"), [
    (f"{REFLECT_START}x{VERDICT}a: yes{DECISION}edit", ["missing_end"], "edit"),
    (f"x{VERDICT}a: yes{DECISION}edit{REFLECT_END}", ["missing_start"], "edit"),
    (f"{REFLECT_START}x{VERDICT}a yes{VERDICT}: no{VERDICT}a: maybe{VERDICT}b: no{DECISION}edit{REFLECT_END}",
     ["bad_verdict", "bad_verdict", "bad_verdict"], "edit"),
    (f"{REFLECT_START}x{DECISION}keep{REFLECT_END}", ["no_verdicts"], "keep"),
    (f"{REFLECT_START}x{VERDICT}a: no{REFLECT_END}", ["missing_decision"], None),
    (f"{REFLECT_START}x{VERDICT}a: no{DECISION}redo{REFLECT_END}", ["bad_decision"], None),
    (f"{REFLECT_START}x{VERDICT}a: no{DECISION}edit{DECISION}keep{REFLECT_END}", ["extra_decision"], "edit"),
    (f"{REFLECT_START}x{EDIT_BOXES}(1,2){VERDICT}a: no{DECISION}keep{REFLECT_END}", ["stray_role_token"], "keep"),
    (f"{REFLECT_START}a <|obj_start|>cat<|obj_end|>{VERDICT}a: no{DECISION}edit{REFLECT_END}", ["missing_box"], "edit"),
])
def test_malformed_reflections(text, expected, decision):
    parsed = parse_reflection(text)
    assert kinds(parsed) == expected and parsed.decision == decision
    with pytest.raises(RoleFormatError) as err:
        parse_reflection(text, strict=True)
    assert err.value.kind == expected[0]


@pytest.mark.parametrize(("text", "expected", "usable"), [
    (f"{EDIT_START}{PLAN}{EDIT_BOXES}{EDIT_END}", ["no_edit_boxes"], False),
    (f"{EDIT_START}{PLAN}{EDIT_END}", ["missing_boxes"], False),
    (f"{EDIT_START} {EDIT_BOXES}<|obj_start|>a<|obj_end|> <|box_start|>(1,1),(9,9)<|box_end|>{EDIT_END}",
     ["empty_chain"], True),
    (f"{EDIT_START}p{EDIT_BOXES}redraw <|obj_start|>a<|obj_end|> <|box_start|>(1,1),(9,9)<|box_end|>{EDIT_END}",
     ["stray_text"], True),
    (f"{EDIT_START}p{EDIT_BOXES}<|obj_start|>a<|obj_end|> <|box_start|>(9,1),(1,9)<|box_end|>{EDIT_END}",
     ["inverted_box", "no_edit_boxes"], False),
    (f"{EDIT_START}p{VERDICT}x{EDIT_BOXES}<|obj_start|>a<|obj_end|> <|box_start|>(1,1),(9,9)<|box_end|>",
     ["stray_role_token", "missing_end"], True),
])
def test_malformed_edits(text, expected, usable):
    parsed = parse_edit(text)
    assert sorted(kinds(parsed)) == sorted(expected) and parsed.usable == usable
    with pytest.raises(ChainFormatError):
        parse_edit(text, strict=True)


def test_truncated_outputs_never_raise_and_say_so():
    for full, parse, end in ((REFLECTION, parse_reflection, REFLECT_END), (EDIT, parse_edit, EDIT_END)):
        for cut in range(len(full)):
            parsed = parse(full[:cut])
            if end not in full[:cut]:
                assert "missing_end" in kinds(parsed), cut
        assert parse(full).ok


def test_non_canonical_forms_pass_lenient_fail_strict():
    variants = [REFLECTION.replace("\n", " "), REFLECTION.replace(": yes", ":yes"),
                REFLECTION.replace("edit<", " edit<"),
                REFLECTION.replace("blue square: no", "blue square: No")]
    for text in variants:
        assert parse_reflection(text).ok, text
        with pytest.raises(RoleFormatError) as err:
            parse_reflection(text, strict=True)
        assert err.value.kind == "non_canonical"
    with pytest.raises(RoleFormatError, match="non_canonical"):
        parse_edit(EDIT.replace(f"\n{EDIT_BOXES}", EDIT_BOXES), strict=True)


def test_formatters_reject_what_cannot_be_read_back():
    with pytest.raises(RoleFormatError, match="stray_role_token"):
        format_reflection(SEEN + VERDICT, VERDICTS, "edit")
    with pytest.raises(RoleFormatError, match="bad_decision"):
        format_reflection(SEEN, VERDICTS, "maybe")
    with pytest.raises(RoleFormatError, match="bad_verdict"):
        format_reflection(SEEN, [Verdict("a: b", True)], "keep")
    with pytest.raises(RoleFormatError, match="no_verdicts"):
        format_reflection(SEEN, [], "keep")
    with pytest.raises(RoleFormatError, match="no_edit_boxes"):
        format_edit(PLAN, [])
    with pytest.raises(ChainFormatError):
        format_edit("a <|obj_start|>cat<|obj_end|>", BOXES)


ATOMS = [*ROLE_TOKENS, *CHAIN_TOKENS, "(1,2),(3,4)", "(9,", "red circle", ": yes", ":", " no", "keep", "edit",
         "\n", " ", "", "<|", "|>", "<|verdict", "yes", "<begin_of_image>", "é", "\x00", "(-5,2000),(3,x)"]


def test_thousand_adversarial_strings_never_raise():
    rng = random.Random(0)
    for i in range(1000):
        if i % 3 == 0:  # mutations of valid outputs
            base = list(rng.choice((REFLECTION, EDIT)))
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(base))
                base[at:at + rng.randint(0, 8)] = rng.choice(ATOMS)
            text = "".join(base)
        elif i % 3 == 1:
            text = "".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 30)))
        else:
            text = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 60)))
        for parse in (parse_reflection, parse_edit):
            parsed = parse(text)
            assert all(p.kind in ALL_PROBLEM_KINDS and 0 <= p.position <= len(text) for p in parsed.problems)
            assert [p.position for p in parsed.problems] == sorted(p.position for p in parsed.problems)
            try:
                parse(text, strict=True)
            except ChainFormatError as err:
                assert err.kind in ALL_PROBLEM_KINDS
        parsed = parse_edit(text)
        assert all(o.box is not None for o in parsed.boxes) and parsed.usable == bool(parsed.boxes)


def test_parsers_reject_non_strings():
    with pytest.raises(TypeError):
        parse_reflection(None)
    with pytest.raises(TypeError):
        parse_edit(b"bytes")
