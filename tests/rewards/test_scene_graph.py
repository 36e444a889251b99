"""The SG-IoU metric (LAION-SG): hand-worked examples, normalisation, the vocabulary, reference graphs."""

from __future__ import annotations

import pytest

from reward_models.scene_graph import (
    SceneGraph,
    Vocabulary,
    entity_name,
    mean_scores,
    normalize,
    reference_graph,
    set_iou,
    sg_scores,
)

REFERENCE = SceneGraph.build(triples=[("red circle", "left of", "blue square"),
                                      ("green triangle", "above", "blue square")])


def test_hand_worked_example():
    # predicted: one triple right, one with the wrong predicate, and an extra object
    predicted = SceneGraph.build(entities=["yellow circle"],
                                 triples=[("red circle", "left of", "blue square"),
                                          ("green triangle", "left of", "blue square")])
    scores = sg_scores(predicted, REFERENCE)
    # triples: 1 shared of 3 distinct -> 1/3
    assert scores["sg_iou"] == pytest.approx(1 / 3)
    # entities: {red circle, blue square, green triangle} vs the same + yellow circle -> 3/4
    assert scores["entity_iou"] == pytest.approx(3 / 4)
    # predicates: {left of} vs {left of, above} -> 1/2
    assert scores["relation_iou"] == pytest.approx(1 / 2)


def test_perfect_empty_and_disjoint():
    assert sg_scores(REFERENCE, REFERENCE) == {"sg_iou": 1.0, "entity_iou": 1.0, "relation_iou": 1.0}
    empty = SceneGraph.build()
    assert sg_scores(empty, REFERENCE) == {"sg_iou": 0.0, "entity_iou": 0.0, "relation_iou": 0.0}
    objects_only = SceneGraph.build(entities=["circle", "square"])
    # no relations on either side: SG-IoU and Relation-IoU are undefined, not 1 and not 0
    assert sg_scores(objects_only, objects_only) == {"sg_iou": None, "entity_iou": 1.0, "relation_iou": None}
    assert set_iou([], []) is None and set_iou([1, 1, 2], [2, 2]) == 0.5


def test_duplicates_case_articles_and_attribute_order_fold():
    predicted = SceneGraph.build(triples=[("The Red  circle", "Left of", "a blue square."),
                                          ("red circle", "left of", "blue square"),
                                          ("green triangle", "above", "blue square")])
    assert predicted.triples == REFERENCE.triples
    assert entity_name("tower", ["tall", "stone"]) == "stone tall tower"
    assert entity_name("Tower", ["stone", "Tall", "tall"]) == "stone tall tower"
    assert normalize(" 'The  Red circle.' ") == "red circle"
    assert normalize("a") == "a"  # an article alone stays (it is the whole name)


def test_mean_scores_skip_undefined():
    rows = [{"sg_iou": 1.0, "entity_iou": 1.0, "relation_iou": 1.0},
            {"sg_iou": None, "entity_iou": 0.5, "relation_iou": None},
            {"sg_iou": 0.0, "entity_iou": 0.0, "relation_iou": 0.5}]
    means = mean_scores(rows)
    assert means["sg_iou"] == (0.5, 2) and means["entity_iou"] == (0.5, 3) and means["relation_iou"] == (0.75, 2)
    assert mean_scores([])["sg_iou"] == (None, 0)


def test_vocabulary_reads_names_in_its_words():
    v = Vocabulary(labels=("tower", "coffee table"), attributes=("stone", "tall", "dark blue"), predicates=("next to",))
    assert v.entity("The tall stone tower") == ("stone tall tower", 0)
    assert v.entity("dark blue coffee table") == ("dark blue coffee table", 0)
    assert v.entity("old stone tower") == ("stone tower", 1)  # 'old' is no attribute: dropped, counted
    assert v.entity("dog") == (None, 0) and v.entity("") == (None, 0)
    assert v.entity("table") == (None, 0)  # only whole labels: 'table' is not 'coffee table'
    graph = v.restrict(["tower", "dog"], [("stone tower", "next to", "coffee table"), ("tower", "on", "coffee table"),
                                          ("tower", "next to", "cat")])
    assert graph.triples == {("stone tower", "next to", "coffee table")}
    assert graph.entities == {"tower", "stone tower", "coffee table"}
    assert graph.dropped == 3  # dog, the unknown predicate 'on', the unknown object 'cat'
    assert Vocabulary.from_json(v.to_json()) == v


def test_vocabulary_from_json_names_bad_fields():
    with pytest.raises(ValueError, match="'labels' is empty"):
        Vocabulary.from_json({"labels": []})
    with pytest.raises(ValueError, match="'predicates' must be a list of strings"):
        Vocabulary.from_json({"labels": ["a"], "predicates": "left of"})


def test_reference_graph_from_laion_sg_fields():
    items = [{"item_id": 0, "label": "tower", "attributes": ["tall", "stone"], "global_item_id": 7},
             {"item_id": 1, "label": "sky", "attributes": ["blue"]},
             {"item_id": 2, "label": "bird", "attributes": []}]
    relations = [{"triple_id": 0, "item1": 2, "relation": "flying in", "item2": 1},
                 {"triple_id": 1, "item1": 0, "relation": "under", "item2": 1}]
    graph, vocabulary = reference_graph(items, relations)
    assert graph.triples == {("bird", "flying in", "blue sky"), ("stone tall tower", "under", "blue sky")}
    assert graph.entities == {"stone tall tower", "blue sky", "bird"}
    assert vocabulary == Vocabulary(("tower", "sky", "bird"), ("tall", "stone", "blue"), ("flying in", "under"))
    kept, kept_vocabulary = reference_graph(items, relations, keep_attribute=lambda a: a == "blue")
    assert kept.entities == {"tower", "blue sky", "bird"} and kept_vocabulary.attributes == ("blue",)


@pytest.mark.parametrize("items, relations, message", [
    ([], [], "'items' must be a non-empty list"),
    ([{"item_id": 0}], [], r"items\[0\].label"),
    ([{"item_id": 0, "label": "a", "attributes": "red"}], [], r"items\[0\].attributes"),
    ([{"item_id": 0, "label": "a"}, {"item_id": 0, "label": "b"}], [], "used twice"),
    ([{"item_id": 0, "label": "a"}], [{"item1": 0, "relation": "on", "item2": 5}], r"relations\[0\].item2 5"),
    ([{"item_id": 0, "label": "a"}], [{"item1": 0, "item2": 0}], r"relations\[0\].relation"),
    ([{"item_id": 0, "label": "a"}], "nope", "'relations' must be a list"),
])
def test_reference_graph_errors_name_the_field(items, relations, message):
    with pytest.raises(ValueError, match=message):
        reference_graph(items, relations)
