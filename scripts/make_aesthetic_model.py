"""Write a model directory for the aesthetic reward term (layout: reward_models/aesthetic.py, docs/rewards.md).

Needs the `clip` extra (`make test-clip` builds .venv-clip with it). Nothing is downloaded: every input is a file.

    # LAION aesthetic predictor on OpenAI CLIP ViT-L/14 (open_clip weights file + the predictor's .pth)
    .venv-clip/bin/python scripts/make_aesthetic_model.py convert models/laion-aesthetic \\
        --arch ViT-L-14-quickgelu --clip-weights open_clip_pytorch_model.bin \\
        --score head --head sac+logos+ava1-l14-linearMSE.pth --low 1 --high 10

    # HPS v2.1: ViT-H-14 fine-tuned on human preferences, scored by image-prompt similarity
    .venv-clip/bin/python scripts/make_aesthetic_model.py convert models/hps-v2.1 \\
        --arch ViT-H-14 --clip-weights HPS_v2.1_compressed.pt --score similarity --low 0.2 --high 0.35

    # OUT already holds an open_clip model in open_clip's layout (open_clip_config.json + open_clip_pytorch_model.bin,
    # as an open_clip repository on the Hugging Face hub has them): add only the head and aesthetic.json
    .venv-clip/bin/python scripts/make_aesthetic_model.py convert SNAPSHOT_DIR --score head --head PREDICTOR.pth --low 1 --high 10

    # a random-init tiny model of the same layout, to try the term end to end
    .venv-clip/bin/python scripts/make_aesthetic_model.py tiny runs/tiny-aesthetic --score head
"""

from __future__ import annotations

import argparse
import sys

from reward_models.aesthetic import ACTIVATIONS, SCORES, convert, make_tiny_model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    real = commands.add_parser("convert", help="from an open_clip checkpoint (+ a head checkpoint)")
    real.add_argument("out", help="model directory to write (or to complete, without --arch)")
    real.add_argument("--arch", help="open_clip architecture name, e.g. ViT-L-14-quickgelu (OpenAI weights), ViT-H-14")
    real.add_argument("--clip-weights", help="the architecture's weights: a local state dict file (.bin/.pt/.safetensors)")
    real.add_argument("--score", required=True, choices=SCORES.names(), help="head: the head's output; "
                      "similarity: image-prompt cosine")
    real.add_argument("--head", help="score head: the head's checkpoint (LAION predictor .pth: layers.N.weight/bias)")
    real.add_argument("--activation", default="none", choices=ACTIVATIONS,
                      help="between the head's linear layers (none for the *-linearMSE predictors, relu for *-reluMSE)")
    real.add_argument("--low", type=float, required=True, help="raw score that maps to 0")
    real.add_argument("--high", type=float, required=True, help="raw score that maps to 1")
    tiny = commands.add_parser("tiny", help="a random-init tiny model, for tests and trying the term")
    tiny.add_argument("out")
    tiny.add_argument("--score", default="head", choices=SCORES.names())
    tiny.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            out = convert(args.out, score=args.score, low=args.low, high=args.high, arch=args.arch,
                          clip_weights=args.clip_weights, head_checkpoint=args.head, activation=args.activation)
        else:
            out = make_tiny_model_dir(args.out, score=args.score, seed=args.seed)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"make_aesthetic_model: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}: use it with --terms ... aesthetic --term-option aesthetic.model_dir={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
