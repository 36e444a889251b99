"""VQ token cache: every image a records file names, checked and VQ-encoded once, stored as an Arrow file.

    table = image_codes("world/train.jsonl", root="world", vq=policy.base.model.vqmodel,
                        world_size=64, image_size=64, cache_dir="world/cache")
    table["images/train-000001.png"]   # ImageCodes(codes=[17, 203, ...] (h*w ints), error=None)
    table["images/gone.png"]           # ImageCodes(codes=None, error="missing_image: world/images/gone.png ...")

The cache is a `datasets.map` over the distinct image paths with an explicit fingerprint and cache file named by
`cache_key`: a digest of the VQ (config + weights), the records file's bytes, every image file's size and mtime,
the two resolutions and whether codes are computed. A second call with the same inputs reads the Arrow file and
never touches the VQ; change any input and the key changes.

Image policy: an image whose size is not the world's (`world.json` "size") does not belong to this world and is
rejected as `wrong_size`; images of the world's size are resized (nearest, keeps palette colours pure, as the VQ
trainer does) to the VQ's resolution when the two differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from janus_rig.model.pixels import to_unit_range

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the cached columns or the encoding change
DEFAULT_BATCH_SIZE = 64


class ImageError(ValueError):
    """A row's image cannot be used; `kind` is one of missing_image, unreadable_image, wrong_size."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class ImageCodes:
    codes: list[int] | None  # h*w codebook indices in row-major order; None when the image was rejected
    error: str | None  # "kind: message" when rejected


# --- images ------------------------------------------------------------------------------------------------------
def load_image(path: Path, world_size: int, image_size: int) -> torch.Tensor:
    """A world image as (3, image_size, image_size) uint8, or ImageError."""
    if not path.is_file():
        raise ImageError("missing_image", f"{path} not found")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ImageError("unreadable_image", f"{path}: {err}") from None
    if image.size != (world_size, world_size):
        raise ImageError("wrong_size", f"{path} is {image.size[0]}x{image.size[1]}, the world's images are "
                                       f"{world_size}x{world_size}")
    if world_size != image_size:
        image = image.resize((image_size, image_size), Image.NEAREST)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()  # (3, S, S)


@torch.no_grad()
def encode_images(vq, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> (B, h*w) codes with transformers' own `JanusVQVAE.encode` (the inference path)."""
    param = next(vq.parameters())
    pixels = to_unit_range(images.to(param.device)).to(param.dtype)  # (B, 3, S, S)
    return vq.encode(pixels).image_tokens.view(len(images), -1)  # (B, h*w)


# --- keys --------------------------------------------------------------------------------------------------------
def vq_fingerprint(vq) -> str:
    """Digest of a VQ's config and weights (the codes depend on nothing else)."""
    h = hashlib.sha256(json.dumps(vq.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in vq.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def images_fingerprint(root: Path, paths: list[str]) -> str:
    """Cheap digest of the image files: path, size and mtime (a deleted or rewritten image changes it)."""
    h = hashlib.sha256()
    for rel in paths:
        p = root / rel
        stat = p.stat() if p.is_file() else None
        h.update(f"{rel}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}\n".encode())
    return h.hexdigest()[:16]


def cache_key(vq_digest: str, records_digest: str, images_digest: str, world_size: int, image_size: int,
              encode: bool) -> str:
    text = f"v{CACHE_VERSION}-{vq_digest}-{records_digest}-{images_digest}-{world_size}-{image_size}-{int(encode)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --- the cache ---------------------------------------------------------------------------------------------------
def _encode_batch(batch: dict, root: Path, vq, world_size: int, image_size: int, encode: bool) -> dict:
    """datasets.map function: {"image": [rel paths]} -> {"codes": [[int] | []], "error": [str]}."""
    good, images, errors = [], [], []
    for i, rel in enumerate(batch["image"]):
        try:
            images.append(load_image(root / rel, world_size, image_size))
            good.append(i)
            errors.append("")
        except ImageError as err:
            errors.append(str(err))
    codes: list[list[int]] = [[] for _ in batch["image"]]
    if encode and images:
        encoded = encode_images(vq, torch.stack(images)).cpu().tolist()  # (b, h*w)
        for i, row in zip(good, encoded):
            codes[i] = row
    return {"codes": codes, "error": errors}


def image_codes(
    records_path: str | Path,
    root: str | Path,
    vq,
    world_size: int,
    image_size: int,
    cache_dir: str | Path,
    paths: list[str] | None = None,
    encode: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, ImageCodes]:
    """Codes (or the rejection reason) of every image `paths` names (default: the records' distinct "image"s).

    With `encode=False` images are only checked (the on-the-fly mode encodes them at every step instead).
    """
    import datasets  # startup: keeps datasets + pandas (0.4 s) out of `janus-rig --help`

    records_path, root, cache_dir = Path(records_path), Path(root), Path(cache_dir)
    if paths is None:
        paths = distinct_images(records_path)
    key = cache_key(vq_fingerprint(vq), file_fingerprint(records_path), images_fingerprint(root, paths),
                    world_size, image_size, encode)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"vq-codes-{key}.arrow"
    table = datasets.Dataset.from_dict({"image": paths})
    table = table.map(
        _encode_batch,
        batched=True,
        batch_size=batch_size,
        fn_kwargs=dict(root=root, vq=vq, world_size=world_size, image_size=image_size, encode=encode),
        cache_file_name=str(cache_file),
        new_fingerprint=key,
        load_from_cache_file=True,
        desc=f"VQ-encoding {records_path.name}" if encode else f"checking images of {records_path.name}",
    )
    return {
        rel: ImageCodes(codes=list(codes) if not error and encode else None, error=error or None)
        for rel, codes, error in zip(table["image"], table["codes"], table["error"])
    }


def distinct_images(records_path: Path) -> list[str]:
    """The distinct "image" fields of a JSONL file in first-seen order (unreadable lines are skipped here)."""
    seen: dict[str, None] = {}
    with open(records_path) as f:
        for line in f:
            try:
                image = json.loads(line).get("image")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(image, str) and image:
                seen.setdefault(image, None)
    return list(seen)
