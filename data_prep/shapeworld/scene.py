"""The world's fixed vocabulary and the scene type. Other tools depend on these exact values.

A scene is a square canvas (default 64 px, black) holding 1-4 solid objects. Object boxes are in pixels,
(x1, y1, x2, y2) with x2/y2 exclusive, so a box's side is x2 - x1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKGROUND = (0, 0, 0)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 50),
    "purple": (160, 70, 210),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")  # triangle: isosceles, apex up
MIN_SIDE, MAX_SIDE = 0.18, 0.34  # object box side as a fraction of the canvas
MAX_OBJECTS = 4
MIN_GAP_AT_64 = 2  # px between any two boxes at 64 px; scaled with the canvas
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    box: tuple[int, int, int, int]  # pixels, x2/y2 exclusive

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; valid: {', '.join(SHAPES)}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; valid: {', '.join(COLORS)}")
        x1, y1, x2, y2 = self.box
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"empty box {self.box}")

    @property
    def name(self) -> str:
        """What a chain calls this object, e.g. 'red circle'."""
        return f"{self.color} {self.shape}"

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class Scene:
    size: int
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {
            "size": self.size,
            "objects": [{"shape": o.shape, "color": o.color, "box": list(o.box)} for o in self.objects],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Scene":
        objects = tuple(SceneObject(o["shape"], o["color"], tuple(o["box"])) for o in data["objects"])
        return cls(size=int(data["size"]), objects=objects)
