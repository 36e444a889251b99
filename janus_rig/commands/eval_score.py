"""`janus-rig eval score DIR`: score a GenEval-layout folder with the exact ShapeWorld oracle."""

from __future__ import annotations

import argparse
from pathlib import Path

from janus_rig.outputs import add_overwrite_argument, prepare_out_file

NAME = "eval score"
HELP = "score a GenEval-layout folder (<DIR>/<index>/metadata.jsonl + samples/*.png) with the ShapeWorld oracle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="GenEval output folder")
    parser.add_argument("--out", default=None, help="results file (default: DIR/results.jsonl)")
    add_overwrite_argument(parser, text="replace an existing results file (without it one is refused)")


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.score import RESULTS_FILE, score_geneval_dir

    prepare_out_file(args.out or Path(args.dir) / RESULTS_FILE, args.overwrite,
                     what="--out" if args.out else "the results file")
    summary = score_geneval_dir(args.dir, args.out)
    print(f"{'tag':<16}{'accuracy':>10}{'correct':>10}{'images':>8}")
    for tag, (correct, total) in summary.per_tag.items():
        print(f"{tag:<16}{correct / total:>10.4f}{correct:>10}{total:>8}")
    print(f"{'overall':<16}{summary.overall:>10.4f}   (mean over {len(summary.per_tag)} tags)")
    print(
        f"{summary.n_images} images, {summary.correct_images} correct; {summary.n_prompts} prompts, "
        f"{summary.correct_prompts} with a correct image; results in {summary.results_path}"
    )
    if summary.problems:
        print(f"{len(summary.problems)} problem(s):")
        for problem in summary.problems:
            print(f"  {problem}")
        return 1
    return 0
