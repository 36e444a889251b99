"""The exact ShapeWorld detector: palette colours, connected blobs, shape templates. No learning, any image size.

It has to read clean renders, imperfect VQ reconstructions (blur, colour drift, ringing) and model samples alike,
so every step uses features that survive noise:

1. Foreground: a pixel is foreground when it is nearer to some palette colour than to black (the background);
   blurred edges therefore split at half intensity, which keeps boxes where the renderer put them.
2. Colour label: the nearest palette colour, only when it is near (`COLOR_MAX_DIST`) and clearly nearer than the
   runner-up (`COLOR_RATIO`); smudges half-way between two colours, or between a colour and black, get no label.
3. Despeckle the foreground (isolated pixels out, pinholes in), then 4-connected components.
4. Per component: the colour is the majority label; a component with no clear majority is split by label
   (two differently coloured objects touching). Components below `MIN_AREA_FRACTION` of the canvas are dropped.
5. Shape: soft IoU of the blob with an ideal circle, square and apex-up triangle stretched to the blob's box.
   The templates carry the fill ratio (square 1, circle pi/4, triangle 1/2) and where the mass sits (a triangle
   is narrow at the top) at once, and a rounded square still fits the square best. Blobs that fit no template
   (`MIN_SHAPE_IOU`) or are far from square (`MAX_ASPECT`) are rejected.

    >>> from data_prep.shapeworld.render import render
    >>> from data_prep.shapeworld.scene import Scene, SceneObject
    >>> detect(render(Scene(64, (SceneObject("circle", "red", (4, 4, 20, 20)),))))
    [Detection(shape='circle', color='red', box=(4, 4, 20, 20), area=200, score=0.9455)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from data_prep.shapeworld.scene import BACKGROUND, COLORS, SHAPES

# A pixel farther than this (RGB distance) from every palette colour gets no colour label. Brightness and hue
# drift of a VQ decoder stays well inside it; grey, orange or half-dimmed colours (>= ~100 from every palette
# entry) stay outside. (The closest palette pair, blue/purple, is ~113 apart; COLOR_RATIO separates those.)
COLOR_MAX_DIST = 90.0
# A labelled pixel must be this much nearer its colour than the runner-up (black included): a pixel half-way
# between blue and purple, or a half-dimmed edge, is ambiguous and must not vote.
COLOR_RATIO = 0.7
# A foreground pixel with fewer foreground pixels than this in its 3x3 window (itself included) is noise. Only
# isolated pixels go: PIL draws the apex of an odd-sided triangle as a one-pixel spike, and the box must keep it.
DESPECKLE_MIN_SUPPORT = 2
# A background pixel with at least this many of its 8 neighbours in the foreground is a pinhole; pixels outside a
# triangle's staircase edge have at most 6.
PINHOLE_MIN_NEIGHBOURS = 7
# The smallest object the world draws (a triangle with side 0.18 of the canvas) covers ~1.6% of the canvas; a
# quarter of that separates objects from stray clumps at every size.
MIN_AREA_FRACTION = 0.004
MIN_AREA_PIXELS = 4  # at tiny canvases the fraction rounds to nothing
# At least this share of a blob's pixels must carry a confident colour label; a smudge of in-between colours has
# almost none, a blurred 6-px object still has ~40% (its interior).
MIN_LABELLED_FRACTION = 0.25
# A blob is one object when its majority colour holds this share of its labelled pixels; below, it is split by colour.
DOMINANT_COLOR_FRACTION = 0.6
# Best template IoU below this: the blob is no ShapeWorld shape. Clean renders fit >= 0.79 (a 6-px triangle, the
# worst case) and >= 0.88 from 12 px up; a ring (0.64) or an apex-down triangle (0.51) is rejected, but an L with
# a quarter missing (0.75) still passes as a square. The best wrong template of a clean shape (the square for a
# circle, pi/4 = 0.785) never matters: the right template fits better.
MIN_SHAPE_IOU = 0.72
# Objects are drawn in square boxes; an elongated blob is a streak or two merged objects, not a shape.
MAX_ASPECT = 1.6
# Blur dims a small triangle's apex below half intensity, so its blob loses the tip and its box starts lower:
# what is left is a trapezoid. Triangles cut off at these top widths (fractions of the base) still count.
TRIANGLE_TOP_WIDTHS = (0.0, 0.2, 0.4)
_SUPERSAMPLE = 4  # sub-pixel samples per side when rasterising templates: small boxes need fractional coverage

_PALETTE_NAMES = tuple(COLORS)
_PALETTE = np.array([COLORS[c] for c in _PALETTE_NAMES], dtype=np.float32)  # (P, 3)
_BLACK = np.array(BACKGROUND, dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    shape: str
    color: str
    box: tuple[int, int, int, int]  # pixels, x2/y2 exclusive
    area: int  # pixels in the blob
    score: float  # shape-template IoU x colour purity, in (0, 1]

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 on 0..255 from a PIL image or an array: uint8 0..255, or float 0..1; gray and RGBA allowed."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image array, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < -1e-3 or array.max() > 1 + 1e-3):
            raise ValueError("float image arrays must be on 0..1 (map a [-1, 1] VQ output with (x + 1) / 2 first)")
        return np.clip(array, 0.0, 1.0).astype(np.float32) * 255.0
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8 0..255 or float 0..1")


def classify_pixels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground mask (H, W) bool, colour label (H, W) int: index into COLORS, -1 for no confident colour)."""
    dist = np.linalg.norm(rgb[:, :, None, :] - _PALETTE[None, None], axis=-1)  # (H, W, P)
    d_black = np.linalg.norm(rgb - _BLACK, axis=-1)  # (H, W)
    order = np.argsort(dist, axis=-1)
    nearest = order[..., 0]
    d1 = np.take_along_axis(dist, nearest[..., None], axis=-1)[..., 0]
    d2 = np.minimum(np.take_along_axis(dist, order[..., 1:2], axis=-1)[..., 0], d_black)  # runner-up, black included
    foreground = d1 < d_black
    confident = foreground & (d1 <= COLOR_MAX_DIST) & (d1 <= COLOR_RATIO * d2)
    return foreground, np.where(confident, nearest, -1)


def _neighbour_count(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels in each 3x3 window, the centre included."""
    padded = np.pad(mask.astype(np.int16), 1)
    h, w = mask.shape
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))


def despeckle(mask: np.ndarray) -> np.ndarray:
    count = _neighbour_count(mask)
    return np.where(mask, count >= DESPECKLE_MIN_SUPPORT, count >= PINHOLE_MIN_NEIGHBOURS)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a bool mask: (labels (H, W) int32, 0 = background, 1..n; n).

    Works on horizontal runs with a union-find, so the Python loop is over runs (a few per object row), not pixels.
    """
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past its end
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)  # same row-major order as the starts
    runs = list(zip(starts_r.tolist(), starts_c.tolist(), ends_c.tolist()))
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(starts_r, np.arange(h + 1)).tolist()  # runs of row r: row_first[r]:row_first[r+1]
    for r in range(1, h):
        i, i_end = row_first[r - 1], row_first[r]
        j, j_end = row_first[r], row_first[r + 1]
        while i < i_end and j < j_end:  # two-pointer sweep over the runs of rows r-1 and r
            _, s1, e1 = runs[i]
            _, s2, e2 = runs[j]
            if s1 < e2 and s2 < e1:  # the column intervals overlap: 4-connected
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if e1 <= e2:
                i += 1
            else:
                j += 1
    labels = np.zeros((h, w), dtype=np.int32)
    ids: dict[int, int] = {}
    for k, (r, s, e) in enumerate(runs):
        labels[r, s:e] = ids.setdefault(find(k), len(ids) + 1)
    return labels, len(ids)


def shape_templates(height: int, width: int) -> dict[str, np.ndarray]:
    """Coverage (0..1) of each ideal shape filling a height x width box, sampled at pixel sub-positions."""
    s = _SUPERSAMPLE
    ys = (np.arange(height * s) + 0.5) / (height * s)  # 0..1 down the box
    xs = (np.arange(width * s) + 0.5) / (width * s)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    masks = {
        "circle": (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25,
        "square": np.ones_like(x, dtype=bool),
    }
    for top in TRIANGLE_TOP_WIDTHS:  # apex at the top centre (or cut off), base along the bottom
        masks[f"triangle@{top}"] = np.abs(x - 0.5) <= 0.5 * (top + (1 - top) * y)
    return {name: m.reshape(height, s, width, s).mean(axis=(1, 3)) for name, m in masks.items()}


def classify_shape(blob: np.ndarray) -> tuple[str | None, float]:
    """(best shape or None, its soft IoU) for a bool mask cropped to its bounding box."""
    h, w = blob.shape
    if max(h, w) > MAX_ASPECT * min(h, w):
        return None, 0.0
    filled = blob.astype(np.float32)
    fits = dict.fromkeys(SHAPES, 0.0)
    for name, template in shape_templates(h, w).items():
        shape = name.split("@")[0]
        fits[shape] = max(fits[shape], float(np.minimum(filled, template).sum() / np.maximum(filled, template).sum()))
    best = max(SHAPES, key=fits.__getitem__)
    return (best, fits[best]) if fits[best] >= MIN_SHAPE_IOU else (None, fits[best])


def _measure(mask: np.ndarray, color: str, purity: float) -> Detection | None:
    rows, cols = np.nonzero(mask)
    y1, y2, x1, x2 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    shape, fit = classify_shape(mask[y1:y2, x1:x2])
    if shape is None:
        return None
    return Detection(shape, color, (x1, y1, x2, y2), int(mask.sum()), round(float(fit * purity), 4))


def detect(image: Image.Image | np.ndarray) -> list[Detection]:
    """Every ShapeWorld object found in the image, largest first (ties: top-left first)."""
    rgb = to_rgb_array(image)
    h, w = rgb.shape[:2]
    min_area = max(MIN_AREA_PIXELS, MIN_AREA_FRACTION * h * w)
    foreground, color_label = classify_pixels(rgb)
    labels, n = label_components(despeckle(foreground))
    found: list[Detection] = []
    for k in range(1, n + 1):
        blob = labels == k
        area = int(blob.sum())
        if area < min_area:
            continue
        votes = np.bincount(color_label[blob & (color_label >= 0)], minlength=len(_PALETTE_NAMES))
        if votes.sum() < MIN_LABELLED_FRACTION * area:
            continue  # a smudge: mostly pixels of no clear palette colour
        top = int(votes.argmax())
        if votes[top] >= DOMINANT_COLOR_FRACTION * votes.sum():
            det = _measure(blob, _PALETTE_NAMES[top], votes[top] / votes.sum())
            found += [det] if det else []
            continue
        for c in np.nonzero(votes)[0]:  # touching objects of different colours: one component per colour
            sub_labels, m = label_components(blob & (color_label == c))
            for j in range(1, m + 1):
                sub = sub_labels == j
                if sub.sum() >= min_area:
                    det = _measure(sub, _PALETTE_NAMES[c], 1.0)
                    found += [det] if det else []
    return sorted(found, key=lambda d: (-d.area, d.box[1], d.box[0]))
