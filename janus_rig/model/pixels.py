"""The one definition of the pixel range the VQ sees: uint8 <-> float in [-1, 1] (Janus: mean = std = 0.5)."""

from __future__ import annotations

import torch


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W) -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] (clamped) -> uint8, rounded."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
