"""The exact detector: every shape/colour/size at several canvases, random scenes, degraded images, rejects."""

from __future__ import annotations

import io
from collections import deque

import numpy as np
import pytest
from PIL import Image, ImageFilter

from data_prep.shapeworld.detect import Detection, classify_shape, detect, label_components
from data_prep.shapeworld.render import render
from data_prep.shapeworld.scene import COLORS, MAX_SIDE, MIN_GAP_AT_64, MIN_SIDE, SHAPES, Scene, SceneObject


def random_scene(rng: np.random.Generator, size: int, n: int) -> Scene:
    """n objects with sides in the world's range, boxes kept apart by the world's gap (a test-local sampler)."""
    gap = max(1, round(MIN_GAP_AT_64 * size / 64))
    lo, hi = round(MIN_SIDE * size), round(MAX_SIDE * size)
    objects: list[SceneObject] = []
    while len(objects) < n:
        side = int(rng.integers(lo, hi + 1))
        x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
        box = (x, y, x + side, y + side)
        if all(box[0] >= o.box[2] + gap or o.box[0] >= box[2] + gap or box[1] >= o.box[3] + gap
               or o.box[1] >= box[3] + gap for o in objects):
            objects.append(SceneObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), box))
    return Scene(size, tuple(objects))


def same_objects(scene: Scene, dets: list[Detection], tol: int) -> bool:
    """Every object found once with its shape, colour and a box within tol pixels, and nothing else."""
    left = list(dets)
    for obj in scene.objects:
        hit = next((d for d in left if d.shape == obj.shape and d.color == obj.color
                    and max(abs(p - q) for p, q in zip(d.box, obj.box)) <= tol), None)
        if hit is None:
            return False
        left.remove(hit)
    return not left


@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_shape_colour_and_size_exactly(size):
    sides = sorted({round(MIN_SIDE * size), round((MIN_SIDE + MAX_SIDE) / 2 * size), round(MAX_SIDE * size)})
    for side in sides:
        for shape in SHAPES:
            for color in COLORS:
                box = (3, 5, 3 + side, 5 + side)
                dets = detect(render(Scene(size, (SceneObject(shape, color, box),))))
                assert len(dets) == 1, (size, side, shape, color, dets)
                d = dets[0]
                assert (d.shape, d.color, d.box) == (shape, color, box)
                assert 0.75 < d.score <= 1.0


@pytest.mark.parametrize("size", [32, 64, 128])
def test_random_scenes_exact(size):
    rng = np.random.default_rng(size)
    for _ in range(40):
        scene = random_scene(rng, size, int(rng.integers(1, 5)))
        dets = detect(render(scene))
        assert same_objects(scene, dets, tol=0), (scene, dets)
        assert [d.area for d in dets] == sorted((d.area for d in dets), reverse=True)


def test_input_types_agree():
    scene = random_scene(np.random.default_rng(1), 64, 3)
    image = render(scene)
    as_uint8 = np.asarray(image)
    assert detect(image) == detect(as_uint8) == detect(as_uint8 / 255.0) == detect(image.convert("RGBA"))
    with pytest.raises(ValueError, match="0..1"):
        detect(as_uint8 / 127.5 - 1)


def _degrade(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(image).astype(np.float32)
    if kind == "gaussian":
        a = a + rng.normal(0, 20, a.shape)
    elif kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(0.6))
    elif kind == "jitter":
        a = a + rng.uniform(-30, 30, (1, 1, 3))
    elif kind == "jpeg":
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=50)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    elif kind == "all":
        a = np.asarray(image.filter(ImageFilter.GaussianBlur(0.5))).astype(np.float32)
        a = a + rng.uniform(-15, 15, (1, 1, 3)) + rng.normal(0, 10, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("kind", ["gaussian", "blur", "jitter", "jpeg", "all"])
@pytest.mark.parametrize("size", [32, 64])
def test_degraded_images_stay_accurate(kind, size):
    rng = np.random.default_rng(7)
    scenes = [random_scene(rng, size, int(rng.integers(1, 5))) for _ in range(40)]
    ok = sum(same_objects(s, detect(_degrade(render(s), kind, rng)), tol=size // 32) for s in scenes)
    assert ok / len(scenes) >= 0.95, (kind, size, ok)


def test_background_noise_and_smudges_are_not_objects():
    rng = np.random.default_rng(0)
    assert detect(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))) == []
    assert detect(Image.new("RGB", (64, 64))) == []
    smudge = np.zeros((64, 64, 3), np.uint8)
    smudge[10:30, 10:30] = (110, 20, 20)  # half-dimmed red: as near black as red
    smudge[40:60, 40:60] = (105, 80, 220)  # half-way between blue and purple
    smudge[40:60, 5:25] = (128, 128, 128)  # grey
    assert detect(smudge) == []
    tiny = np.zeros((64, 64, 3), np.uint8)
    tiny[5:8, 5:8] = COLORS["red"]  # 9 px: below the minimum area at 64 px
    assert detect(tiny) == []


def test_blobs_that_fit_no_shape_are_rejected():
    ring = np.zeros((20, 20), bool)
    ring[:, :4] = ring[:, -4:] = ring[:4] = ring[-4:] = True
    down = np.abs(np.arange(20)[None, :] - 9.5) <= 0.5 * (19 - np.arange(20)[:, None])  # apex-down triangle
    streak = np.ones((6, 20), bool)
    for blob in (ring, down, streak):
        assert classify_shape(blob)[0] is None


def test_touching_objects_of_two_colours_are_split():
    image = np.zeros((64, 64, 3), np.uint8)
    image[10:30, 10:30] = COLORS["red"]
    image[10:30, 30:50] = COLORS["blue"]
    dets = detect(image)
    assert sorted((d.name, d.box) for d in dets) == [("blue square", (30, 10, 50, 30)), ("red square", (10, 10, 30, 30))]


def test_rounded_square_is_still_a_square():
    image = render(Scene(64, (SceneObject("square", "green", (10, 10, 30, 30)),)))
    a = np.asarray(image).copy()
    for y, x in [(10, 10), (10, 11), (11, 10), (10, 29), (10, 28), (11, 29), (29, 10), (28, 10), (29, 11), (29, 29), (28, 29), (29, 28)]:
        a[y, x] = 0
    assert [(d.shape, d.box) for d in detect(a)] == [("square", (10, 10, 30, 30))]


def _bfs_labels(mask: np.ndarray) -> np.ndarray:
    """Plain 4-connected flood fill, the reference for the run-based labeller."""
    labels = np.zeros(mask.shape, np.int32)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        n += 1
        labels[start] = n
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = n
                    queue.append((ny, nx))
    return labels


def test_label_components_matches_flood_fill():
    rng = np.random.default_rng(3)
    for density in (0.2, 0.45, 0.6, 0.8):
        mask = rng.random((37, 53)) < density
        fast, n = label_components(mask)
        slow = _bfs_labels(mask)
        assert n == slow.max()
        # same partition: a one-to-one map between the two labellings
        pairs = set(zip(fast[mask].tolist(), slow[mask].tolist()))
        assert len(pairs) == n and len({a for a, _ in pairs}) == n and len({b for _, b in pairs}) == n
        assert (fast > 0).sum() == mask.sum()
    assert label_components(np.zeros((5, 5), bool))[1] == 0
