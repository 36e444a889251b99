"""Render a scene with PIL: solid palette colours, no anti-aliasing, so every pixel is exactly one palette colour."""

from __future__ import annotations

from PIL import Image, ImageDraw

from data_prep.shapeworld.scene import BACKGROUND, COLORS, Scene, SceneObject


def draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    x1, y1, x2, y2 = obj.box
    # PIL's coordinates are inclusive; our boxes are exclusive at x2/y2.
    right, bottom = x2 - 1, y2 - 1
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((x1, y1, right, bottom), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x1, y1, right, bottom), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([((x1 + right) / 2, y1), (right, bottom), (x1, bottom)], fill=fill)
    else:  # SceneObject validates shapes; this guards new shapes added without a drawing rule
        raise ValueError(f"no drawing rule for shape {obj.shape!r}")


def render(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_object(draw, obj)
    return image
