"""An optional aesthetic / preference term: an open_clip model read from a LOCAL directory (no downloads).

GoT-R1 v2 multiplies an HPS v2.1 score into the reward; HPS v2.1 is an open_clip ViT-H-14 fine-tuned on human
preferences, scored as the cosine similarity of image and prompt embeddings. The directory holds

    aesthetic.json   {"arch": "ViT-H-14", "checkpoint": "HPS_v2.1_compressed.pt", "low": 0.20, "high": 0.35}
    HPS_v2.1_compressed.pt

and the score maps the similarity linearly from [low, high] onto [0, 1] (clamped). open_clip is the `clip` extra
(`pip install -e '.[clip]'`): its torchvision does not import beside the CPU-only torch build, so it is imported
only when this term is used, and a clear error names the extra when it is missing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from PIL import Image

CONFIG_FILE = "aesthetic.json"
CLIP_EXTRA_HINT = "the aesthetic term needs open_clip, the optional `clip` extra: pip install -e '.[clip]'"


def import_open_clip():
    try:
        import open_clip
    except Exception as err:  # ImportError, or torchvision's compiled ops failing to load beside this torch
        raise ImportError(f"{CLIP_EXTRA_HINT} ({type(err).__name__}: {err})") from err
    return open_clip


class AestheticScorer:
    def __init__(self, model_dir: str | Path, device: str = "cpu"):
        open_clip = import_open_clip()  # first: the missing extra is the error to report
        import torch

        directory = Path(model_dir)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: an aesthetic model directory needs {CONFIG_FILE}")
        config = json.loads(config_path.read_text())
        self.low, self.high = float(config.get("low", 0.0)), float(config.get("high", 1.0))
        if not self.high > self.low:
            raise ValueError(f"{config_path}: need high > low, got low={self.low}, high={self.high}")
        model, _, self.preprocess = open_clip.create_model_and_transforms(config["arch"], pretrained=None)
        state = torch.load(directory / config["checkpoint"], map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(config["arch"])
        self.device = device

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        import torch

        if not images:
            return []
        with torch.inference_mode():
            pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)  # (B, 3, H, W)
            tokens = self.tokenizer(prompts).to(self.device)  # (B, T)
            image_emb = torch.nn.functional.normalize(self.model.encode_image(pixels), dim=-1)  # (B, D)
            text_emb = torch.nn.functional.normalize(self.model.encode_text(tokens), dim=-1)  # (B, D)
            similarity = (image_emb * text_emb).sum(-1)  # (B,)
        scaled = ((similarity - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
        return [float(v) for v in scaled.cpu()]


@lru_cache(maxsize=2)
def load_scorer(model_dir: str) -> AestheticScorer:
    return AestheticScorer(model_dir)
