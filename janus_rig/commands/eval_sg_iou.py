"""`janus-rig eval sg-iou`: SG-IoU, Entity-IoU and Relation-IoU (LAION-SG) of a model's images for scene-graph records.

    janus-rig eval sg-iou --model runs/quickstart/sft --records W/val.jsonl --judge shapeworld --samples 2 --out E
    janus-rig eval sg-iou --model M --records laion_sg.jsonl --judge http://127.0.0.1:8000/v1 --limit 500 --out E
    janus-rig eval sg-iou --model M --records R.jsonl --judge hf --judge-model /models/Qwen2.5-VL-7B-Instruct \\
        --judge-option device=cuda --out E

Records and the output folder: see janus_rig/eval/sg_run.py; the metric: reward_models/scene_graph.py.
The generation flags here are shared with `eval judge`.
"""

from __future__ import annotations

import argparse
import time

from janus_rig.commands._sampling import add_sampling_arguments
from janus_rig.commands._sampling import rollout_config as sampling_config
from janus_rig.commands.reward import _key_value
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "eval sg-iou"
HELP = "generate images for scene-graph records; a judge reads their graphs; SG-IoU, Entity-IoU, Relation-IoU"


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Sampling flags of every evaluation that generates (the same meaning as in `janus-rig generate`)."""
    group = parser.add_argument_group("generation")
    add_sampling_arguments(group)
    group.add_argument("--seed", type=int, default=0, help="generation batch b is drawn with seed + b")
    group.add_argument("--batch-size", type=int, default=4, help="prompts per sampler call (part of the seeding)")
    group.add_argument("--display-size", type=int, default=256, help="pixel size of images in the gallery")
    group.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    group.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")


def add_judge_arguments(parser: argparse.ArgumentParser, default: str = "shapeworld") -> None:
    group = parser.add_argument_group("judge")
    group.add_argument("--judge", default=default,
                       help="judge name (shapeworld, hf) or an OpenAI-compatible URL http://host:port/v1")
    group.add_argument("--judge-model", default=None, help="hf: local VLM directory; http: the server's model id")
    group.add_argument("--judge-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="judge keyword argument, repeatable (timeout=30, concurrency=16, device=cuda, ...)")
    group.add_argument("--judge-batch-size", type=int, default=32, help="questions per judge call")


def rollout_config(args: argparse.Namespace, samples: int):
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if args.batch_size < 1 or args.judge_batch_size < 1:
        raise ValueError("--batch-size and --judge-batch-size must be >= 1")
    return sampling_config(args, samples)


def load_policy(model: str, args: argparse.Namespace):
    import torch

    from janus_rig.model.policy import JanusPolicy

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return JanusPolicy.load(model, dtype=args.dtype, device=device)


def generation_header(args: argparse.Namespace, config, judge) -> dict:
    return {
        "model": args.model,
        "judge": f"{args.judge}" + (f" ({args.judge_model})" if args.judge_model else ""),
        "samples": f"{config.group_size} per prompt",
        "chain": f"max {args.max_chain_tokens} tokens, temperature {args.temperature}" if config.chain else "off",
        "image": f"CFG {config.cfg_weight:g}, temperature {args.image_temperature}",
        "seed": f"{args.seed} (batch b: seed + b), batch size {args.batch_size}",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="policy directory (ours or a transformers Janus directory)")
    parser.add_argument("--records", required=True, metavar="FILE",
                        help="JSONL scene-graph records: ShapeWorld (prompt + scene_graph) or LAION-SG (caption_ori + "
                        "items + relations)")
    parser.add_argument("--samples", type=int, default=1, help="images per record")
    parser.add_argument("--attributes", default="auto", choices=("auto", "all", "stated"),
                        help="reference attributes: all (LAION-SG), stated (only those the prompt names), auto "
                        "(stated for ShapeWorld records, all otherwise)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N records")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    add_judge_arguments(parser)
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.sg_run import read_records, run_sg_iou
    from reward_models.judges import make_judge

    started = time.perf_counter()
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    config = rollout_config(args, args.samples)
    records = read_records(args.records, args.attributes, args.limit)  # cheap checks before anything loads
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--records": args.records})
    judge = make_judge(args.judge, model=args.judge_model, **dict(args.judge_option))
    try:
        policy = load_policy(args.model, args)
        summary = run_sg_iou(policy, records, judge, args.out, config, seed=args.seed, batch_size=args.batch_size,
                             judge_batch_size=args.judge_batch_size, display_size=args.display_size,
                             model_name=args.model, header=generation_header(args, config, judge))
    finally:
        judge.close()
    metrics, counted = summary["metrics"], summary["counted"]
    print(f"{'metric':<14}{'mean':>8}{'images':>8}")
    for name, label in (("sg_iou", "SG-IoU"), ("entity_iou", "Entity-IoU"), ("relation_iou", "Relation-IoU")):
        value = f"{metrics[name]:.4f}" if name in metrics else "n/a"
        print(f"{label:<14}{value:>8}{counted[name]:>8}")
    print(f"{summary['samples']} images of {summary['records']} records ({summary['records_with_relations']} with "
          f"relations), {int(metrics['judge_failures'])} judge failures, in {time.perf_counter() - started:.1f} s; "
          f"results in {args.out}/results.jsonl, gallery {args.out}/index.html")
    return 0
