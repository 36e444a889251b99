"""`janus-rig ablate`: GoT-R1's reward ablation (Table 3): one short GRPO run per reward setting, each evaluated on
the bench, one table (see train/grpo/ablate.py and docs/grpo.md).

    janus-rig ablate --config train/recipes/shapeworld_grpo.yaml --terms all,R_PR,R_RI,R_PI --budget-s 120 \\
        --out runs/ablate
    janus-rig ablate --config ... --terms all,-R_RI,R_sem,R_spa --combine sum --max_steps 30 --out runs/ablate-sum
    janus-rig ablate --config ... --out runs/ablate --dry-run      # check everything, print the plan, train nothing

Every `janus-rig grpo` flag (`--world`, `--model_name_or_path`, `--max_steps`, `--learning_rate`, ...) is accepted
and applies to every run; `--output_dir` is set per setting (OUT/<setting>).
"""

from __future__ import annotations

import argparse
import json
import shlex

from janus_rig.commands._recipe import add_recipe_arguments, recipe_argv

NAME = "ablate"
HELP = ("reward ablation (GoT-R1 Table 3): one GRPO run per reward setting, each evaluated on the bench, as "
        "ablation.md / .csv / .json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.grpo.ablate import AblationConfig
    from train.grpo.config import GRPOConfig

    text = {name: value.replace("%", "%%") for name, value in AblationConfig.help().items()}
    own = parser.add_argument_group("ablation")
    own.add_argument("--out", required=True, help=text["out"])
    own.add_argument("--terms", default=AblationConfig.terms, help=text["terms"] + " (default: %(default)s)")
    own.add_argument("--combine", default=None, help=text["combine"])
    own.add_argument("--no-combine-row", dest="combine_row", action="store_false", help="do not " + text["combine_row"])
    own.add_argument("--budget-s", type=float, default=None, help=text["budget_s"])
    own.add_argument("--eval-metadata", default=None, help=text["eval_metadata"])
    own.add_argument("--eval-tags", default="position,complex",
                     help=text["eval_tags"] + ", comma-separated (default: %(default)s)")
    own.add_argument("--eval-samples", type=int, default=AblationConfig.eval_samples,
                     help=text["eval_samples"] + " (default: %(default)s)")
    own.add_argument("--eval-per-tag", type=int, default=AblationConfig.eval_per_tag,
                     help=text["eval_per_tag"] + " (default: %(default)s)")
    own.add_argument("--eval-seed", type=int, default=AblationConfig.eval_seed, help=text["eval_seed"])
    own.add_argument("--eval-batch-size", type=int, default=AblationConfig.eval_batch_size,
                     help=text["eval_batch_size"] + " (default: %(default)s)")
    own.add_argument("--seeds", default="", help=text["seeds"] + ", comma-separated, e.g. 1,2")
    own.add_argument("--force", action="store_true", help=text["force"])
    own.add_argument("--dry-run", action="store_true", help="check everything, print the plan, train nothing")
    own.add_argument("--quiet", action="store_true", help="no progress bars")
    add_recipe_arguments(parser, GRPOConfig)


def config_from_args(args: argparse.Namespace):
    from train.grpo.ablate import AblationConfig

    return AblationConfig(out=args.out, grpo_argv=recipe_argv(args), terms=args.terms, combine=args.combine,
                          combine_row=args.combine_row, budget_s=args.budget_s, eval_metadata=args.eval_metadata,
                          eval_tags=args.eval_tags.split(","), eval_samples=args.eval_samples,
                          eval_per_tag=args.eval_per_tag, eval_seed=args.eval_seed,
                          eval_batch_size=args.eval_batch_size, seeds=_seeds(args.seeds), force=args.force,
                          progress=not args.quiet)


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. 1,2") from None


def run(args: argparse.Namespace) -> int:
    from train.grpo.ablate import plan_ablation, run_ablation

    config = config_from_args(args)
    if args.dry_run:
        plan = plan_ablation(config)
        print(f"starting model: {plan.base.model_name_or_path} ({plan.steps['baseline']}); bench: "
              f"{len(plan.entries)} prompts of {', '.join(config.eval_tags)} x {config.eval_samples} samples")
        for s in plan.settings:
            for name, _ in plan.runs(s):
                print(f"  {name:<24} {s.label:<22} {' + '.join(s.terms)}, {s.combine}: {plan.steps[name]}")
                print(f"      {shlex.join(['janus-rig', 'grpo', *plan.argvs[name]])}")
        return 0
    result = run_ablation(config)
    paths = result["paths"]
    print(open(paths["md"], encoding="utf-8").read())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    if result["report_error"]:
        print(f"the eval report could not be written: {result['report_error']}")
    failed = [r["name"] for r in result["table"]["rows"] if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (errors in the table and OUT/<setting>/error.log)")
        return 1
    return 0
