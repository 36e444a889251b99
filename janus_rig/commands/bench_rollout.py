"""`janus-rig bench rollout`: our rollout sampler vs transformers' generate path, side by side."""

from __future__ import annotations

import argparse
import json

from janus_rig.commands._sampling import add_cfg_argument

NAME = "bench rollout"
HELP = "time the rollout sampler against transformers' generate (tiny preset, 8 prompts x G 4, CFG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="policy directory (default: the tiny preset, random init)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path (medians are reported)")
    parser.add_argument("--group-size", type=int, default=4, help="samples per prompt")
    parser.add_argument("--chain-tokens", type=int, default=40, help="chain length, the same on both paths")
    add_cfg_argument(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")


def run(args: argparse.Namespace) -> int:
    import torch

    from janus_rig.rollout.bench import bench_policy, run_bench

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.model is not None:
        from janus_rig.model.policy import JanusPolicy

        policy = JanusPolicy.load(args.model)
    else:
        policy = bench_policy()
    cfg = policy.guidance if args.cfg is None else args.cfg
    params = sum(p.numel() for p in policy.base.parameters() if p.requires_grad) / 1e6

    def progress(rep, result):
        print(f"  run {rep + 1}/{args.repeats}: ours {result.ours_s[-1]:.3f} s, "
              f"transformers {result.transformers_s[-1]:.3f} s", flush=True)

    print(f"rollout bench: {args.model or 'tiny preset (random init)'}, {params:.1f} M trainable parameters, "
          f"8 prompts x G {args.group_size}, chain {args.chain_tokens} + {policy.num_image_tokens} image tokens, "
          f"CFG {cfg:g}, {torch.get_num_threads()} threads", flush=True)
    result = run_bench(policy, group_size=args.group_size, chain_tokens=args.chain_tokens, cfg_weight=cfg,
                       repeats=args.repeats, progress=progress)
    s = result.summary()
    print(f"ours          median {s['ours_median_s']:.3f} s  {s['ours_tokens_per_s']:8.0f} tokens/s  "
          f"(chain {s['ours_text_median_s']:.3f} s, image {s['ours_image_median_s']:.3f} s)")
    print(f"transformers  median {s['transformers_median_s']:.3f} s  {s['transformers_tokens_per_s']:8.0f} tokens/s")
    print(f"ratio {s['ratio']:.2f}")
    if args.json:
        print(json.dumps(s))
    return 0
