"""Reading a judge's reply: a rubric score, or grounding boxes. Never raises, whatever the reply.

Judges answer in many shapes; all of these read as a score of 0.8:

    '{"score": 8}'   '```json\\n{"reasoning": "...", "score": "8"}\\n```'   'I would give it 8/10.'
    'The layout matches. Score: 8'   '8'   '{"score": 8.0, "reward": 0.8}'

and all of these as one box [10, 20, 110, 220] in the reply's pixel space:

    '```json\\n[{"bbox_2d": [10, 20, 110, 220], "label": "red circle"}]\\n```'
    '{"bbox": [10, 20, 110, 220]}'   'The circle is at [10, 20, 110, 220].'   '(10,20),(110,220)'

A reply is a failure of kind "unparseable" (nothing readable), or "out_of_range" (a score outside 0..scale, a box
outside the image): the caller counts it and gives the term None. An explicit "nothing there" ('[]',
'{"bbox_2d": null}') is not a failure: it is an empty list of boxes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from janus_rig.chain import Box

MAX_REPLY_CHARS = 20_000  # longer replies are cut: a judge that rambles that long has not answered
MAX_JSON_STARTS = 64  # positions tried as the start of an embedded JSON value
BOX_MARGIN = 0.02  # a box may overshoot the image by this share of its side (judges round generously)
SCORE_KEYS = ("score", "rating", "final_score", "overall_score")
EXACT_KEY = "reward"  # janus-rig's extension: the exact [0, 1] value (see docs/rewards.md, structured judging)
BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box", "coordinates")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_SCORE_RE = re.compile(rf"(?i)\b(?:score|rating)\b[\"'\s:=*]*?({_NUMBER})(?:\s*(?:/|out\s+of)\s*({_NUMBER}))?")
_RATIO_RE = re.compile(rf"(?i)({_NUMBER})\s*(?:/|out\s+of)\s*(10|100)\b")
_BRACKET_BOX_RE = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_PAIR_BOX_RE = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


@dataclass(frozen=True)
class Parsed:
    value: Any  # a float in [0, 1] (scores) or a list of Box (grounding); None on failure
    failure: str | None = None  # None, "unparseable" or "out_of_range"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


def _reject_constant(name: str):
    raise ValueError(f"non-finite JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def json_values(reply: str) -> list[Any]:
    """JSON values found in a reply, most likely first: code fences, the whole reply, then embedded objects."""
    text = reply[:MAX_REPLY_CHARS]
    found = []

    def attempt(candidate: str) -> None:
        try:
            found.append(_DECODER.decode(candidate.strip()))
        except (ValueError, RecursionError):
            pass

    for match in _FENCE_RE.finditer(text):
        attempt(match.group(1))
    attempt(text)
    starts = [i for i, ch in enumerate(text) if ch in "{["][:MAX_JSON_STARTS]
    for start in starts:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        found.append(value)
    return found


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or a numeric string ("8", "8/10" -> 0.8 * scale is handled by caller)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int of thousands of digits
            return None
        return number if math.isfinite(number) else None
    return None


def _text_score(text: str, scale: float) -> float | None:
    """A score on 0..scale from text: '8', '8/10', 'score: 8 out of 10'."""
    text = text.strip()
    match = re.fullmatch(rf"({_NUMBER})(?:\s*(?:/|out\s+of)\s*({_NUMBER}))?", text)
    if match is None:
        return None
    return _ratio(match.group(1), match.group(2), scale)


def _ratio(numerator: str, denominator: str | None, scale: float) -> float | None:
    try:
        value = float(numerator)
        if denominator is not None:
            denom = float(denominator)
            if not (math.isfinite(denom) and denom > 0):
                return None
            value = value / denom * scale
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _find_key(value: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """The first value under one of `keys` (case-insensitive) in a dict, or a list of dicts, a few levels deep."""
    if depth > 4:
        return None
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in keys:
            if key in lowered:
                return lowered[key]
        for inner in value.values():
            if isinstance(inner, (dict, list)):
                found = _find_key(inner, keys, depth + 1)
                if found is not None:
                    return found
    elif isinstance(value, list):
        for inner in value[:16]:
            found = _find_key(inner, keys, depth + 1)
            if found is not None:
                return found
    return None


def parse_score(reply: Any, scale: float = 10.0) -> Parsed:
    """A rubric reply -> Parsed(score / scale in [0, 1]) or a failure. See the module docstring for the forms read."""
    if not isinstance(reply, str):
        return Parsed(None, "unparseable", f"reply is {type(reply).__name__}, not text")
    raw = None
    for value in json_values(reply):
        exact = _number(_find_key(value, (EXACT_KEY,))) if isinstance(value, dict) else None
        if exact is not None and 0.0 <= exact <= 1.0:
            return Parsed(exact)
        found = _find_key(value, SCORE_KEYS)
        raw = _number(found)
        if raw is None and isinstance(found, str):
            raw = _text_score(found, scale)
        if raw is not None:
            break
    if raw is None:
        text = reply[:MAX_REPLY_CHARS]
        matches = list(_SCORE_RE.finditer(text)) or list(_RATIO_RE.finditer(text))
        if matches:  # the last one: judges reason first and conclude with the score
            raw = _ratio(matches[-1].group(1), matches[-1].group(2), scale)
        else:
            raw = _text_score(text, scale)
    if raw is None:
        return Parsed(None, "unparseable", f"no score in {reply[:120]!r}")
    if not 0.0 <= raw <= scale:
        return Parsed(None, "out_of_range", f"score {raw} outside 0..{scale:g}")
    return Parsed(raw / scale)


def _as_corners(value: Any) -> tuple[float, float, float, float] | None:
    """[x1, y1, x2, y2] or [[x1, y1], [x2, y2]] of finite numbers -> a tuple; anything else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(p, (list, tuple)) for p in value):
        value = [*value[0], *value[1]]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_number(v) for v in value]
    return None if any(n is None for n in numbers) else tuple(numbers)


def _json_boxes(value: Any) -> list[tuple] | None:
    """Boxes in a JSON value; [] for an explicit "none"; None when the value holds no box at all."""
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in BOX_KEYS:
            if key in lowered:
                inner = lowered[key]
                if inner is None or inner == []:
                    return []
                corners = _as_corners(inner)
                if corners is not None:
                    return [corners]
                return _json_boxes(inner) if isinstance(inner, list) else None
        return None
    if isinstance(value, list):
        if not value:
            return []
        corners = _as_corners(value)
        if corners is not None:
            return [corners]
        boxes = [_json_boxes(v) for v in value[:64]]
        if all(b is None for b in boxes):
            return None
        return [box for b in boxes if b for box in b]
    return None


def parse_boxes(reply: Any, width: float, height: float) -> Parsed:
    """A grounding reply -> Parsed(list of Box on the 0..1000 grid), its coordinates read in a width x height space.

    The space is the judge's: the resized input image for Qwen2.5-VL, (1000, 1000) for judges that answer on a
    normalized grid, the sent image for `judge serve`. Corners may come in either order.
    """
    if not isinstance(reply, str):
        return Parsed(None, "unparseable", f"reply is {type(reply).__name__}, not text")
    corners = None
    for value in json_values(reply):
        corners = _json_boxes(value)
        if corners is not None:
            break
    if corners is None:
        text = reply[:MAX_REPLY_CHARS]
        matches = list(_BRACKET_BOX_RE.finditer(text)) or list(_PAIR_BOX_RE.finditer(text))
        corners = [c for c in (_as_corners([_ratio(g, None, 1) for g in m.groups()]) for m in matches) if c]
        if not corners:
            return Parsed(None, "unparseable", f"no box in {reply[:120]!r}")
    boxes = []
    for x1, y1, x2, y2 in corners:
        if not all(-BOX_MARGIN * side <= v <= (1 + BOX_MARGIN) * side
                   for v, side in ((x1, width), (x2, width), (y1, height), (y2, height))):
            return Parsed(None, "out_of_range", f"box {(x1, y1, x2, y2)} outside the {width}x{height} image")
        boxes.append(Box.from_pixels(x1, y1, x2, y2, width, height))
    return Parsed(boxes)
