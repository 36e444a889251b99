"""GoT-R1's reasoning-chain format: boxes, object spans, formatting, and a parser that never raises.

A chain is free text with object spans interleaved. One span is

    <|obj_start|>name<|obj_end|> <|box_start|>(x1,y1),(x2,y2)<|box_end|>

with integer coordinates on a 0..COORD_MAX scale of the image, (x1,y1) the top-left and (x2,y2) the
bottom-right corner (image y grows downwards). For example

    >>> chain = ("A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> sits left of a "
    ...          "<|obj_start|>blue square<|obj_end|> <|box_start|>(500,500),(800,800)<|box_end|>.")
    >>> parsed = parse_chain(chain)
    >>> [(o.name, o.box.as_tuple()) for o in parsed.objects]
    [('red circle', (31, 47, 312, 328)), ('blue square', (500, 500, 800, 800))]
    >>> parsed.texts
    ['A ', ' sits left of a ', '.']

Parsing rules (the lenient default, for model output):
- A box belongs to the object just before it only when the text between `<|obj_end|>` and `<|box_start|>` is
  whitespace (or empty). Otherwise the object gets `missing_box` and the box is an `orphan_box`.
- Names are stripped of surrounding whitespace; whitespace inside the box text is ignored, as are leading zeros
  and a `+` sign: "( 12, 030 ), (+400,500)" reads as (12,30),(400,500).
- Numbers outside 0..COORD_MAX are clamped and reported (`out_of_range`); the box survives if still valid.
- A box that is inverted or degenerate (x1 >= x2 or y1 >= y2, after clamping), has a non-integer coordinate or
  is not two parenthesised pairs leaves the object with `box=None` plus a problem.
- An unclosed span (`<|obj_start|>` or `<|box_start|>` not closed before the next chain token or the end) loses
  its token and its content stays plain text. Stray closing tokens are dropped. A closed box span that follows
  no object is dropped whole. A span with an empty name is dropped (its box too).
- Anything that is not a chain token is text, `<begin_of_image>` included. Texts never hold a chain token, not
  even one formed by joining the text on both sides of a dropped token.
- Problems are listed in position order; each points at the offending token, name or coordinate.
- Time is linear in the text's length, whatever the text (a megabyte of hostile text takes well under a second).

`strict=True` (for validating datasets) raises `ChainFormatError` at the first problem found scanning left to
right, and also rejects, as `non_canonical`, what the lenient reader accepts silently: a name with surrounding
whitespace, a separator between `<|obj_end|>` and `<|box_start|>` other than exactly one space, and a box text
other than `(x1,y1),(x2,y2)` written with plain decimal integers (no spaces, signs or leading zeros).
The box-text check runs only on boxes that are otherwise valid (a broken box reports what breaks it).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

COORD_MAX = 1000
OBJ_START, OBJ_END, BOX_START, BOX_END = "<|obj_start|>", "<|obj_end|>", "<|box_start|>", "<|box_end|>"
CHAIN_TOKENS = (OBJ_START, OBJ_END, BOX_START, BOX_END)

PROBLEM_KINDS = (
    "unclosed_span",  # <|obj_start|> / <|box_start|> without its closing token before the next token or the end
    "stray_token",  # <|obj_end|> / <|box_end|> with no open span
    "orphan_box",  # a box span that does not directly follow an object span
    "empty_name",  # <|obj_start|><|obj_end|> with nothing but whitespace inside (the span is dropped)
    "missing_box",  # an object span not followed (across whitespace only) by a box span
    "malformed_box",  # box text is not two parenthesised pairs "(a,b),(c,d)"
    "non_numeric",  # a coordinate is not an integer ("12.5", "x", "")
    "out_of_range",  # a coordinate outside 0..COORD_MAX (clamped)
    "inverted_box",  # x1 >= x2 or y1 >= y2 after clamping
    "non_canonical",  # strict mode only: a form the lenient reader accepts (see the module docstring)
)

_TOKEN_RE = re.compile("|".join(re.escape(t) for t in CHAIN_TOKENS))
_TOKEN_SPAN = max(map(len, CHAIN_TOKENS)) - 1  # a token across a junction has at most this much on either side
# Two parenthesised pairs; each field is whatever lies between the delimiters, checked afterwards, so that
# "(1,x),(2,3)" is a non-numeric coordinate rather than a malformed box.
_BOX_RE = re.compile(r"\s*\(([^,()]*),([^,()]*)\)\s*,\s*\(([^,()]*),([^,()]*)\)\s*")
_INT_RE = re.compile(r"\s*([+-]?)([0-9]+)\s*")  # ASCII digits only: "٣" is not a coordinate
_CANONICAL_BOX_RE = re.compile(r"\((?:0|[1-9][0-9]*),(?:0|[1-9][0-9]*)\),\((?:0|[1-9][0-9]*),(?:0|[1-9][0-9]*)\)")
_MAX_DIGITS = 9  # longer numbers are out of range anyway; int() of thousands of digits would raise


@dataclass(frozen=True)
class Box:
    """An axis-aligned box on the 0..COORD_MAX grid: (x1, y1) top-left, (x2, y2) bottom-right, x1 < x2, y1 < y2."""

    x1: int
    y1: int
    x2: int
    y2: int

    def __post_init__(self):
        for name in ("x1", "y1", "x2", "y2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"Box.{name} must be an int on 0..{COORD_MAX}, got {value!r}")
            if not 0 <= value <= COORD_MAX:
                raise ValueError(f"Box.{name}={value} is outside 0..{COORD_MAX}")
            object.__setattr__(self, name, int(value))  # numpy ints become plain ints
        if self.x1 >= self.x2 or self.y1 >= self.y2:
            raise ValueError(
                f"Box needs x1 < x2 and y1 < y2 (top-left then bottom-right corner), got {self.as_tuple()}"
            )

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    @property
    def area(self) -> int:
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        return inter / (self.area + other.area - inter)  # union > 0: valid boxes have positive area

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Corners in pixel units of a width x height image (floats, not rounded: the grid and the image differ)."""
        _check_size(width, height)
        sx, sy = width / COORD_MAX, height / COORD_MAX
        return (self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)

    @classmethod
    def from_pixels(cls, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> Box:
        """The nearest grid box to pixel corners: rounded, clamped to the image, corners in either order.

        A box thinner than one grid unit is widened to one unit, so any finite input gives a valid Box.
        """
        _check_size(width, height)
        left, right = _widen(*sorted((_to_grid(x1, width), _to_grid(x2, width))))
        top, bottom = _widen(*sorted((_to_grid(y1, height), _to_grid(y2, height))))
        return cls(left, top, right, bottom)


WHOLE_IMAGE = Box(0, 0, COORD_MAX, COORD_MAX)  # an edit box that redraws every patch


def _check_size(width: int, height: int) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")


def _to_grid(value: float, extent: int) -> int:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"pixel coordinate must be finite, got {value}")
    return min(COORD_MAX, max(0, round(value * COORD_MAX / extent)))


def _widen(lo: int, hi: int) -> tuple[int, int]:
    if lo < hi:
        return lo, hi
    return (lo, lo + 1) if lo < COORD_MAX else (hi - 1, hi)


@dataclass(frozen=True)
class ChainObject:
    name: str
    box: Box | None  # None when the span had no readable box


@dataclass(frozen=True)
class ChainProblem:
    kind: str  # one of PROBLEM_KINDS
    position: int  # character offset in the chain text
    message: str


@dataclass
class ParsedChain:
    objects: list[ChainObject]
    texts: list[str]  # plain text around the spans: texts[i] precedes objects[i]; len == len(objects) + 1
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_counts(self) -> dict[str, int]:
        """Count per kind, every kind of PROBLEM_KINDS present (zeros included) so logged metrics keep their keys."""
        counts = dict.fromkeys(PROBLEM_KINDS, 0)
        for problem in self.problems:
            counts[problem.kind] += 1
        return counts


class ChainFormatError(ValueError):
    """A chain that breaks the format, raised by strict parsing and by formatting; `kind` is one of PROBLEM_KINDS."""

    def __init__(self, kind: str, position: int, message: str):
        super().__init__(f"{kind} at position {position}: {message}")
        self.kind, self.position, self.detail = kind, position, message

    def __reduce__(self):  # picklable across worker processes despite the 3-argument __init__
        return (type(self), (self.kind, self.position, self.detail))


def _check_piece(piece: str, what: str) -> None:
    for token in CHAIN_TOKENS:
        if token in piece:
            raise ValueError(f"{what} {piece!r} contains the chain token {token}")


def _check_name(name: str) -> None:
    _check_piece(name, "object name")
    if not name.strip():
        raise ValueError(f"object name must not be empty, got {name!r}")
    if name != name.strip():
        raise ValueError(f"object name {name!r} has surrounding whitespace (the parser strips it); strip it first")


def format_span(name: str, box: Box) -> str:
    """'<|obj_start|>name<|obj_end|> <|box_start|>(x1,y1),(x2,y2)<|box_end|>'; ValueError on a bad name."""
    _check_name(name)
    if not isinstance(box, Box):
        raise ValueError(f"object {name!r} needs a Box to be formatted, got {box!r}")
    x1, y1, x2, y2 = box.as_tuple()
    return f"{OBJ_START}{name}{OBJ_END} {BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"


def format_chain(parts: Sequence[str | ChainObject]) -> str:
    """Join text pieces and objects, e.g. ["A ", obj, " left of ", obj2, "."]; parse_chain reads it back exactly.

    Consecutive text pieces are joined before the chain-token check, so "<|" + "obj_end|>" is caught too.
    """
    out, run = [], []

    def flush():
        text = "".join(run)
        _check_piece(text, "text")
        out.append(text)
        run.clear()

    for part in parts:
        if isinstance(part, str):
            run.append(part)
        elif isinstance(part, ChainObject):
            flush()
            out.append(format_span(part.name, part.box))
        else:
            raise TypeError(f"chain parts are str or ChainObject, got {type(part).__name__}")
    flush()
    return "".join(out)


def _snippet(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Reader:
    """One left-to-right pass over the chain tokens; text between them accumulates into the current text run."""

    def __init__(self, text: str, strict: bool):
        self.text, self.strict = text, strict
        self.tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(text)]
        self.objects: list[ChainObject] = []
        self.texts: list[str] = []
        self.problems: list[ChainProblem] = []
        self.run: list[str] = []  # pieces of the text run before the next object
        self.cursor = 0  # text before this offset has been consumed

    def report(self, kind: str, position: int, message: str) -> None:
        if self.strict:
            raise ChainFormatError(kind, position, message)
        self.problems.append(ChainProblem(kind, position, message))

    def token(self, i: int) -> str | None:
        return self.tokens[i][2] if i < len(self.tokens) else None

    def read(self) -> ParsedChain:
        i = 0
        while i < len(self.tokens):
            start, end, token = self.tokens[i]
            self.run.append(self.text[self.cursor : start])
            self.cursor = end  # the token itself never reaches the text
            if token == OBJ_START:
                i = self.read_object(i)
            elif token == BOX_START:
                self.report("orphan_box", start, f"{BOX_START} does not follow an object span")
                if self.token(i + 1) == BOX_END:  # drop the whole box span: coordinates are not prose
                    self.cursor = self.tokens[i + 1][1]
                    i += 1
                i += 1
            else:
                self.report("stray_token", start, f"{token} closes no open span")
                i += 1
        self.run.append(self.text[self.cursor :])
        self.end_run()
        return ParsedChain(self.objects, self.texts, self.problems)

    def end_run(self) -> None:
        self.texts.append(_join_dropping_tokens(self.run))
        self.run = []

    def read_object(self, i: int) -> int:
        """Read the span opened by tokens[i] (<|obj_start|>); return the index of the next unread token."""
        start, name_start, _ = self.tokens[i]
        if self.token(i + 1) != OBJ_END:
            found = self.token(i + 1) or "the end"
            self.report("unclosed_span", start, f"{OBJ_START} is not closed by {OBJ_END} before {found}")
            return i + 1  # the would-be name stays text
        name_end, after_name, _ = self.tokens[i + 1]
        raw_name = self.text[name_start:name_end]
        name = raw_name.strip()
        if not name:
            self.report("empty_name", start, "object span has an empty name; the span is dropped")
        elif self.strict and raw_name != name:
            self.report("non_canonical", name_start, f"object name {raw_name!r} has surrounding whitespace")
        self.cursor = after_name
        box, next_i = None, i + 2
        gap = self.text[after_name : self.tokens[i + 2][0]] if self.token(i + 2) == BOX_START else None
        if gap is None or gap.strip():
            self.report("missing_box", after_name, f"object {name!r} is not followed by a {BOX_START} span")
        else:
            if self.strict and gap != " ":
                self.report("non_canonical", after_name, f"{OBJ_END} and {BOX_START} are separated by {gap!r}, not ' '")
            box_start, box_text_start, _ = self.tokens[i + 2]
            self.cursor = box_text_start  # the separating whitespace belongs to the span
            next_i = i + 3
            if self.token(i + 3) != BOX_END:
                found = self.token(i + 3) or "the end"
                self.report("unclosed_span", box_start, f"{BOX_START} is not closed by {BOX_END} before {found}")
            else:
                box_text_end, self.cursor, _ = self.tokens[i + 3]
                box = self.read_box(box_text_start, box_text_end)
                next_i = i + 4
        if name:
            self.end_run()
            self.objects.append(ChainObject(name, box))
        return next_i

    def read_box(self, a: int, b: int) -> Box | None:
        """Read text[a:b] as '(x1,y1),(x2,y2)', reporting each problem at the offending coordinate."""
        content = self.text[a:b]
        match = _BOX_RE.fullmatch(content)
        if not match:
            self.report("malformed_box", a, f"box text {_snippet(content)} is not '(x1,y1),(x2,y2)'")
            return None
        values, positions, readable = [], [a + match.start(group) for group in range(1, 5)], True
        for group, position in enumerate(positions, start=1):
            raw = match.group(group)
            number = _INT_RE.fullmatch(raw)
            if not number:
                self.report("non_numeric", position, f"coordinate {_snippet(raw)} is not an integer")
                readable = False
                continue
            sign, digits = number.groups()
            value = int(sign + digits) if len(digits) <= _MAX_DIGITS else (-1 if sign == "-" else COORD_MAX + 1)
            if not 0 <= value <= COORD_MAX:
                self.report("out_of_range", position, f"coordinate {raw.strip()} is outside 0..{COORD_MAX}; clamped")
                value = min(COORD_MAX, max(0, value))
            values.append(value)
        if not readable:
            return None
        x1, y1, x2, y2 = values
        if x1 >= x2 or y1 >= y2:  # reported at the x2 (or y2) that is not past its x1 (y1)
            position = positions[2] if x1 >= x2 else positions[3]
            self.report("inverted_box", position, f"box {tuple(values)} needs x1 < x2 and y1 < y2")
            return None
        if self.strict and not _CANONICAL_BOX_RE.fullmatch(content):
            self.report("non_canonical", a, f"box text {_snippet(content)} is not written as '({x1},{y1}),({x2},{y2})'")
        return Box(x1, y1, x2, y2)


def _join_dropping_tokens(pieces: list[str]) -> str:
    """The pieces joined, with every chain token dropped, also those that dropping one forms from its neighbours:
    "<|obj_" + "start|>" joins into a token, and so does "<|obj_<|obj_" + "start|>start|>" once the inner one goes.

    The result is what deleting tokens until none is left gives, in any order: no chain token overlaps another or
    holds one, so every order ends at the same text. Linear: the text so far is kept token-free, so a new token can
    only form across the junction with the next piece, within a token's length of it on either side.
    """
    text = "".join(pieces)
    if "|>" not in text or not _TOKEN_RE.search(text):
        return text  # the common case
    kept: list[list] = []  # [piece, end]: piece[:end] survives; shortened in place so a drop costs O(1)
    for piece in (part for raw in pieces for part in _TOKEN_RE.split(raw) if part):
        start = 0  # piece[:start] has been dropped, joined into tokens with the kept text before it
        while start < len(piece):
            tail = _tail(kept, _TOKEN_SPAN)
            window = tail + piece[start : start + _TOKEN_SPAN]
            match = _TOKEN_RE.search(window)
            if match is None:
                break
            _drop_tail(kept, len(tail) - match.start())  # the token began in the kept text ...
            start += match.end() - len(tail)  # ... and ends in this piece
        if start < len(piece):
            kept.append([piece[start:], len(piece) - start])
    return "".join(piece[:end] for piece, end in kept)


def _tail(kept: list[list], n: int) -> str:
    """The last n characters of the kept text (fewer if it is shorter)."""
    parts, i = [], len(kept) - 1
    while n > 0 and i >= 0:
        piece, end = kept[i]
        parts.append(piece[max(0, end - n) : end])
        n -= min(n, end)
        i -= 1
    return "".join(reversed(parts))


def _drop_tail(kept: list[list], n: int) -> None:
    """Remove the last n characters of the kept text."""
    while n > 0:
        take = min(n, kept[-1][1])
        kept[-1][1] -= take
        n -= take
        if kept[-1][1] == 0:
            kept.pop()


def parse_chain(text: str, strict: bool = False) -> ParsedChain:
    """Read a chain into objects, the text around them and the problems met; see the module docstring.

    Never raises on a str unless `strict`, which raises ChainFormatError at the first problem.

    >>> p = parse_chain("a <|obj_start|>cat<|obj_end|> <|box_start|>(0,0),(1200,500)<|box_end|><begin_of_image>")
    >>> p.objects[0].box.as_tuple(), p.texts, [(q.kind, q.position) for q in p.problems]
    ((0, 0, 1000, 500), ['a ', '<begin_of_image>'], [('out_of_range', 50)])
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_chain reads a str, got {type(text).__name__}")
    return _Reader(text, strict).read()
