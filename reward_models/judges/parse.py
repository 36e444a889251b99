"""Reading a judge's reply: a rubric score, grounding boxes, a scene graph, a pairwise preference. Never raises,
whatever the reply.

Judges answer in many shapes; all of these read as a score of 0.8:

    '{"score": 8}'   '```json\\n{"reasoning": "...", "score": "8"}\\n```'   'I would give it 8/10.'
    'The layout matches. Score: 8'   '8'   '{"score": 8.0, "reward": 0.8}'

and all of these as one box [10, 20, 110, 220] in the reply's pixel space:

    '```json\\n[{"bbox_2d": [10, 20, 110, 220], "label": "red circle"}]\\n```'
    '{"bbox": [10, 20, 110, 220]}'   'The circle is at [10, 20, 110, 220].'   '(10,20),(110,220)'

a scene graph (read in a vocabulary: names it cannot say are dropped and counted, see sg_iou.Vocabulary) from

    '{"objects": ["red circle", "blue square"], "relations": [["red circle", "left of", "blue square"]]}'
    '[{"subject": "red circle", "predicate": "left of", "object": "blue square"}]'
    LAION-SG's own '{"items": [{"item_id": 0, "label": "circle", "attributes": ["red"]}, ...],
                     "relations": [{"item1": 0, "relation": "left of", "item2": 1}]}'
    'I see (red circle, left of, blue square).'      (prose: parenthesised triples, an "Objects: a, b" line)

and a preference for the first of two candidates (1.0, 0.5 for a tie, 0.0) from

    '{"better": 1}'   '{"reasoning": "...", "better": "tie"}'   'Image 2 is better.'   'Answer: 1'

A reply is a failure of kind "unparseable" (nothing readable), or "out_of_range" (a score outside 0..scale, a box
outside the image, a candidate other than 1 or 2): the caller counts it and gives the term None. An explicit
"nothing there" ('[]', '{"bbox_2d": null}', '{"objects": [], "relations": []}') is not a failure: it is an empty
list of boxes, an empty graph.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from janus_rig.chain import Box
from reward_models.scene_graph import Vocabulary

MAX_REPLY_CHARS = 20_000  # longer replies are cut: a judge that rambles that long has not answered
MAX_JSON_STARTS = 64  # positions tried as the start of an embedded JSON value
BOX_MARGIN = 0.02  # a box may overshoot the image by this share of its side (judges round generously)
SCORE_KEYS = ("score", "rating", "final_score", "overall_score")
EXACT_KEY = "reward"  # janus-rig's extension: the exact [0, 1] value (see docs/rewards.md, structured judging)
BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box", "coordinates")
OBJECT_KEYS = ("objects", "items", "entities", "nodes")
RELATION_KEYS = ("relations", "triples", "relationships", "edges")
SUBJECT_KEYS = ("subject", "item1", "head", "source")
PREDICATE_KEYS = ("predicate", "relation", "relationship", "rel")
OBJECT_END_KEYS = ("object", "item2", "tail", "target")
NAME_KEYS = ("name", "label", "object", "class")
MAX_GRAPH_ENTRIES = 256  # objects / relations read from one reply; a judge listing more is rambling
PREFERENCE_KEYS = ("better", "winner", "choice", "answer", "preferred", "preference_label", "best")
EXACT_PREFERENCE_KEY = "preference"  # janus-rig's extension: the exact preference for the first, in [0, 1]

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# Every pattern here runs in linear time on any reply (tests/rewards/test_parse.py times a megabyte of hostile text):
# no two adjacent parts may match the same run of characters (`\s*#?\s*` is written `\s*(?:#\s*)?`), and a search
# that starts with a number does not start again inside the digits of one it has just tried.
_NO_DIGIT_BEFORE_DIGIT = r"(?!(?<=\d)\d)"  # a match of _RATIO_RE starting there would also start a digit earlier
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_SCORE_RE = re.compile(rf"(?i)\b(?:score|rating)\b[\"'\s:=*]*?({_NUMBER})(?:\s*(?:/|out\s+of)\s*({_NUMBER}))?")
_RATIO_RE = re.compile(rf"(?i){_NO_DIGIT_BEFORE_DIGIT}({_NUMBER})\s*(?:/|out\s+of)\s*(10|100)\b")
_BRACKET_BOX_RE = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
# A part: 1..80 characters between the delimiters, without the whitespace around them (first and last not blank).
_TRIPLE_PART = r"\s*([^()\[\],\s](?:[^()\[\],\n]{0,78}[^()\[\],\s])?)\s*"
_TRIPLE_RE = re.compile(rf"[(\[]{_TRIPLE_PART},{_TRIPLE_PART},{_TRIPLE_PART}[)\]]")
_OBJECTS_LINE_RE = re.compile(r"(?im)^(?:[^\w\n]|_)*objects?[\W_]*:\s*(.+)$")  # the lead-in stays on its line
_CANDIDATE = r"(?:image|chain|candidate|option|picture)"
_BETTER_RE = re.compile(
    rf"(?i)\b{_CANDIDATE}\s*(?:#\s*)?([12])\b\s+(?:is|looks|matches|fits|seems)\s+(?:\w+\s+){{0,2}}better"
    rf"|\b(?:better|winner|answer|choice|verdict|prefer(?:red|ence)?)\b\W{{0,6}}(?:(?:is|:|=)\W{{0,4}})?"
    rf"(?:{_CANDIDATE}\s*(?:#\s*)?)?([12]|tie)\b"
)
_PAIR_BOX_RE = re.compile(
    rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*(?:,\s*)?\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


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


# --- scene graphs ------------------------------------------------------------------------------------------------


def _lowered(value: dict) -> dict:
    return {str(k).lower(): v for k, v in value.items()}


def _first(mapping: dict, keys: tuple[str, ...]):
    return next((mapping[k] for k in keys if k in mapping), None)


def _object_name(entry: Any) -> str | None:
    """'red circle', or {"label": "circle", "attributes": ["red"]} -> 'red circle'; None for anything else."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        fields = _lowered(entry)
        name, attributes = _first(fields, NAME_KEYS), fields.get("attributes", [])
        if isinstance(name, str):
            attrs = [a for a in attributes if isinstance(a, str)] if isinstance(attributes, list) else []
            return " ".join([*attrs, name])
    return None


def _triple(entry: Any, ids: dict) -> tuple | None:
    """[s, p, o] or {"subject", "predicate", "object"} (LAION-SG: {"item1", "relation", "item2"} with item ids)."""
    if isinstance(entry, dict):
        fields = _lowered(entry)
        entry = [_first(fields, SUBJECT_KEYS), _first(fields, PREDICATE_KEYS), _first(fields, OBJECT_END_KEYS)]
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        return None
    subject, predicate, obj = (ids.get(v, v) if isinstance(v, (int, str)) and not isinstance(v, bool) else v
                               for v in entry)
    subject, obj = _object_name(subject), _object_name(obj)
    if not all(isinstance(v, str) for v in (subject, predicate, obj)):
        return None
    return subject, predicate, obj


def _json_graph(value: Any, depth: int = 0) -> tuple[list, list, int] | None:
    """(object names, triples, entries unreadable) of a JSON value, or None when it holds no scene graph."""
    if depth > 3:
        return None
    if isinstance(value, dict):
        fields = _lowered(value)
        objects, relations = _first(fields, OBJECT_KEYS), _first(fields, RELATION_KEYS)
        if objects is None and relations is None:
            for inner in list(fields.values())[:16]:
                found = _json_graph(inner, depth + 1) if isinstance(inner, (dict, list)) else None
                if found is not None:
                    return found
            triple = _triple(value, {})  # a single {"subject", "predicate", "object"}
            return None if triple is None else ([], [triple], 0)
        if not isinstance(objects, (list, type(None))) or not isinstance(relations, (list, type(None))):
            return None
        names, ids, bad = [], {}, 0
        for entry in (objects or [])[:MAX_GRAPH_ENTRIES]:
            name = _object_name(entry)
            if name is None:
                bad += 1
                continue
            names.append(name)
            if isinstance(entry, dict):
                key = _first(_lowered(entry), ("item_id", "id"))
                if isinstance(key, (int, str)) and not isinstance(key, bool):
                    ids[key] = name
        triples = [_triple(entry, ids) for entry in (relations or [])[:MAX_GRAPH_ENTRIES]]
        return names, [t for t in triples if t], bad + sum(t is None for t in triples)
    if isinstance(value, list):
        if not value:
            return [], [], 0
        triples = [_triple(entry, {}) for entry in value[:MAX_GRAPH_ENTRIES]]
        if all(t is None for t in triples):
            return None
        return [], [t for t in triples if t], sum(t is None for t in triples)
    return None


def _text_graph(text: str) -> tuple[list, list, int] | None:
    """Parenthesised triples and an "Objects: a, b" line in prose; None when there are neither."""
    triples = [m.groups() for m in _TRIPLE_RE.finditer(text) if all(re.search("[^\\W\\d_]", g) for g in m.groups())]
    triples = triples[:MAX_GRAPH_ENTRIES]  # (words, not numbers: "[1, 2, 3]" is no triple)
    names = [n for m in _OBJECTS_LINE_RE.finditer(text) for n in re.split(r"[,;]", m.group(1)) if n.strip()]
    if not triples and not names:
        return None
    return names[:MAX_GRAPH_ENTRIES], triples, 0


def parse_scene_graph(reply: Any, vocabulary: Vocabulary) -> Parsed:
    """A scene-graph reply -> Parsed(SceneGraph in `vocabulary`'s words) or an "unparseable" failure.

    Names and triples outside the vocabulary are left out and counted in the graph's `dropped`, as are entries
    that are no object or triple at all; only a reply with no graph anywhere is a failure.
    """
    if not isinstance(reply, str):
        return Parsed(None, "unparseable", f"reply is {type(reply).__name__}, not text")
    found = None
    for value in json_values(reply):
        found = _json_graph(value)
        if found is not None:
            break
    if found is None:
        found = _text_graph(reply[:MAX_REPLY_CHARS])
    if found is None:
        return Parsed(None, "unparseable", f"no scene graph in {reply[:120]!r}")
    names, triples, bad = found
    return Parsed(vocabulary.restrict(names, triples, dropped=bad))


# --- pairwise preferences ----------------------------------------------------------------------------------------

_CHOICES = {"1": 1.0, "2": 0.0, "first": 1.0, "second": 0.0, "a": 1.0, "b": 0.0, "tie": 0.5, "equal": 0.5,
            "both": 0.5, "same": 0.5, "neither": 0.5}


def _choice(value: Any) -> Parsed | None:
    """A preference from a JSON value under a preference key: 1, 2, "2", "Image 1", "tie", ...; None: unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value in (1, 2):
            return Parsed(1.0 if value == 1 else 0.0)
        return Parsed(None, "out_of_range", f"candidate {value!r} is neither 1 nor 2")
    if isinstance(value, str):
        words = re.sub(rf"(?i)\b{_CANDIDATE}\b|[#\W_]+", " ", value).lower().split()
        if len(words) == 1 and words[0] in _CHOICES:
            return Parsed(_CHOICES[words[0]])
        if len(words) == 1 and re.fullmatch(r"\d+", words[0]):
            return Parsed(None, "out_of_range", f"candidate {value!r} is neither 1 nor 2")
    return None


def parse_preference(reply: Any) -> Parsed:
    """A pairwise reply -> Parsed(preference for the first candidate: 1.0, 0.5 tie, 0.0) or a failure."""
    if not isinstance(reply, str):
        return Parsed(None, "unparseable", f"reply is {type(reply).__name__}, not text")
    for value in json_values(reply):
        if not isinstance(value, (dict, list)):
            continue
        exact = _number(_find_key(value, (EXACT_PREFERENCE_KEY,))) if isinstance(value, dict) else None
        if exact is not None and 0.0 <= exact <= 1.0:
            return Parsed(exact)
        found = _find_key(value, PREFERENCE_KEYS)
        parsed = _choice(found) if found is not None else None
        if parsed is not None:
            return parsed
    text = reply[:MAX_REPLY_CHARS]
    matches = list(_BETTER_RE.finditer(text))
    if matches:  # the last one: judges reason first and conclude
        last = matches[-1]
        return Parsed(_CHOICES[(last.group(1) or last.group(2)).lower()])
    parsed = _choice(text.strip())
    if parsed is not None:
        return parsed
    return Parsed(None, "unparseable", f"no preference in {reply[:120]!r}")
