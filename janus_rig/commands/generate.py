"""`janus-rig generate`: images and their reasoning chains for prompts, with an HTML gallery to look at them.

    janus-rig generate --model runs/quickstart/grpo --prompt "a red circle left of a blue square" --num 4 --out out/
    janus-rig generate --model deepseek-community/Janus-Pro-1B --prompts geneval/evaluation_metadata.jsonl \\
        --num 4 --cfg 5 --seed 0 --out out/geneval --device cuda --dtype bfloat16

Layout of --out and seeding: see `janus_rig.generate`; open --out/index.html in a browser.
"""

from __future__ import annotations

import argparse
import time

from janus_rig.commands._sampling import add_sampling_arguments, rollout_config
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "generate"
HELP = "sample images (with their reasoning chains) for prompts; write PNGs, box overlays, traces.jsonl, index.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="policy directory (ours or a transformers Janus directory)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", metavar="FILE",
                        help="prompt file: one per line (blank lines and # comments skipped), or .jsonl with a "
                        "\"prompt\" field per line (GenEval metadata works)")
    parser.add_argument("--num", type=int, default=4, help="samples per prompt")
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="batch b is drawn with seed + b")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--batch-size", type=int, default=4,
                        help="prompts per sampler call (batch size x --num images in flight); part of the seeding")
    parser.add_argument("--display-size", type=int, default=256,
                        help="pixel size of overlays and of images in the gallery (nearest-neighbour upscale)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")


def run(args: argparse.Namespace) -> int:
    import torch

    from janus_rig.gallery import write_gallery
    from janus_rig.generate import generate, read_prompts
    from janus_rig.model.policy import JanusPolicy

    started = time.perf_counter()
    # Everything cheap is checked before the model loads.
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.prompts)
    if not all(p.strip() for p in prompts):
        raise ValueError("--prompt is empty")
    config = rollout_config(args, args.num)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--prompts": args.prompts})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = JanusPolicy.load(args.model, dtype=args.dtype, device=device)
    traces = generate(policy, prompts, args.out, config, seed=args.seed, batch_size=args.batch_size,
                      display_size=args.display_size)
    total = time.perf_counter() - started
    header = {
        "model": args.model,
        "prompts": f"{len(prompts)} ({args.prompts or '--prompt'})",
        "samples": f"{len(traces)} ({args.num} per prompt)",
        "chain": f"max {args.max_chain_tokens} tokens, temperature {args.temperature}" if config.chain else "off",
        "image": f"CFG {config.cfg_weight:g}, temperature {args.image_temperature}, {policy.image_size} px",
        "seed": f"{args.seed} (batch b: seed + b), batch size {args.batch_size}",
        "device": f"{device}, {next(policy.base.parameters()).dtype}",
        "total time": f"{total:.1f} s",
    }
    page = write_gallery(args.out, traces, header, title="janus-rig generate", display_size=args.display_size)
    truncated = sum(t["truncated"] for t in traces)
    clean = sum(not t["problems"] for t in traces)
    print(f"wrote {len(traces)} samples to {args.out} in {total:.1f} s ({clean} chains parsed cleanly, "
          f"{truncated} truncated); open {page}")
    return 0
