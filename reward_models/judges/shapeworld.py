"""The exact ShapeWorld judge: the oracle's rules instead of a VLM's opinion, for every rubric and for grounding.

- semantic (R_sem): `chain_semantic_score` (F1 of the chain's object names against the required objects);
- spatial (R_spa): `chain_layout_score` on the chain's boxes (it reads the boxes; the drawn picture is for VLMs);
- prompt_image (R_PI): `image_score` below (1.0 when GenEval's rules pass on the detections, else partial credit);
- grounding (R_RI): every detected object that the oracle's `ground` rule calls `name`, largest first;
- scene graph (SG-IoU): the exact graph of the image in the request's vocabulary (`shapeworld_graph` below);
- pairs: the candidate with the higher `image_score` (images) or chain score (mean of the semantic and layout
  scores) is preferred; equal scores are a tie.

Rubric and pair requests need `metadata` (the record's GenEval metadata); one without it, or with metadata that
`validate_metadata` refuses (a wrong type, a count over its bound), fails as "bad_request" before any work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from data_prep.shapeworld.detect import Detection, detect
from data_prep.shapeworld.oracle import (
    chain_layout_score,
    chain_semantic_score,
    ground,
    score_metadata,
    validate_metadata,
)
from data_prep.shapeworld.relations import relations_between
from janus_rig.chain import Box, parse_chain
from reward_models.judges.base import JUDGES, GraphRequest, GroundRequest, Judge, PairRequest, RubricRequest
from reward_models.scene_graph import SceneGraph, Vocabulary

# An image that fails GenEval's rules earns at most this much, scaled by the share of include clauses it
# satisfies, so every incorrect image stays below every correct one while "one object of two right" still
# beats "nothing right" (a denser signal for GRPO than 0/1).
PARTIAL_CREDIT = 0.5


def shapeworld_graph(image: Image.Image | np.ndarray | Sequence[Detection], vocabulary: Vocabulary) -> SceneGraph:
    """The exact scene graph of a ShapeWorld image (or of its detections), in the words of a record's vocabulary
    (the oracle's SG extraction). The detector finds every object exactly; each is named "colour shape" when its shape is a vocabulary label (the
    colour only when it is a vocabulary attribute), and every ordered pair of named objects gets the triples of the
    vocabulary's predicates that hold between their boxes by the world's own rule (relations.relations_between).
    It is what an ideal annotator restricted to the vocabulary would write: every true relation, stated or not.

        vocabulary = Vocabulary(labels=("circle", "square"), attributes=("red", "blue"), predicates=("left of",))
        shapeworld_graph(image, vocabulary).triples   # the render of "a red circle left of a blue square":
        # frozenset({('red circle', 'left of', 'blue square')})

    `dropped` counts the objects the vocabulary cannot name."""
    dets = detect(image) if isinstance(image, (Image.Image, np.ndarray)) else list(image)
    named = []  # (entity, pixel box) of the objects the vocabulary names
    for det in dets:
        entity, _ = vocabulary.entity(det.shape, attributes=[det.color])  # a colour outside it is simply not said
        if entity is not None:
            named.append((entity, det.box))
    predicates = set(vocabulary.predicates)
    triples = [
        (a, relation, b)
        for i, (a, box_a) in enumerate(named)
        for j, (b, box_b) in enumerate(named)
        if i != j
        for relation in sorted(relations_between(box_a, box_b) & predicates)
    ]
    return SceneGraph.build((e for e, _ in named), triples, dropped=len(dets) - len(named))


def _clause_check(include: list[dict], i: int) -> dict:
    """Metadata that checks include clause i alone; a position clause brings its target along (as clause 0)."""
    clause = include[i]
    if "position" not in clause:
        return {"include": [clause]}
    relation, target = clause["position"]
    anchor = {k: v for k, v in include[target].items() if k != "position"}
    return {"include": [anchor, {**clause, "position": [relation, 0]}]}


def image_score(metadata: dict, detections) -> float:
    """1.0 if the detections satisfy the metadata, else PARTIAL_CREDIT x the share of include clauses satisfied.

    A position clause counts as satisfied when its object and its target are there and stand in the relation.
    Exclude clauses only decide correctness (an image with one object too many gets the partial credit of its
    include clauses).
    """
    correct, _ = score_metadata(metadata, detections)
    if correct:
        return 1.0
    include = metadata["include"]
    held = sum(score_metadata(_clause_check(include, i), detections)[0] for i in range(len(include)))
    return PARTIAL_CREDIT * held / len(include)


@JUDGES.register("shapeworld")
class ShapeWorldJudge(Judge):
    name = "shapeworld"
    structured = True

    def score(self, requests: list[RubricRequest]) -> list[float | None]:
        return [self._answer(self._score_one, r) for r in requests]

    def ground(self, requests: list[GroundRequest]) -> list[list[Box] | None]:
        return [self._answer(self._ground_one, r) for r in requests]

    def extract_graphs(self, requests: list[GraphRequest]) -> list[SceneGraph | None]:
        return [self._answer(self._graph_one, r) for r in requests]

    def compare(self, requests: list[PairRequest]) -> list[float | None]:
        return [self._answer(self._compare_one, r) for r in requests]

    def check(self, request) -> None:
        """The metadata's types and bounds (oracle.validate_metadata), when the request carries metadata."""
        metadata = getattr(request, "metadata", None)
        if metadata is not None:
            validate_metadata(metadata)

    def _answer(self, fn, request):
        self.stats.count("requests")
        try:
            return fn(request)
        except ValueError as err:  # missing or invalid metadata, an image where none was sent
            self.stats.fail("bad_request", str(err))
            return None

    def _score_one(self, request: RubricRequest) -> float:
        if request.metadata is None:
            raise ValueError(f"the shapeworld judge needs the record's metadata for a {request.task} question")
        if request.task == "semantic":
            return chain_semantic_score(parse_chain(request.chain).objects, request.metadata)
        if request.task == "spatial":
            return chain_layout_score(parse_chain(request.chain).objects, request.metadata)
        if request.image is None:
            raise ValueError("a prompt_image question needs an image")
        return image_score(request.metadata, detect(request.image))

    def _ground_one(self, request: GroundRequest) -> list[Box]:
        if request.image is None:
            raise ValueError("a grounding question needs an image")
        width, height = request.image.size
        # `ground` on one detection says whether the oracle would call it `name`: one rule for what matches.
        return [
            Box.from_pixels(*d.box, width, height) for d in detect(request.image) if ground([d], request.name)
        ]

    def _graph_one(self, request: GraphRequest) -> SceneGraph:
        if request.image is None:
            raise ValueError("a scene-graph question needs an image")
        return shapeworld_graph(request.image, request.vocabulary)

    def _compare_one(self, request: PairRequest) -> float:
        if request.metadata is None:
            raise ValueError(f"the shapeworld judge needs the record's metadata to compare two {request.kind}s")
        if request.kind == "image":
            first, second = (image_score(request.metadata, detect(x)) for x in (request.first, request.second))
        else:
            first, second = (chain_score(request.metadata, x) for x in (request.first, request.second))
        return 1.0 if first > second else 0.0 if first < second else 0.5


def chain_score(metadata: dict, chain: str) -> float:
    """A chain's worth for a prompt: the mean of its semantic (R_sem) and layout (R_spa) scores."""
    objects = parse_chain(chain).objects
    return (chain_semantic_score(objects, metadata) + chain_layout_score(objects, metadata)) / 2
