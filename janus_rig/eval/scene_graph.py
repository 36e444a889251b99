"""The exact scene graph of a ShapeWorld image, in the words of a record's vocabulary (the oracle's SG extraction).

The detector finds every object exactly; each is named "colour shape" when its shape is a vocabulary label (the
colour only when it is a vocabulary attribute), and every ordered pair of named objects gets the triples of the
vocabulary's predicates that hold between their boxes by the world's own rule (relations.relations_between).
It is what an ideal annotator restricted to the vocabulary would write: every true relation, stated or not.

    vocabulary = Vocabulary(labels=("circle", "square"), attributes=("red", "blue"), predicates=("left of",))
    shapeworld_graph(image, vocabulary).triples   # the render of "a red circle left of a blue square":
    # frozenset({('red circle', 'left of', 'blue square')})
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from data_prep.shapeworld.detect import Detection, detect
from data_prep.shapeworld.relations import relations_between
from janus_rig.eval.sg_iou import SceneGraph, Vocabulary


def shapeworld_graph(image: Image.Image | np.ndarray | Sequence[Detection], vocabulary: Vocabulary) -> SceneGraph:
    """The scene graph of an image (or of its detections); `dropped` counts the objects the vocabulary cannot name."""
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
