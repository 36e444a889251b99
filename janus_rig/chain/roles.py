"""The two text formats of the reflection roles, the checker's reflection and the actor's edit, and the questions
the roles are asked (`CHECKER_QUESTION`, `ACTOR_QUESTION`; janus_rig/reflect/prompts.py puts them in the
understanding template). They are the model's text as much as the chain is: the tokenizer is built from them.

Both are read from model output, which is untrusted: `parse_reflection` and `parse_edit` never raise on a str
(problems are listed with their kind and position, like `parse_chain`); `strict=True` (for building datasets)
raises `RoleFormatError` at the first problem and also rejects anything that is not exactly the canonical form
the `format_*` functions write.

A reflection (checker: image + caption + plan in, this out):

    <|reflect_start|>The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(531,47),(812,328)<|box_end|>
    and a <|obj_start|>blue square<|obj_end|> <|box_start|>(500,500),(800,800)<|box_end|>.
    <|verdict|>blue square: yes
    <|verdict|>red circle: yes
    <|verdict|>red circle left of blue square: no
    <|decision|>edit<|reflect_end|>

(the seen part is one line; it is wrapped here). The seen part is a chain of what is in the image (GoT spans, the
grounding chain's form), one verdict per object and relation the caption states ("statement: yes|no"), then the
decision: `keep` the image or `edit` it.

An edit (actor: image + caption + plan + reflection in, this out):

    <|edit_start|>A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a
    <|obj_start|>blue square<|obj_end|> <|box_start|>(500,500),(800,800)<|box_end|>.
    <|edit_boxes|><|obj_start|>red circle<|obj_end|> <|box_start|>(531,47),(812,328)<|box_end|> <|obj_start|>red
    circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|><|edit_end|>

The revised chain (the new plan the editor draws from), then the edit boxes: chain spans naming the object each
region concerns; the editor redraws only inside them.

Lenient reading rules (model output):
- Text before the start token or after the end token is ignored (`text_outside`); a missing start token means
  the text is read from its beginning (`missing_start`), a missing end token that it is read to its end
  (`missing_end`, e.g. a truncated sample).
- A role token of the other format, or a second start token, is `stray_role_token`: dropped with the text up to
  the next role token.
- Reflection: the seen part is everything before the first verdict/decision, surrounding whitespace stripped,
  read with `parse_chain` (its problems are reported with positions in the whole text). A verdict is
  "statement: value", split at its last colon; the value is yes/no in any case; anything else is `bad_verdict`
  (the verdict is dropped). The first decision counts (`extra_decision` for the others); a value other than
  keep/edit is `bad_decision`; none at all `missing_decision` (`decision` is None). No verdict: `no_verdicts`.
- Edit: the revised chain is everything before `<|edit_boxes|>`, stripped (`empty_chain` when empty); edit
  boxes are the spans after it that have a valid box (`parse_chain` problems reported), other text there is
  `stray_text`; no box at all is `no_edit_boxes` (`usable` is False). Without `<|edit_boxes|>`: `missing_boxes`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

from janus_rig.chain import (
    PROBLEM_KINDS,
    ChainFormatError,
    ChainObject,
    ChainProblem,
    ParsedChain,
    format_span,
    parse_chain,
)

REFLECT_START, VERDICT, DECISION, REFLECT_END = "<|reflect_start|>", "<|verdict|>", "<|decision|>", "<|reflect_end|>"
EDIT_START, EDIT_BOXES, EDIT_END = "<|edit_start|>", "<|edit_boxes|>", "<|edit_end|>"
REFLECTION_TOKENS = (REFLECT_START, VERDICT, DECISION, REFLECT_END)
EDIT_TOKENS = (EDIT_START, EDIT_BOXES, EDIT_END)
ROLE_TOKENS = (*REFLECTION_TOKENS, *EDIT_TOKENS)  # added to every tokenizer next to the chain tokens

YES, NO = "yes", "no"
KEEP, EDIT = "keep", "edit"
DECISIONS = (KEEP, EDIT)
NOTHING_SEEN = "The image shows nothing."  # the seen part of an empty image
VERDICT_SEPARATOR = ": "
LINE = "\n"

ROLE_PROBLEM_KINDS = (
    "missing_start",  # no start token: read from the beginning
    "missing_end",  # no end token: read to the end (truncated output)
    "text_outside",  # non-blank text before the start or after the end token (ignored)
    "stray_role_token",  # a role token that does not belong here (dropped with its text)
    "bad_verdict",  # a verdict that is not "statement: yes|no" (dropped)
    "no_verdicts",  # a reflection without any readable verdict
    "missing_decision",  # no <|decision|>
    "bad_decision",  # a decision other than keep/edit
    "extra_decision",  # a second decision (ignored)
    "empty_chain",  # an edit whose revised chain is blank
    "missing_boxes",  # an edit without <|edit_boxes|>
    "no_edit_boxes",  # an edit whose boxes section holds no valid box
    "stray_text",  # text between the edit boxes that is not a span
)
# Every kind either parser reports: the role kinds, then the chain kinds of the embedded chains (non_canonical
# included, which strict mode also uses for a form that is not the canonical one).
ALL_PROBLEM_KINDS = (*ROLE_PROBLEM_KINDS, *PROBLEM_KINDS)

_ROLE_RE = re.compile("|".join(re.escape(t) for t in ROLE_TOKENS))
_SPACES = re.compile(r"\s+")


class RoleFormatError(ChainFormatError):
    """A reflection or edit that breaks its format (strict parsing, formatting); `kind` is in ALL_PROBLEM_KINDS."""


@dataclass(frozen=True)
class Verdict:
    statement: str  # e.g. "red circle", "three squares", "red circle left of blue square"
    holds: bool

    @property
    def key(self) -> str:
        return normalize_statement(self.statement)


def normalize_statement(statement: str) -> str:
    """How statements are matched: lower case, single spaces, no surrounding blanks or trailing full stop."""
    return _SPACES.sub(" ", statement).strip().rstrip(".").strip().lower()


def _problem_counts(problems: Sequence[ChainProblem]) -> dict[str, int]:
    counts = dict.fromkeys(ALL_PROBLEM_KINDS, 0)
    for problem in problems:
        counts[problem.kind] += 1
    return counts


@dataclass
class ParsedReflection:
    seen: ParsedChain  # what the checker says is in the image (positions of its problems: in the whole text)
    verdicts: list[Verdict]
    decision: str | None  # KEEP, EDIT, or None when unreadable
    problems: list[ChainProblem] = field(default_factory=list)  # every problem, role and chain, by position

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_counts(self) -> dict[str, int]:
        """Count per kind of ALL_PROBLEM_KINDS, zeros included (stable keys for logs)."""
        return _problem_counts(self.problems)


@dataclass
class ParsedEdit:
    chain_text: str  # the revised chain, stripped ('' when missing)
    chain: ParsedChain
    boxes: list[ChainObject]  # the edit boxes (every one has a box)
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def usable(self) -> bool:
        """The editor can run: at least one edit box (an empty revised chain falls back to the current plan)."""
        return bool(self.boxes)

    def problem_counts(self) -> dict[str, int]:
        return _problem_counts(self.problems)


# --- formatting ----------------------------------------------------------------------------------------------------
def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    found = _ROLE_RE.search(text)
    if found:
        raise RoleFormatError("stray_role_token", found.start(),
                              f"{what} {text!r} contains the role token {found.group()}")


def format_reflection(seen: str, verdicts: Sequence[Verdict], decision: str) -> str:
    """The canonical reflection text; `parse_reflection(text, strict=True)` reads it back exactly.

    `seen` is a chain (stripped, e.g. `grounding_chain(scene)`, or NOTHING_SEEN); statements are one line each.
    """
    _check_text(seen, "seen chain")
    if seen != seen.strip() or not seen:
        raise RoleFormatError("non_canonical", 0, f"seen chain {seen!r} must be non-empty without surrounding blanks")
    parse_chain(seen, strict=True)
    if decision not in DECISIONS:
        raise RoleFormatError("bad_decision", 0, f"decision must be one of {DECISIONS}, got {decision!r}")
    if not verdicts:
        raise RoleFormatError("no_verdicts", 0, "a reflection needs at least one verdict")
    lines = []
    for verdict in verdicts:
        _check_text(verdict.statement, "statement")
        s = verdict.statement
        if not s or s != s.strip() or LINE in s or ":" in s:
            raise RoleFormatError("bad_verdict", 0, f"statement {s!r} must be one stripped line without ':'")
        lines.append(f"{LINE}{VERDICT}{s}{VERDICT_SEPARATOR}{YES if verdict.holds else NO}")
    return f"{REFLECT_START}{seen}{''.join(lines)}{LINE}{DECISION}{decision}{REFLECT_END}"


def format_edit(chain: str, boxes: Sequence[ChainObject]) -> str:
    """The canonical edit text: revised chain, then the edit boxes as spans separated by one space."""
    _check_text(chain, "revised chain")
    if not chain or chain != chain.strip():
        raise RoleFormatError("empty_chain", 0, f"revised chain {chain!r} must be non-empty without surrounding blanks")
    parse_chain(chain, strict=True)
    if not boxes:
        raise RoleFormatError("no_edit_boxes", 0, "an edit needs at least one edit box")
    spans = " ".join(format_span(obj.name, obj.box) for obj in boxes)
    return f"{EDIT_START}{chain}{LINE}{EDIT_BOXES}{spans}{EDIT_END}"


# --- parsing ---------------------------------------------------------------------------------------------------------
class _Reader:
    """Splits a role text into (token, text up to the next role token) segments between its start and end."""

    def __init__(self, text: str, start: str, end: str, inner: tuple[str, ...], strict: bool):
        if not isinstance(text, str):
            raise TypeError(f"role parsers read a str, got {type(text).__name__}")
        self.text, self.strict = text, strict
        self.problems: list[ChainProblem] = []
        tokens = [(m.start(), m.end(), m.group()) for m in _ROLE_RE.finditer(text)]
        first = next((i for i, t in enumerate(tokens) if t[2] == start), None)
        if first is None:
            self.report("missing_start", 0, f"no {start}: read from the beginning")
            body_start, tokens_after = 0, tokens
        else:
            if text[: tokens[first][0]].strip():
                self.report("text_outside", 0, f"text before {start} is ignored")
            body_start, tokens_after = tokens[first][1], tokens[first + 1 :]
        last = next((i for i, t in enumerate(tokens_after) if t[2] == end), None)
        if last is None:
            self.report("missing_end", len(text), f"no {end}: read to the end")
            body_end, inside = len(text), tokens_after
        else:
            body_end, inside = tokens_after[last][0], tokens_after[:last]
            after = tokens_after[last][1]
            if text[after:].strip():
                self.report("text_outside", after, f"text after {end} is ignored")
        # (token or None for the head, start of its text, end of its text); stray tokens are dropped with their text
        self.segments: list[tuple[str | None, int, int]] = []
        cursor, current = body_start, None
        for a, b, token in inside:
            self.segments.append((current, cursor, a))
            if token in inner:
                current = token
            else:
                self.report("stray_role_token", a, f"{token} does not belong here; dropped with its text")
                current = "stray"
            cursor = b
        self.segments.append((current, cursor, body_end))
        self.segments = [s for s in self.segments if s[0] != "stray"]

    def report(self, kind: str, position: int, message: str) -> None:
        if self.strict:
            raise RoleFormatError(kind, position, message)
        self.problems.append(ChainProblem(kind, position, message))

    def chain(self, a: int, b: int) -> tuple[str, ParsedChain]:
        """Read text[a:b], stripped, as a chain; its problems join ours at their positions in the whole text."""
        raw = self.text[a:b]
        lead = len(raw) - len(raw.lstrip())
        body = raw.strip()
        try:
            parsed = parse_chain(body, strict=self.strict)
        except ChainFormatError as err:
            raise RoleFormatError(err.kind, a + lead + err.position, err.detail) from None
        shifted = [ChainProblem(p.kind, a + lead + p.position, p.message) for p in parsed.problems]
        self.problems.extend(shifted)
        return body, ParsedChain(parsed.objects, parsed.texts, shifted)

    def canonical(self, formatted: str | None) -> None:
        """Strict mode: the text must be exactly what the formatter writes for what was read."""
        if not self.strict or formatted == self.text:
            return
        if formatted is None:
            raise RoleFormatError("non_canonical", 0, "the text cannot be written canonically")
        shorter = min(len(formatted), len(self.text))
        at = next((i for i, (x, y) in enumerate(zip(formatted, self.text)) if x != y), shorter)
        raise RoleFormatError("non_canonical", at, f"not the canonical form: expected {formatted[at:at + 30]!r}")

    def sorted_problems(self) -> list[ChainProblem]:
        return sorted(self.problems, key=lambda p: p.position)


def _verdict(reader: _Reader, a: int, b: int) -> Verdict | None:
    raw = reader.text[a:b]
    statement, colon, value = raw.rpartition(":")
    statement, value = statement.strip(), value.strip().lower()
    if not colon or not statement or value not in (YES, NO):
        reader.report("bad_verdict", a, f"verdict {raw.strip()[:60]!r} is not 'statement: yes|no'")
        return None
    return Verdict(statement, value == YES)


def parse_reflection(text: str, strict: bool = False) -> ParsedReflection:
    """Read a checker reflection (see the module docstring); never raises on a str unless `strict`.

    >>> r = parse_reflection("<|reflect_start|>We see nothing.\\n<|verdict|>red circle: NO\\n<|decision|>edit")
    >>> [(v.statement, v.holds) for v in r.verdicts], r.decision, [p.kind for p in r.problems]
    ([('red circle', False)], 'edit', ['missing_end'])
    """
    reader = _Reader(text, REFLECT_START, REFLECT_END, (VERDICT, DECISION), strict)
    head = reader.segments[0]
    seen_text, seen = reader.chain(head[1], head[2])
    verdicts: list[Verdict] = []
    decision, decided = None, False
    for token, a, b in reader.segments[1:]:
        if token == VERDICT:
            verdict = _verdict(reader, a, b)
            if verdict is not None:
                verdicts.append(verdict)
        elif decided:
            reader.report("extra_decision", a, "a second decision is ignored")
        else:
            decided = True
            value = reader.text[a:b].strip().lower()
            if value in DECISIONS:
                decision = value
            else:
                reader.report("bad_decision", a, f"decision {value[:30]!r} is not keep or edit")
    if not verdicts:
        reader.report("no_verdicts", len(text), "no readable verdict")
    if not decided:
        reader.report("missing_decision", len(text), f"no {DECISION}")
    if strict:
        reader.canonical(format_reflection(seen_text, verdicts, decision))
    return ParsedReflection(seen, verdicts, decision, reader.sorted_problems())


def parse_edit(text: str, strict: bool = False) -> ParsedEdit:
    """Read an actor edit (see the module docstring); never raises on a str unless `strict`.

    >>> e = parse_edit("<|edit_start|>A <|obj_start|>red circle<|obj_end|> <|box_start|>(0,0),(200,200)<|box_end|>."
    ...                "<|edit_boxes|><|obj_start|>red circle<|obj_end|> <|box_start|>(0,0),(200,200)<|box_end|>")
    >>> [o.box.as_tuple() for o in e.boxes], e.usable, [p.kind for p in e.problems]
    ([(0, 0, 200, 200)], True, ['missing_end'])
    """
    reader = _Reader(text, EDIT_START, EDIT_END, (EDIT_BOXES,), strict)
    head = reader.segments[0]
    chain_text, chain = reader.chain(head[1], head[2])
    if not chain_text:
        reader.report("empty_chain", head[1], "the revised chain is empty")
    boxes: list[ChainObject] = []
    sections = reader.segments[1:]
    if not sections:
        reader.report("missing_boxes", head[2], f"no {EDIT_BOXES}")
    for i, (_, a, b) in enumerate(sections):
        if i:  # one boxes section; a repeated <|edit_boxes|> is read as more boxes
            reader.report("stray_role_token", a, f"a second {EDIT_BOXES}")
        _, spans = reader.chain(a, b)
        if any(t.strip() for t in spans.texts):
            reader.report("stray_text", a, "text between the edit boxes is ignored")
        boxes += [obj for obj in spans.objects if obj.box is not None]
    if sections and not boxes:
        reader.report("no_edit_boxes", sections[0][1], "no valid edit box")
    if strict:
        reader.canonical(format_edit(chain_text, boxes))
    return ParsedEdit(chain_text, chain, boxes, reader.sorted_problems())


def vocabulary_texts() -> list[str]:
    """Every fixed text the two formats write (for building a word-level vocabulary)."""
    return [f"{VERDICT_SEPARATOR}{YES}", f"{VERDICT_SEPARATOR}{NO}", *DECISIONS, NOTHING_SEEN]


# --- the questions ------------------------------------------------------------------------------------------------
CHECKER_QUESTION = "Check the image against the caption and the plan.\nCaption: {prompt}\nPlan: {chain}"
ACTOR_QUESTION = (
    "Revise the plan and mark the regions to redraw.\nCaption: {prompt}\nPlan: {chain}\nReflection: {reflection}"
)


def checker_question(prompt: str, chain: str) -> str:
    return CHECKER_QUESTION.format(prompt=prompt, chain=chain)


def actor_question(prompt: str, chain: str, reflection: str) -> str:
    return ACTOR_QUESTION.format(prompt=prompt, chain=chain, reflection=reflection)


def role_texts() -> list[str]:
    """Every fixed text of the roles (questions and formats), for building a word-level vocabulary."""
    literals = [lit for q in (CHECKER_QUESTION, ACTOR_QUESTION) for lit, *_ in string.Formatter().parse(q) if lit]
    return [*literals, *vocabulary_texts()]
