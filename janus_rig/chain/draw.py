"""Drawing a chain's boxes: the one picture the gallery, reports and the R_spa reward all use.

GoT-R1's spatial reward shows the judge the planned layout, not its coordinates: every box drawn on a blank
canvas with the object's name written at the box's top-left corner. The same function draws boxes over an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from janus_rig.chain.chain import ChainObject

# Distinct, saturated colours that read on white and on most images; object i gets PALETTE[i % len(PALETTE)].
PALETTE = (
    (230, 25, 75),  # red
    (0, 130, 200),  # blue
    (60, 180, 75),  # green
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (240, 50, 230),  # magenta
    (0, 128, 128),  # teal
    (170, 110, 40),  # brown
    (128, 0, 0),  # maroon
    (0, 0, 128),  # navy
    (128, 128, 0),  # olive
    (64, 64, 64),  # dark grey
)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()  # bundled with Pillow: nothing to download


def draw_boxes(
    image: Image.Image | None,
    objects: Sequence[ChainObject],
    size: tuple[int, int] | None = None,
    line_width: int = 1,
    label: bool = True,
    background=(255, 255, 255),
) -> Image.Image:
    """Draw each object's box (objects whose box is None are skipped) with its name at the box's top-left corner.

    Draws on an RGB copy of `image` (resized to `size` with nearest-neighbour when `size` is given and differs,
    e.g. to make a 32 px sample large enough for labels), or on a blank `size` = (width, height) canvas filled
    with `background` when `image` is None. `image` itself is never modified.
    """
    if line_width < 1:
        raise ValueError(f"line_width must be >= 1, got {line_width}")
    if image is None:
        if size is None:
            raise ValueError("draw_boxes needs an image or a canvas size=(width, height)")
        canvas = Image.new("RGB", _check_size(size), background)
    else:
        canvas = image.convert("RGB")  # always a new image, even when already RGB
        if size is not None and tuple(size) != canvas.size:
            canvas = canvas.resize(_check_size(size), Image.Resampling.NEAREST)
    width, height = canvas.size
    pen = ImageDraw.Draw(canvas)
    for index, obj in enumerate(objects):
        if obj.box is None:
            continue
        colour = PALETTE[index % len(PALETTE)]
        x1, y1, x2, y2 = obj.box.to_pixels(width, height)
        # Pixel indices of the box's outermost pixels; a box thinner than a pixel still gets one.
        left, top = min(round(x1), width - 1), min(round(y1), height - 1)
        right, bottom = max(left, min(round(x2) - 1, width - 1)), max(top, min(round(y2) - 1, height - 1))
        pen.rectangle((left, top, right, bottom), outline=colour, width=line_width)
        if label:
            # The name on a tag of the box's colour: readable on busy images and on blank canvases alike.
            at = (left + line_width + 1, top + line_width)
            tag = pen.textbbox(at, obj.name, font=_font())
            pen.rectangle((tag[0] - 1, tag[1] - 1, tag[2] + 1, tag[3] + 1), fill=colour)
            pen.text(at, obj.name, fill=_ink(colour), font=_font())
    return canvas


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light tags, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"canvas size must be positive (width, height), got {size}")
    return int(width), int(height)
