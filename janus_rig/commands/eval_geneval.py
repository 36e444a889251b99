"""`janus-rig eval geneval`: K samples per GenEval metadata line in GenEval's layout; oracle-scored on ShapeWorld.

    janus-rig eval geneval --model runs/quickstart/grpo --metadata runs/world/bench/metadata.jsonl --samples 4 \\
        --out runs/eval/geneval
    janus-rig eval geneval --model deepseek-community/Janus-Pro-1B \\
        --metadata ../shared/benchmarks/geneval/evaluation_metadata.jsonl --samples 4 --out out/geneval --device cuda
    janus-rig eval geneval --model runs/quickstart/reflect --metadata runs/world/bench/metadata.jsonl --reflect 2 \\
        --out runs/eval/geneval_r2        # each sample after 2 rounds of check -> act -> edit; accuracy per round

Layout and seeding: `janus_rig.eval.geneval_run`; see docs/eval.md. The sampling options here are shared with
`eval t2i-compbench`.
"""

from __future__ import annotations

import argparse
import time

from janus_rig.commands._sampling import add_sampling_arguments as add_rollout_arguments
from janus_rig.commands._sampling import rollout_config as sampling_config
from janus_rig.commands.reflect import add_loop_arguments, describe, loop_settings
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "eval geneval"
HELP = ("generate K images per GenEval metadata line into GenEval's layout (+ chains, gallery, summary.json); "
        "ShapeWorld prompts are scored with the oracle")


def add_sampling_arguments(parser: argparse.ArgumentParser, samples: int) -> None:
    """Model, sampling and output options shared by the eval commands that generate."""
    parser.add_argument("--model", required=True, help="policy directory (ours or a transformers Janus directory)")
    parser.add_argument("--samples", type=int, default=samples, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0, help="batch b is drawn with seed + b")
    add_rollout_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=4,
                        help="prompts per sampler call (batch size x --samples images in flight); part of the seeding")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts")
    parser.add_argument("--display-size", type=int, default=256,
                        help="pixel size of overlays and of images in the gallery (nearest-neighbour upscale)")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def rollout_config(args: argparse.Namespace):
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.display_size < 1:
        raise ValueError(f"--display-size must be >= 1, got {args.display_size}")
    return sampling_config(args, args.samples)


def load_policy(args: argparse.Namespace):
    """-> (policy, device name)."""
    import torch

    from janus_rig.model.policy import JanusPolicy

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return JanusPolicy.load(args.model, dtype=args.dtype, device=device), device


def header(args: argparse.Namespace, policy, device: str, config, prompts: str, seconds: float) -> dict:
    """The gallery's settings rows."""
    return {
        "model": args.model,
        "prompts": prompts,
        "samples": f"{args.samples} per prompt",
        "chain": f"max {args.max_chain_tokens} tokens, temperature {args.temperature}" if config.chain else "off",
        "image": f"CFG {config.cfg_weight:g}, temperature {args.image_temperature}, {policy.image_size} px",
        "seed": f"{args.seed} (batch b: seed + b), batch size {args.batch_size}",
        "device": f"{device}, {next(policy.base.parameters()).dtype}",
        "total time": f"{seconds:.1f} s",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metadata", required=True, metavar="FILE",
                        help="GenEval metadata .jsonl (evaluation_metadata.jsonl, or a world's bench/metadata.jsonl)")
    parser.add_argument("--tags", nargs="+", default=None, metavar="TAG",
                        help="only metadata lines with these tags (applied before --limit)")
    parser.add_argument("--oracle", choices=("auto", "on", "off"), default="auto",
                        help="score with the ShapeWorld oracle: auto = when every selected line is a ShapeWorld "
                        "record; on = demand it; off = only write the folder for GenEval's own scorer")
    add_sampling_arguments(parser, samples=4)
    reflect = parser.add_argument_group("reflection (--reflect K: the model checks and edits its own images)")
    reflect.add_argument("--reflect", type=int, default=0, metavar="K",
                         help="K rounds of generate -> check -> act -> edit per sample (0: plain generation); the "
                         "final images are scored, and with the oracle the accuracy after each round too "
                         "(summary metrics overall@r0 .. overall@rK)")
    add_loop_arguments(reflect, rounds=False)


def reflect_config(args: argparse.Namespace):
    """The loop's settings for --reflect K from the flags and recipe, and their sources (None without --reflect):
    checked before the model loads; the model's record joins them once it has loaded (`loop_settings`)."""
    if args.reflect < 0:
        raise ValueError(f"--reflect must be >= 0 (0: no reflection), got {args.reflect}")
    if not args.reflect:
        return None
    return loop_settings(args, rounds=args.reflect)


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.geneval_run import (
        choose_oracle,
        read_geneval_metadata,
        run_geneval,
        write_geneval_outputs,
    )

    started = time.perf_counter()
    # Everything cheap is checked before the model loads.
    entries = read_geneval_metadata(args.metadata, limit=args.limit, tags=args.tags)
    oracle = choose_oracle(entries, args.oracle, args.metadata)
    config = rollout_config(args)
    reflecting = reflect_config(args)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--metadata": args.metadata})
    print(f"{len(entries)} metadata lines x {args.samples} samples; oracle {oracle.why}")
    policy, device = load_policy(args)
    generate = {}
    if reflecting is not None:
        from janus_rig.reflect.actors import actor_for
        from janus_rig.eval.reflect_generate import reflect_generate
        from janus_rig.reflect.prompts import ensure_role_tokens

        reflecting = loop_settings(args, policy.loop_settings, f"{args.model}'s loop record", rounds=args.reflect)
        ensure_role_tokens(policy)
        settings = reflecting[0]
        generate = {"generate_fn": reflect_generate(settings.loop_config(), actor=actor_for(settings.actor, config))}
    run_ = run_geneval(policy, entries, args.out, config, seed=args.seed, batch_size=args.batch_size,
                       oracle=oracle.use, display_size=args.display_size, progress=not args.quiet, **generate)
    rows = header(args, policy, device, config, f"{len(entries)} ({args.metadata})", time.perf_counter() - started)
    if reflecting is not None:
        rows["reflection"] = describe(*reflecting)
    page = write_geneval_outputs(args.out, run_, model=args.model, header=rows, oracle=oracle,
                                 metadata_file=args.metadata, reflect_rounds=args.reflect, command=args.command_line)
    clean = sum(not t["problems"] for t in run_.traces)
    print(f"wrote {len(run_.traces)} samples to {args.out} ({clean} chains parsed cleanly); open {page}")
    score = run_.score
    if score is None:
        from janus_rig.eval.geneval_run import official_score_commands

        print("not scored here; GenEval's own scorer needs its Mask2Former detector and CLIP:")
        for line in official_score_commands(args.out):
            print(f"  {line}")
        return 0
    print(score.table())
    if run_.chain_split:
        from janus_rig.eval.score import chain_split_table

        print("the plan or the drawing: how often the chain is right, and the image given a right / wrong chain")
        print(chain_split_table(run_.chain_split))
    if run_.round_metrics:
        print("after each round: " + ", ".join(f"r{j} {run_.round_metrics[f'overall@r{j}']:.4f}"
                                               for j in range(args.reflect + 1)))
        m = run_.round_metrics
        if "edited" in m:
            print(f"the first check flagged {m['flagged_wrong@r0']:.1%} of the wrong first images and "
                  f"{m['flagged_right@r0']:.1%} of the right ones; {m['edited']:.1%} of the samples were edited")
    print(f"{score.n_images} images, {score.correct_images} correct; {score.n_prompts} prompts, "
          f"{score.correct_prompts} with a correct image; results in {score.results_path}")
    if score.problems:
        print(f"{len(score.problems)} problem(s):")
        for problem in score.problems:
            print(f"  {problem}")
        return 1
    return 0
