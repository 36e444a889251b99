"""`janus-rig eval judge`: VLM-as-a-judge scores (GoT-R1's R_PI rubric) of a model's images, or with --versus a
pairwise preference between two models' images (or chains), each pair asked in both orders.

    janus-rig eval judge --model runs/quickstart/sft --prompts W/bench/metadata.jsonl --judge shapeworld --out E
    janus-rig eval judge --model GRPO --versus SFT --prompts prompts.txt --judge http://127.0.0.1:8000/v1 --out V
    janus-rig eval judge --model GRPO --versus SFT --compare chain --prompts P.jsonl --judge hf \\
        --judge-model /models/Qwen2.5-VL-7B-Instruct --judge-option device=cuda --out V

Output folders and the metrics: see janus_rig/eval/judge_run.py.
"""

from __future__ import annotations

import argparse
import time

from janus_rig.commands.eval_sg_iou import (
    add_generation_arguments,
    add_judge_arguments,
    generation_header,
    load_policy,
    rollout_config,
)
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "eval judge"
HELP = "judge a model's images with the R_PI rubric (score distribution), or --versus another model (pairwise)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="policy directory (model A with --versus)")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="prompt file: one per line, or JSONL with \"prompt\" (+ GenEval metadata, which the "
                        "shapeworld judge needs: a \"metadata\" field or the GenEval line itself)")
    parser.add_argument("--versus", default=None, metavar="DIR2", help="model B: compare A and B pairwise instead")
    parser.add_argument("--compare", default="image", choices=("image", "chain"),
                        help="with --versus: compare the images or the reasoning chains")
    parser.add_argument("--samples", type=int, default=1, help="images per prompt (per model)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    add_judge_arguments(parser)
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.judge_run import read_prompt_records, run_judge, run_versus
    from reward_models.judges import make_judge

    started = time.perf_counter()
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.versus is None and args.compare != "image":
        raise ValueError("--compare chain needs --versus DIR2 (a single model is scored on its images)")
    config = rollout_config(args, args.samples)
    if args.versus is not None and args.cfg is None:
        from janus_rig.model.policy import read_guidance

        if read_guidance(args.versus) != config.cfg_weight:
            raise ValueError(f"{args.model} records guidance {config.cfg_weight:g} and {args.versus} "
                             f"{read_guidance(args.versus):g}: give --cfg to compare them at one guidance")
    records = read_prompt_records(args.prompts)[: args.limit]
    prepare_out_dir(args.out, args.overwrite,
                    inputs={"--model": args.model, "--versus": args.versus, "--prompts": args.prompts})
    judge = make_judge(args.judge, model=args.judge_model, **dict(args.judge_option))
    common = dict(seed=args.seed, batch_size=args.batch_size, judge_batch_size=args.judge_batch_size,
                  display_size=args.display_size, header=generation_header(args, config, judge))
    try:
        if args.versus is None:
            summary = run_judge(load_policy(args.model, args), records, judge, args.out, config,
                                model_name=args.model, **common)
        else:
            summary = run_versus(lambda model: load_policy(model, args), args.model, args.versus, records, judge,
                                 args.out, config, kind=args.compare, **common)
    finally:
        judge.close()
    metrics = summary["metrics"]
    elapsed = time.perf_counter() - started
    if args.versus is None:
        mean = f"{metrics['mean']:.4f}" if "mean" in metrics else "n/a (every answer failed)"
        print(f"R_PI mean {mean} over {summary['samples'] - int(metrics['judge_failures'])} images; "
              f"histogram 0..10: {summary['histogram']}; {int(metrics['judge_failures'])} judge failures")
    else:
        preference = f"{metrics['preference']:.4f}" if "preference" in metrics else "n/a (every pair failed)"
        consistency = f"{metrics['consistency']:.3f}" if "consistency" in metrics else "n/a"
        print(f"preference for {args.model} over {args.versus} ({args.compare}s): {preference}; "
              f"{int(metrics['wins'])} wins, {int(metrics['losses'])} losses, {int(metrics['ties'])} ties, "
              f"{int(metrics['pair_failures'])} failed pairs; order consistency {consistency}")
    print(f"{summary['samples']} {'pairs' if args.versus else 'images'} in {elapsed:.1f} s; results in "
          f"{args.out}/results.jsonl, gallery {args.out}/index.html")
    return 0
