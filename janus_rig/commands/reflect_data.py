"""`janus-rig reflect-data`: reflection SFT data from a ShapeWorld world (perturbed scenes, checker and actor targets).

    janus-rig reflect-data --world runs/w --n 4000                # -> runs/w/reflect.jsonl + runs/w/reflect/images/
    janus-rig reflect-data --world runs/w --n 4000 --own M --own-share 0.5   # half: checker rows on M's own images
    janus-rig reflect-data --world runs/w --n 256 --split val --own M --own-share 1 --name own_val  # runs/w/own_val.jsonl
    janus-rig reflect-data --world runs/w --n 4000 --own M --own-share 0.5 --own-right-plans  # + the actor's redraws

Row schema and how SFT reads it: docs/reflection.md.
"""

from __future__ import annotations

import argparse
import json

from janus_rig.commands._sampling import add_cfg_argument, rollout_config

NAME = "reflect-data"
HELP = "write reflection training rows (perturbed ShapeWorld scenes with checker and actor targets) into a world"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", required=True, help="a `janus-rig world` directory")
    parser.add_argument("--n", type=int, required=True, help="rows to write")
    parser.add_argument("--split", default="train", choices=("train", "val"),
                        help="records to perturb; train writes reflect.jsonl, val reflect_val.jsonl")
    parser.add_argument("--keep-fraction", type=float, default=0.25,
                        help="share of unperturbed rows (the checker's target decision is keep)")
    parser.add_argument("--plan-errors", type=float, default=0.0,
                        help="share of moves shown with the plan the moved image follows (a wrong plan drawn "
                             "faithfully: the actor must revise it, not copy it)")
    parser.add_argument("--own", default="", metavar="MODEL",
                        help="a policy directory: --own-share of the rows are checker rows on its own drawings of "
                             "the prompts (what the loop's checker reads), scored by the oracle")
    parser.add_argument("--own-share", type=float, default=0.0, help="share of own-image rows (needs --own)")
    add_cfg_argument(parser, "CFG weight of the own drawings (default: the --own model's recorded guidance)")
    parser.add_argument("--own-keep", type=float, default=None, metavar="K",
                        help="at most this share of the own rows are keeps (draws on until the rest are failures; "
                             "default: one draw per row, as they come)")
    parser.add_argument("--own-right-plans", action="store_true",
                        help="own rows only from drawings of right plans (the failures a redraw can fix; wrong plans "
                             "are skipped and counted), whose edits teach the actor to keep the plan and redraw the "
                             "regions drawn wrong")
    parser.add_argument("--own-replan", action="store_true",
                        help="the edits of the own rows teach the actor to re-plan: the world record's chain (a right, "
                             "drawable plan) and the whole image as the edit box (for `reflect --edit-region full`)")
    parser.add_argument("--device", default=None, help="torch device for --own (default: cuda when available)")
    parser.add_argument("--name", default=None,
                        help="write WORLD/NAME.jsonl (row ids and images NAME-N) instead of reflect[_val].jsonl, "
                             "e.g. own_val for a model's own drawings of the val prompts next to the renders")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier rows file of the same name and delete its images (without it an "
                        "earlier set is refused)")


def run(args: argparse.Namespace) -> int:
    from data_prep.shapeworld.perturb import check_rows_free, check_rows_name, write_reflect_data

    check_rows_name(args.name)  # before a model loads
    if (args.own_share or args.own_right_plans or args.own_replan) and not args.own:
        raise SystemExit("--own-share, --own-right-plans and --own-replan need --own MODEL (the policy whose "
                         "drawings the checker rows are about)")
    check_rows_free(args.world, args.split, args.name, args.overwrite)
    own = None
    if args.own:
        import torch

        from janus_rig.model.policy import JanusPolicy

        policy = JanusPolicy.load(args.own, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        own = policy_drawer(policy, rollout_config(args, 1, model=args.own))
    stats = write_reflect_data(args.world, args.n, seed=args.seed, split=args.split,
                               keep_fraction=args.keep_fraction, progress=not args.quiet,
                               plan_errors=args.plan_errors, own=own, own_share=args.own_share,
                               name=args.name,
                               own_keep=args.own_keep, own_right_plans=args.own_right_plans,
                               own_replan=args.own_replan, overwrite=args.overwrite)
    print(json.dumps(stats))
    return 0


def policy_drawer(policy, config):
    """The policy's drawings as data preparation takes them (`own_images.Drawer`): (prompts, seed) -> one chain and
    one decoded image per prompt, sampled as `config` (a RolloutConfig of one sample per prompt) says."""
    from PIL import Image

    from janus_rig.rollout import sample

    def draw(prompts: list[str], seed: int):
        rollout = sample(policy, prompts, config, seed=seed)
        pixels = policy.decode_images(rollout.image_tokens)  # (B, S, S, 3) uint8
        return list(rollout.chains), [Image.fromarray(px.numpy()) for px in pixels]

    return draw
