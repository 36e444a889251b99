"""`janus-rig sweep`: one recipe trained for N seeds; the start model and every run evaluated on one prompt file; per
tag the start, each seed's score and gain, mean, min..max and s.d. (train/sweep.py, docs/grpo.md).

    janus-rig sweep --config train/recipes/shapeworld_grpo.yaml --seeds 1,2,3 --eval W/heldout/metadata.jsonl \\
        --samples 4 --eval-seed 0 --out runs/sweep -- --world W --model_name_or_path checkpoints/shapeworld/sft
    janus-rig sweep --trainer sft --config train/recipes/shapeworld_sft.yaml --seeds 1,2,3 --eval ... --out ... \\
        -- --world W --model_name_or_path checkpoints/shapeworld/sft --max_train_seconds 480

Everything after `--` goes to the trainer as `janus-rig grpo` (or `sft`) would take it; the sweep adds `--seed S
--output_dir OUT/seed_S`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from janus_rig.outputs import add_overwrite_argument

NAME = "sweep"
HELP = ("train one recipe for several seeds and evaluate the start model and each run on a prompt file: per-tag "
        "scores, gains and their spread as sweep.md / sweep.json")
USAGE = ("janus-rig sweep --config RECIPE.yaml --seeds 1,2,3 --eval PROMPTS.jsonl --out DIR [options] "
         "[-- TRAINER FLAGS, e.g. --world W --model_name_or_path M --max_steps 40]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.sweep import TRAINERS, SweepConfig

    parser.usage = USAGE
    parser.epilog = ("The flags after `--` go to the trainer as `janus-rig grpo` (or `sft`) takes them; the sweep adds "
                     "--seed S --output_dir OUT/seed_S for each seed. Outputs: OUT/start/ (the start model's "
                     "evaluation), OUT/seed_S/ (run + geneval/), OUT/sweep.md, OUT/sweep.json.")
    text = {name: value.replace("%", "%%") for name, value in SweepConfig.help().items()}
    parser.add_argument("--trainer", choices=TRAINERS.names(), default="grpo",
                        help="which trainer runs the recipe (default: %(default)s)")
    parser.add_argument("--config", default=None, metavar="RECIPE", help=text["recipe"])
    parser.add_argument("--seeds", default="1,2,3", help=text["seeds"] + ", comma-separated (default: %(default)s)")
    parser.add_argument("--eval", required=True, metavar="PROMPTS", help=text["eval_metadata"])
    parser.add_argument("--eval-tags", nargs="+", default=None, metavar="TAG", help=text["eval_tags"])
    parser.add_argument("--samples", type=int, default=4, help=text["samples"] + " (default: %(default)s)")
    parser.add_argument("--eval-seed", type=int, default=0, help=text["eval_seed"] + " (default: %(default)s)")
    parser.add_argument("--cfg", type=float, default=None, help=text["cfg"])
    parser.add_argument("--max-chain-tokens", type=int, default=600,
                        help=text["max_chain_tokens"] + " (default: %(default)s)")
    parser.add_argument("--eval-batch-size", type=int, default=8, help=text["eval_batch_size"] + " (default: "
                        "%(default)s)")
    parser.add_argument("--out", required=True, help=text["out"])
    add_overwrite_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("trainer_argv", nargs=argparse.REMAINDER, metavar="-- TRAINER FLAGS",
                        help="flags for the trainer (`janus-rig grpo --help`), after `--`")


def config_from_args(args: argparse.Namespace):
    from train.sweep import SweepConfig, parse_seeds

    argv = list(args.trainer_argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return SweepConfig(out=args.out, eval_metadata=args.eval, seeds=parse_seeds(args.seeds), trainer=args.trainer,
                       recipe=args.config, trainer_argv=argv, eval_tags=args.eval_tags, samples=args.samples,
                       eval_seed=args.eval_seed, cfg=args.cfg, max_chain_tokens=args.max_chain_tokens,
                       eval_batch_size=args.eval_batch_size,
                       overwrite=args.overwrite, progress=not args.quiet,
                       command=getattr(args, "command_line", ""))


def run(args: argparse.Namespace) -> int:
    from train.sweep import SWEEP_JSON, SWEEP_MD, run_sweep

    config = config_from_args(args)
    run_sweep(config)
    print((Path(config.out) / SWEEP_MD).read_text(encoding="utf-8"))
    print(f"wrote {Path(config.out) / SWEEP_MD} and {Path(config.out) / SWEEP_JSON}")
    return 0
