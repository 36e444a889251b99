"""Boxes on the chain's 0..1000 grid -> which VQ patches (image tokens) they touch. The one home of that mapping.

Image tokens are in raster order: token k is patch (row k // g, column k % g) of the (g, g) grid, and patch
(i, j) covers x in [j, j + 1] * 1000 / g and y in [i, i + 1] * 1000 / g. A patch is inside a box when their
overlap has positive area; a patch that only touches a box's edge is outside. Integer arithmetic, no rounding:

    >>> patch_mask([Box(0, 0, 500, 250)], 4).int().tolist()
    [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from janus_rig.chain import COORD_MAX, Box


def box_patch_span(box: Box, grid: int) -> tuple[range, range]:
    """(rows, columns) of the patches a box overlaps with positive area."""
    # Patch j overlaps [x1, x2] iff j * 1000 < x2 * g and x1 * g < (j + 1) * 1000.
    cols = range(box.x1 * grid // COORD_MAX, -(-box.x2 * grid // COORD_MAX))
    rows = range(box.y1 * grid // COORD_MAX, -(-box.y2 * grid // COORD_MAX))
    return rows, cols


def patch_mask(boxes: Sequence[Box], grid: int) -> torch.Tensor:
    """(g, g) bool: True where a patch overlaps any of the boxes."""
    mask = torch.zeros(grid, grid, dtype=torch.bool)
    for box in boxes:
        rows, cols = box_patch_span(box, grid)
        mask[rows.start : rows.stop, cols.start : cols.stop] = True
    return mask


def token_masks(boxes_per_image: Sequence[Sequence[Box]], grid: int) -> torch.Tensor:
    """(B, g * g) bool over image tokens in raster order: True for tokens whose patch overlaps a box."""
    if not boxes_per_image:
        return torch.zeros(0, grid * grid, dtype=torch.bool)
    return torch.stack([patch_mask(boxes, grid).flatten() for boxes in boxes_per_image])


def pixel_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(g, g) patch mask -> (size, size) bool over the decoded image's pixels (each patch is size / g pixels)."""
    grid = mask.shape[-1]
    if size % grid:
        raise ValueError(f"image size {size} is not a multiple of the token grid {grid}: patches have no pixel edges")
    step = size // grid
    return mask.repeat_interleave(step, -2).repeat_interleave(step, -1)  # (size, size)
