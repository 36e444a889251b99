"""Edit rewards (intrinsic, judge-based) and the checker's accuracy against the oracle, on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import Scene, SceneObject
from janus_rig.chain.roles import parse_reflection
from janus_rig.reflect.loop import LoopResult, RoundTrace
from janus_rig.reflect.reward import (
    checker_accuracy,
    edit_rewards,
    intrinsic_reward,
    judge_rewards,
    oracle_report,
    verdict_score,
)
from reward_models.judges import make_judge
from tests.shapeworld.test_facts import POSITION


def r(*verdicts, decision="edit"):
    lines = "".join(f"<|verdict|>{s}: {v}\n" for s, v in verdicts)
    return parse_reflection(f"<|reflect_start|>seen\n{lines}<|decision|>{decision}<|reflect_end|>")


TRUTH = parse_reflection("<|verdict|>blue square: yes<|verdict|>red circle: yes"
                         "<|verdict|>red circle left of blue square: no").verdicts


def test_verdict_score_and_intrinsic_reward():
    before = r(("a", "yes"), ("b", "no"), ("c", "no"), ("d", "no"))
    after = r(("a", "yes"), ("b", "yes"), ("c", "yes"), ("d", "no"))
    assert verdict_score(before) == 0.25 and verdict_score(after) == 0.75
    assert intrinsic_reward(before, after) == 0.5 and intrinsic_reward(after, before) == -0.5
    garbled = parse_reflection("nothing readable")
    assert verdict_score(garbled) is None
    assert intrinsic_reward(garbled, after) == 0.75 and intrinsic_reward(before, garbled) == -0.25
    assert intrinsic_reward(garbled, garbled, unreadable=0.3) == 0.0


def test_checker_accuracy_per_verdict():
    right = r(("Blue Square", "yes"), ("red circle", "yes"), ("red circle left of blue square", "no"))
    assert checker_accuracy([right], [TRUTH]) == (1.0, pytest.approx({
        "verdict_accuracy": 1.0, "verdict_coverage": 1.0, "answered_accuracy": 1.0, "decision_accuracy": 1.0,
        "facts": 3, "checks": 1}))
    # One wrong, one unanswered (a verdict on something the caption does not state is ignored), decision wrong.
    partial = r(("blue square", "no"), ("red circle", "yes"), ("green triangle", "yes"), decision="keep")
    accuracy, metrics = checker_accuracy([right, partial], [TRUTH, TRUTH])
    assert accuracy == 4 / 6 and metrics["verdict_coverage"] == 5 / 6 and metrics["answered_accuracy"] == 4 / 5
    assert metrics["decision_accuracy"] == 0.5
    duplicate = r(("red circle", "no"), ("red circle", "yes"), decision="edit")  # the first verdict counts
    assert checker_accuracy([duplicate], [TRUTH[1:2]])[0] == 0.0
    with pytest.raises(ValueError, match="truth lists"):
        checker_accuracy([right], [])


RED_LEFT = (SceneObject("circle", "red", (4, 20, 20, 36)), SceneObject("square", "blue", (40, 20, 56, 36)))
RED_RIGHT = (SceneObject("circle", "red", (40, 20, 56, 36)), SceneObject("square", "blue", (4, 20, 20, 36)))


def test_judge_rewards_with_the_shapeworld_judge():
    wrong, right = render(Scene(64, RED_RIGHT)), render(Scene(64, RED_LEFT))
    judge = make_judge("shapeworld")
    rewards = judge_rewards(judge, [POSITION["prompt"]] * 2, [wrong, right], [right, wrong], [POSITION] * 2)
    assert rewards[0] > 0 and rewards[1] == -rewards[0]
    assert judge_rewards(judge, ["x"], [wrong], [right], [None]) == [None]  # the oracle needs metadata
    with pytest.raises(ValueError, match="one before and one after"):
        judge_rewards(judge, ["x"], [wrong], [], None)


def hand_made_loop() -> LoopResult:
    """Row 0: wrong image, checker says edit, the edit fixes it, the checker then says keep. Row 1: keep at once."""
    wrong, right = render(Scene(64, RED_RIGHT)), render(Scene(64, RED_LEFT))
    n = torch.zeros(4, dtype=torch.long)
    says_wrong = r(("blue square", "yes"), ("red circle", "yes"), ("red circle left of blue square", "no"))
    says_right = r(("blue square", "yes"), ("red circle", "yes"), ("red circle left of blue square", "yes"),
                   decision="keep")
    row0 = [RoundTrace(0, 0, "plan", n, wrong, "", says_wrong, "edited", edited_tokens=n, edited_image=right),
            RoundTrace(0, 1, "plan", n, right, "", says_right, "keep")]
    row1 = [RoundTrace(1, 0, "plan", n, wrong, "", says_right, "keep")]  # wrong about a wrong image
    return LoopResult([POSITION["prompt"]] * 2, None, [], [row0, row1], torch.zeros(2, 4), {})


def test_edit_rewards_and_oracle_report():
    result = hand_made_loop()
    assert edit_rewards(result) == [pytest.approx(1 / 3)]
    judged = edit_rewards(result, "shapeworld", judge=make_judge("shapeworld"), metadata=[POSITION, POSITION])
    assert judged[0] > 0
    with pytest.raises(ValueError, match="needs a judge"):
        edit_rewards(result, "shapeworld")
    report = oracle_report(result, [POSITION, POSITION])
    # 3 checks x 3 facts: the checker is right on 8 (row 1 calls the failed relation true).
    assert report["verdict_accuracy"] == pytest.approx(8 / 9) and report["decision_accuracy"] == pytest.approx(2 / 3)
    assert report["correct_before"] == 0.0 and report["correct_after"] == 0.5
    assert report["edits_improved"] == 1.0 and report["edits"] == 1
    assert report["edit_plan_ok"] == 0.0 and report["edit_revised_plan_ok"] == 0.0  # "plan" is not a chain
    assert oracle_report(result, [POSITION, None])["checks"] == 2  # rows without metadata are left out
    # final "best": row 0 ends with the image its checker rated higher, here the wrong one before the edit.
    result.final = "best"
    result.traces[0][0].score, result.traces[0][1].score = 0.9, 0.4
    assert oracle_report(result, [POSITION, POSITION])["correct_after"] == 0.0
    result.traces[0][1].score = 0.95
    assert oracle_report(result, [POSITION, POSITION])["correct_after"] == 0.5


def test_objects_outside_the_edit_boxes_are_checked_by_the_detector():
    from janus_rig.chain import Box, ChainObject
    from janus_rig.reflect.reward import outside_objects_kept

    before = render(Scene(64, RED_RIGHT))  # blue square at x 4..20 (left), red circle at x 40..56 (right)
    right_half = [ChainObject("red circle", Box(500, 0, 1000, 1000))]
    moved_circle = render(Scene(64, (SceneObject("circle", "red", (40, 40, 56, 56)), RED_RIGHT[1])))
    assert outside_objects_kept(before, moved_circle, right_half, grid=8) == (1, 1, 1)  # the square is untouched
    moved_square = render(Scene(64, (RED_RIGHT[0], SceneObject("square", "blue", (4, 40, 20, 56)))))
    assert outside_objects_kept(before, moved_square, right_half, grid=8) == (1, 0, 0)  # outside, and it moved
    everything = [ChainObject("red circle", Box(0, 0, 1000, 1000))]
    assert outside_objects_kept(before, moved_square, everything, grid=8) == (0, 0, 0)  # nothing was outside
    nudged = render(Scene(64, (RED_RIGHT[0], SceneObject("square", "blue", (5, 20, 21, 36)))))
    assert outside_objects_kept(before, nudged, right_half, grid=8) == (1, 1, 0)  # still there, one pixel over

    result = hand_made_loop()
    result.traces[0][0].edit_boxes = right_half
    # Its edit swapped both objects but claims to have redrawn only the right half: the square on the left was
    # outside and moved, and the report must say so.
    report = oracle_report(result, [POSITION, POSITION])
    assert report["outside_objects"] == 1 and report["outside_objects_kept"] == 0.0
    assert report["outside_objects_identical"] == 0.0


def test_oracle_report_scores_the_checkers_perception():
    """seen_verdict_accuracy answers the facts on the objects the reflection says it sees, apart from its verdicts."""
    result = hand_made_loop()
    # Row 0's first checker describes the wrong image exactly (red circle right, blue square left) but writes no
    # verdicts; every other reflection sees nothing.
    seen = ("<|reflect_start|>The image shows a <|obj_start|>red circle<|obj_end|> <|box_start|>(625,312),(875,562)"
            "<|box_end|> and a <|obj_start|>blue square<|obj_end|> <|box_start|>(62,312),(312,562)<|box_end|>.\n"
            "<|decision|>edit<|reflect_end|>")
    result.traces[0][0].reflection = parse_reflection(seen)
    report = oracle_report(result, [POSITION, POSITION])
    # Facts: blue square, red circle, red circle left of blue square. Row 0 round 0 (wrong image): seen answers
    # yes, yes, no = the truth (3 right). Row 0 round 1 (right image) and row 1 (wrong image) see nothing: no, no,
    # no against yes, yes, yes (0) and yes, yes, no (1).
    assert report["seen_verdict_accuracy"] == pytest.approx(4 / 9)
    # Grounding: 3 checks of 2 objects each; only row 0 round 0 names both, with boxes on theirs.
    assert report["seen_objects_found"] == pytest.approx(2 / 6)
    assert report["facts_holding"] == pytest.approx(7 / 9)
    assert report["verdict_accuracy"] == pytest.approx(5 / 9)  # the written verdicts: row 0 round 0 now has none


def test_oracle_report_scores_the_actors_plans():
    result = hand_made_loop()
    wrong = ("A <|obj_start|>red circle<|obj_end|> <|box_start|>(625,312),(875,562)<|box_end|> and a "
             "<|obj_start|>blue square<|obj_end|> <|box_start|>(62,312),(312,562)<|box_end|>.")
    right = wrong.replace("(625,312),(875,562)", "(0,312),(50,562)")  # red circle moved to the far left
    right = right.replace("(62,312),(312,562)", "(500,312),(800,562)")  # blue square to the middle
    edit = result.traces[0][0]
    edit.plan, edit.revised_chain = wrong, right
    report = oracle_report(result, [POSITION, POSITION])
    assert report["edit_plan_ok"] == 0.0 and report["edit_revised_plan_ok"] == 1.0


def test_seen_objects_needs_the_name_and_the_box():
    from janus_rig.chain import Box, ChainObject
    from janus_rig.reflect.reward import seen_objects

    from data_prep.shapeworld.detect import detect

    found = detect(render(Scene(64, RED_RIGHT)))  # blue square at x 4..20 (left), red circle at x 40..56 (right)
    red_circle = next(d for d in found if d.name == "red circle")
    circle = Box.from_pixels(*red_circle.box, 64, 64)
    assert seen_objects(64, found, [ChainObject("red circle", circle)]) == (2, 1)
    assert seen_objects(64, found, [ChainObject("blue circle", circle)]) == (2, 0)  # right place, wrong name
    far = Box(0, 0, circle.x1 // 2 + 1, circle.y1 // 2 + 1)
    assert seen_objects(64, found, [ChainObject("red circle", far)]) == (2, 0)  # right name, wrong place
    assert seen_objects(64, found, [ChainObject("red circle", None)]) == (2, 0)  # no box, not grounded


def test_oracle_report_says_where_the_first_flags_fall():
    result = hand_made_loop()  # both rows start wrong; row 0 flagged (edit), row 1 not (keep)
    report = oracle_report(result, [POSITION, POSITION])
    assert report["first_right"] == 0 and report["first_fixable"] == 0  # "plan" is no plan: both wrong plans
    assert report["first_wrong_plan"] == 2 and report["first_wrong_plan_flagged"] == 0.5
    right_plan = ("A <|obj_start|>red circle<|obj_end|> <|box_start|>(62,312),(312,562)<|box_end|> and a "
                  "<|obj_start|>blue square<|obj_end|> <|box_start|>(625,312),(875,562)<|box_end|>.")
    result.traces[0][0].plan = right_plan  # row 0: a right plan drawn wrong, flagged
    right = render(Scene(64, RED_LEFT))
    result.traces[1][0].image = right  # row 1: a right image, left alone
    report = oracle_report(result, [POSITION, POSITION])
    assert (report["first_fixable"], report["first_fixable_flagged"]) == (1, 1.0)
    assert (report["first_right"], report["first_right_flagged"]) == (1, 0.0)
    assert report["first_wrong_plan"] == 0 and report["first_wrong_plan_flagged"] == 0.0
