"""Scene-graph IoU as LAION-SG defines it: a judge reads the scene graph of a generated image in the words of the
record's own graph, and the two graphs are compared as sets of strings.

    SG-IoU       = |A ∩ B| / |A ∪ B| over (subject, predicate, object) triples
    Entity-IoU   = the same over entity strings (every object of the graph, related or not)
    Relation-IoU = the same over predicates

Strings match exactly after normalisation (lower case, single spaces, no leading article) and de-duplication
(sets). An entity folds its attributes into its label, attributes sorted so their order never matters:
{"label": "tower", "attributes": ["tall", "stone"]} -> "stone tall tower".

    >>> reference = SceneGraph.build(triples=[("red circle", "left of", "blue square")])
    >>> predicted = SceneGraph.build(triples=[("red circle", "above", "blue square")])
    >>> sg_scores(predicted, reference)
    {'sg_iou': 0.0, 'entity_iou': 1.0, 'relation_iou': 0.0}

A score is None when both sets are empty (a record with no relation has no SG-IoU or Relation-IoU: the judge,
restricted to the record's vocabulary, has no predicate to report); averages skip None and say how many counted.

Pure functions on strings: no images, no judges (those are reward_models/judges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

Triple = tuple[str, str, str]  # (subject entity, predicate, object entity)
METRICS = ("sg_iou", "entity_iou", "relation_iou")
_ARTICLES = ("a", "an", "the")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = "\"'`.,;:!?()[]{}<>*"


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding quotes or punctuation, no leading article.

    >>> normalize(" 'The  Red circle.' ")
    'red circle'
    """
    words = _SPACES.sub(" ", str(text).strip(_EDGE_PUNCTUATION + " \t\n").lower()).split(" ")
    while len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(w for w in words if w)


def entity_name(label: str, attributes: Iterable[str] = ()) -> str:
    """The entity string: normalised attributes, de-duplicated and sorted, then the label ('stone tall tower')."""
    attrs = sorted({normalize(a) for a in attributes} - {""})
    return " ".join([*attrs, normalize(label)])


@dataclass(frozen=True)
class SceneGraph:
    """A scene graph as sets of strings. `entities` always holds the triples' subjects and objects too."""

    entities: frozenset[str]
    triples: frozenset[Triple]
    dropped: int = field(default=0, compare=False)  # names the judge used outside the vocabulary (left out)

    @classmethod
    def build(cls, entities: Iterable[str] = (), triples: Iterable[Sequence[str]] = (),
              dropped: int = 0) -> "SceneGraph":
        """From entity strings and (subject, predicate, object) triples, normalised; endpoints join the entities."""
        norm_triples = frozenset((normalize(s), normalize(p), normalize(o)) for s, p, o in triples)
        norm_entities = {normalize(e) for e in entities} | {t[0] for t in norm_triples} | {t[2] for t in norm_triples}
        return cls(frozenset(norm_entities - {""}), norm_triples, dropped)

    @property
    def relations(self) -> frozenset[str]:
        return frozenset(p for _, p, _ in self.triples)

    def to_json(self) -> dict:
        """{"entities": [...], "triples": [[s, p, o], ...]}, sorted (stable output files)."""
        return {"entities": sorted(self.entities), "triples": [list(t) for t in sorted(self.triples)],
                "dropped": self.dropped}


def set_iou(a: Iterable, b: Iterable) -> float | None:
    """|a ∩ b| / |a ∪ b| of two sets (inputs are de-duplicated); None when both are empty."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else None


def sg_scores(predicted: SceneGraph, reference: SceneGraph) -> dict[str, float | None]:
    """SG-IoU, Entity-IoU and Relation-IoU of a predicted graph against the reference (see the module docstring)."""
    return {
        "sg_iou": set_iou(predicted.triples, reference.triples),
        "entity_iou": set_iou(predicted.entities, reference.entities),
        "relation_iou": set_iou(predicted.relations, reference.relations),
    }


def mean_scores(rows: Iterable[dict[str, float | None]]) -> dict[str, tuple[float | None, int]]:
    """Per metric (mean over the rows where it is defined or None, how many rows were defined)."""
    sums, counts = dict.fromkeys(METRICS, 0.0), dict.fromkeys(METRICS, 0)
    for row in rows:
        for name in METRICS:
            if row.get(name) is not None:
                sums[name] += row[name]
                counts[name] += 1
    return {name: (sums[name] / counts[name] if counts[name] else None, counts[name]) for name in METRICS}


@dataclass(frozen=True)
class Vocabulary:
    """The words a judge may use: object labels, attributes, predicates (normalised, in first-seen order).

    `entity` reads a name a judge wrote in these words: the longest label it ends with is the object, the words
    before it are attributes (multi-word attributes matched longest first); words that are no attribute are
    dropped and counted, a name that ends in no label is not nameable (None).

        >>> v = Vocabulary(labels=("tower",), attributes=("stone", "tall"), predicates=("next to",))
        >>> v.entity("The tall stone tower"), v.entity("old tower"), v.entity("dog")
        (('stone tall tower', 0), ('tower', 1), (None, 0))
    """

    labels: tuple[str, ...]
    attributes: tuple[str, ...] = ()
    predicates: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("labels", "attributes", "predicates"):
            words = tuple(dict.fromkeys(w for w in map(normalize, getattr(self, name)) if w))
            object.__setattr__(self, name, words)

    def entity(self, text: str, attributes: Iterable[str] = ()) -> tuple[str | None, int]:
        """(entity string or None, attribute words dropped) for a name, plus any separately given attributes."""
        words = normalize(text).split()
        label = next((lab for lab in sorted(self.labels, key=lambda s: -len(s.split()))
                      if words[-len(lab.split()):] == lab.split()), None) if words else None
        if label is None:
            return None, 0
        prefix = " ".join(words[: len(words) - len(label.split())])
        kept, dropped = self._attributes(prefix)
        for extra in attributes:
            more, lost = self._attributes(normalize(extra))
            kept += more
            dropped += lost
        return entity_name(label, kept), dropped

    def _attributes(self, text: str) -> tuple[list[str], int]:
        """Vocabulary attributes in a run of words, longest match first; (found, words that matched none)."""
        words, found, dropped, i = text.split(), [], 0, 0
        options = sorted(self.attributes, key=lambda s: -len(s.split()))
        while i < len(words):
            match = next((a for a in options if words[i : i + len(a.split())] == a.split()), None)
            if match is None:
                dropped += 1
                i += 1
            else:
                found.append(match)
                i += len(match.split())
        return found, dropped

    def predicate(self, text: str) -> str | None:
        word = normalize(text)
        return word if word in self.predicates else None

    def restrict(self, entities: Iterable[str], triples: Iterable[Sequence[str]], dropped: int = 0) -> SceneGraph:
        """The graph a judge means, in this vocabulary: names read by `entity`, triples whose subject, predicate and
        object are all nameable; everything left out is counted in `dropped`."""
        kept_entities, kept_triples = set(), set()
        for name in entities:
            entity, lost = self.entity(name)
            dropped += lost + (entity is None)
            if entity is not None:
                kept_entities.add(entity)
        for subject, predicate, obj in triples:
            (s, lost_s), (o, lost_o), p = self.entity(subject), self.entity(obj), self.predicate(predicate)
            dropped += lost_s + lost_o
            if s is None or o is None or p is None:
                dropped += 1
                continue
            kept_triples.add((s, p, o))
        return SceneGraph.build(kept_entities, kept_triples, dropped)

    def to_json(self) -> dict:
        return {"labels": list(self.labels), "attributes": list(self.attributes), "predicates": list(self.predicates)}

    @classmethod
    def from_json(cls, data) -> "Vocabulary":
        """From {"labels", "attributes", "predicates"} lists of strings; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"a vocabulary must be an object, got {type(data).__name__}")
        values = {}
        for key in ("labels", "attributes", "predicates"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"vocabulary field {key!r} must be a list of strings")
            values[key] = tuple(value)
        if not values["labels"]:
            raise ValueError("vocabulary field 'labels' is empty: nothing could be named")
        return cls(**values)


def reference_graph(items, relations, keep_attribute=None) -> tuple[SceneGraph, Vocabulary]:
    """LAION-SG's `items` and `relations` -> (the reference graph, the vocabulary the judge gets).

    items: [{"item_id": 0, "label": "tower", "attributes": ["tall", "stone"]}, ...]
    relations: [{"triple_id": 0, "item1": 0, "relation": "next to", "item2": 1}, ...]  (item ids)

    `keep_attribute(attribute) -> bool` leaves out attributes (e.g. those the prompt does not state) from the graph
    and from the vocabulary alike. ValueError naming the field when the graph is malformed.
    """
    if not isinstance(items, list) or not items:
        raise ValueError("scene graph field 'items' must be a non-empty list")
    if not isinstance(relations, list):
        raise ValueError("scene graph field 'relations' must be a list")
    names, labels, attributes = {}, [], []
    for k, item in enumerate(items):
        where = f"items[{k}]"
        if not isinstance(item, dict):
            raise ValueError(f"scene graph {where} must be an object")
        label, attrs, item_id = item.get("label"), item.get("attributes", []), item.get("item_id", k)
        if not isinstance(label, str) or not normalize(label):
            raise ValueError(f"scene graph {where}.label must be a non-empty string")
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise ValueError(f"scene graph {where}.attributes must be a list of strings")
        if isinstance(item_id, bool) or not isinstance(item_id, (int, str)):
            raise ValueError(f"scene graph {where}.item_id must be an integer or a string")
        if item_id in names:
            raise ValueError(f"scene graph {where}.item_id {item_id!r} is used twice")
        kept = [a for a in attrs if keep_attribute is None or keep_attribute(a)]
        names[item_id] = entity_name(label, kept)
        labels.append(label)
        attributes += kept
    triples, predicates = [], []
    for k, relation in enumerate(relations):
        where = f"relations[{k}]"
        if not isinstance(relation, dict):
            raise ValueError(f"scene graph {where} must be an object")
        predicate = relation.get("relation")
        if not isinstance(predicate, str) or not normalize(predicate):
            raise ValueError(f"scene graph {where}.relation must be a non-empty string")
        for end in ("item1", "item2"):
            end_id = relation.get(end)  # checked like item_id: a list or dict is unhashable, True would be 1
            if isinstance(end_id, bool) or not isinstance(end_id, (int, str)) or end_id not in names:
                raise ValueError(f"scene graph {where}.{end} {end_id!r:.80} is no item_id of 'items'")
        triples.append((names[relation["item1"]], predicate, names[relation["item2"]]))
        predicates.append(predicate)
    return SceneGraph.build(names.values(), triples), Vocabulary(tuple(labels), tuple(attributes), tuple(predicates))
