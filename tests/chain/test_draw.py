import pytest
from PIL import Image

from janus_rig.chain import PALETTE, Box, ChainObject, draw_boxes

WHITE = (255, 255, 255)


def test_blank_canvas_gets_box_edges_in_the_palette_colour():
    out = draw_boxes(None, [ChainObject("cat", Box(250, 250, 750, 750))], size=(64, 64), label=False)
    assert out.size == (64, 64) and out.mode == "RGB"
    assert out.getpixel((16, 32)) == PALETTE[0]  # left edge, x = 250/1000 * 64
    assert out.getpixel((47, 32)) == PALETTE[0]  # right edge, the box's last pixel column
    assert out.getpixel((32, 32)) == WHITE  # inside
    assert out.getpixel((5, 5)) == WHITE  # outside


def test_original_image_is_untouched():
    image = Image.new("RGB", (384, 384), (10, 20, 30))
    before = image.tobytes()
    out = draw_boxes(image, [ChainObject("dog", Box(100, 100, 900, 500))], line_width=3)
    assert out is not image and image.tobytes() == before
    assert out.size == (384, 384) and out.getpixel((39, 100)) == PALETTE[0]  # x = 100/1000 * 384 = 38.4 -> 38..40


def test_label_is_written_at_the_top_left():
    objects = [ChainObject("red circle", Box(100, 100, 900, 900))]
    plain = draw_boxes(None, objects, size=(384, 384), label=False)
    labelled = draw_boxes(None, objects, size=(384, 384))
    diff = [(x, y) for x in range(384) for y in range(384) if plain.getpixel((x, y)) != labelled.getpixel((x, y))]
    assert diff and all(38 <= x < 192 and 38 <= y < 80 for x, y in diff)


def test_objects_without_boxes_are_skipped_and_colours_differ():
    objects = [
        ChainObject("a", Box(0, 0, 500, 500)),
        ChainObject("b", None),
        ChainObject("c", Box(500, 500, 1000, 1000)),
    ]
    out = draw_boxes(None, objects, size=(100, 60), label=False, background=(0, 0, 0))
    assert out.getpixel((0, 10)) == PALETTE[0] and out.getpixel((50, 45)) == PALETTE[2]
    assert draw_boxes(None, [objects[1]], size=(100, 60)).getcolors() == [(6000, WHITE)]


def test_image_is_resized_to_the_requested_size():
    small = Image.new("L", (32, 32), 0)
    out = draw_boxes(small, [ChainObject("x", Box(0, 0, 1000, 1000))], size=(256, 256))
    assert out.size == (256, 256) and out.mode == "RGB" and small.size == (32, 32)
    assert out.getpixel((255, 128)) == PALETTE[0] and out.getpixel((128, 128)) == (0, 0, 0)


def test_tiny_boxes_and_images_still_draw():
    out = draw_boxes(None, [ChainObject("speck", Box(999, 999, 1000, 1000))], size=(8, 8))
    assert out.getpixel((7, 7)) == PALETTE[0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        draw_boxes(None, [])
    with pytest.raises(ValueError):
        draw_boxes(None, [], size=(0, 10))
    with pytest.raises(ValueError):
        draw_boxes(None, [], size=(10, 10), line_width=0)
