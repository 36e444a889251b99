"""GenEval's relative-position rule, the single definition every ShapeWorld tool uses.

Position of A relative to B (boxes in any common unit, image y growing downwards):
offset = center_a - center_b; revised = max(|offset| - 0.1 * (dim_a + dim_b), 0) * sign(offset);
no relation if every |revised| < 1e-3; else (dx, dy) = revised / |offset| and
dx < -0.5 "left of", dx > 0.5 "right of", dy < -0.5 "above", dy > 0.5 "below".
"""

from __future__ import annotations

import math
from typing import Sequence

RELATIONS = ("left of", "right of", "above", "below")
POSITION_THRESHOLD = 0.1


def relations_between(box_a: Sequence[float], box_b: Sequence[float], threshold: float = POSITION_THRESHOLD) -> set[str]:
    """The set of relations that hold for A relative to B, e.g. {"left of", "above"}; empty when too close."""
    ax1, ay1, ax2, ay2 = box_a
    bx1, by1, bx2, by2 = box_b
    offset = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2, (ay1 + ay2) / 2 - (by1 + by2) / 2)
    dims = ((ax2 - ax1) + (bx2 - bx1), (ay2 - ay1) + (by2 - by1))
    revised = [max(abs(o) - threshold * d, 0.0) * math.copysign(1.0, o) if o else 0.0 for o, d in zip(offset, dims)]
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = math.hypot(*offset)
    dx, dy = revised[0] / norm, revised[1] / norm
    found = set()
    if dx < -0.5:
        found.add("left of")
    if dx > 0.5:
        found.add("right of")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


def holds(relation: str, box_a: Sequence[float], box_b: Sequence[float]) -> bool:
    """Whether `A {relation} B` holds, e.g. holds("left of", a, b)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; valid: {', '.join(RELATIONS)}")
    return relation in relations_between(box_a, box_b)
